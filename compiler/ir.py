"""Graph IR: one networkx graph per instantiated block; nodes are op records, edges carry tensors."""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from paperspec.compiler.diagnostics import Span
from paperspec.compiler.dims import Dim
from paperspec.compiler.types import TensorType


@dataclass(frozen=True)
class ValueRef:
    """One output of one node."""

    node: int
    index: int = 0


@dataclass
class Node:
    id: int
    op: str  # a registry op, or one of: input, param, call, repeat
    args: dict  # bound arguments; tensors appear as ValueRef (or tuples of ValueRef)
    types: list  # TensorType per output
    span: Span
    names: list = field(default_factory=list)  # spec name bound to each output, for readable code
    module: str | None = None  # submodule owning this node's weights (layer ops, calls, repeats)
    derived: dict = field(default_factory=dict)  # attributes worked out by the shape rule
    call: object = None  # the OpCall the shape rule saw (registry ops only)

    def inputs(self) -> list:
        refs = []
        for value in self.args.values():
            if isinstance(value, ValueRef):
                refs.append(value)
            elif isinstance(value, tuple):
                refs.extend(v for v in value if isinstance(v, ValueRef))
        return refs


@dataclass
class InputSpec:
    name: str
    type: TensorType
    declared: str  # the declared type as written, for runtime error messages
    constraints: tuple  # of (dim name, op, bound) checked when the model runs
    node: int


@dataclass
class ModuleSpec:
    """A submodule of a block: a layer op, a child block, an explicit parameter, or a repeat."""

    name: str
    kind: str  # "op", "block", "param", "repeat"
    span: Span
    node: Node | None = None  # kind op: the node whose op owns the module
    graph: BlockGraph | None = None  # kind block: the child
    shape: tuple = ()  # kind param
    dtype: str = "f32"
    init: tuple = ("zeros", {})  # kind param: (initialiser name, keyword arguments)
    items: list = field(default_factory=list)  # kind repeat: one ModuleSpec per iteration
    body: BlockGraph | None = None  # kind repeat with a generated body class


@dataclass
class RepeatInfo:
    count: int
    index: str | None
    carried: tuple  # names carried from one iteration to the next
    free: tuple  # outer names read by the body
    bodies: list  # BlockGraph per iteration (the same object when iterations are alike)
    mode: str = "none"  # none: no layers; single: a ModuleList of the one layer; body: of body classes


@dataclass
class BlockGraph:
    name: str  # generated class name, unique in one compilation
    block: str  # spec block name
    kind: str  # block, model, or repeat (a repeat body)
    args: dict  # compile-time arguments of this instantiation
    span: Span
    graph: nx.MultiDiGraph = field(default_factory=nx.MultiDiGraph)
    inputs: list = field(default_factory=list)  # InputSpec
    outputs: list = field(default_factory=list)  # (name, ValueRef, span)
    modules: dict = field(default_factory=dict)  # name -> ModuleSpec, in creation order
    ties: list = field(default_factory=list)  # (target path, source path, span)
    repeats: dict = field(default_factory=dict)  # node id -> RepeatInfo
    owner: BlockGraph | None = None  # a procedure's loss or metric graph: the graph holding its models
    _next_id: int = 0

    def add_node(self, op: str, args: dict, types: list, span: Span, **extra) -> Node:
        node = Node(self._next_id, op, args, list(types), span, **extra)
        if not node.names:
            node.names = [None] * len(node.types)
        self._next_id += 1
        self.graph.add_node(node.id, node=node)
        for port, ref in enumerate(node.inputs()):
            self.graph.add_edge(ref.node, node.id, key=port, index=ref.index)
        return node

    def node(self, node_id: int) -> Node:
        return self.graph.nodes[node_id]["node"]

    def nodes(self) -> list:
        """Nodes in creation order, which is the spec's order and a topological order."""
        return [self.graph.nodes[i]["node"] for i in sorted(self.graph.nodes)]

    def type_of(self, ref: ValueRef) -> TensorType:
        return self.node(ref.node).types[ref.index]

    def children(self) -> list:
        """Child graphs: blocks used by this one and repeat bodies, each once."""
        seen, out = set(), []
        for spec in self.modules.values():
            for graph in _graphs_of(spec):
                if id(graph) not in seen:
                    seen.add(id(graph))
                    out.append(graph)
        return out

    def allocate_module_name(self, hint: str) -> str:
        name, suffix = hint, 1
        while name in self.modules:
            name = f"{hint}_{suffix}"
            suffix += 1
        return name


def _graphs_of(spec: ModuleSpec) -> list:
    if spec.kind == "block":
        return [spec.graph]
    if spec.kind == "repeat":
        graphs = [spec.body] if spec.body is not None else []
        for item in spec.items:
            graphs.extend(_graphs_of(item))
        return graphs
    return []


def walk(graph: BlockGraph) -> list:
    """Every graph reachable from `graph`, each once, children before parents."""
    seen, order = set(), []

    def visit(current: BlockGraph) -> None:
        if id(current) in seen:
            return
        seen.add(id(current))
        for child in current.children():
            visit(child)
        order.append(current)

    visit(graph)
    return order


def parameter_shapes(spec: ModuleSpec, with_buffers: bool = False) -> dict:
    """Tensor name -> shape for one submodule (parameters, and buffers if asked), relative names."""
    from paperspec.compiler.ops.base import get_op

    if spec.kind == "param":
        return {"": spec.shape}
    if spec.kind == "op":
        opdef = get_op(spec.node.op)
        out = dict(opdef.parameters(spec.node.call)) if opdef.parameters else {}
        if with_buffers and opdef.buffers:
            out.update(opdef.buffers(spec.node.call))
        return out
    if spec.kind == "block":
        return state_shapes(spec.graph, with_buffers)
    if spec.kind == "repeat":
        out = {}
        for i, item in enumerate(spec.items):
            for key, shape in parameter_shapes(item, with_buffers).items():
                out[f"{i}.{key}" if key else str(i)] = shape
        return out
    return {}


def state_shapes(graph: BlockGraph, with_buffers: bool = True) -> dict:
    """The state_dict keys of a compiled block (tied copies included) and their shapes."""
    out: dict[str, tuple] = {}
    for name, spec in graph.modules.items():
        for key, shape in parameter_shapes(spec, with_buffers).items():
            out[f"{name}.{key}" if key else name] = shape
    return out


def count_parameters(graph: BlockGraph) -> int:
    """Trainable parameter count, tied parameters counted once."""
    tied = {".".join(target) for target, _, _ in _all_ties(graph)}
    total = 0
    for key, shape in state_shapes(graph, with_buffers=False).items():
        if key not in tied:
            size = 1
            for dim in shape:
                size *= dim
            total += size
    return total


def _all_ties(graph: BlockGraph, prefix: tuple = ()) -> list:
    ties = [(prefix + tuple(t), prefix + tuple(s), span) for t, s, span in graph.ties]
    for name, spec in graph.modules.items():
        if spec.kind == "block":
            ties.extend(_all_ties(spec.graph, prefix + (name,)))
    return ties


Shape = tuple  # of Dim
__all__ = ["BlockGraph", "Dim", "InputSpec", "ModuleSpec", "Node", "RepeatInfo", "Shape", "ValueRef", "walk"]
