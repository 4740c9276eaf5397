"""Calibration metrics: how far a classifier's confidence is from its accuracy."""

from __future__ import annotations

from paperspec.compiler.ops.base import ShapeError, register
from paperspec.compiler.ops.losses import SCALAR, class_targets

_ECE_HELPER = '''
def expected_calibration_error(logits, target, bins: int):
    """ECE with `bins` equal-width confidence bins, bin b holding confidences in (b / bins,
    (b + 1) / bins]: the sum over bins of |sum of (confidence - hit)| over all positions, divided
    by their count, i.e. each bin's |accuracy - mean confidence| weighted by its share."""
    confidence, prediction = logits.flatten(0, -2).softmax(-1).max(-1)
    hits = (prediction == target.flatten()).to(confidence.dtype)
    index = (confidence * bins).ceil().long().clamp(1, bins) - 1
    gaps = torch.zeros(bins, dtype=confidence.dtype, device=confidence.device).index_add(0, index, confidence - hits)
    return gaps.abs().sum() / confidence.numel()
'''


def _ece(call):
    class_targets(call, "ece")
    if call["bins"] < 1:
        raise ShapeError(f"`ece` needs at least one bin, got bins = {call['bins']}", "bins")
    return SCALAR


register(
    "ece",
    "logits: tensor, target: tensor, bins: int = 15",
    _ece,
    lambda c: f"expected_calibration_error({c['logits']}, {c['target']}, {c['bins']})",
    "expected calibration error of logits [..., C] against class ids [...] (Guo et al. 2017): softmax "
    "confidences in `bins` equal-width bins, each bin's |accuracy - mean confidence| weighted by its "
    "share of the positions; as a metric it is computed per evaluation batch and averaged",
    category="metric",
    torch_helpers=(("expected_calibration_error", _ECE_HELPER),),
    not_exportable="a metric on labelled data, not part of an inference graph; export the model and score its logits",
)
