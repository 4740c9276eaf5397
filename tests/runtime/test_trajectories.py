"""The trajectories generator against the ODE's closed-form solution and scipy's expm."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch

import paperspec
from paperspec import SpecError
from paperspec.runtime.data import get_generator
from paperspec.runtime.data.trajectories import expm_2x2, system_matrix

# (system, damping, frequency): a spiral, and under-, critically and over-damped oscillators.
SYSTEMS = [("spiral", 0.1, 1.0), ("oscillator", 0.2, 1.5), ("oscillator", 1.5, 1.5), ("oscillator", 2.0, 1.0), ("spiral", 0.0, 0.0)]


def sample(batch_size: int = 64, stream_seed: int = 0, **args):
    definition = get_generator("trajectories")
    sampler = definition.sampler(definition.bind(**args))
    batch = sampler.sample(batch_size, torch.Generator().manual_seed(stream_seed))
    return sampler, {key: value.double().numpy() for key, value in batch.items()}


@pytest.mark.parametrize(("system", "damping", "frequency"), SYSTEMS)
def test_closed_form_flow_matches_scipy_expm(system, damping, frequency):
    linalg = pytest.importorskip("scipy.linalg")
    matrix = system_matrix(system, damping, frequency)
    times = np.linspace(0.0, 7.0, 9)
    expected = np.stack([linalg.expm(matrix * t) for t in times])
    np.testing.assert_allclose(expm_2x2(matrix, times), expected, rtol=1e-10, atol=1e-12)


def test_spiral_states_are_the_damped_rotation_of_y0():
    _, batch = sample(system="spiral", points=11, horizon=4.0, damping=0.3, frequency=2.0)
    t, y0 = batch["t"][0], batch["y0"]
    decay, angle = np.exp(-0.3 * t), 2.0 * t
    x = decay * (np.cos(angle) * y0[:, :1] + np.sin(angle) * y0[:, 1:])
    y = decay * (-np.sin(angle) * y0[:, :1] + np.cos(angle) * y0[:, 1:])
    np.testing.assert_allclose(batch["ys"], np.stack([x, y], axis=-1), atol=1e-5)


@pytest.mark.parametrize(("system", "damping", "frequency"), SYSTEMS[:4])
def test_states_solve_the_ode(system, damping, frequency):
    """Central differences of the trajectory equal A y (the ODE itself, not its solution)."""
    sampler, batch = sample(system=system, points=2001, horizon=2.0, damping=damping, frequency=frequency)
    ys, dt = batch["ys"], batch["t"][0, 1] - batch["t"][0, 0]
    slope = (ys[:, 2:] - ys[:, :-2]) / (2 * dt)
    np.testing.assert_allclose(slope, ys[:, 1:-1] @ sampler.matrix.T, atol=2e-3)
    np.testing.assert_allclose(ys[:, 0], batch["y0"], atol=1e-6)


def test_time_grid_is_shared_and_initial_states_are_uniform():
    _, batch = sample(batch_size=20000, points=5, horizon=2.0, radius=3.0)
    assert (batch["t"] == np.linspace(0.0, 2.0, 5)).all()
    y0 = batch["y0"]
    assert np.abs(y0).max() <= 3.0
    np.testing.assert_allclose(y0.mean(axis=0), 0.0, atol=0.06)
    np.testing.assert_allclose(y0.var(axis=0), 9.0 / 3.0, rtol=0.03)  # U[-r, r] has variance r^2 / 3


def test_observation_noise_has_the_stated_deviation():
    _, clean = sample(batch_size=4000, stream_seed=5, points=10)
    _, noisy = sample(batch_size=4000, stream_seed=5, points=10, noise=0.2)
    np.testing.assert_array_equal(clean["y0"], noisy["y0"])
    residual = noisy["ys"] - clean["ys"]
    assert abs(residual.mean()) < 0.005 and abs(residual.std() - 0.2) < 0.003


def test_longer_horizon_shares_the_fields():
    definition = get_generator("trajectories")
    short, long = definition.bind(points=20, horizon=5.0), definition.bind(points=40, horizon=10.0)
    assert definition.fields(short) == definition.fields(long)
    assert definition.symbols(long) == {"K": 40}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"system": "pendulum"}, "system must be 'spiral' or 'oscillator'"),
        ({"points": 1}, "points >= 2"),
        ({"horizon": 0.0}, "horizon > 0"),
        ({"damping": -0.1}, "damping and frequency must be >= 0"),
        ({"radius": 0.0}, "radius > 0"),
        ({"noise": -1.0}, "noise is a standard deviation"),
    ],
)
def test_bad_arguments_are_rejected(args, message):
    with pytest.raises(ValueError, match=message):
        get_generator("trajectories").bind(**args)


def test_bad_argument_in_a_spec_is_an_error_at_the_declaration():
    text = textwrap.dedent(
        """
        model Id() {
          in y0: f32[B, 2]
          out linear(y0, 2)
        }
        data orbits = trajectories(system = "pendulum")
        train fit {
          model net = Id()
          data orbits
          loss mse(net(batch.y0), batch.ys[:, 0])
          optimizer adam()
          steps 1
        }
        """
    )
    with pytest.raises(SpecError, match="system must be 'spiral' or 'oscillator'") as caught:
        paperspec.loads(text, "orbits.pspec").procedures()
    assert caught.value.span.line == 6
