"""PyTorch lowering of interval bound propagation: an `interval_bounds` method on a block's class
that maps lower and upper bounds of each input to bounds of each output (compiler/interval.py)."""

from __future__ import annotations

from collections import ChainMap

from paperspec.compiler.backends.pysource import CodeWriter, identifier
from paperspec.compiler.interval import (
    MONOTONE,
    RULES,
    check_interval_graph,
    interval_values,
    iteration_boxes,
)
from paperspec.compiler.ir import BlockGraph, ValueRef

METHOD = "interval_bounds"


def bounded_graphs(graphs: list) -> set:
    """The ids of the graphs whose class needs an interval method: those an `interval_bounds` op
    of one of `graphs` calls (the class its submodule is built from), and the blocks they call on
    intervals."""
    needed: set = set()
    for graph in graphs:
        for node in graph.nodes():
            if node.op == METHOD:
                called = _module_graph(graph, node.args["f"].name)
                needed.update(id(g) for g in check_interval_graph(called))
    return needed


def _module_graph(graph: BlockGraph, name: str) -> BlockGraph:
    """The graph of submodule `name`, which lives in `graph` or, for a procedure's model, in its owner."""
    home = graph if name in graph.modules else graph.owner
    return home.modules[name].graph


def _normalise(expression: str) -> str:
    """Drops redundant parentheses, as the forward method's code does."""
    from paperspec.compiler.backends.torch import _normalise as normalise

    return normalise(expression)


