"""The Darcy-flow generator: its solver against the analytic Poisson solution and an independent
stencil, its coefficient statistics, its splits, and its argument errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import paperspec
from paperspec import SpecError
from paperspec.runtime.data import get_generator
from paperspec.runtime.data.pdes import HIGH, LOW, darcy_split, solve_darcy

# -Laplacian(u) = 1 on the unit square, u = 0 on the boundary, at the centre: the double sine
# series (16 / pi^4) sum over odd m, n of (-1)^((m + n) / 2 - 1) / (m n (m^2 + n^2)).
ODD = np.arange(1, 400, 2)
SIGNS = np.where((ODD // 2) % 2 == 0, 1.0, -1.0)  # sin(m pi / 2) for odd m
POISSON_CENTRE = 16 / np.pi**4 * np.sum(np.outer(SIGNS, SIGNS) / (np.outer(ODD, ODD) * (ODD[:, None] ** 2 + ODD[None, :] ** 2)))


def split(**args) -> dict:
    definition = get_generator("darcy")
    return darcy_split(definition.bind(**args))


def harmonic(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return 2 * p * q / (p + q)


def flux_residual(a: np.ndarray, u: np.ndarray) -> np.ndarray:
    """-div(a grad u) - 1 at the interior nodes, written as the difference of the four face fluxes."""
    h = 1.0 / (a.shape[0] - 1)
    centre = (slice(1, -1), slice(1, -1))
    outflow = np.zeros_like(u[centre])
    for shift in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        neighbour = tuple(slice(1 + s, a.shape[0] - 1 + s) for s in shift)
        outflow += harmonic(a[centre], a[neighbour]) * (u[centre] - u[neighbour])
    return outflow / h**2 - 1.0


def test_the_series_gives_the_known_centre_value():
    assert POISSON_CENTRE == pytest.approx(0.0736713532814, abs=1e-8)  # the series truncated at m, n < 400


def test_constant_coefficient_solves_the_discrete_poisson_equation():
    u = solve_darcy(np.ones((17, 17)))
    h = 1 / 16
    laplacian = (4 * u[1:-1, 1:-1] - u[2:, 1:-1] - u[:-2, 1:-1] - u[1:-1, 2:] - u[1:-1, :-2]) / h**2
    assert np.abs(laplacian - 1.0).max() < 1e-10
    assert np.all(u[0] == 0) and np.all(u[-1] == 0) and np.all(u[:, 0] == 0) and np.all(u[:, -1] == 0)


def test_constant_coefficient_converges_to_the_series_at_second_order():
    errors = [abs(solve_darcy(np.ones((n, n)))[n // 2, n // 2] - POISSON_CENTRE) for n in (17, 33)]
    assert errors[1] < 1e-4
    assert 3.5 < errors[0] / errors[1] < 4.5  # halving h divides the error by 4


def test_constant_coefficient_scales_the_solution():
    assert np.allclose(solve_darcy(np.full((12, 12), 4.0)), solve_darcy(np.ones((12, 12))) / 4, atol=1e-15)


def test_two_phase_solutions_satisfy_the_flux_form_with_harmonic_face_means():
    data = split(resolution=14, samples=4)
    for a, u in zip(data["a"], data["u"]):
        assert np.abs(flux_residual(a, u)).max() < 1e-9
        assert u[1:-1, 1:-1].min() > 0  # the maximum principle: a positive source, zero boundary


def test_symmetric_coefficients_give_symmetric_solutions():
    a = split(resolution=16, samples=1)["a"][0]
    symmetric = np.maximum(a, a.T)
    assert np.array_equal(symmetric, symmetric.T)
    u = solve_darcy(symmetric)
    assert np.abs(u - u.T).max() < 1e-14
    assert np.abs(solve_darcy(a[::-1]) - solve_darcy(a)[::-1]).max() < 1e-14


def test_coefficients_take_two_values_in_balanced_correlated_patches():
    a = split(resolution=16, samples=256)["a"]
    assert set(np.unique(a)) == {LOW, HIGH}
    assert 0.45 < np.mean(a == HIGH) < 0.55
    # a thresholded smooth field, not per-node noise: neighbours mostly share their value
    assert np.mean(a[:, 1:] == a[:, :-1]) > 0.8


def test_splits_are_deterministic_and_disjoint():
    train, again, test = split(samples=8), split(samples=8), split(samples=8, split="test")
    assert np.array_equal(train["a"], again["a"]) and np.array_equal(train["u"], again["u"])
    assert not any(np.array_equal(x, y) for x in train["a"] for y in test["a"])
    assert not np.array_equal(split(samples=8, seed=1)["a"], train["a"])


def test_sampler_gives_the_declared_fields_of_a_finite_split():
    definition = get_generator("darcy")
    args = definition.bind(resolution = 10, samples = 12)
    sampler = definition.sampler(args)
    assert sampler.size == 12
    batch = sampler.sample(5, torch.Generator().manual_seed(0))
    for name, field in definition.fields(args).items():
        assert field.dtype == "f32" and field.shape == (10, 10)
        assert batch[name].dtype == torch.float32 and batch[name].shape == (5, 10, 10)


@pytest.mark.parametrize(
    "args, message",
    [
        ({"resolution": 2}, "darcy needs 3 <= resolution <= 64"),
        ({"resolution": 65}, "darcy needs 3 <= resolution <= 64"),
        ({"samples": 0}, "darcy needs samples >= 1, got 0"),
        ({"split": "validation"}, "split must be 'train' or 'test', got 'validation'"),
        ({"seed": -1}, "seed must be >= 0, got -1"),
    ],
)
def test_bad_arguments_are_clear_errors(args, message):
    with pytest.raises(ValueError, match=message):
        get_generator("darcy").bind(**args)


def test_bad_arguments_in_a_spec_are_errors_at_the_data_declaration():
    text = "data flows = darcy(resolution = 100)\n"
    with pytest.raises(SpecError, match="resolution <= 64") as caught:
        paperspec.loads(text, "bad.pspec").check()
    assert caught.value.span.line == 1
