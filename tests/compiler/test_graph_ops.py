"""Graph ops (gather_nodes, scatter, graph_pool, gnn_layer, edge_layer) against dense-adjacency references, in PyTorch and ONNX."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx.reference import ReferenceEvaluator
from spec_helpers import model_spec as shared_model_spec

import paperspec
from paperspec.compiler.backends.onnx import export_spec
from paperspec.runtime.onnx import OnnxSession, verify

GRAPH = "in x: f32[N, 3]; in edge_index: i64[2, E]"
SIZES = [(6, 15), (40, 230)]  # (nodes, edges): two graph sizes for every check


def model_spec(body: str, params: str = "") -> paperspec.Spec:
    return shared_model_spec(body, "<graph>", params)


def random_graph(nodes: int, edges: int, seed: int = 0, dtype=torch.float32) -> tuple:
    """Features and edges with repeated edges, self loops and (with few edges) isolated nodes."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(nodes, 3, generator=generator, dtype=dtype)
    edge_index = torch.randint(0, nodes, (2, edges), generator=generator)
    edge_index[:, -1] = edge_index[:, 0]  # at least one repeated edge
    return x, edge_index


def adjacency(edge_index: torch.Tensor, nodes: int, dtype=torch.float32) -> torch.Tensor:
    """Dense A[v, u] = number of edges u -> v."""
    a = torch.zeros(nodes, nodes, dtype=dtype)
    for u, v in edge_index.t().tolist():
        a[v, u] += 1
    return a


def dense_reduce(a: torch.Tensor, x: torch.Tensor, reduce: str) -> torch.Tensor:
    """Row v reduces the rows x[u] with a[v, u] > 0: A @ X, degree-normalised, or a masked max."""
    if reduce == "sum":
        return a @ x
    if reduce == "mean":
        return (a @ x) / a.sum(1, keepdim=True).clamp(min=1)
    masked = torch.where(a[:, :, None] > 0, x[None, :, :], torch.tensor(-torch.inf, dtype=x.dtype))
    highest = masked.max(1).values
    return torch.where(a.sum(1, keepdim=True) > 0, highest, torch.zeros_like(highest))


def dense_neighbour_sum(x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
    return adjacency(edge_index, len(x), x.dtype) @ x


# ---- gather and scatter against dense adjacency ----


@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
@pytest.mark.parametrize("nodes, edges", SIZES)
def test_scatter_of_source_states_matches_dense_adjacency(reduce, nodes, edges):
    spec = model_spec(f'{GRAPH}; out scatter(gather_nodes(x, edge_index[0]), edge_index[1], N, reduce = "{reduce}")')
    x, edge_index = random_graph(nodes, edges)
    got = spec.build()(x, edge_index)
    torch.testing.assert_close(got, dense_reduce(adjacency(edge_index, nodes), x, reduce))


def test_nodes_without_incoming_edges_get_zeros():
    x, edge_index = torch.randn(5, 3) - 10.0, torch.tensor([[0, 1, 2], [1, 1, 3]])  # nodes 0, 2, 4 get nothing
    for reduce in ("sum", "mean", "max"):
        out = model_spec(f'{GRAPH}; out scatter(gather_nodes(x, edge_index[0]), edge_index[1], N, reduce = "{reduce}")').build()(x, edge_index)
        assert out[[0, 2, 4]].abs().max() == 0 and (out[[1, 3]] < -5).all()  # max of negatives is not clipped at 0


def test_gather_nodes_takes_rows_at_any_index_shape():
    spec = model_spec(f"{GRAPH}; out gather_nodes(x, edge_index)")
    x, edge_index = random_graph(7, 11)
    got = spec.build()(x, edge_index)
    assert got.shape == (2, 11, 3)
    one_hot = torch.nn.functional.one_hot(edge_index[1], 7).float()
    torch.testing.assert_close(got[1], one_hot @ x)


@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
def test_graph_pool_reads_out_each_graph_of_a_disjoint_union(reduce):
    spec = model_spec(f'in x: f32[N, 3]; in batch: i64[N]; in sizes: i64[G]; out graph_pool(x, batch, G, reduce = "{reduce}")')
    x, batch = torch.randn(9, 3), torch.tensor([0, 0, 0, 2, 2, 2, 2, 3, 3])  # graph 1 is empty
    got = spec.build()(x, batch, torch.zeros(4, dtype=torch.long))
    membership = torch.nn.functional.one_hot(batch, 4).t().float()  # [graph, node]
    torch.testing.assert_close(got, dense_reduce(membership, x, reduce))


# ---- gradients ----


@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
def test_scatter_gradients_pass_gradcheck_and_match_dense(reduce):
    spec = model_spec(f'in x: f64[N, 3]; in edge_index: i64[2, E]; out scatter(gather_nodes(x, edge_index[0]), edge_index[1], N, reduce = "{reduce}")')
    module = spec.build()
    x, edge_index = random_graph(6, 14, seed=3, dtype=torch.float64)
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: module(t, edge_index), (x,))
    weights = torch.randn(6, 3, dtype=torch.float64)
    (grad,) = torch.autograd.grad((module(x, edge_index) * weights).sum(), x)
    (want,) = torch.autograd.grad((dense_reduce(adjacency(edge_index, 6, torch.float64), x, reduce) * weights).sum(), x)
    torch.testing.assert_close(grad, want)


