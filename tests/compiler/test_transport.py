"""ot_pairing and sliced_wasserstein: against brute force over permutations, scipy's 1-D
Wasserstein distance and the closed form for two Gaussians; errors; not exportable."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
import scipy.stats
import torch
from spec_helpers import model_spec, spec_error

import paperspec
from paperspec.compiler.backends.onnx import export_spec

SPEC = """
model Pairing() {
  in x0: f64[N, D]
  in x1: f64[N, D]
  out paired = ot_pairing(x0, x1)
}
model ConditionalPairing() {
  in x0: f64[N, D]
  in x1: f64[N, D]
  in condition: i64[N]
  out paired = ot_pairing(x0, x1, condition = condition)
}
model Distance(projections: int = 128, p: float = 2.0, seed: int = 0) {
  in a: f64[N, D]
  in b: f64[N, D]
  out sliced_wasserstein(a, b, projections = projections, p = p, seed = seed)
}
model ConditionalDistance(projections: int = 64, p: float = 2.0) {
  in a: f64[N, D]
  in b: f64[N, D]
  in condition: i64[N]
  out sliced_wasserstein(a, b, condition, projections = projections, p = p)
}
"""


@pytest.fixture(scope="module")
def spec() -> paperspec.Spec:
    return paperspec.loads(SPEC, "<transport>")


# ---- independent references ----


def brute_force_cost(x0: np.ndarray, x1: np.ndarray, condition: np.ndarray | None = None) -> float:
    """The least total squared distance over every permutation (pairing only equal conditions)."""
    n = len(x0)
    best = np.inf
    for order in itertools.permutations(range(n)):
        if condition is not None and any(condition[order[j]] != condition[j] for j in range(n)):
            continue
        best = min(best, sum(float(np.sum((x0[order[j]] - x1[j]) ** 2)) for j in range(n)))
    return best


def total_cost(paired: np.ndarray, x1: np.ndarray) -> float:
    return float(np.sum((paired - x1) ** 2))


def same_rows(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether a's rows are b's rows in some order."""
    return np.array_equal(a[np.lexsort(a.T[::-1])], b[np.lexsort(b.T[::-1])])


# ---- ot_pairing ----


