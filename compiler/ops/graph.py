"""Message passing on graphs held as tensors: gather, scatter, graph readout, node and edge GNN layers."""

from __future__ import annotations

from paperspec.compiler.ops.base import ShapeError, register
from paperspec.compiler.ops.nn import ACTIVATION_MODULES
from paperspec.compiler.ops.shapes import last_dim, require_float, require_rank
from paperspec.compiler.types import INT_DTYPES, TensorType

REDUCTIONS = ("sum", "mean", "max")

# Index values are data, so an out-of-range edge cannot be a compile-time error; the generated
# code checks them and names the spec op. The check is skipped under torch.compile, where a
# data-dependent branch would break the graph.
_CHECK_HELPER = '''
def check_node_index(index, size: int, where: str, what: str = "nodes"):
    """Raises a ValueError naming the spec op when `index` holds a value outside 0..size-1."""
    if index.numel() == 0 or torch.compiler.is_compiling():
        return
    low, high = torch.aminmax(index)
    if low < 0 or high >= size:
        bad = int(low) if low < 0 else int(high)
        raise ValueError(f"{where}: index {bad} is out of range for {size} {what} (valid: 0..{size - 1})")
'''

_GATHER_HELPER = '''
def gather_nodes(x, index, where: str):
    """The rows of `x` at `index`: for each edge, the state of one of its endpoints."""
    check_node_index(index, x.shape[0], where)
    return x[index]
'''

_SCATTER_HELPER = '''
def scatter_nodes(messages, index, size: int, reduce: str, where: str = "", what: str = "nodes"):
    """Reduces the rows of `messages` into `size` rows by `index` (sum, mean or max); a row that
    no message reaches is zeros. `where` names the spec op for the index check ("": checked already)."""
    if where:
        check_node_index(index, size, where, what)
    shape = (size,) + tuple(messages.shape[1:])
    per_row = (-1,) + (1,) * (messages.dim() - 1)
    if reduce == "max":
        spread = index.view(per_row).expand_as(messages)
        return messages.new_zeros(shape).scatter_reduce(0, spread, messages, "amax", include_self=False)
    total = messages.new_zeros(shape).index_add(0, index, messages)
    if reduce == "sum":
        return total
    count = messages.new_zeros(size).index_add(0, index, messages.new_ones(index.shape[0]))
    return total / count.clamp(min=1).view(per_row)
'''

_NODE_LAYER_HELPER = '''
class NodeMessagePassing(nn.Module):
    """gnn_layer: m = act(message([x_src, x_dst])) per edge, aggregated at each edge's target,
    then x' = act(update([x, aggregated]))."""

    def __init__(self, in_features: int, features: int, aggregate: str, act: nn.Module):
        super().__init__()
        self.message = nn.Linear(2 * in_features, features)
        self.update = nn.Linear(in_features + features, features)
        self.aggregate = aggregate
        self.act = act

    def forward(self, x, edge_index, where: str = "gnn_layer"):
        check_node_index(edge_index, x.shape[0], where)
        source, target = edge_index[0], edge_index[1]
        messages = self.act(self.message(torch.cat([x[source], x[target]], dim=-1)))
        aggregated = scatter_nodes(messages, target, x.shape[0], self.aggregate)
        return self.act(self.update(torch.cat([x, aggregated], dim=-1)))
'''

_EDGE_LAYER_HELPER = '''
class EdgeMessagePassing(nn.Module):
    """edge_layer: every edge keeps a state, e' = act(edge([e, x_src, x_dst])); nodes aggregate
    the new states of the edges into them, x' = act(update([x, aggregated])). Returns (x', e')."""

    def __init__(self, node_features: int, edge_features: int, features: int, aggregate: str, act: nn.Module):
        super().__init__()
        self.edge = nn.Linear(edge_features + 2 * node_features, features)
        self.update = nn.Linear(node_features + features, features)
        self.aggregate = aggregate
        self.act = act

    def forward(self, x, e, edge_index, where: str = "edge_layer"):
        check_node_index(edge_index, x.shape[0], where)
        source, target = edge_index[0], edge_index[1]
        e = self.act(self.edge(torch.cat([e, x[source], x[target]], dim=-1)))
        aggregated = scatter_nodes(e, target, x.shape[0], self.aggregate)
        return self.act(self.update(torch.cat([x, aggregated], dim=-1))), e
'''

CHECK = ("check_node_index", _CHECK_HELPER)
GATHER = ("gather_nodes", _GATHER_HELPER)
SCATTER = ("scatter_nodes", _SCATTER_HELPER)