def test_layer_gradients_pass_gradcheck():
    spec = model_spec(
        'in x: f64[N, 3]; in e: f64[E, 2]; in edge_index: i64[2, E]; h = gnn_layer(x, edge_index, 4, aggregate = "mean", act = tanh); '
        "a, b = edge_layer(h, e, edge_index, 5, act = tanh); out sum(a) + sum(b * b)"
    )
    module = spec.build().double()
    x, edge_index = random_graph(5, 9, seed=4, dtype=torch.float64)
    e = torch.randn(9, 2, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a, b: module(a, b, edge_index), (x.requires_grad_(True), e.requires_grad_(True)))


# ---- layers against hand-written references ----


def reference_gnn_layer(layer, x, edge_index, aggregate: str, act) -> torch.Tensor:
    """One node at a time: its incoming messages from the pair [x_src, x_dst], reduced, then the update."""
    rows = []
    for v in range(len(x)):
        sources = [u for u, t in edge_index.t().tolist() if t == v]
        messages = [act(layer.message(torch.cat([x[u], x[v]]))) for u in sources]
        pooled = torch.stack(messages).sum(0) if messages else torch.zeros(layer.message.out_features)
        pooled = pooled / max(len(messages), 1) if aggregate == "mean" else pooled
        rows.append(act(layer.update(torch.cat([x[v], pooled]))))
    return torch.stack(rows)


def reference_edge_layer(layer, x, e, edge_index, act) -> tuple:
    """Edge by edge, then the sum of each node's new incoming edge states."""
    states = torch.stack([act(layer.edge(torch.cat([e[i], x[u], x[v]]))) for i, (u, v) in enumerate(edge_index.t().tolist())])
    incidence = torch.nn.functional.one_hot(edge_index[1], len(x)).t().float()  # [node, edge]
    return act(layer.update(torch.cat([x, incidence @ states], dim=1))), states