@pytest.mark.parametrize("n, dim, seed", [(2, 1, 0), (4, 2, 1), (6, 2, 2), (7, 3, 3)])
def test_ot_pairing_finds_the_least_cost_permutation(spec, n, dim, seed):
    rng = np.random.default_rng(seed)
    x0, x1 = rng.standard_normal((n, dim)), rng.standard_normal((n, dim)) + 1.0
    paired = spec.build("Pairing")(torch.from_numpy(x0), torch.from_numpy(x1)).numpy()
    assert same_rows(paired, x0)
    assert total_cost(paired, x1) == pytest.approx(brute_force_cost(x0, x1), rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ot_pairing_with_a_condition_pairs_only_equal_conditions(spec, seed):
    rng = np.random.default_rng(seed)
    x0, x1 = rng.standard_normal((7, 2)), rng.standard_normal((7, 2))
    condition = rng.integers(0, 3, size=7)
    paired = spec.build("ConditionalPairing")(*map(torch.from_numpy, (x0, x1, condition))).numpy()
    for value in np.unique(condition):  # each condition's x0 rows stay with that condition
        assert same_rows(paired[condition == value], x0[condition == value])
    assert total_cost(paired, x1) == pytest.approx(brute_force_cost(x0, x1, condition), rel=1e-12)
    assert total_cost(paired, x1) >= brute_force_cost(x0, x1) - 1e-12


def test_ot_pairing_undoes_a_shuffle_of_nearby_points(spec):
    x1 = torch.randn(50, 3, dtype=torch.float64)
    shuffle = torch.randperm(50)
    x0 = x1[shuffle] + 1e-3 * torch.randn(50, 3, dtype=torch.float64)
    paired = spec.build("Pairing")(x0, x1)
    torch.testing.assert_close(paired, x1, atol=1e-2, rtol=0)


def test_ot_pairing_passes_gradients_to_the_chosen_rows(spec):
    x0 = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    x1 = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    weights = torch.arange(10, dtype=torch.float64).reshape(5, 2)
    paired = spec.build("Pairing")(x0, x1)
    (paired * weights).sum().backward()
    order = [int((x0.detach() == row).all(dim=1).nonzero()) for row in paired.detach()]
    torch.testing.assert_close(x0.grad[order], weights)
    assert x1.grad is None  # the pairing is a constant


# ---- sliced_wasserstein ----


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sliced_wasserstein_in_one_dimension_is_scipys_wasserstein_distance(spec, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(40), 2.0 * rng.standard_normal(40) + 0.5
    got = spec.build("Distance", projections=3, p=1.0)(torch.from_numpy(a[:, None]), torch.from_numpy(b[:, None]))
    assert float(got) == pytest.approx(scipy.stats.wasserstein_distance(a, b), rel=1e-12)


def test_sliced_wasserstein_p2_in_one_dimension_pairs_sorted_values(spec):
    a, b = torch.randn(30, 1, dtype=torch.float64), torch.rand(30, 1, dtype=torch.float64)
    got = spec.build("Distance", projections=2)(a, b)
    expected = np.sqrt(np.mean((np.sort(a.numpy()[:, 0]) - np.sort(b.numpy()[:, 0])) ** 2))
    assert float(got) == pytest.approx(expected, rel=1e-12)


def test_sliced_wasserstein_between_gaussians_matches_the_closed_form(spec):
    """For N(m1, s1^2 I) and N(m2, s2^2 I) in d dims, a unit direction u projects them to
    N(u.m1, s1^2) and N(u.m2, s2^2), whose W2^2 is (u.(m1 - m2))^2 + (s1 - s2)^2; averaged over
    the sphere, SW2^2 = |m1 - m2|^2 / d + (s1 - s2)^2. Monte Carlo over 500 directions and 5000
    points per set: within 2% at five data seeds, so the test allows 3%."""
    generator = torch.Generator().manual_seed(0)
    shift, s1, s2, dim = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64), 0.5, 1.5, 3
    a = s1 * torch.randn(5000, dim, generator=generator, dtype=torch.float64)
    b = shift + s2 * torch.randn(5000, dim, generator=generator, dtype=torch.float64)
    got = spec.build("Distance", projections=500)(a, b)
    expected = np.sqrt(float(shift.square().sum()) / dim + (s1 - s2) ** 2)
    assert float(got) == pytest.approx(expected, rel=0.03)


def test_sliced_wasserstein_is_zero_between_a_set_and_its_shuffle_and_fixed_by_its_seed(spec):
    a, b = torch.randn(20, 2, dtype=torch.float64), torch.randn(20, 2, dtype=torch.float64)
    assert float(spec.build("Distance")(a, a[torch.randperm(20)])) == pytest.approx(0.0, abs=1e-12)
    first, again = spec.build("Distance", seed=3)(a, b), spec.build("Distance", seed=3)(a, b)
    assert float(first) == float(again) != float(spec.build("Distance", seed=4)(a, b))


def test_sliced_wasserstein_with_a_condition_weights_each_condition_by_its_count(spec):
    a, b = torch.randn(30, 2, dtype=torch.float64), torch.randn(30, 2, dtype=torch.float64) + 1
    condition = torch.tensor([0] * 10 + [1] * 20)
    got = spec.build("ConditionalDistance", p=1.0)(a, b, condition)
    apart = spec.build("Distance", projections=64, p=1.0)
    expected = (10 * apart(a[:10], b[:10]) + 20 * apart(a[10:], b[10:])) / 30
    torch.testing.assert_close(got, expected)


def test_sliced_wasserstein_trains_as_a_loss():
    spec = model_spec("in a: f32[N, 2]; in b: f32[N, 2]; out sliced_wasserstein(a + linear(a, 2), b)")
    a = torch.randn(16, 2)
    value = spec.build()(a, a + 3)
    value.backward()
    assert value.item() > 0


# ---- errors and export ----


ERRORS = [
    ("in a: f32[N, 2]; in b: f32[N, 3]; out ot_pairing(a, b)", "same shape"),
    ("in a: f32[N, 2]; in b: f32[M, 2]; out sliced_wasserstein(a, b)", "same shape"),
    ("in a: f32[N]; in b: f32[N]; out ot_pairing(a, b)", r"points as rows, \[N, \.\.\.\]"),
    ("in a: i64[N, 2]; in b: i64[N, 2]; out sliced_wasserstein(a, b)", "floating"),
    ("in a: f32[N, 2]; in b: f32[N, 2]; in c: f32[N]; out ot_pairing(a, b, condition = c)", "integer condition"),
    ("in a: f32[N, 2]; in b: f32[N, 2]; in c: i64[M]; out ot_pairing(a, b, condition = c)", r"one value per row, \[N\]"),
    ("in a: f32[N, 2]; in b: f32[N, 2]; out sliced_wasserstein(a, b, projections = 0)", "projections must be >= 1"),
    ("in a: f32[N, 2]; in b: f32[N, 2]; out sliced_wasserstein(a, b, p = 0.5)", "p must be >= 1"),
]


@pytest.mark.parametrize("body, message", ERRORS)
def test_bad_arguments_are_spec_errors_at_the_call(body, message):
    error = spec_error(body)
    assert error.span is not None and error.span.line >= 2
    assert re.search(message, error.message), error.format()


@pytest.mark.parametrize(
    "body, op",
    [
        ("in a: f32[N, 2]; in b: f32[N, 2]; out ot_pairing(a, b)", "ot_pairing"),
        ("in a: f32[N, 2]; in b: f32[N, 2]; out sliced_wasserstein(a, b)", "sliced_wasserstein"),
    ],
)
def test_neither_op_exports_and_the_error_says_why(body, op):
    with pytest.raises(paperspec.SpecError, match=f"`{op}` cannot be exported to ONNX: .*(scipy|sorts)") as caught:
        export_spec(model_spec(body))
    assert caught.value.span is not None and caught.value.span.line == 4
