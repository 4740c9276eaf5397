"""Kuramoto-Sivashinsky data: the ETDRK4 solver against exact solutions and its own refinements, and the observed batches."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

import paperspec
from paperspec import SpecError
from paperspec.runtime.data import Field, get_generator
from paperspec.runtime.data.timepdes import KSGrid, random_initial_conditions, solve_ks

CHAOTIC = KSGrid(128, 64.0, 1.0)  # the memno spec's grid


def initial_states(grid: KSGrid, count: int = 4, seed: int = 0) -> np.ndarray:
    return random_initial_conditions(np.random.default_rng(seed), count, grid)


def draw(**args) -> dict:
    definition = get_generator("kuramoto_sivashinsky")
    sampler = definition.sampler(definition.bind(**args))
    return {name: tensor.numpy() for name, tensor in sampler.all().items()}


# ---- the solver ----


@pytest.mark.parametrize("mode", [1, 5, 9, 20])
def test_small_amplitudes_follow_the_linear_growth_rates(mode):
    """At amplitude 1e-6 the nonlinear term is 1e-6 of the linear ones: a mode grows or decays by exp((k^2 - k^4) t)."""
    x = np.arange(CHAOTIC.points) * CHAOTIC.length / CHAOTIC.points
    k = 2 * np.pi * mode / CHAOTIC.length
    u0 = 1e-6 * np.cos(k * x)
    times = np.array([0.5, 1.0, 3.0])
    exact = np.exp((k**2 - k**4) * times)[:, None] * u0
    np.testing.assert_allclose(solve_ks(u0, CHAOTIC, times, 0.1), exact, rtol=1e-5, atol=1e-6 * 1e-5)


SMALL = KSGrid(32, 22.0, 1.0)  # Kassam and Trefethen's chaotic KS domain, small enough for an implicit solver


@functools.cache
def radau_reference(time: float = 5.0) -> tuple:
    """(u0, u(time)) by scipy's Radau (implicit, adaptive, tight tolerances) on the Fourier ODEs, written out plainly."""
    u0 = initial_states(SMALL, count=1)[0]
    k = 2 * np.pi / SMALL.length * np.arange(SMALL.points // 2 + 1)
    kept = np.arange(len(k)) < SMALL.points / 3

    def right_hand_side(_, packed):
        v = packed[: len(k)] + 1j * packed[len(k) :]
        u = np.fft.irfft(v, n=SMALL.points)
        dv = (k**2 - k**4) * v - 0.5j * k * kept * np.fft.rfft(u * u)
        return np.concatenate([dv.real, dv.imag])

    v0 = np.fft.rfft(u0)
    solution = solve_ivp(right_hand_side, (0, time), np.concatenate([v0.real, v0.imag]), method="Radau", rtol=1e-11, atol=1e-13, t_eval=[time])
    return u0, np.fft.irfft(solution.y[: len(k), -1] + 1j * solution.y[len(k) :, -1], n=SMALL.points)


def test_matches_an_adaptive_implicit_solver():
    u0, reference = radau_reference()
    np.testing.assert_allclose(solve_ks(u0, SMALL, np.array([5.0]), 0.025)[0], reference, atol=2e-6)


def test_time_step_convergence_is_fourth_order():
    u0, reference = radau_reference()
    errors = [np.abs(solve_ks(u0, SMALL, np.array([5.0]), dt)[0] - reference).max() for dt in (0.05, 0.025, 0.0125)]
    ratios = [errors[0] / errors[1], errors[1] / errors[2]]
    # 2^4 = 16 per halving once dt is small; at larger steps the stiff modes cost some order
    assert 12 < ratios[0] < 20 and 14 < ratios[1] < 20, ratios


def test_the_spec_grid_resolves_the_field():
    """128 points on [0, 64) agree with 256 to 1e-4 of the field's size over 10 time units."""
    fine = KSGrid(256, 64.0, 1.0)
    u0 = initial_states(fine)
    times = np.array([2.0, 10.0])
    coarse_run = solve_ks(u0[:, ::2], CHAOTIC, times, 0.1)
    fine_run = solve_ks(u0, fine, times, 0.1)[..., ::2]
    assert np.abs(coarse_run - fine_run).max() < 1e-4 * np.abs(fine_run).max()


def test_the_mean_is_conserved():
    """(u^2 / 2)_x and the derivatives integrate to zero on a periodic domain."""
    u0 = initial_states(CHAOTIC) + np.array([[0.0], [0.3], [-1.0], [2.0]])
    u = solve_ks(u0, CHAOTIC, np.array([5.0, 20.0, 40.0]), 0.1)
    np.testing.assert_allclose(u.mean(axis=-1), np.repeat(u0.mean(axis=-1)[:, None], 3, axis=1), atol=1e-12)


def test_energy_decays_when_every_mode_is_linearly_stable():
    """On a domain shorter than 2 pi every k > 1, so k^2 - k^4 < 0, and u u_x adds no energy."""
    grid = KSGrid(64, 5.0, 1.0)
    assert grid.linear_rates[1:].max() < -0.9
    u = solve_ks(4 * initial_states(grid), grid, np.linspace(0, 10, 21), 0.05)
    energy = (u**2).mean(axis=-1)
    assert np.all(np.diff(energy, axis=-1) < 0)
    assert np.all(energy[:, -1] < 1e-6 * energy[:, 0])


def test_time_zero_gives_the_initial_state_and_times_must_be_whole_steps():
    u0 = initial_states(CHAOTIC)
    np.testing.assert_allclose(solve_ks(u0, CHAOTIC, np.array([0.0]), 0.1)[:, 0], u0)
    with pytest.raises(AssertionError, match="whole, increasing steps"):
        solve_ks(u0, CHAOTIC, np.array([0.25]), 0.1)


# ---- the generator ----


def test_fields_and_batches():
    definition = get_generator("kuramoto_sivashinsky")
    args = definition.bind(resolution=16, frames=5, trajectories=6)
    assert definition.fields(args) == {"past": Field("f32", (5, 16)), "next": Field("f32", (16,))}
    batch = definition.sampler(args).sample(4, torch.Generator().manual_seed(0))
    assert batch["past"].shape == (4, 5, 16) and batch["next"].shape == (4, 16)
    assert batch["past"].dtype == batch["next"].dtype == torch.float32
    assert definition.sampler(args).size == 6


def test_frames_are_the_solution_on_every_nth_point_at_the_observation_times():
    data = draw(resolution=32, frames=3, interval=0.5, warmup=2.0, trajectories=3, seed=4)
    again = draw(resolution=32, frames=3, interval=0.5, warmup=2.0, trajectories=3, seed=4)
    np.testing.assert_array_equal(data["past"], again["past"])
    # the frames come from the solver: stepping the last observed frame's full field on gives `next`
    u0 = random_initial_conditions(np.random.default_rng([4, *b"kuramoto_sivashinsky/train"]), 3, CHAOTIC)
    fine = solve_ks(u0, CHAOTIC, np.array([2.0, 2.5, 3.0, 3.5]), 0.1)
    np.testing.assert_allclose(data["past"], fine[:, :3, ::4], atol=1e-5)
    np.testing.assert_allclose(data["next"], fine[:, 3, ::4], atol=1e-5)


def test_noise_is_added_to_the_past_frames_only():
    clean = draw(resolution=16, trajectories=200, warmup=2.0, seed=1)
    noisy = draw(resolution=16, trajectories=200, warmup=2.0, noise=0.2, seed=1)
    np.testing.assert_array_equal(clean["next"], noisy["next"])
    difference = noisy["past"] - clean["past"]
    assert abs(difference.mean()) < 0.01
    assert abs(difference.std() - 0.2) < 0.005  # 25,600 draws: the std's standard error is 0.001


def test_splits_and_seeds_give_other_trajectories_on_the_attractor():
    train, test, other = draw(trajectories=64), draw(trajectories=64, split="test"), draw(trajectories=64, seed=1)
    assert not np.allclose(train["next"], test["next"]) and not np.allclose(train["next"], other["next"])
    rms = np.sqrt((train["next"] ** 2).mean())
    assert 1.1 < rms < 1.5  # the attractor's amplitude at viscosity 1 (about 1.3), not the initial 0.5-ish states


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"grid": 100, "resolution": 24}, "divide grid = 100"),
        ({"grid": 7}, "even grid >= 8"),
        ({"resolution": 2, "grid": 8}, "resolution must be >= 4"),
        ({"frames": 0}, "frames >= 1"),
        ({"viscosity": 0.0}, "viscosity must be > 0"),
        ({"noise": -0.1}, "noise must be >= 0"),
        ({"split": "valid"}, "split must be 'train' or 'test'"),
        ({"seed": -1}, "seed must be >= 0"),
    ],
)
def test_bad_arguments_are_rejected(args, message):
    with pytest.raises(ValueError, match=message):
        get_generator("kuramoto_sivashinsky").bind(**args)


def test_a_bad_argument_in_a_spec_is_an_error_at_the_data_declaration():
    text = """\
model M(s: int = 16) {
  in past: f32[B, 8, s]
  out linear(past[:, -1], s)
}
data ks = kuramoto_sivashinsky(resolution = 24, trajectories = 8)
train fit {
  model net = M()
  data ks
  loss mse(net(batch.past), batch.next)
  steps 2
}
"""
    with pytest.raises(SpecError, match="resolution must be >= 4 and divide grid = 128, got 24") as error:
        paperspec.loads(text, "ks.pspec").procedures()
    assert (error.value.span.line, error.value.span.column) == (5, 11)