@pytest.mark.parametrize("aggregate", ["sum", "mean"])
@pytest.mark.parametrize("nodes, edges", SIZES)
def test_gnn_layer_matches_a_loop_over_nodes(aggregate, nodes, edges):
    spec = model_spec(f'{GRAPH}; out h = gnn_layer(x, edge_index, 8, aggregate = "{aggregate}", act = silu)')
    module = spec.build()
    x, edge_index = random_graph(nodes, edges, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(module(x, edge_index), reference_gnn_layer(module.h, x, edge_index, aggregate, torch.nn.functional.silu))
    assert set(module.state_dict()) == {"h.message.weight", "h.message.bias", "h.update.weight", "h.update.bias"}
    assert module.h.message.weight.shape == (8, 6) and module.h.update.weight.shape == (8, 11)


@pytest.mark.parametrize("nodes, edges", SIZES)
def test_edge_layer_keeps_edge_states_and_matches_a_loop_over_edges(nodes, edges):
    spec = model_spec(f"{GRAPH}; in e: f32[E, 2]; h, s = edge_layer(x, e, edge_index, 8); out h; out s")
    module = spec.build()
    x, edge_index = random_graph(nodes, edges, seed=2)
    e = torch.randn(edges, 2)
    with torch.no_grad():
        got = module(x, edge_index, e)
        want = reference_edge_layer(module.edge_layer, x, e, edge_index, torch.relu)
    assert got[0].shape == (nodes, 8) and got[1].shape == (edges, 8)
    torch.testing.assert_close(got, want)
    assert module.edge_layer.edge.weight.shape == (8, 2 + 2 * 3)


# ---- ONNX ----

ONNX_CASES = [
    ("scatter_sum", f"{GRAPH}; out scatter(gather_nodes(x, edge_index[0]) * 2.0, edge_index[1], N)"),
    ("scatter_mean_max", f'{GRAPH}; m = gather_nodes(x, edge_index[1]); out scatter(m, edge_index[0], N, reduce = "mean"); out scatter(m, edge_index[1], N, reduce = "max")'),
    ("gather_rank_2", f"{GRAPH}; out gather_nodes(x, edge_index)"),
    ("scatter_rank_1", f'{GRAPH}; out scatter(sum(gather_nodes(x, edge_index[0]), dim = 1), edge_index[1], N, reduce = "max")'),
    ("gnn_layer", f'{GRAPH}; h = gnn_layer(x, edge_index, 8); out gnn_layer(h, edge_index, 4, aggregate = "mean", act = gelu)'),
    ("edge_layer", f'{GRAPH}; in e: f32[E, 2]; h, s = edge_layer(x, e, edge_index, 8, aggregate = "max"); h, s = edge_layer(h, s, edge_index, 4, act = tanh); out h; out s'),
    ("graph_pool", 'in x: f32[N, 3]; in batch: i64[N]; in sizes: i64[G]; out graph_pool(x, batch, G); out graph_pool(x, batch, G, reduce = "mean"); out graph_pool(x, batch, 5, reduce = "max")'),
]


def graph_inputs(spec: paperspec.Spec, nodes: int, edges: int, seed: int) -> dict:
    """Valid inputs for a case: node ids below `nodes`, graph ids below the number of graphs."""
    x, edge_index = random_graph(nodes, edges, seed)
    values = {"x": x, "edge_index": edge_index, "e": torch.randn(edges, 2), "sizes": torch.zeros(5, dtype=torch.long)}
    values["batch"] = torch.randint(0, 4, (nodes,), generator=torch.Generator().manual_seed(seed)).sort().values
    return {spec_in.name: values[spec_in.name] for spec_in in spec.graph().inputs}


@pytest.mark.parametrize("case", ONNX_CASES, ids=[case[0] for case in ONNX_CASES])
def test_onnx_matches_pytorch_at_two_graph_sizes(case):
    spec = model_spec(case[1])
    torch.manual_seed(0)
    module = spec.build().eval()
    proto = export_spec(spec, state=module.state_dict(), opset=18)
    session, evaluator = OnnxSession(proto), ReferenceEvaluator(proto)
    for seed, (nodes, edges) in enumerate(SIZES):
        inputs = graph_inputs(spec, nodes, edges, seed)
        with torch.no_grad():
            expected = module(*inputs.values())
        expected = expected if isinstance(expected, tuple) else (expected,)
        arrays = {name: value.numpy() for name, value in inputs.items()}
        got = session.run(arrays)
        for name, want in zip(got, expected, strict=True):
            np.testing.assert_allclose(got[name], want.numpy(), rtol=1e-5, atol=1e-5)
        for value, want in zip(evaluator.run(None, arrays), expected, strict=True):
            np.testing.assert_allclose(value, want.numpy(), rtol=1e-4, atol=1e-4)
    verify(spec, sizes={"N": 6, "E": 9, "G": 2}, module=module, onnx_model=proto)


def test_onnx_symbolic_dims_stay_dynamic():
    proto = export_spec(model_spec(f"{GRAPH}; out h = gnn_layer(x, edge_index, 4)"))
    dims = {value.name: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim] for value in proto.graph.input}
    assert dims == {"x": ["N", 3], "edge_index": [2, "E"]}
    assert {"h/Gather", "h/ScatterND", "h.relu/Relu"} <= {node.name for node in proto.graph.node}


# ---- errors ----


# (spec body, inputs, what the error says): node and graph ids are data, checked when the model runs.
RANGE_ERRORS = [
    (f"{GRAPH}; out gather_nodes(x, edge_index[0])", {"edge_index": [[0, 8], [1, 2]]}, "gather_nodes(index = edge_index[0]): index 8 is out of range for 8 nodes"),
    ("in m: f32[E, 3]; in edge_index: i64[2, E]; out scatter(m, edge_index[1], 8)", {"edge_index": [[0, 1], [-1, 2]]}, "scatter(index = edge_index[1]): index -1 is out of range for 8 nodes"),
    (f"{GRAPH}; out gnn_layer(x, edge_index, 4)", {"edge_index": [[0, 9], [1, 2]]}, "gnn_layer(edge_index = edge_index): index 9 is out of range for 8 nodes"),
    (f"{GRAPH}; in e: f32[E, 1]; h, s = edge_layer(x, e, edge_index, 4); out h", {"edge_index": [[0, 1], [1, 12]]}, "edge_layer(edge_index = edge_index): index 12"),
    ("in x: f32[N, 3]; in batch: i64[N]; out graph_pool(x, batch, 2)", {"batch": [0, 0, 1, 1, 1, 2, 2, 2]}, "graph_pool(batch = batch): index 2 is out of range for 2 graphs"),
]


