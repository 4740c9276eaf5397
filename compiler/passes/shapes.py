"""Shape and dtype inference over a built graph: re-runs every node's shape rule in order."""

from __future__ import annotations

from paperspec.compiler.diagnostics import SpecError
from paperspec.compiler.ir import BlockGraph, ValueRef
from paperspec.compiler.ops.base import OpCall, ShapeError, get_op, types_of


def infer_shapes(graph: BlockGraph) -> BlockGraph:
    """Recomputes the types of every node from the graph's input types; returns the graph.

    Elaboration infers types as it builds nodes; this pass makes inference available on its
    own, e.g. after a transformation changed input types or rewired nodes.
    """
    for node in graph.nodes():
        if node.op in ("input", "param"):
            continue
        if node.op == "call":
            child = node.derived["graph"]
            node.types = [child.type_of(ref) for _, ref, _ in child.outputs]
        elif node.op == "repeat":
            node.types = [graph.type_of(ref) for ref in node.args["carried"]]
        else:
            node.types = _infer_op(graph, node)
    return graph


def _infer_op(graph: BlockGraph, node) -> list:
    opdef = get_op(node.op)
    args = {name: _type_view(graph, value) for name, value in node.args.items()}
    call = OpCall(node.op, args)
    try:
        types = types_of(opdef.infer(call))
    except ShapeError as error:
        raise SpecError(error.message, node.span, error.hint) from None
    node.call = call
    node.derived.update(call.derived)
    return types


def _type_view(graph: BlockGraph, value):
    if isinstance(value, ValueRef):
        return graph.type_of(value)
    if isinstance(value, tuple) and value and all(isinstance(v, ValueRef) for v in value):
        return tuple(graph.type_of(v) for v in value)
    return value
