"""Interval bound propagation (Gowal et al. 2018) as a second reading of a block's graph: which
values are intervals, and each op's rule for bounding its output from its inputs' bounds.

A value is an interval when it depends on the block's inputs, which are boxes [lower, upper];
weights, constants and anything computed from them alone are points, computed as usual. A rule
gives the PyTorch source of the output's lower and upper bound; `emit` is the generator of the
interval method (compiler/backends/torch_interval.py), which names values and renders points."""

from __future__ import annotations

from paperspec.compiler.diagnostics import SpecError
from paperspec.compiler.ir import BlockGraph, ValueRef

# Ops nondecreasing in these arguments: the bounds are the op applied to the lower ends and to
# the upper ends (shape ops are linear with 0/1 coefficients, so they are among them).
MONOTONE = {
    "relu": ("x",), "sigmoid": ("x",), "tanh": ("x",), "softplus": ("x",), "exp": ("x",), "log": ("x",),
    "sqrt": ("x",), "clamp": ("x",), "detach": ("x",), "add": ("x", "y"), "where": ("x", "y"),
    "sum": ("x",), "mean": ("x",), "max": ("x",), "min": ("x",),
    "max_pool1d": ("x",), "max_pool2d": ("x",), "avg_pool1d": ("x",), "avg_pool2d": ("x",),
    "reshape": ("x",), "flatten": ("x",), "transpose": ("x",), "permute": ("x",), "squeeze": ("x",),
    "unsqueeze": ("x",), "index": ("x",), "concat": ("xs",), "stack": ("xs",), "split": ("x",),
}


def _center_radius(emit, x: ValueRef) -> tuple:
    lower, upper = emit.bounds(x)
    return emit.let("center", f"({lower} + {upper}) / 2"), emit.let("radius", f"({upper} - {lower}) / 2")


def _affine(emit, mid: str, rad: str) -> tuple:
    """W mu + b and |W| r: the tightest box around the image of a box under an affine map."""
    mid, rad = emit.let("mid", mid), emit.let("rad", rad)
    return f"{mid} - {rad}", f"{mid} + {rad}"


def _linear(emit, node) -> tuple:
    center, radius = _center_radius(emit, node.args["x"])
    module = emit.module(node)
    return _affine(emit, f"{module}({center})", f"F.linear({radius}, {module}.weight.abs())")


def _conv(dims: int):
    def rule(emit, node) -> tuple:
        center, radius = _center_radius(emit, node.args["x"])
        m = emit.module(node)
        magnitude = f"F.conv{dims}d({radius}, {m}.weight.abs(), None, {m}.stride, {m}.padding, {m}.dilation, {m}.groups)"
        return _affine(emit, f"{m}({center})", magnitude)

    return rule


def _matmul(emit, node) -> tuple:
    x, y = node.args["x"], node.args["y"]
    if emit.is_interval(x):
        center, radius = _center_radius(emit, x)
        return _affine(emit, f"{center} @ {emit.point(y)}", f"{radius} @ {emit.point(y)}.abs()")
    center, radius = _center_radius(emit, y)
    return _affine(emit, f"{emit.point(x)} @ {center}", f"{emit.point(x)}.abs() @ {radius}")


def _sub(emit, node) -> tuple:
    (x_lower, x_upper), (y_lower, y_upper) = emit.bounds(node.args["x"]), emit.bounds(node.args["y"])
    return f"{x_lower} - {y_upper}", f"{x_upper} - {y_lower}"


def _neg(emit, node) -> tuple:
    lower, upper = emit.bounds(node.args["x"])
    return f"-{upper}", f"-{lower}"


def _abs(emit, node) -> tuple:
    lower, upper = emit.bounds(node.args["x"])
    return f"torch.clamp(torch.maximum({lower}, -{upper}), min=0)", f"torch.maximum(-{lower}, {upper})"


def _scaled(emit, interval: ValueRef, factor, divide: bool) -> tuple:
    """An interval times (or divided by) a point: a number's sign orders the ends at compile
    time; a tensor scales the center and, by its magnitude, the radius."""
    symbol = "/" if divide else "*"
    if isinstance(factor, (int, float)):
        lower, upper = emit.bounds(interval)
        ends = (f"{lower} {symbol} {factor!r}", f"{upper} {symbol} {factor!r}")
        return ends if factor >= 0 else ends[::-1]
    center, radius = _center_radius(emit, interval)
    point = emit.point(factor)
    return _affine(emit, f"{center} {symbol} {point}", f"{radius} {symbol} {point}.abs()")


def _product(emit, x: ValueRef, y: ValueRef) -> tuple:
    """Interval times interval: the smallest and largest of the four products of ends."""
    (x_lower, x_upper), (y_lower, y_upper) = emit.bounds(x), emit.bounds(y)
    products = [emit.let("product", f"{a} * {b}") for a in (x_lower, x_upper) for b in (y_lower, y_upper)]
    lowest, highest = products[0], products[0]
    for product in products[1:]:
        lowest, highest = f"torch.minimum({lowest}, {product})", f"torch.maximum({highest}, {product})"
    return lowest, highest


