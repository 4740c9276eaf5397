"""langevin: against a hand-written loop, and sampling Gaussians from their exact scores."""

import textwrap

import pytest
import torch

import paperspec
from paperspec.compiler.backends.onnx import export_spec

SPEC = textwrap.dedent(
    """
    block Learned(d: int) {
      in x: f32[B, d]
      in sigma: f32[B]
      out linear(tanh(linear(x, 8)), d) / sigma[:, none]
    }
    block Gaussian(mean: float, std: float) {
      in x: f32[B, 2]
      in sigma: f32[B]
      out -(x - mean) / (std ** 2 + sigma[:, none] ** 2)
    }
    model Sampler(d: int = 2, steps: int = 3, seed: int = 5) {
      in x0: f32[B, d]
      in sigmas: f32[L]
      out langevin(Learned(d), x0, sigmas, steps = steps, step_size = 0.05, seed = seed)
    }
    model GaussianSampler(steps: int = 1000, step_size: float = 0.01) {
      in x0: f32[B, 2]
      in sigmas: f32[L]
      out langevin(Gaussian(3.0, 0.5), x0, sigmas, steps = steps, step_size = step_size, seed = 0)
    }
    """
)


@pytest.fixture(scope="module")
def spec():
    return paperspec.loads(SPEC, "sampling.pspec")


def hand_written_langevin(score, x, sigmas, steps, step_size, seed):
    generator = torch.Generator().manual_seed(seed)
    for sigma in sigmas.tolist():
        size = step_size * (sigma / sigmas[-1].item()) ** 2
        for _ in range(steps):
            noise = torch.randn(x.shape, generator=generator)
            x = x + size / 2 * score(x, torch.full((x.shape[0],), sigma)) + size**0.5 * noise
    return x


def test_langevin_matches_a_hand_written_loop(spec):
    torch.manual_seed(0)
    model = spec.build("Sampler")
    x0, sigmas = torch.randn(4, 2), torch.tensor([3.0, 1.5, 0.5])
    with torch.no_grad():
        got = model(x0, sigmas)
        expected = hand_written_langevin(model.learned, x0, sigmas, steps=3, step_size=0.05, seed=5)
    torch.testing.assert_close(got, expected)


def test_a_seed_fixes_the_samples_and_none_uses_the_global_generator(spec):
    x0, sigmas = torch.randn(4, 2), torch.tensor([1.0])
    with torch.no_grad():
        seeded = spec.build("Sampler")
        assert torch.equal(seeded(x0, sigmas), seeded(x0, sigmas))
        unseeded = paperspec.loads(SPEC.replace("seed = seed)", "seed = none)"), "s.pspec").build("Sampler")
        torch.manual_seed(1)
        first = unseeded(x0, sigmas)
        torch.manual_seed(1)
        assert torch.equal(unseeded(x0, sigmas), first)
        assert not torch.equal(unseeded(x0, sigmas), first)


def test_plain_langevin_with_the_exact_score_samples_the_gaussian(spec):
    """One level: the score of N(3, 0.5^2 + sigma^2) at sigma = 0.01 is about that of N(3, 0.25);
    with step a the chain's stationary variance is s^2 / (1 - a / (4 s^2)), 1% above s^2 here."""
    model = spec.build("GaussianSampler")
    with torch.no_grad():
        samples = model(torch.zeros(4000, 2), torch.tensor([0.01]))
    assert abs(samples.mean().item() - 3.0) < 0.02
    assert abs(samples.std().item() - 0.5) < 0.015


def test_annealed_langevin_ends_at_the_last_levels_perturbed_gaussian(spec):
    """From far away (x0 = -20) down a ladder 10 > 3 > 1: the samples are N(3, 0.5^2 + 1^2)."""
    model = spec.build("GaussianSampler", steps=1000, step_size=0.02)
    with torch.no_grad():
        samples = model(torch.full((4000, 2), -20.0), torch.tensor([10.0, 3.0, 1.0]))
    assert abs(samples.mean().item() - 3.0) < 0.04
    assert abs(samples.std().item() - 1.25**0.5) < 0.03


SCORE = "block S(d: int) {\n  in x: f32[B, d]\n  in sigma: f32[B]\n  out x * 2.0\n}\n"


def sampler_error(body: str) -> paperspec.SpecError:
    """The error of `model M` made of `body` (`;`-separated), with the score block S above it
    (spec_helpers' `spec_error` writes a model alone, and langevin needs a block)."""
    with pytest.raises(paperspec.SpecError) as caught:
        paperspec.loads(SCORE + "model M() {\n" + body.replace("; ", "\n") + "\n}\n", "bad.pspec").graph("M")
    return caught.value


@pytest.mark.parametrize(
    "body, message",
    [
        ("in x: f32[B, 2]; in s: f32[L, 2]; out langevin(S(2), x, s)", "non-empty 1-D tensor of noise levels"),
        ("in x: f32[B, 2]; in s: f64[L]; out langevin(S(2), x, s)", "one dtype"),
        ("in x: f32[B, 2]; in s: f32[L]; out langevin(S(2), x, s, steps = 0)", "at least 1"),
        ("in x: f32[B, 2]; in s: f32[L]; out langevin(S(2), x, s, step_size = 0.0)", "must be positive"),
        ("in x: f32[]; in s: f32[L]; out langevin(S(2), x, s)", "batch of starting points"),
    ],
)
def test_bad_arguments_are_spec_errors_at_the_call(body, message):
    error = sampler_error(body)
    assert message in error.message
    assert error.span.line == 9


def test_a_score_of_the_wrong_type_is_an_error_at_the_block():
    text = SCORE.replace("out x * 2.0", "out x[:, 0]")
    with pytest.raises(paperspec.SpecError) as caught:
        paperspec.loads(text + "model M() {\n  in x: f32[B, 2]\n  in s: f32[L]\n  out langevin(S(2), x, s)\n}\n").graph("M")
    assert "score of x's type" in caught.value.message and caught.value.span.line == 9


def test_langevin_is_not_exportable_with_the_reason(spec):
    with pytest.raises(paperspec.SpecError, match="`langevin` cannot be exported to ONNX: .*generator") as caught:
        export_spec(spec, "Sampler")
    assert caught.value.span.line == 15

