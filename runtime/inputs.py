"""Example inputs for a compiled model: concrete sizes for its symbolic dims and random tensors."""

from __future__ import annotations

import torch

from paperspec.compiler.dims import Sym, substitute
from paperspec.compiler.ir import BlockGraph, ValueRef
from paperspec.compiler.ops.tensor import TORCH_DTYPES

DEFAULT_SIZE = 4


def symbol_sizes(graph: BlockGraph, sizes: dict | None = None, default: int = DEFAULT_SIZE) -> dict:
    """A size for every symbolic dim of the model's inputs, within their declared bounds."""
    chosen = dict(sizes or {})
    for spec in graph.inputs:
        for dim in spec.type.shape:
            if isinstance(dim, Sym):
                for name in sorted(dim.atoms()):
                    chosen.setdefault(name, default)
        for name, op, bound in spec.constraints:
            if isinstance(bound, int) and name in chosen and (sizes or {}).get(name) is None:
                if op in ("<=", "<"):
                    chosen[name] = min(chosen[name], bound if op == "<=" else bound - 1)
                elif op in (">=", ">"):
                    chosen[name] = max(chosen[name], bound if op == ">=" else bound + 1)
    return chosen


def token_limits(graph: BlockGraph) -> dict:
    """For integer inputs that feed an embedding directly, the vocabulary size to sample below."""
    limits: dict[str, int] = {}
    by_node = {spec.node: spec.name for spec in graph.inputs}
    for node in graph.nodes():
        if node.op == "embedding":
            ref = node.args["tokens"]
            if isinstance(ref, ValueRef) and ref.node in by_node:
                name = by_node[ref.node]
                limits[name] = min(limits.get(name, node.args["vocab"]), node.args["vocab"])
    return limits


def solve_times(graph: BlockGraph) -> set:
    """Float inputs that are the times of an ODE solve directly; adaptive solvers need them
    increasing, so they are sampled sorted."""
    by_node = {spec.node: spec.name for spec in graph.inputs}
    return {
        by_node[node.args["t"].node]
        for node in graph.nodes()
        if node.op == "odeint" and isinstance(node.args["t"], ValueRef) and node.args["t"].node in by_node
    }


def example_inputs(graph: BlockGraph, sizes: dict | None = None, seed: int = 0, device: str = "cpu") -> dict:
    """Random tensors fitting the model's declared inputs: name -> tensor."""
    generator = torch.Generator().manual_seed(seed)
    chosen = symbol_sizes(graph, sizes)
    limits = token_limits(graph)
    times = solve_times(graph)
    tensors = {}
    for spec in graph.inputs:
        shape = tuple(int(substitute(d, chosen)) for d in spec.type.shape)
        dtype = TORCH_DTYPES[spec.type.dtype]
        if spec.type.dtype == "bool":
            value = torch.randint(0, 2, shape, generator=generator).bool()
        elif spec.type.dtype in ("i32", "i64"):
            value = torch.randint(0, limits.get(spec.name, 2), shape, generator=generator, dtype=eval_dtype(dtype))
        else:
            value = torch.randn(shape, generator=generator).to(eval_dtype(dtype))
            if spec.name in times:
                value = value.sort(dim=-1).values
        tensors[spec.name] = value.to(device)
    return tensors


def eval_dtype(name: str) -> torch.dtype:
    """torch.dtype from its `torch.float32`-style name."""
    return getattr(torch, name.split(".", 1)[1])
