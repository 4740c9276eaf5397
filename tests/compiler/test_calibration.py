"""ece: against a hand-written numpy ECE (Guo et al. 2017), its errors, and that it does not export."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from spec_helpers import model_spec, spec_error

import paperspec
from paperspec.compiler.backends.onnx import export_spec

SPEC = model_spec(
    "in logits: f32[B, C]; in target: i64[B]; out e = ece(logits, target, bins)", "<ece>", "bins: int = 15"
)
SEQUENCE_SPEC = model_spec("in logits: f64[B, T, C]; in target: i64[B, T]; out e = ece(logits, target)", "<ece sequences>")


def reference_ece(logits: np.ndarray, target: np.ndarray, bins: int) -> float:
    """Bin by softmax confidence into (b / bins, (b + 1) / bins]; sum |accuracy - confidence| of each
    non-empty bin weighted by the share of examples in it."""
    logits = logits.reshape(-1, logits.shape[-1]).astype(np.float64)
    probabilities = np.exp(logits - logits.max(-1, keepdims=True))
    probabilities /= probabilities.sum(-1, keepdims=True)
    confidence, hits = probabilities.max(-1), (probabilities.argmax(-1) == target.ravel())
    total = 0.0
    for b in range(bins):
        members = (confidence > b / bins) & (confidence <= (b + 1) / bins)
        if members.any():
            total += members.mean() * abs(hits[members].mean() - confidence[members].mean())
    return total


@pytest.mark.parametrize("bins", [1, 5, 15])
@pytest.mark.parametrize("scale", [0.5, 3.0])
def test_ece_matches_the_reference(bins, scale):
    generator = torch.Generator().manual_seed(bins)
    logits, target = torch.randn(200, 6, generator=generator) * scale, torch.randint(0, 6, (200,), generator=generator)
    got = SPEC.build("M", bins=bins)(logits, target)
    assert got.item() == pytest.approx(reference_ece(logits.numpy(), target.numpy(), bins), abs=1e-6)


def test_ece_of_sequences_counts_every_position():
    logits, target = torch.randn(4, 7, 3, dtype=torch.float64) * 2, torch.randint(0, 3, (4, 7))
    got = SEQUENCE_SPEC.build("M")(logits, target)
    assert got.item() == pytest.approx(reference_ece(logits.numpy(), target.numpy(), 15), abs=1e-12)


def test_a_calibrated_and_an_overconfident_classifier():
    """Two classes, confidence 0.75 and right three times in four: ECE 0. Always sure (about 1)
    and right half the time: ECE about 0.5."""
    calibrated = torch.tensor([[float(np.log(3.0)), 0.0]] * 4)
    assert SPEC.build("M")(calibrated, torch.tensor([0, 0, 0, 1])).item() == pytest.approx(0.0, abs=1e-6)
    overconfident = torch.tensor([[30.0, 0.0]] * 4)
    assert SPEC.build("M")(overconfident, torch.tensor([0, 1, 0, 1])).item() == pytest.approx(0.5, abs=1e-6)


@pytest.mark.parametrize(
    "body, message",
    [
        ("in x: f32[B, 5]; in y: i64[B]; out ece(x, y, bins = 0)", "`ece` needs at least one bin, got bins = 0"),
        ("in x: f32[B, 5]; in y: f32[B]; out ece(x, y)", "`ece` needs integer class targets"),
        ("in x: f32[B, 5]; in y: i64[B, 5]; out ece(x, y)", "targets must have the logits' shape without the class dim"),
        ("in x: i64[B, 5]; in y: i64[B]; out ece(x, y)", "needs a floating-point tensor"),
    ],
)
def test_bad_inputs_are_errors_at_the_argument(body, message):
    error = spec_error(body)
    assert message in error.message and error.span.line == 4


def test_ece_does_not_export():
    with pytest.raises(paperspec.SpecError, match="`ece` cannot be exported to ONNX: a metric on labelled data") as caught:
        export_spec(SPEC, "M")
    assert caught.value.span.line == 4
