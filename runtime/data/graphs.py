"""Random graphs (hub, Erdős–Rényi, Barabási–Albert, SBM) packed as disjoint unions, with a gated-neighbour task."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from paperspec.runtime.data.base import Field, NumpyStreamSampler, register_generator

# The task, the same on every topology. Each directed edge u -> v carries a gate bit g (open with
# probability 1/2), each node a feature vector x ~ N(0, I). A node's target is the mean over its
# incoming edges of g * x_source (zeros for a node without incoming edges):
#     y_v = (1 / indeg(v)) * sum over edges u -> v of g(u -> v) * x_u
# An edge-state GNN solves it in one layer: the edge computes g * x_u and the target averages.
# A node-only GNN can hold gates only as per-node summaries (e.g. the sum of the gates at each
# end), which pins down an edge's gate only when one of its ends has that edge alone. On hub
# graphs with two or more hubs no edge has such an end: a hub's summary of its many out-gates says
# almost nothing about any one of them, and a leaf's sums mix the gates of its several hubs.
TASK_DOC = (
    "Task: each directed edge u -> v has a gate bit edge_attr in {0, 1} (open with probability 1/2), "
    "each node a feature x ~ N(0, I_dim); the target y_v is the mean over the edges into v of "
    "gate * x_u (zeros without incoming edges). Edge states solve it in one layer; node-only message "
    "passing must squeeze the gates of a hub's edges into the hub's one state. A batch of `batch` graphs "
    "is one disjoint union: fields x f32[N, dim], edge_index i64[2, E] (row 0 sources, row 1 targets, "
    "both directions of every undirected edge), edge_attr f32[E, 1], batch i64[N] (graph id of each "
    "node), y f32[N, dim]; N and E are the batch's totals, so the fields get no batch dim."
)


def hub_pairs(rng: np.random.Generator, hubs: int, leaves: int) -> tuple:
    """Every leaf linked to every hub; nodes 0..hubs-1 are the hubs. hubs = 1 is a star."""
    hub, leaf = np.meshgrid(np.arange(hubs), np.arange(hubs, hubs + leaves), indexing="ij")
    return hubs + leaves, np.stack([hub.ravel(), leaf.ravel()])


def erdos_renyi_pairs(rng: np.random.Generator, nodes: int, p: float) -> tuple:
    """G(n, p): each of the n(n-1)/2 node pairs is an edge with probability p, independently."""
    upper = np.triu(rng.random((nodes, nodes)) < p, k=1)
    return nodes, np.stack(np.nonzero(upper))


def sbm_pairs(rng: np.random.Generator, blocks: int, block_size: int, p_in: float, p_out: float) -> tuple:
    """Stochastic block model: equal blocks; a pair is an edge with p_in inside a block, p_out across."""
    nodes = blocks * block_size
    block = np.arange(nodes) // block_size
    chance = np.where(block[:, None] == block[None, :], p_in, p_out)
    upper = np.triu(rng.random((nodes, nodes)) < chance, k=1)
    return nodes, np.stack(np.nonzero(upper))


def barabasi_albert_pairs(rng: np.random.Generator, nodes: int, m: int) -> tuple:
    """Preferential attachment (Barabási and Albert 1999), as networkx: a star on m + 1 nodes, then
    each new node links to m distinct earlier nodes drawn with probability proportional to degree."""
    pairs = [(0, leaf) for leaf in range(1, m + 1)]
    ends = [0] * m + list(range(1, m + 1))  # every node once per edge: a uniform pick is degree-biased
    for new in range(m + 1, nodes):
        chosen: set = set()
        while len(chosen) < m:
            chosen.add(ends[rng.integers(len(ends))])
        for old in sorted(chosen):
            pairs.append((old, new))
            ends += [old, new]
    return nodes, np.array(pairs, dtype=np.int64).T.reshape(2, -1)


def both_directions(pairs: np.ndarray) -> np.ndarray:
    """[2, M] undirected pairs -> [2, 2M] directed edges, u -> v and v -> u."""
    return np.concatenate([pairs, pairs[::-1]], axis=1).astype(np.int64)


def gated_neighbour_mean(x: np.ndarray, edge_index: np.ndarray, gate: np.ndarray) -> np.ndarray:
    """y_v = mean over edges u -> v of gate * x_u; zeros for nodes without incoming edges."""
    source, target = edge_index
    total = np.zeros_like(x)
    np.add.at(total, target, gate[:, None] * x[source])
    count = np.bincount(target, minlength=len(x))
    return total / np.maximum(count, 1)[:, None]


def graph_example(rng: np.random.Generator, nodes: int, pairs: np.ndarray, dim: int) -> dict:
    """One graph of the task: features, directed edges, gates and targets."""
    edge_index = both_directions(pairs)
    gate = (rng.random(edge_index.shape[1]) < 0.5).astype(np.float64)
    x = rng.standard_normal((nodes, dim))
    y = gated_neighbour_mean(x, edge_index, gate)
    return {"x": x, "edge_index": edge_index, "edge_attr": gate[:, None], "y": y}


def pack(graphs: list) -> dict:
    """Disjoint union: node ids shift by the nodes of the graphs before; `batch` holds graph ids."""
    offsets = np.cumsum([0] + [len(g["x"]) for g in graphs[:-1]])
    packed = {key: np.concatenate([g[key] for g in graphs]) for key in ("x", "edge_attr", "y")}
    packed["edge_index"] = np.concatenate([g["edge_index"] + offset for g, offset in zip(graphs, offsets)], axis=1)
    packed["batch"] = np.concatenate([np.full(len(g["x"]), i, dtype=np.int64) for i, g in enumerate(graphs)])
    return packed


def _fields(args: dict) -> dict:
    dim = args["dim"]
    return {
        "x": Field("f32", ("N", dim)),
        "edge_index": Field("i64", (2, "E")),
        "edge_attr": Field("f32", ("E", 1)),
        "batch": Field("i64", ("N",)),
        "y": Field("f32", ("N", dim)),
    }


def _sampler(topology: Callable[[np.random.Generator, dict], tuple]) -> Callable[[dict], NumpyStreamSampler]:
    def make(args: dict) -> NumpyStreamSampler:
        def draw(graphs: int, rng: np.random.Generator) -> dict:
            return pack([graph_example(rng, *topology(rng, args), args["dim"]) for _ in range(graphs)])

        return NumpyStreamSampler(draw, _fields(args))

    return make


def _problem(args: dict, positive: tuple, probabilities: tuple = ()) -> str | None:
    for name in positive + ("dim",):
        if args[name] < 1:
            return f"{name} must be >= 1, got {args[name]}"
    for name in probabilities:
        if not 0.0 <= args[name] <= 1.0:
            return f"{name} must be in [0, 1], got {args[name]}"
    return None


def _barabasi_albert_problem(args: dict) -> str | None:
    problem = _problem(args, ("m",))
    if problem is None and args["nodes"] <= args["m"]:
        return f"barabasi_albert_graphs needs nodes > m, got nodes = {args['nodes']} and m = {args['m']}"
    return problem


def _register(name: str, signature: str, topology: Callable, doc: str, validate: Callable) -> None:
    register_generator(name, signature + ", dim: int = 4", _fields, _sampler(topology), f"{doc} {TASK_DOC}",
                       validate=validate, batched=False)


_register(
    "hub_graphs", "hubs: int = 2, leaves: int = 20",
    lambda rng, args: hub_pairs(rng, args["hubs"], args["leaves"]),
    "Hub graphs: `hubs` hub nodes (ids 0..hubs-1 in each graph) and `leaves` leaves, every leaf linked to "
    "every hub (complete bipartite; hubs = 1 is a star), so each hub has degree `leaves`.",
    lambda args: _problem(args, ("hubs", "leaves")),
)
_register(
    "erdos_renyi_graphs", "nodes: int = 20, p: float = 0.2",
    lambda rng, args: erdos_renyi_pairs(rng, args["nodes"], args["p"]),
    "Erdős–Rényi graphs G(nodes, p): every node pair is an edge with probability p (degrees Binomial(nodes - 1, p)).",
    lambda args: _problem(args, ("nodes",), ("p",)),
)
_register(
    "barabasi_albert_graphs", "nodes: int = 20, m: int = 2",
    lambda rng, args: barabasi_albert_pairs(rng, args["nodes"], args["m"]),
    "Barabási–Albert graphs (1999): preferential attachment, each new node linking to m earlier ones "
    "with probability proportional to their degree; a heavy-tailed degree distribution with hubs.",
    _barabasi_albert_problem,
)
_register(
    "sbm_graphs", "blocks: int = 2, block_size: int = 10, p_in: float = 0.5, p_out: float = 0.05",
    lambda rng, args: sbm_pairs(rng, args["blocks"], args["block_size"], args["p_in"], args["p_out"]),
    "Stochastic block models (Holland et al. 1983): `blocks` communities of `block_size` nodes (node i in "
    "block i // block_size); pairs are edges with probability p_in inside a community, p_out across.",
    lambda args: _problem(args, ("blocks", "block_size"), ("p_in", "p_out")),
)
