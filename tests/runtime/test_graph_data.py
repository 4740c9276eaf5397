"""Graph data generators: packed disjoint unions, degree statistics per topology, task labels recomputed densely."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
import torch

import paperspec
from paperspec.runtime.data import Field, get_generator
from paperspec.runtime.train import Trainer

CASES = [
    ("hub_graphs", {"hubs": 3, "leaves": 12}),
    ("hub_graphs", {"hubs": 1, "leaves": 7, "dim": 2}),
    ("erdos_renyi_graphs", {"nodes": 15, "p": 0.3}),
    ("barabasi_albert_graphs", {"nodes": 30, "m": 2}),
    ("sbm_graphs", {"blocks": 3, "block_size": 6, "p_in": 0.6, "p_out": 0.05}),
]
IDS = [f"{name}-{'-'.join(str(v) for v in args.values())}" for name, args in CASES]


def draw(name: str, graphs: int = 16, stream_seed: int = 0, **args) -> dict:
    definition = get_generator(name)
    batch = definition.sampler(definition.bind(**args)).sample(graphs, torch.Generator().manual_seed(stream_seed))
    return {key: value.numpy() for key, value in batch.items()}


def split_graphs(batch: dict) -> list:
    """The graphs of a packed batch, each with its own node ids from 0."""
    graphs = []
    for graph in range(batch["batch"].max() + 1):
        nodes = np.flatnonzero(batch["batch"] == graph)
        mask = np.isin(batch["edge_index"][1], nodes)
        graphs.append({
            "x": batch["x"][nodes], "y": batch["y"][nodes],
            "edge_index": batch["edge_index"][:, mask] - nodes[0], "gate": batch["edge_attr"][mask, 0],
        })
    return graphs


def degrees(graph: dict) -> np.ndarray:
    """Undirected degrees (every edge is stored in both directions)."""
    return np.bincount(graph["edge_index"][1], minlength=len(graph["x"]))


# ---- packing ----


@pytest.mark.parametrize(("name", "args"), CASES, ids=IDS)
def test_fields_have_no_batch_dim_and_fit_the_packed_batch(name, args):
    definition = get_generator(name)
    assert definition.batched is False
    batch = definition.sampler(definition.bind(**args)).sample(5, torch.Generator().manual_seed(0))
    fields = definition.fields(definition.bind(**args))
    dim = args.get("dim", 4)
    assert fields == {
        "x": Field("f32", ("N", dim)), "edge_index": Field("i64", (2, "E")), "edge_attr": Field("f32", ("E", 1)),
        "batch": Field("i64", ("N",)), "y": Field("f32", ("N", dim)),
    }
    sizes = {"N": len(batch["x"]), "E": batch["edge_index"].shape[1]}
    for key, field in fields.items():
        assert batch[key].dtype == {"f32": torch.float32, "i64": torch.int64}[field.dtype]
        assert tuple(batch[key].shape) == tuple(sizes.get(d, d) for d in field.shape), key


@pytest.mark.parametrize(("name", "args"), CASES, ids=IDS)
def test_disjoint_union_keeps_graphs_apart(name, args):
    batch = draw(name, graphs=12, **args)
    graph_of = batch["batch"]
    assert np.array_equal(np.unique(graph_of), np.arange(12)) and np.all(np.diff(graph_of) >= 0)
    source, target = batch["edge_index"]
    assert np.array_equal(graph_of[source], graph_of[target])  # no edge between two graphs
    assert np.all(source != target)
    pairs = set(zip(source.tolist(), target.tolist()))
    assert len(pairs) == len(source) and all((v, u) in pairs for u, v in pairs)  # simple and undirected


@pytest.mark.parametrize(("name", "args"), CASES, ids=IDS)
def test_stream_seed_fixes_the_batch(name, args):
    first, again, other = (draw(name, 4, seed, **args) for seed in (1, 1, 2))
    assert all(np.array_equal(first[key], again[key]) for key in first)
    assert not np.array_equal(first["x"], other["x"])


# ---- the task, recomputed with a dense gated adjacency ----


@pytest.mark.parametrize(("name", "args"), CASES, ids=IDS)
def test_labels_are_the_gated_mean_of_incoming_neighbours(name, args):
    for graph in split_graphs(draw(name, graphs=6, **args)):
        nodes = len(graph["x"])
        gated, linked = np.zeros((nodes, nodes)), np.zeros((nodes, nodes))
        for (u, v), gate in zip(graph["edge_index"].T, graph["gate"]):
            gated[v, u], linked[v, u] = gate, 1.0
        want = gated @ graph["x"].astype(np.float64) / np.maximum(linked.sum(1, keepdims=True), 1)
        np.testing.assert_allclose(graph["y"], want, rtol=1e-5, atol=1e-6)


def test_gates_are_fair_coins_and_features_standard_normal():
    batch = draw("erdos_renyi_graphs", graphs=200, nodes=20, p=0.3)
    gates = batch["edge_attr"][:, 0]
    assert set(np.unique(gates)) == {0.0, 1.0}
    assert abs(gates.mean() - 0.5) < 4 * 0.5 / math.sqrt(len(gates))
    assert abs(batch["x"].mean()) < 0.03 and abs(batch["x"].std() - 1.0) < 0.03


# ---- degree statistics per topology ----


def test_hub_graphs_hubs_have_degree_leaves_and_leaves_degree_hubs():
    for graph in split_graphs(draw("hub_graphs", graphs=4, hubs=3, leaves=11)):
        assert degrees(graph).tolist() == [11] * 3 + [3] * 11
        assert set(graph["edge_index"][0][graph["edge_index"][1] >= 3].tolist()) == {0, 1, 2}  # leaves hear only hubs


def test_erdos_renyi_degrees_follow_the_binomial():
    nodes, p = 20, 0.2
    counts = np.bincount(np.concatenate([degrees(g) for g in split_graphs(draw("erdos_renyi_graphs", 400, nodes=nodes, p=p))]), minlength=nodes)
    observed = counts / counts.sum()
    expected = np.array([math.comb(nodes - 1, k) * p**k * (1 - p) ** (nodes - 1 - k) for k in range(nodes)])
    assert 0.5 * np.abs(observed - expected).sum() < 0.03  # total variation distance


def test_barabasi_albert_matches_networkx_degree_statistics():
    nodes, m = 40, 2
    ours = [degrees(g) for g in split_graphs(draw("barabasi_albert_graphs", 300, nodes=nodes, m=m))]
    theirs = [np.array([d for _, d in sorted(nx.barabasi_albert_graph(nodes, m, seed=s).degree())]) for s in range(300)]
    assert all(d.sum() == 2 * m * (nodes - m - 1) + 2 * m and d.min() >= 1 and (d[m + 1 :] >= m).all() for d in ours)
    for statistic in (np.max, lambda d: d[0], lambda d: (d >= 8).mean()):  # hub size, oldest node, heavy tail
        a, b = np.mean([statistic(d) for d in ours]), np.mean([statistic(d) for d in theirs])
        assert abs(a - b) < 0.1 * max(abs(b), 0.05), (a, b)
    er_max = np.mean([degrees(g).max() for g in split_graphs(draw("erdos_renyi_graphs", 300, nodes=nodes, p=2 * m / (nodes - 1)))])
    assert np.mean([d.max() for d in ours]) > 1.3 * er_max  # same mean degree, bigger hubs


def test_sbm_edge_densities_inside_and_across_blocks():
    blocks, size, p_in, p_out = 3, 8, 0.6, 0.1
    inside = across = pairs_inside = pairs_across = 0
    for graph in split_graphs(draw("sbm_graphs", 200, blocks=blocks, block_size=size, p_in=p_in, p_out=p_out)):
        block = np.arange(blocks * size) // size
        same = block[graph["edge_index"][0]] == block[graph["edge_index"][1]]
        inside, across = inside + same.sum() / 2, across + (~same).sum() / 2
        pairs_inside += blocks * size * (size - 1) / 2
        pairs_across += math.comb(blocks * size, 2) - blocks * size * (size - 1) / 2
    assert abs(inside / pairs_inside - p_in) < 0.02 and abs(across / pairs_across - p_out) < 0.01


# ---- arguments ----


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("hub_graphs", {"hubs": 0}, "hubs must be >= 1"),
        ("hub_graphs", {"dim": 0}, "dim must be >= 1"),
        ("erdos_renyi_graphs", {"p": 1.5}, r"p must be in \[0, 1\]"),
        ("barabasi_albert_graphs", {"nodes": 3, "m": 3}, "needs nodes > m"),
        ("sbm_graphs", {"p_out": -0.1}, r"p_out must be in \[0, 1\]"),
    ],
)
def test_invalid_arguments_are_rejected(name, args, message):
    with pytest.raises(ValueError, match=message):
        get_generator(name).bind(**args)


# ---- in a training procedure ----

SPEC = """
model M(width: int = 8) {
  in x: f32[N, 4]
  in edge_index: i64[2, E]
  in edge_attr: f32[E, 1]
  h, e = edge_layer(x, linear(edge_attr, width), edge_index, width)
  out linear(h, 4)
}
data graphs = hub_graphs(hubs = 2, leaves = 5)
train fit {
  model net = M()
  data graphs
  batch 3
  loss mse(net(batch.x, batch.edge_index, batch.edge_attr), batch.y)
  optimizer adam(lr = 1e-2)
  steps 4
  eval { mse = mse(net(batch.x, batch.edge_index, batch.edge_attr), batch.y) }
}
"""


def test_packed_fields_get_no_batch_dim_in_losses_and_train(tmp_path):
    spec = paperspec.loads(SPEC, str(tmp_path / "graphs.pspec"))
    loss = spec.procedure("fit").phases[0].loss
    assert {i.name: str(i.type) for i in loss.inputs} == {"x": "f32[N, 4]", "edge_index": "i64[2, E]", "edge_attr": "f32[E, 1]", "y": "f32[N, 4]"}
    result = Trainer(spec, "fit", out_root=str(tmp_path / "runs"), progress=False).run()
    assert result.steps == 4 and math.isfinite(result.metrics["mse"])
