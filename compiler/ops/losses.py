"""Losses, metrics and gradient control: the ops a training procedure's loss and eval use."""

from __future__ import annotations

from paperspec.compiler.ops.base import ShapeError, register
from paperspec.compiler.ops.shapes import require_float
from paperspec.compiler.types import INT_DTYPES, TensorType

SCALAR = TensorType("f32", ())


def class_targets(call, op: str) -> None:
    """logits [..., C] against integer targets [...]."""
    logits, target = call["logits"], call["target"]
    require_float(logits, op, "logits")
    if logits.rank == 0:
        raise ShapeError(f"`{op}` needs logits with a class dim, got {logits}", "logits")
    if target.dtype not in INT_DTYPES:
        raise ShapeError(f"`{op}` needs integer class targets, got {target}", "target", "cast them with cast(y, 'i64')")
    if target.shape != logits.shape[:-1]:
        raise ShapeError(
            f"`{op}` targets must have the logits' shape without the class dim: logits {logits} vs target {target}",
            "target",
            f"expected target of shape [{', '.join(str(d) for d in logits.shape[:-1])}]",
        )


def _cross_entropy(call):
    class_targets(call, "cross_entropy")
    if not 0.0 <= call["label_smoothing"] < 1.0:
        raise ShapeError(f"label_smoothing must be in [0, 1), got {call['label_smoothing']}", "label_smoothing")
    return SCALAR


register(
    "cross_entropy",
    "logits: tensor, target: tensor, ignore_index: int = -100, label_smoothing: float = 0.0",
    _cross_entropy,
    lambda c: (
        f"F.cross_entropy({c['logits']}.flatten(0, -2), {c['target']}.flatten(), "
        f"ignore_index={c['ignore_index']}, label_smoothing={c['label_smoothing']})"
        if c.values["logits"].rank > 2
        else f"F.cross_entropy({c['logits']}, {c['target']}, ignore_index={c['ignore_index']}, label_smoothing={c['label_smoothing']})"
    ),
    "mean cross-entropy of logits [..., C] against class ids [...]",
    category="loss",
)


def _same_shape(op: str, first: str, second: str):
    def infer(call):
        a, b = call[first], call[second]
        require_float(a, op, first)
        require_float(b, op, second)
        if a.shape != b.shape:
            raise ShapeError(f"`{op}` needs equal shapes: {first} {a} vs {second} {b}", second)
        return SCALAR

    return infer


register("mse", "prediction: tensor, target: tensor", _same_shape("mse", "prediction", "target"), lambda c: f"F.mse_loss({c['prediction']}, {c['target']})", "mean squared error", category="loss")
register(
    "bce",
    "logits: tensor, target: tensor",
    _same_shape("bce", "logits", "target"),
    lambda c: f"F.binary_cross_entropy_with_logits({c['logits']}, {c['target']})",
    "binary cross-entropy on logits, targets in [0, 1]",
    category="loss",
)


def _kl_div(call):
    _same_shape("kl_div", "logits", "target_logits")(call)
    if call["temperature"] <= 0:
        raise ShapeError(f"temperature must be positive, got {call['temperature']}", "temperature")
    if call["logits"].rank == 0:
        raise ShapeError("`kl_div` needs logits with a class dim", "logits")
    return SCALAR


def _kl_div_torch(c):
    t = c["temperature"]
    student = f"F.log_softmax({c['logits']}.flatten(0, -2) / {t}, dim=-1)"
    teacher = f"F.log_softmax({c['target_logits']}.flatten(0, -2) / {t}, dim=-1)"
    return f"F.kl_div({student}, {teacher}, reduction='batchmean', log_target=True) * {t} ** 2"


register(
    "kl_div",
    "logits: tensor, target_logits: tensor, temperature: float = 1.0",
    _kl_div,
    _kl_div_torch,
    "KL(target || model) between softmaxes at a temperature, scaled by T^2 (distillation)",
    category="loss",
)


def _accuracy(call):
    class_targets(call, "accuracy")
    return SCALAR


def _accuracy_torch(c) -> str:
    hits = f"({c['logits']}.argmax(-1) == {c['target']})"
    if c.values["ignore_index"] is None:
        return f"{hits}.float().mean()"
    # Only positions with a real target count, as cross_entropy's ignore_index does for the loss.
    kept = f"({c['target']} != {c['ignore_index']})"
    return f"({hits} & {kept}).sum() / {kept}.sum().clamp(min=1)"


register(
    "accuracy",
    "logits: tensor, target: tensor, ignore_index: int? = none",
    _accuracy,
    _accuracy_torch,
    "fraction of positions whose arg-max class equals the target; with ignore_index, of the positions whose target is not ignore_index",
    category="metric",
)

register(
    "detach",
    "x: tensor",
    lambda call: call["x"],
    lambda c: f"{c['x']}.detach()",
    "stops gradients: the value of x, treated as a constant",
    category="gradient",
    onnx=lambda c: c.node("Identity", [c["x"]]),  # an exported model only runs forward
)
