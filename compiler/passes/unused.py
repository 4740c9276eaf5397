"""Finds values a spec computes but never uses, and removes such dead computations."""

from __future__ import annotations

from dataclasses import dataclass

from paperspec.compiler.diagnostics import Span
from paperspec.compiler.ir import BlockGraph, walk
from paperspec.compiler.ops.base import get_op


@dataclass(frozen=True)
class SpecWarning:
    message: str
    span: Span

    def format(self) -> str:
        return f"{self.span}: warning: {self.message}"


def _used(graph: BlockGraph) -> set:
    used = {ref.node for _, ref, _ in graph.outputs}
    for node in graph.nodes():
        used.update(ref.node for ref in node.inputs())
    return used


def _op_called_blocks(graph: BlockGraph) -> set:
    """Ids of the block graphs that ops call (odeint's field, scan's step): the op fixes their
    inputs, so one the block ignores (the time of an autonomous ODE) is no mistake."""
    return {
        id(value)
        for current in walk(graph)
        for node in current.nodes()
        for key, value in node.derived.items()
        if key.endswith("_graph") and isinstance(value, BlockGraph)
    }


def unused_values(graph: BlockGraph) -> list:
    """A warning for each named value or input of any graph under `graph` that nothing uses."""
    warnings = []
    fixed_inputs = _op_called_blocks(graph)
    for current in walk(graph):
        used = _used(current)
        for node in current.nodes():
            if node.id in used or node.op == "param":
                continue
            if node.op == "input" and (current.kind == "repeat" or id(current) in fixed_inputs):
                continue
            named = [n for n in node.names if n]
            if node.op == "input":
                warnings.append(SpecWarning(f"input `{node.names[0]}` is never used", node.span))
            elif named:
                warnings.append(SpecWarning(f"`{named[0]}` is computed but never used", node.span))
    return sorted(set(warnings), key=lambda w: (w.span.path, w.span.line, w.span.column))


def eliminate_dead_code(graph: BlockGraph) -> BlockGraph:
    """Drops computations whose results nothing uses; submodules (and their weights) stay. Random
    draws stay too: they advance the generator, so dropping one would change the draws after it."""
    for current in walk(graph):
        _drop_unused(current, random_draws=False)
    return graph


def drop_unused_bindings(function: BlockGraph) -> BlockGraph:
    """A procedure's loss or metrics without the bindings only the other functions read, random
    draws included: the loss must not run, at every step, a sampler that only a metric uses."""
    _drop_unused(function, random_draws=True)
    return function


def _drop_unused(current: BlockGraph, random_draws: bool) -> None:
    changed = True
    while changed:
        used = _used(current)
        dead = [n for n in current.nodes() if n.id not in used and _removable(n, random_draws)]
        current.graph.remove_nodes_from(n.id for n in dead)
        changed = bool(dead)


def _removable(node, random_draws: bool) -> bool:
    if node.op in ("input", "param"):
        return False
    opdef = get_op(node.op)
    return node.op in ("call", "repeat") or (opdef is not None and (random_draws or not opdef.stochastic))

