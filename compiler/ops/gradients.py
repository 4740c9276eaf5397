"""Quantisers with chosen gradients, for binarised and quantised layers: sign, round, straight_through."""

from __future__ import annotations

from paperspec.compiler.ops.base import ShapeError, register
from paperspec.compiler.ops.shapes import require_float

QUANTISERS = ("sign", "binary", "round")
SURROGATES = ("identity", "clipped", "power")
RESTE_INTERVAL = 0.1  # ReSTE's linear piece around 0, where |x|^(1/power) would have an unbounded slope

_QUANTISE_HELPER = '''
def quantise(x, kind: str):
    """sign (0 at 0), binary (+1 or -1, +1 at 0, as in BinaryNet) or round (half to even)."""
    if kind == "sign":
        return torch.sign(x)
    if kind == "binary":
        return torch.ones_like(x).masked_fill(x < 0, -1.0)
    return torch.round(x)
'''

_RECTIFIED_POWER_HELPER = f'''
def rectified_power(x, power: float, clip: float, interval: float = {RESTE_INTERVAL}):
    """ReSTE's surrogate (Wu et al. 2023): sign(x) |x|^(1/power) for interval < |x| <= clip, the
    line through 0 and its value at interval inside, flat beyond clip."""
    curve = torch.sign(x) * x.abs().clamp(interval, clip) ** (1 / power)
    return torch.where(x.abs() <= interval, x * interval ** (1 / power - 1), curve)
'''

_STRAIGHT_THROUGH_HELPER = '''
def straight_through(x, forward: str, backward: str, power: float, clip: float):
    """quantise(x, forward) in the forward pass, the gradient of a surrogate in the backward pass."""
    if backward == "identity":
        surrogate = x
    elif backward == "clipped":
        surrogate = torch.clamp(x, -clip, clip)
    else:
        surrogate = rectified_power(x, power, clip)
    # s - s.detach() is exactly 0 with s's gradient, so the value is the quantiser's to the last bit.
    return quantise(x, forward).detach() + (surrogate - surrogate.detach())
'''


def _quantiser(name: str):
    def infer(call):
        require_float(call["x"], name)
        return call["x"]

    return infer


register(
    "sign",
    "x: tensor",
    _quantiser("sign"),
    lambda c: f"torch.sign({c['x']})",
    "-1, 0 or +1 by the sign of x; its gradient is zero (use straight_through to train through it)",
    category="gradient",
    onnx=lambda c: c.node("Sign", [c["x"]]),
)

register(
    "round",
    "x: tensor",
    _quantiser("round"),
    lambda c: f"torch.round({c['x']})",
    "x rounded to the nearest integer, halves to even; its gradient is zero (see straight_through)",
    category="gradient",
    onnx=lambda c: c.node("Round", [c["x"]]),
)


def _straight_through(call):
    x = _quantiser("straight_through")(call)
    forward, backward = call["forward"], call["backward"]
    if forward not in QUANTISERS:
        raise ShapeError(f"`forward` must be one of {', '.join(QUANTISERS)}, got {forward!r}", "forward")
    if backward not in SURROGATES:
        raise ShapeError(f"`backward` must be one of {', '.join(SURROGATES)}, got {backward!r}", "backward")
    if call["clip"] <= 0:
        raise ShapeError(f"`clip` must be positive, got {call['clip']}", "clip")
    if backward == "power":
        _check_power(call)
    return x


def _check_power(call) -> None:
    if call["forward"] == "round":
        raise ShapeError("backward = 'power' (ReSTE) is a surrogate of sign, not of round", "backward", "use forward = 'sign' or 'binary'")
    if call["power"] < 1:
        raise ShapeError(f"`power` must be at least 1 (1 is the clipped estimator), got {call['power']}", "power")
    if call["clip"] <= RESTE_INTERVAL:
        raise ShapeError(f"backward = 'power' needs clip > {RESTE_INTERVAL}, got {call['clip']}", "clip")


def _straight_through_torch(c):
    options = ", ".join(f"{name}={c[name]}" for name in ("forward", "backward", "power", "clip"))
    return f"straight_through({c['x']}, {options})"


def _straight_through_onnx(c):
    """Inference runs the forward quantiser; the surrogate only shapes training's gradients."""
    x, kind = c["x"], c.values["forward"]
    if kind == "binary":
        dtype = c.values["x"].dtype
        negative = c.node("Less", [x, c.const(0.0, dtype)])
        return c.node("Where", [negative, c.const(-1.0, dtype), c.const(1.0, dtype)])
    return c.node("Sign" if kind == "sign" else "Round", [x])


register(
    "straight_through",
    "x: tensor, forward: str = 'sign', backward: str = 'identity', power: float = 2.0, clip: float = 1.0",
    _straight_through,
    _straight_through_torch,
    "forward: the quantiser sign, binary (+-1, +1 at 0) or round; backward: the gradient of a surrogate: "
    "identity (plain STE), clipped (1 where |x| <= clip, else 0: BinaryConnect/BNN's hardtanh STE) or "
    "power (ReSTE: slope of sign(x)|x|^(1/power) up to |x| = clip, constant within 0.1 of 0)",
    category="gradient",
    torch_helpers=(
        ("quantise", _QUANTISE_HELPER),
        ("rectified_power", _RECTIFIED_POWER_HELPER),
        ("straight_through", _STRAIGHT_THROUGH_HELPER),
    ),
    onnx=_straight_through_onnx,
)
