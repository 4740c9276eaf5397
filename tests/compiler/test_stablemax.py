"""stablemax and stablemax_cross_entropy: against a numpy reference, finite differences, softmax's
collapse at large logits, and ONNX against PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from onnx.reference import ReferenceEvaluator

import paperspec
from paperspec.compiler.backends.onnx import export_spec
from paperspec.runtime.inputs import example_inputs
from paperspec.runtime.onnx import size_sets, verify

SPEC = """
model Probabilities(dim: int = -1) {
  in x: DTYPE[B, T, 7]
  out p = stablemax(x, dim)
}
model Loss() {
  in logits: DTYPE[B, C]
  in target: i64[B]
  out loss = stablemax_cross_entropy(logits, target)
}
model SequenceLoss() {
  in logits: DTYPE[B, T, C]
  in target: i64[B, T]
  out loss = stablemax_cross_entropy(logits, target)
}
"""

SPECS = {dtype: paperspec.loads(SPEC.replace("DTYPE", dtype), f"<stablemax {dtype}>") for dtype in ("f32", "f64")}


# ---- an independent reference, written from the paper's definition ----


def reference_s(x: np.ndarray) -> np.ndarray:
    """s(x) = x + 1 for x >= 0, 1 / (1 - x) for x < 0, element by element."""
    return np.array([v + 1 if v >= 0 else 1 / (1 - v) for v in x.ravel()]).reshape(x.shape)


def reference_stablemax(x: np.ndarray, dim: int) -> np.ndarray:
    s = reference_s(x)
    return s / s.sum(axis=dim, keepdims=True)


def reference_loss(logits: np.ndarray, target: np.ndarray) -> float:
    """Mean over positions of -log StableMax(logits)[target], the class dim last."""
    probabilities = reference_stablemax(logits, -1).reshape(-1, logits.shape[-1])
    return float(np.mean([-np.log(row[t]) for row, t in zip(probabilities, target.ravel(), strict=True)]))


def finite_difference_gradient(logits: np.ndarray, target: np.ndarray, step: float = 1e-6) -> np.ndarray:
    gradient = np.zeros_like(logits)
    for index in np.ndindex(logits.shape):
        up, down = logits.copy(), logits.copy()
        up[index] += step
        down[index] -= step
        gradient[index] = (reference_loss(up, target) - reference_loss(down, target)) / (2 * step)
    return gradient


# ---- PyTorch against the reference ----


@pytest.mark.parametrize("dim", [-1, 1, 0])
def test_stablemax_matches_the_reference(dim):
    x = torch.randn(3, 5, 7, dtype=torch.float64) * 4
    got = SPECS["f64"].build("Probabilities", dim=dim)(x)
    np.testing.assert_allclose(got.numpy(), reference_stablemax(x.numpy(), dim), rtol=1e-12)
    torch.testing.assert_close(got.sum(dim), torch.ones_like(got.sum(dim)))


def test_stablemax_keeps_the_order_of_the_logits():
    x = torch.randn(4, 5, 7, dtype=torch.float64) * 10
    got = SPECS["f64"].build("Probabilities")(x)
    assert torch.equal(got.argmax(-1), x.argmax(-1)) and bool((got > 0).all())


@pytest.mark.parametrize("model, shape", [("Loss", (6, 9)), ("SequenceLoss", (3, 4, 9))])
def test_cross_entropy_and_its_gradient_match_the_reference(model, shape):
    generator = torch.Generator().manual_seed(0)
    logits = (torch.randn(shape, generator=generator, dtype=torch.float64) * 3).requires_grad_()
    target = torch.randint(0, shape[-1], shape[:-1], generator=generator)
    loss = SPECS["f64"].build(model)(logits, target)
    (gradient,) = torch.autograd.grad(loss, logits)
    assert loss.item() == pytest.approx(reference_loss(logits.detach().numpy(), target.numpy()), rel=1e-12)
    expected = finite_difference_gradient(logits.detach().numpy(), target.numpy())
    np.testing.assert_allclose(gradient.numpy(), expected, atol=1e-8)


def test_gradient_is_finite_where_the_branches_meet():
    # 1 / (1 - x) is infinite at x = 1; the branch not chosen there must not put a NaN into the
    # gradient. At 0 the branches meet with slope 1 but curvatures 0 and 2, so the central
    # difference is off by about its step there.
    logits = np.array([[0.0, 1.0, -1.0, 2.0]])
    tensor = torch.tensor(logits, requires_grad=True)
    (gradient,) = torch.autograd.grad(SPECS["f64"].build("Loss")(tensor, torch.tensor([3])), tensor)
    np.testing.assert_allclose(gradient.numpy(), finite_difference_gradient(logits, np.array([3])), atol=1e-6)


def test_large_logits_collapse_softmax_in_f32_but_not_stablemax():
    """With a margin of 40 the f32 softmax probability of the right class rounds to exactly 1: the
    cross-entropy is exactly 0 and so is its gradient at the right class, the one that would
    push the margin (Prieto et al.'s softmax collapse). StableMax in f32 keeps the loss and
    gradient of the f64 reference."""
    logits = torch.tensor([[40.0, 0.0, -3.0, 1.0, -40.0]] * 2, requires_grad=True)
    target = torch.tensor([0, 0])
    softmax_loss = F.cross_entropy(logits, target)
    (softmax_gradient,) = torch.autograd.grad(softmax_loss, logits)
    assert softmax_loss.item() == 0.0 and bool((softmax_gradient[:, 0] == 0).all())

    loss = SPECS["f32"].build("Loss")(logits, target)
    (gradient,) = torch.autograd.grad(loss, logits)
    reference = logits.detach().double().numpy()
    assert loss.item() == pytest.approx(reference_loss(reference, target.numpy()), rel=1e-4)
    assert bool((gradient[:, 0] < 0).all())
    np.testing.assert_allclose(gradient.numpy(), finite_difference_gradient(reference, target.numpy()), rtol=1e-3)


# ---- ONNX ----


@pytest.mark.parametrize("dtype", ["f32", "f64"])
@pytest.mark.parametrize("dim", [-1, 1])
def test_stablemax_exports_and_matches_pytorch(dtype, dim):
    spec = SPECS[dtype]
    module = spec.build("Probabilities", dim=dim).eval()
    proto = export_spec(spec, "Probabilities", {"dim": dim})
    verify(spec, "Probabilities", {"dim": dim}, sizes={"B": 2, "T": 5}, module=module, onnx_model=proto)
    graph = spec.graph("Probabilities", dim=dim)
    evaluator = ReferenceEvaluator(proto)
    for sizes in size_sets(graph, {"B": 2, "T": 5}):
        x = example_inputs(graph, sizes, seed=1)["x"] * 5
        (got,) = evaluator.run(None, {"x": x.numpy()})
        np.testing.assert_allclose(got, reference_stablemax(x.double().numpy(), dim), rtol=1e-5)


def test_loss_is_not_exportable_and_says_where():
    with pytest.raises(paperspec.SpecError, match="`stablemax_cross_entropy` cannot be exported to ONNX: a training loss") as caught:
        export_spec(SPECS["f32"], "Loss")
    assert caught.value.span.line == 9  # `out loss = stablemax_cross_entropy(...)` of Loss


# ---- errors at the argument ----


@pytest.mark.parametrize(
    "body, message",
    [
        ("in x: i64[B, 5]; out stablemax(x)", "`stablemax` needs a floating-point tensor"),
        ("in x: f32[B, 5]; out stablemax(x, dim = 2)", "dim 2 is out of range"),
        ("in x: f32[B, 5]; in y: f32[B]; out stablemax_cross_entropy(x, y)", "needs integer class targets"),
        ("in x: f32[B, 5]; in y: i64[B, 5]; out stablemax_cross_entropy(x, y)", "targets must have the logits' shape without the class dim"),
        ("in x: i64[B, 5]; in y: i64[B]; out stablemax_cross_entropy(x, y)", "needs a floating-point tensor"),
    ],
    ids=["int_input", "dim", "float_target", "target_shape", "int_logits"],
)
def test_bad_arguments_are_spec_errors_at_the_argument(body, message):
    text = "model M() {\n" + body.replace("; ", "\n") + "\n}\n"
    with pytest.raises(paperspec.SpecError, match=message) as caught:
        paperspec.loads(text, "<bad>").graph()
    span = caught.value.span
    assert span.line == text.count("\n") - 1 and span.column > len("  out ")
