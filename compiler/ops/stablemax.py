"""StableMax and its cross-entropy (Prieto, Barsbey, Mediano and Birdal 2025, "Grokking at the Edge
of Numerical Stability").

Softmax normalises exp(x); once one logit leads the others by more than about 17 (in f32), its
probability rounds to exactly 1 and the cross-entropy's gradient at that example is exactly zero
("softmax collapse"). StableMax normalises s(x) = x + 1 for x >= 0 and 1 / (1 - x) for x < 0
instead: s is positive, increasing and grows only linearly, so the same margins leave the other
classes a share that f32 still represents, and training keeps a gradient."""

from __future__ import annotations

from paperspec.compiler.ops.base import register
from paperspec.compiler.ops.losses import SCALAR, class_targets
from paperspec.compiler.ops.shapes import normalize_axis, require_float

_S_HELPER = '''
def stablemax_s(x):
    """s(x) of StableMax: x + 1 for x >= 0, 1 / (1 - x) below. The negative branch reads
    min(x, 0), so its unused values stay finite and the gradient at x = 1 is not NaN."""
    return torch.where(x >= 0, x + 1, 1 / (1 - x.clamp(max=0)))
'''

_STABLEMAX_HELPER = '''
def stablemax(x, dim: int):
    """StableMax along dim: s(x) / sum s(x)."""
    s = stablemax_s(x)
    return s / s.sum(dim, keepdim=True)
'''

_CROSS_ENTROPY_HELPER = '''
def stablemax_cross_entropy(logits, target):
    """Mean of -log StableMax(logits)[target] over every position; the class dim is last."""
    s = stablemax_s(logits)
    return (s.sum(-1).log() - s.gather(-1, target.unsqueeze(-1)).squeeze(-1).log()).mean()
'''


def _stablemax(call):
    x = call["x"]
    require_float(x, "stablemax")
    normalize_axis(call["dim"], x.rank)
    return x


def _stablemax_onnx(c):
    dtype = c.values["x"].dtype
    x, zero, one = c["x"], c.const(0.0, dtype), c.const(1.0, dtype)
    positive = c.node("Add", [x, one])
    negative = c.node("Reciprocal", [c.node("Sub", [one, c.node("Min", [x, zero])])])
    s = c.node("Where", [c.node("GreaterOrEqual", [x, zero]), positive, negative])
    total = c.node("ReduceSum", [s, c.const([c.values["dim"]], "i64")], keepdims=1)
    return c.node("Div", [s, total])


register(
    "stablemax",
    "x: tensor, dim: int = -1",
    _stablemax,
    lambda c: f"stablemax({c['x']}, {c['dim']})",
    "StableMax along dim (Prieto et al. 2025): s(x) / sum s(x), s(x) = x + 1 for x >= 0 and "
    "1 / (1 - x) below; like softmax, but no share rounds to 0 at large logits",
    category="activation",
    torch_helpers=(("stablemax_s", _S_HELPER), ("stablemax", _STABLEMAX_HELPER)),
    onnx=_stablemax_onnx,
)


def _stablemax_cross_entropy(call):
    class_targets(call, "stablemax_cross_entropy")
    return SCALAR


register(
    "stablemax_cross_entropy",
    "logits: tensor, target: tensor",
    _stablemax_cross_entropy,
    lambda c: f"stablemax_cross_entropy({c['logits']}, {c['target']})",
    "mean cross-entropy of StableMax(logits [..., C]) against class ids [...] (Prieto et al. 2025)",
    category="loss",
    torch_helpers=(("stablemax_s", _S_HELPER), ("stablemax_cross_entropy", _CROSS_ENTROPY_HELPER)),
    not_exportable="a training loss, not part of an inference graph; export the model and apply `stablemax` to its logits",
)
