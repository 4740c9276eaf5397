"""Common-subexpression elimination: one node for repeated identical deterministic computations."""

from __future__ import annotations

from paperspec.compiler.ir import BlockGraph, ValueRef, walk
from paperspec.compiler.ops.base import get_op


def eliminate_common_subexpressions(graph: BlockGraph) -> BlockGraph:
    """Merges nodes with the same op, arguments and submodule, e.g. `net(x)` written twice in a
    metric list. Stochastic ops (dropout, randn) and calls of blocks that contain them are kept
    apart, since two draws differ. Merged nodes keep the first one's names and span."""
    for current in walk(graph):
        _eliminate(current)
    return graph


def _eliminate(graph: BlockGraph) -> None:
    seen: dict = {}
    replace: dict[ValueRef, ValueRef] = {}
    for node in graph.nodes():
        if replace:
            node.args = {k: _rewrite(v, replace) for k, v in node.args.items()}
            for ref in node.inputs():
                graph.graph.add_edge(ref.node, node.id)
        key = _key(node)
        if key is None:
            continue
        if key in seen:
            first = seen[key]
            for i in range(len(node.types)):
                replace[ValueRef(node.id, i)] = ValueRef(first.id, i)
                if first.names[i] is None:
                    first.names[i] = node.names[i]
        else:
            seen[key] = node
    if replace:
        graph.outputs = [(name, replace.get(ref, ref), span) for name, ref, span in graph.outputs]
        dead = {ref.node for ref in replace}
        graph.graph.remove_nodes_from(dead)


def _rewrite(value, replace: dict):
    if isinstance(value, ValueRef):
        return replace.get(value, value)
    if isinstance(value, tuple):
        return tuple(_rewrite(v, replace) for v in value)
    return value


def _key(node):
    if node.op in ("input", "param", "repeat"):
        return None
    if node.op == "call":
        if _stochastic(node.derived["graph"]):
            return None
        return ("call", node.module, node.args["inputs"])
    opdef = get_op(node.op)
    # A layer op owns its own submodule: two of them are distinct layers even on equal inputs.
    if opdef is None or opdef.stochastic or opdef.has_module:
        return None
    try:
        return (node.op, _hashable(node.args))
    except TypeError:
        return None


def _stochastic(graph: BlockGraph) -> bool:
    for current in walk(graph):
        for node in current.nodes():
            opdef = get_op(node.op)
            if opdef is not None and opdef.stochastic:
                return True
    return False


def _hashable(args: dict):
    return tuple(sorted((k, _freeze(v)) for k, v in args.items()))


def _freeze(value):
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    hash(value)
    return value
