"""IR validation: the structural invariants every backend relies on."""

from __future__ import annotations

import networkx as nx

from paperspec.compiler.ir import BlockGraph, ValueRef, state_shapes, walk
from paperspec.compiler.ops.base import get_op

STRUCTURAL_OPS = ("input", "param", "call", "repeat")


def validate(graph: BlockGraph) -> list:
    """Problems found in `graph` and every graph under it (empty when the IR is sound)."""
    problems: list[str] = []
    for current in walk(graph):
        problems.extend(_check_graph(current))
    return problems


def _check_graph(graph: BlockGraph) -> list:
    problems = []
    where = graph.name or f"repeat body in {graph.block}"
    if not nx.is_directed_acyclic_graph(graph.graph):
        problems.append(f"{where}: the graph has a cycle")
    for node in graph.nodes():
        if node.op not in STRUCTURAL_OPS and get_op(node.op) is None:
            problems.append(f"{where}: node {node.id} uses unknown op {node.op}")
        for ref in node.inputs():
            problems.extend(_check_ref(graph, ref, node.id, where))
        if len(node.names) != len(node.types):
            problems.append(f"{where}: node {node.id} has {len(node.names)} names for {len(node.types)} outputs")
        if node.module is not None and node.module not in graph.modules and not node.derived.get("outer"):
            problems.append(f"{where}: node {node.id} refers to missing submodule {node.module}")
    for name, ref, _ in graph.outputs:
        problems.extend(_check_ref(graph, ref, None, f"{where} output {name}"))
    keys = state_shapes(graph, with_buffers=False)
    for target, source, _ in graph.ties:
        for path in (target, source):
            if ".".join(path) not in keys:
                problems.append(f"{where}: tie refers to missing parameter {'.'.join(path)}")
    return problems


def _check_ref(graph: BlockGraph, ref: ValueRef, user, where: str) -> list:
    if ref.node not in graph.graph:
        return [f"{where}: reference to missing node {ref.node}"]
    if ref.index >= len(graph.node(ref.node).types):
        return [f"{where}: reference to output {ref.index} of node {ref.node}, which has fewer outputs"]
    if user is not None and ref.node >= user:
        return [f"{where}: node {user} uses node {ref.node}, which comes after it"]
    return []