# ---- shape rules shared by the ops ----


def require_index(t: TensorType, op: str, arg: str, rank: int | None = 1) -> None:
    if t.dtype not in INT_DTYPES:
        raise ShapeError(f"`{op}` needs integer node ids in `{arg}`, got {t}", arg)
    if rank is not None and t.rank != rank:
        raise ShapeError(f"`{op}` needs `{arg}` of rank {rank}, got {t}", arg)


def require_rows(t: TensorType, count, op: str, arg: str, what: str) -> None:
    """`t` has one row per item of something that has `count` items (edges, nodes)."""
    if t.rank == 0 or t.shape[0] != count:
        raise ShapeError(f"`{op}` needs one row of `{arg}` per {what} ({count}), got {t}", arg)


def require_reduce(call, arg: str = "reduce") -> None:
    if call[arg] not in REDUCTIONS:
        raise ShapeError(f"`{arg}` must be one of {', '.join(REDUCTIONS)}, got {call[arg]!r}", arg)


def require_edge_index(call, op: str) -> object:
    """`edge_index` is i64[2, E]: row 0 the sources, row 1 the targets. Returns E."""
    edge_index = call["edge_index"]
    require_index(edge_index, op, "edge_index", rank=2)
    if edge_index.shape[0] != 2:
        raise ShapeError(f"`{op}` needs edge_index of shape [2, E] (sources, targets), got {edge_index}", "edge_index")
    return edge_index.shape[1]


def require_layer_args(call, op: str) -> None:
    if call["features"] <= 0:
        raise ShapeError(f"`features` must be positive, got {call['features']}", "features")
    require_reduce(call, "aggregate")
    if call["act"] not in ACTIVATION_MODULES:
        raise ShapeError(f"`act` of {op} must be one of {', '.join(ACTIVATION_MODULES)}, got {call['act']}", "act")


def where(op: str, arg: str, source: str) -> str:
    """How the generated code names an op's index input in its errors: `scatter(index = dst)`."""
    return repr(f"{op}({arg} = {source})")


# ---- ONNX building blocks ----


def onnx_rows(c, values: str, rank: int) -> str:
    """[K] -> [K, 1, ..., 1] (rank dims), so that per-row values broadcast over the features."""
    return values if rank == 1 else c.node("Unsqueeze", [values, c.const(list(range(1, rank)), "i64")])


def onnx_linear(c, x: str, name: str) -> str:
    weight = c.node("Transpose", [c.weight(f"{name}.weight")], perm=[1, 0])
    return c.node("Add", [c.node("MatMul", [x, weight]), c.weight(f"{name}.bias")])


def onnx_scatter(c, messages: str, index: str, size: str, rank: int, reduce: str, dtype: str) -> str:
    """ScatterND of the rows of `messages` into `size` rows (an int64 [1] tensor). Whole rows at
    [E, 1] indices: onnxruntime runs this ~15x faster than ScatterElements at an expanded index."""
    shape = c.node("Concat", [size, c.node("Shape", [messages], start=1)], axis=0)
    rows = c.node("Unsqueeze", [index, c.const([-1], "i64")])
    if reduce == "sum":
        return c.node("ScatterND", [c.fill(shape, 0.0, dtype), rows, messages], reduction="add")
    ones = c.fill(c.node("Shape", [index]), 1.0, dtype)
    count = c.node("ScatterND", [c.fill(size, 0.0, dtype), rows, ones], reduction="add")
    count = onnx_rows(c, count, rank)
    if reduce == "mean":
        total = c.node("ScatterND", [c.fill(shape, 0.0, dtype), rows, messages], reduction="add")
        return c.node("Div", [total, c.node("Max", [count, c.const(1.0, dtype)])])
    # Start from -inf so that negative messages win, then give rows without messages zeros.
    highest = c.node("ScatterND", [c.fill(shape, float("-inf"), dtype), rows, messages], reduction="max")
    return c.node("Where", [c.node("Greater", [count, c.const(0.0, dtype)]), highest, c.const(0.0, dtype)])


def onnx_edge_rows(c, edge_index: str) -> tuple:
    """(sources, targets) of an i64[2, E] edge_index."""
    return tuple(c.node("Gather", [edge_index, c.const(row, "i64")], axis=0) for row in (0, 1))


# ---- gather_nodes ----


