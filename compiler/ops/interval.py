"""`interval_bounds`: bounds of a block's output over a box of inputs, by interval bound propagation."""

from __future__ import annotations

from paperspec.compiler.interval import check_interval_graph
from paperspec.compiler.ops.base import ShapeError, register
from paperspec.compiler.ops.shapes import require_float


def _interval_bounds(call) -> list:
    lower, upper = call["lower"], call["upper"]
    require_float(lower, "interval_bounds", "lower")
    if upper != lower:
        raise ShapeError(f"`interval_bounds` needs bounds of one type: lower {lower} vs upper {upper}", "upper")
    outputs = call.derived["f_outputs"]
    if len(outputs) != 1:
        shown = ", ".join(str(t) for t in outputs)
        raise ShapeError(f"`interval_bounds` bounds a block with one output; f returns {shown}", "f")
    # Each op on the way from input to output needs a rule: an error here names the op and its line.
    check_interval_graph(call.derived["f_graph"])
    call.derived["tuple_output"] = True
    return [outputs[0], outputs[0]]


register(
    "interval_bounds",
    "f: block, lower: tensor, upper: tensor",
    _interval_bounds,
    lambda c: f"{c['f']}.interval_bounds({c['lower']}, {c['upper']})",
    "interval bound propagation (Gowal et al. 2018): (lower, upper) bounds of the block f's output over "
    "every input x with lower <= x <= upper, elementwise. Each op of f gets an interval rule: affine "
    "layers (linear, conv, @ a weight) in center-radius form W mu + b, |W| r; monotone ops (relu, "
    "sigmoid, tanh, ...) and shape ops on both ends; + and -, and products sign-aware; repeat bodies "
    "iteration by iteration",
    category="verification",
    block_inputs=lambda call: {"f": [call["lower"]]},
    not_exportable="interval bounds are for certified training and verification; export the bounded model itself",
)