@pytest.mark.parametrize(("body", "given", "needle"), RANGE_ERRORS, ids=[case[2].split("(")[0] for case in RANGE_ERRORS])
def test_out_of_range_ids_raise_a_value_error_naming_the_op_and_input(body, given, needle):
    spec = model_spec(body)
    values = {"x": torch.randn(8, 3), "m": torch.randn(2, 3), "e": torch.randn(2, 1)}
    values.update({name: torch.tensor(value) for name, value in given.items()})
    with pytest.raises(ValueError) as error:
        spec.build()(*(values[spec_in.name] for spec_in in spec.graph().inputs))
    assert needle in str(error.value) and "(valid: 0.." in str(error.value)


# (spec body, what the error says): mistakes the shape rules catch at the argument.
SHAPE_ERRORS = [
    (f"{GRAPH}; out gather_nodes(x, x)", "`gather_nodes` needs integer node ids in `index`"),
    (f"{GRAPH}; out scatter(x, edge_index[1], N)", "one id in `index` per row of `messages`"),
    (f"{GRAPH}; out scatter(x, edge_index, N)", "needs `index` of rank 1"),
    (f"{GRAPH}; out scatter(x, edge_index[1][:N], N, reduce = \"min\")", "must be one of sum, mean, max"),
    (f"{GRAPH}; out scatter(gather_nodes(x, edge_index[0]), edge_index[1], 0)", "`nodes` (the number of nodes) must be positive"),
    (f"{GRAPH}; out scatter(edge_index, edge_index[1], N)", "needs a floating-point tensor"),
    ("in x: f32[N, 3]; in batch: i64[M]; out graph_pool(x, batch, 2)", "one id in `batch` per row of `x`"),
    ("in x: f32[N, 3]; in edge_index: i64[3, E]; out gnn_layer(x, edge_index, 4)", "edge_index of shape [2, E]"),
    ("in x: f32[N, 3]; in edge_index: f32[2, E]; out gnn_layer(x, edge_index, 4)", "integer node ids in `edge_index`"),
    ("in x: f32[B, N, 3]; in edge_index: i64[2, E]; out gnn_layer(x, edge_index, 4)", "needs a tensor of rank 2"),
    ("in x: f32[N, D]; in edge_index: i64[2, E]; out gnn_layer(x, edge_index, 4)", "needs a known feature size"),
    (f"{GRAPH}; out gnn_layer(x, edge_index, 4, aggregate = \"prod\")", "`aggregate` must be one of sum, mean, max"),
    (f"{GRAPH}; out gnn_layer(x, edge_index, 4, act = softmax)", "`act` of gnn_layer must be one of"),
    (f"{GRAPH}; out gnn_layer(x, edge_index, 0)", "`features` must be positive"),
    (f"{GRAPH}; in e: f32[F, 2]; h, s = edge_layer(x, e, edge_index, 4); out h", "one row of `e` per edge of edge_index (E)"),
]


@pytest.mark.parametrize(("body", "message"), SHAPE_ERRORS)
def test_shape_rule_errors(body: str, message: str) -> None:
    with pytest.raises(paperspec.SpecError) as error:
        model_spec(body).graph()
    assert message in str(error.value)
    assert error.value.span is not None and error.value.span.path == "<graph>" and error.value.span.line >= 2


def test_graph_layers_trace_as_one_graph_under_torch_compile():
    torch._dynamo.reset()
    spec = model_spec(f'{GRAPH}; in e: f32[E, 2]; h = gnn_layer(x, edge_index, 8); h, s = edge_layer(h, e, edge_index, 8); out scatter(s, edge_index[1], N, reduce = "max") + h')
    module = spec.build().eval()
    compiled = torch.compile(module, fullgraph=True, dynamic=True, backend="eager")
    with torch.no_grad():
        for nodes, edges in SIZES:
            x, edge_index = random_graph(nodes, edges)
            e = torch.randn(edges, 2)
            torch.testing.assert_close(compiled(x, edge_index, e), module(x, edge_index, e))