def _gather(call):
    x, index = call["x"], call["index"]
    require_index(index, "gather_nodes", "index", rank=None)
    if x.rank == 0:
        raise ShapeError(f"`gather_nodes` needs node states [N, ...], got a scalar {x}", "x")
    return x.with_shape(index.shape + x.shape[1:])


register(
    "gather_nodes",
    "x: tensor, index: tensor",
    _gather,
    lambda c: f"gather_nodes({c['x']}, {c['index']}, {where('gather_nodes', 'index', c['index'])})",
    "rows of node states x [N, ...] at node ids `index` (e.g. edge_index[0]): [*index.shape, ...]; "
    "an id outside 0..N-1 raises a ValueError naming the op",
    category="graph",
    torch_helpers=(CHECK, GATHER),
    onnx=lambda c: c.node("Gather", [c["x"], c["index"]], axis=0),
)

# ---- scatter and graph_pool ----


def _scatter_rule(op: str, rows: str, index: str, size: str, what: str):
    def infer(call):
        messages, ids = call[rows], call[index]
        require_float(messages, op, rows)
        require_index(ids, op, index)
        if messages.rank == 0 or messages.shape[0] != ids.shape[0]:
            raise ShapeError(f"`{op}` needs one id in `{index}` per row of `{rows}`: {rows} {messages} vs {index} {ids}", index)
        if isinstance(call[size], int) and call[size] <= 0:
            raise ShapeError(f"`{size}` (the number of {what}) must be positive, got {call[size]}", size)
        require_reduce(call)
        return messages.with_shape((call[size],) + messages.shape[1:])

    return infer


def _scatter_torch(op: str, rows: str, index: str, size: str, what: str):
    def lower(c):
        label = where(op, index, c[index])
        return f"scatter_nodes({c[rows]}, {c[index]}, {c[size]}, {c['reduce']}, {label}, {what!r})"

    return lower


def _scatter_onnx(rows: str, index: str, size: str):
    def lower(c):
        messages = c.values[rows]
        return onnx_scatter(c, c[rows], c[index], c.dim(c.values[size]), messages.rank, c.values["reduce"], messages.dtype)

    return lower


register(
    "scatter",
    "messages: tensor, index: tensor, nodes: dim, reduce: str = 'sum'",
    _scatter_rule("scatter", "messages", "index", "nodes", "nodes"),
    _scatter_torch("scatter", "messages", "index", "nodes", "nodes"),
    "reduces messages [E, ...] into [nodes, ...] at node ids `index` [E] (e.g. edge_index[1]) by sum, "
    "mean or max; a node no message reaches gets zeros (also for mean and max)",
    category="graph",
    torch_helpers=(CHECK, SCATTER),
    onnx=_scatter_onnx("messages", "index", "nodes"),
)
register(
    "graph_pool",
    "x: tensor, batch: tensor, graphs: dim, reduce: str = 'sum'",
    _scatter_rule("graph_pool", "x", "batch", "graphs", "graphs"),
    _scatter_torch("graph_pool", "x", "batch", "graphs", "graphs"),
    "per-graph readout of node states x [N, ...] of a batch of disjoint graphs: [graphs, ...], "
    "reducing the nodes with equal graph id in `batch` [N] by sum, mean or max (empty graphs: zeros)",
    category="graph",
    torch_helpers=(CHECK, SCATTER),
    onnx=_scatter_onnx("x", "batch", "graphs"),
)

# ---- gnn_layer: node states only ----


def _node_states(call, op: str) -> tuple:
    """(N, d) of the node states x: f32[N, d]; checks the layer's other arguments too."""
    x = call["x"]
    require_float(x, op)
    require_rank(x, op, (2,))
    call.derived["in_features"] = last_dim(x, op)
    require_layer_args(call, op)
    return x.shape[0], call.derived["in_features"]


def _gnn_layer(call):
    _node_states(call, "gnn_layer")
    require_edge_index(call, "gnn_layer")
    return call["x"].with_shape((call["x"].shape[0], call["features"]))


def _layer_params(prefix: str, inputs: int, c) -> dict:
    f, d = c["features"], c.derived["in_features"]
    return {
        f"{prefix}.weight": (f, inputs), f"{prefix}.bias": (f,),
        "update.weight": (f, d + f), "update.bias": (f,),
    }


def _activation(c, x: str, rows) -> str:
    return c.activation(c.values["act"], x, TensorType(c.out_types[0].dtype, (rows, c.values["features"])))