class IntervalEmitter:
    """Writes `def interval_bounds(self, x_lower, x_upper, ...)`, returning each output's bounds.
    An emitter with a `parent` writes one iteration of a repeat body into the parent's method, the
    body's inputs whose node ids are in `boxed` being intervals."""

    def __init__(self, graph: BlockGraph, out: CodeWriter, reserved: set, parent: IntervalEmitter | None = None, boxed: set | None = None):
        from paperspec.compiler.backends.torch import FunctionEmitter  # which imports this module

        self.graph, self.out = graph, out
        # names values and lowers point ops
        self.points = FunctionEmitter(graph, out, reserved, parent.points if parent else None)
        self.intervals = interval_values(graph, boxed)
        self.ends: dict[ValueRef, tuple] = {}
        self.body = parent.body if parent else CodeWriter()
        self.current = -1  # the node being emitted

    # ---- what rules use ----

    def is_interval(self, value) -> bool:
        return isinstance(value, ValueRef) and value in self.intervals

    def bounds(self, ref: ValueRef) -> tuple:
        """(lower, upper) source of a value; a point is its own bounds."""
        if ref in self.ends:
            return self.ends[ref]
        return self.point(ref), self.point(ref)

    def point(self, value) -> str:
        if isinstance(value, ValueRef):
            return self.points.expressions[value]
        return repr(value)

    def module(self, node) -> str:
        return self.points.module_access(node.module)

    def let(self, base: str, expression: str) -> str:
        """Binds a temporary of one rule to a fresh name, which no later temporary of that rule takes."""
        temporary = ValueRef(-1, len(self.points.last_use))
        self.points.last_use[temporary] = self.current + 0.5  # live until the rule's node is done
        name = self.points.fresh_name(base, temporary, self.current)
        self.body.line(f"{name} = {expression}")
        return name

    # ---- the method ----

    def emit_method(self) -> None:
        params = []
        for spec in self.graph.inputs:
            ref = ValueRef(spec.node)
            ends = tuple(self.points.fresh_name(f"{spec.name}_{end}", ref, -1) for end in ("lower", "upper"))
            self.ends[ref] = ends
            self.points.expressions[ref] = ends[0]  # sizes of symbolic dims are read from it
            params.extend(ends)
        self.out.line(f"def {METHOD}(self, {', '.join(params)}):")
        with self.out.indent():
            self.out.line('"""Lower and upper bounds of every output over the box of inputs [lower, upper] (interval bound propagation)."""')
            self.body.level = self.out.level
            self.emit_nodes()
            results = [end for _, ref, _ in self.graph.outputs for end in self.bounds(ref)]
            self.body.line(f"return {', '.join(results)}")
            for name in self.points.used_symbols:
                self.out.line(f"{identifier(name)} = {self.points.symbol_sources[name]}")
            self.out.lines.extend(self.body.lines)

    def emit_nodes(self) -> None:
        for node in self.graph.nodes():
            if node.op == "input":
                continue
            self.current = node.id
            if not any(self.is_interval(ref) for ref in node.inputs()):
                self.emit_point(node)
            elif node.op == "call":
                self.emit_call(node)
            elif node.op == "repeat":
                self.emit_repeat(node)
            else:
                self.emit_rule(node)

    def emit_point(self, node) -> None:
        """A value that does not depend on the inputs, computed as `forward` computes it."""
        if node.op == "param":
            self.points.expressions[ValueRef(node.id)] = self.points.module_access(node.module)
        elif node.op == "repeat":
            from paperspec.compiler.backends.torch_repeat import emit_repeat

            emit_repeat(self.points, node, self.body)
        else:
            self.points.emit_node(node, self.body)

    def emit_rule(self, node) -> None:
        if node.op in MONOTONE:
            lower, upper = self.at_end(node, 0), self.at_end(node, 1)
        else:
            lower, upper = RULES[node.op][1](self, node)
        names = self.output_names(node)
        self.body.line(f"{', '.join(pair[0] for pair in names)} = {_normalise(lower)}")
        self.body.line(f"{', '.join(pair[1] for pair in names)} = {_normalise(upper)}")

    def at_end(self, node, side: int) -> str:
        """The op's own lowering with each interval replaced by its lower (0) or upper (1) end."""
        chosen = {ref: ends[side] for ref, ends in self.ends.items()}
        plain = self.points.expressions
        self.points.expressions = ChainMap(chosen, plain)
        try:
            return self.points.expression(node)
        finally:
            self.points.expressions = plain

    def emit_call(self, node) -> None:
        arguments = [end for ref in node.args["inputs"] for end in self.bounds(ref)]
        names = self.output_names(node)
        targets = ", ".join(end for pair in names for end in pair)
        self.body.line(f"{targets} = {self.module(node)}.{METHOD}({', '.join(arguments)})")

    def emit_repeat(self, node) -> None:
        """Unrolled: each iteration bounds its body's values from the bounds the one before left,
        with the body's own layers taken from the iteration's item of the repeat's ModuleList."""
        info = node.derived["repeat"]
        boxes, _ = iteration_boxes(node, self.intervals)
        carried = [self.bounds(ref) for ref in node.args["carried"]]
        free = {name: self.bounds(ref) for name, ref in zip(info.free, node.args["free"])}
        for index, (body, boxed) in enumerate(zip(info.bodies, boxes)):
            inner = IntervalEmitter(body, self.out, self.points.reserved, self, boxed)
            inner.points.module_access = self.iteration_modules(node, body, index)
            inner.bind_inputs(carried + [free[spec.name] for spec in body.inputs[len(carried):]])
            inner.emit_nodes()
            carried = [inner.bounds(ref) for _, ref, _ in body.outputs]
        for index, ends in enumerate(carried):
            ref = ValueRef(node.id, index)
            if ref in self.intervals:
                self.ends[ref] = ends
            else:
                self.points.expressions[ref] = ends[0]

    def iteration_modules(self, node, body: BlockGraph, index: int):
        """Module access inside iteration `index` of a repeat, as its forward code reaches them."""
        mode, outer = node.derived["repeat"].mode, self.points.module_access
        if mode == "none":
            return outer
        item = f"{outer(node.module)}[{index}]"
        if mode == "single":  # the item is the body's one layer
            return lambda name: item if name in body.modules else outer(name)
        return lambda name: f"{item}.{identifier(name)}" if name in body.modules else outer(name)

    def bind_inputs(self, ends: list) -> None:
        """Binds the body's inputs to the (lower, upper) sources of the values they read."""
        for spec, (lower, upper) in zip(self.graph.inputs, ends):
            ref = ValueRef(spec.node)
            if ref in self.intervals:
                self.ends[ref] = (lower, upper)
            self.points.expressions[ref] = lower

    def output_names(self, node) -> list:
        pairs = []
        for index in range(len(node.types)):
            ref = ValueRef(node.id, index)
            base = node.names[index] or (node.module if node.op == "call" and node.module else node.op)
            pair = tuple(self.points.fresh_name(f"{base}_{end}", ref, node.id) for end in ("lower", "upper"))
            self.ends[ref] = pair
            pairs.append(pair)
        return pairs