def _mul(emit, node) -> tuple:
    x, y = node.args["x"], node.args["y"]
    if emit.is_interval(x) and emit.is_interval(y):
        return _product(emit, x, y)
    interval, factor = (x, y) if emit.is_interval(x) else (y, x)
    return _scaled(emit, interval, factor, divide=False)


def _div(emit, node) -> tuple:
    return _scaled(emit, node.args["x"], node.args["y"], divide=True)


# op -> (arguments that may be intervals, rule)
RULES = {
    "linear": (("x",), _linear),
    "conv1d": (("x",), _conv(1)),
    "conv2d": (("x",), _conv(2)),
    "matmul": (("x", "y"), _matmul),
    "sub": (("x", "y"), _sub),
    "neg": (("x",), _neg),
    "abs": (("x",), _abs),
    "mul": (("x", "y"), _mul),
    "div": (("x",), _div),
}


def interval_args(node, intervals: set) -> list:
    """The names of the node's arguments that hold intervals."""
    names = []
    for name, value in node.args.items():
        refs = value if isinstance(value, tuple) else (value,)
        if any(isinstance(ref, ValueRef) and ref in intervals for ref in refs):
            names.append(name)
    return names


def interval_values(graph: BlockGraph, boxed: set | None = None) -> set:
    """The values of `graph` that depend on its inputs, when the inputs whose node ids are in
    `boxed` (every input, if None) are boxes."""
    intervals: set = set()
    for node in graph.nodes():
        if node.op == "input":
            held = boxed is None or node.id in boxed
        else:
            held = node.op != "param" and any(ref in intervals for ref in node.inputs())
        if node.op == "repeat" and held:
            _, carried = iteration_boxes(node, intervals)
            intervals.update(ValueRef(node.id, i) for i, is_box in enumerate(carried) if is_box)
        elif held:
            intervals.update(ValueRef(node.id, i) for i in range(len(node.types)))
    return intervals


def iteration_boxes(node, intervals: set) -> tuple:
    """For each iteration of a repeat node, the ids of its body's inputs that are intervals, and
    which carried values are intervals after the last one: a carried point becomes an interval
    once an iteration makes it depend on one, so iterations of one body may differ."""
    info = node.derived["repeat"]
    carried = [ref in intervals for ref in node.args["carried"]]
    free = {name: ref in intervals for name, ref in zip(info.free, node.args["free"])}
    boxes = []
    for body in info.bodies:
        held = carried + [free[spec.name] for spec in body.inputs[len(carried):]]
        boxed = {spec.node for spec, is_box in zip(body.inputs, held) if is_box}
        boxes.append(boxed)
        inside = interval_values(body, boxed)
        carried = [ref in inside for _, ref, _ in body.outputs]
    return boxes, carried


def check_interval_graph(graph: BlockGraph, boxed: set | None = None) -> list:
    """Checks that every op on an interval has a rule, in repeat bodies too; returns the graphs
    whose interval method the generated code needs (`graph` and the blocks it calls on intervals)."""
    intervals, needed = interval_values(graph, boxed), [graph]
    for node in graph.nodes():
        held = interval_args(node, intervals)
        if node.op == "call" and held:
            _add_new(needed, check_interval_graph(node.derived["graph"]))
        elif node.op == "repeat" and held:
            _check_repeat(node, intervals, needed)
        elif held:
            _check_rule(graph, node, held)
    return needed


def _check_repeat(node, intervals: set, needed: list) -> None:
    """A repeat body is bounded inline, iteration by iteration: its ops need rules, and the
    blocks it calls need interval methods, but the body's own class (if any) does not."""
    boxes, _ = iteration_boxes(node, intervals)
    checked: list = []
    for body, boxed in zip(node.derived["repeat"].bodies, boxes):
        if not any(body is seen and boxed == seen_boxed for seen, seen_boxed in checked):
            checked.append((body, boxed))
            _add_new(needed, check_interval_graph(body, boxed)[1:])


def _add_new(needed: list, graphs: list) -> None:
    needed.extend(g for g in graphs if all(g is not n for n in needed))


def _check_rule(graph: BlockGraph, node, held: list) -> None:
    allowed = MONOTONE.get(node.op) or RULES.get(node.op, ((), None))[0]
    if not allowed:
        known = ", ".join(sorted(list(MONOTONE) + list(RULES)))
        raise _no_rule(f"`interval_bounds` has no interval rule for `{node.op}`", node, f"ops with interval rules: {known}", graph)
    for name in held:
        if name not in allowed:
            raise _no_rule(
                f"`interval_bounds` has no interval rule for `{node.op}` with an interval `{name}`",
                node,
                f"`{node.op}` takes intervals only as {', '.join(f'`{a}`' for a in allowed)}; here `{name}` depends on the bounded input",
                graph,
            )
    if node.op == "matmul" and len(held) == 2:
        raise _no_rule(
            "`interval_bounds` has no interval rule for `matmul` of two intervals",
            node,
            "one operand of `@` must not depend on the bounded input (a weight, for instance)",
            graph,
        )


def _no_rule(message: str, node, hint: str, graph: BlockGraph) -> SpecError:
    error = SpecError(message, node.span, hint)
    error.notes.append(f"in `{graph.block}`, bounded by `interval_bounds`")
    return error
