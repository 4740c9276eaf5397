"""HAWQ's pieces: power iteration against the explicit Hessian's spectrum, the bit allocation rule,
the `mixed_precision` construct's checks, and runs that set widths at warm-started weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import paperspec
from paperspec.runtime.checkpoint import latest_checkpoint
from paperspec.runtime.hessian import top_eigenvalue
from paperspec.runtime.mixed_precision import allocate_bits
from paperspec.runtime.train import Trainer, TrainingError, latest_run

# ---- power iteration ----


def logistic_loss(weight: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Convex in the weight: a positive semi-definite Hessian."""
    return torch.nn.functional.cross_entropy(x @ weight.T, y)


def tanh_net_loss(weight: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Not convex: the Hessian has eigenvalues of both signs."""
    hidden = torch.tanh(x @ weight.T)
    return ((hidden.sum(dim=1) - y.double()) ** 2).mean()


@pytest.mark.parametrize("loss_fn", [logistic_loss, tanh_net_loss])
def test_power_iteration_finds_the_eigenvalue_of_largest_magnitude(loss_fn) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(32, 5, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 3, (32,), generator=generator)
    weight = torch.randn(3, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    (gradient,) = torch.autograd.grad(loss_fn(weight, x, y), weight, create_graph=True)
    estimate = top_eigenvalue(gradient, weight, iterations=500, tol=1e-12, generator=generator)
    hessian = torch.autograd.functional.hessian(lambda w: loss_fn(w, x, y), weight.detach()).reshape(15, 15)
    spectrum = torch.linalg.eigvalsh(hessian)
    expected = spectrum[spectrum.abs().argmax()].item()
    assert estimate == pytest.approx(expected, rel=1e-6)


def test_a_zero_hessian_has_eigenvalue_zero() -> None:
    weight = torch.ones(2, 2, requires_grad=True)
    (gradient,) = torch.autograd.grad((weight * 3).sum(), weight, create_graph=True)
    assert top_eigenvalue(gradient, weight) == 0.0


# ---- the allocation rule ----


@pytest.mark.parametrize(
    "sensitivities, sizes, average, choices, expected",
    [
        ([1.0, 1.0, 1.0], [100, 100, 100], 3, (2, 3, 4), [4, 3, 2]),  # ties: the first layer is first
        ([0.1, 0.5, 0.9], [100, 100, 100], 3, (2, 3, 4), [2, 3, 4]),  # more sensitive, more bits
        ([0.1, 0.5, 0.9], [1000, 100, 10], 3, (2, 4, 8), [2, 8, 8]),  # small layers are cheap to raise
        ([0.9, 0.5, 0.1], [1000, 100, 10], 3, (2, 4, 8), [2, 8, 8]),  # the big one cannot afford 4 bits
        ([0.2, 0.9], [300, 100], 2.5, (2, 3, 4, 6), [2, 4]),  # 2 * 300 + 4 * 100 = 2.5 * 400
        ([0.2, 0.9], [300, 100], 2, (2, 3), [2, 2]),  # no room above the smallest choice
        ([0.9, 0.2], [300, 100], 4, (2, 4), [4, 4]),  # the budget of the largest choice buys it everywhere
    ],
)
def test_more_sensitive_layers_get_more_bits_within_the_budget(sensitivities, sizes, average, choices, expected) -> None:
    bits = allocate_bits(sensitivities, sizes, average, choices)
    assert bits == expected
    assert sum(b * n for b, n in zip(bits, sizes)) <= average * sum(sizes)


# ---- the construct ----

HEAD = """
model MLP(width: int = 8) {
  in x: f32[B, 64]
  h1 = linear(x, width)
  out logits = linear(relu(h1), 10)
}
model QMLP(width: int = 8) {
  in x: f32[B, 64]
  h1 = quant_linear(x, width)
  out logits = quant_linear(relu(h1), 10)
}
data digits_train = digits(split = "train")
train fp {
  model net = MLP()
  data digits_train
  loss cross_entropy(net(batch.x), batch.y)
  optimizer sgd(lr = 0.1)
  steps 30
}
"""

QUANTISED = """
train {name} after fp {{
  model q = {construct}
  data digits_train
  loss cross_entropy(q(batch.x), batch.y)
  optimizer sgd(lr = 0.01)
  steps 4
}}
"""

HESSIAN = "mixed_precision(warm_start(QMLP(), fp.net), average_bits = 3, choices = [2, 4, 8], batches = 2)"


def spec_with(construct: str, path: str = "m.pspec", name: str = "quantised") -> paperspec.Spec:
    return paperspec.loads(HEAD + QUANTISED.format(name=name, construct=construct), path)


@pytest.mark.parametrize(
    "construct, message",
    [
        ("mixed_precision(QMLP(), fp.net, average_bits = 3)", "`mixed_precision` takes one model"),
        ("mixed_precision(QMLP(), average_bits = 3, allocation = 'greedy')", "allocation must be one of hessian, uniform"),
        ("mixed_precision(QMLP(), average_bits = 9)", "average_bits must lie between the smallest and largest choice (2 and 8)"),
        ("mixed_precision(QMLP(), average_bits = 2.5, allocation = 'uniform')", "average_bits of a uniform allocation is every layer's width"),
        ("mixed_precision(QMLP(), average_bits = 3, choices = [1, 4])", "choices must be bit widths from 2 to 8, got [1, 4]"),
        ("mixed_precision(QMLP(), average_bits = 3, batches = 0)", "batches must be at least 1, got 0"),
        ("mixed_precision(QMLP(), average_bits = 3, iterations = 0)", "iterations must be at least 1, got 0"),
        ("mixed_precision(QMLP(), average_bits = 3, rate = 1)", "`mixed_precision` has no argument `rate`"),
        ("mixed_precision(QMLP())", "missing argument `average_bits` of `mixed_precision`"),
    ],
)
def test_bad_constructs_are_spec_errors(construct: str, message: str) -> None:
    with pytest.raises(paperspec.SpecError) as caught:
        spec_with(construct).procedures()
    assert message in caught.value.message
    assert caught.value.span.line == 22


def train_both(tmp_path: Path, construct: str) -> tuple:
    spec = spec_with(construct, str(tmp_path / "m.pspec"))
    out = str(tmp_path / "runs")
    Trainer(spec, "fp", out_root=out, progress=False).run()
    trainer = Trainer(spec, "quantised", out_root=out, progress=False, steps=0)
    result = trainer.run()
    return trainer, result


def test_a_hessian_allocation_is_computed_at_the_warm_started_weights(tmp_path: Path) -> None:
    trainer, result = train_both(tmp_path, HESSIAN)
    record = json.loads((result.run_dir / "q_bits.json").read_text())
    q = trainer.models["q"]
    assert record["layers"] == ["h1", "logits"] and record["sizes"] == [512, 80]
    assert all(e > 0 for e in record["eigenvalues"])
    assert record["bits"] == [float(q.h1.bits), float(q.logits.bits)]
    assert record["average_bits"] <= 3
    trained = load_file(latest_checkpoint(latest_run(tmp_path / "runs", trainer.spec, "fp")) / "net.safetensors")
    torch.testing.assert_close(q.h1.weight, trained["h1.weight"])


def test_a_uniform_allocation_gives_every_layer_the_average(tmp_path: Path) -> None:
    trainer, result = train_both(tmp_path, "mixed_precision(QMLP(), average_bits = 5, allocation = 'uniform')")
    record = json.loads((result.run_dir / "q_bits.json").read_text())
    assert record["bits"] == [5, 5] and record["eigenvalues"] is None


def test_a_model_without_quantised_layers_names_the_construct(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match=r"`model q = mixed_precision\(...\)` in `quantised`: the model has no quant_linear layer"):
        train_both(tmp_path, "mixed_precision(MLP(), average_bits = 3)")