def _gnn_layer_onnx(c):
    x, x_type = c["x"], c.values["x"]
    source, target = onnx_edge_rows(c, c["edge_index"])
    pairs = c.node("Concat", [c.node("Gather", [x, source], axis=0), c.node("Gather", [x, target], axis=0)], axis=1)
    messages = _activation(c, onnx_linear(c, pairs, "message"), c.values["edge_index"].shape[1])
    nodes = c.node("Shape", [x], start=0, end=1)
    aggregated = onnx_scatter(c, messages, target, nodes, 2, c.values["aggregate"], x_type.dtype)
    return _activation(c, onnx_linear(c, c.node("Concat", [x, aggregated], axis=1), "update"), x_type.shape[0])


register(
    "gnn_layer",
    "x: tensor, edge_index: tensor, features: int, aggregate: str = 'sum', act: fn = 'relu'",
    _gnn_layer,
    lambda c: f"{c.module}({c['x']}, {c['edge_index']}, {where('gnn_layer', 'edge_index', c['edge_index'])})",
    "node-only message passing on x [N, d] along edge_index [2, E] (row 0 sources, row 1 targets): "
    "messages act(message([x_src, x_dst])) aggregated (sum, mean or max) at targets, x' = act(update([x, agg])), "
    "giving [N, features]; weights message.* and update.*",
    category="layer",
    torch_module=lambda c: (
        f"NodeMessagePassing({c.derived['in_features']}, {c['features']}, {c['aggregate']!r}, {ACTIVATION_MODULES[c['act']]})"
    ),
    parameters=lambda c: _layer_params("message", 2 * c.derived["in_features"], c),
    torch_helpers=(CHECK, SCATTER, ("NodeMessagePassing", _NODE_LAYER_HELPER)),
    onnx=_gnn_layer_onnx,
)

# ---- edge_layer: node and edge states ----


def _edge_layer(call):
    nodes, _ = _node_states(call, "edge_layer")
    edges = require_edge_index(call, "edge_layer")
    e = call["e"]
    require_float(e, "edge_layer", "e")
    require_rank(e, "edge_layer", (2,), "e")
    require_rows(e, edges, "edge_layer", "e", "edge of edge_index")
    call.derived["edge_features"] = last_dim(e, "edge_layer", "e")
    call.derived["tuple_output"] = True
    features = call["features"]
    return [call["x"].with_shape((nodes, features)), e.with_shape((edges, features))]


def _edge_layer_onnx(c):
    x, x_type, edges = c["x"], c.values["x"], c.values["e"].shape[0]
    source, target = onnx_edge_rows(c, c["edge_index"])
    inputs = [c["e"], c.node("Gather", [x, source], axis=0), c.node("Gather", [x, target], axis=0)]
    e = _activation(c, onnx_linear(c, c.node("Concat", inputs, axis=1), "edge"), edges)
    nodes = c.node("Shape", [x], start=0, end=1)
    aggregated = onnx_scatter(c, e, target, nodes, 2, c.values["aggregate"], x_type.dtype)
    return [_activation(c, onnx_linear(c, c.node("Concat", [x, aggregated], axis=1), "update"), x_type.shape[0]), e]


def _edge_layer_module(c) -> str:
    d = c.derived
    act = ACTIVATION_MODULES[c["act"]]
    return f"EdgeMessagePassing({d['in_features']}, {d['edge_features']}, {c['features']}, {c['aggregate']!r}, {act})"


register(
    "edge_layer",
    "x: tensor, e: tensor, edge_index: tensor, features: int, aggregate: str = 'sum', act: fn = 'relu'",
    _edge_layer,
    lambda c: f"{c.module}({c['x']}, {c['e']}, {c['edge_index']}, {where('edge_layer', 'edge_index', c['edge_index'])})",
    "message passing that keeps edge states (Rohatgi et al. 2025, 'Towards characterizing the value of "
    "edge embeddings in Graph Neural Networks'): e' = act(edge([e, x_src, x_dst])) per edge of edge_index, "
    "x' = act(update([x, agg])) with e' aggregated (sum, mean or max) at targets; gives (x' [N, features], "
    "e' [E, features]); weights edge.* and update.*",
    category="layer",
    torch_module=_edge_layer_module,
    parameters=lambda c: _layer_params("edge", c.derived["edge_features"] + 2 * c.derived["in_features"], c),
    torch_helpers=(CHECK, SCATTER, ("EdgeMessagePassing", _EDGE_LAYER_HELPER)),
    onnx=_edge_layer_onnx,
)
