"""Collocation points and reference solutions for convection-diffusion: the reference against the
analytic solution and an independent finite-difference solver, the points' layout and statistics."""

import math
import textwrap

import numpy as np
import pytest
import torch

import paperspec
from paperspec import SpecError
from paperspec.runtime.data import get_generator
from paperspec.runtime.data.collocation import ConvectionDiffusion, initial_values

LENGTH = 2 * math.pi


def sampler(name: str, **args):
    definition = get_generator(name)
    return definition.sampler(definition.bind(**args))


def draw(stream_seed: int = 0, batch: int = 4096, **args) -> dict:
    points = sampler("convection_diffusion_points", **args).sample(batch, torch.Generator().manual_seed(stream_seed))
    return {key: value.double().numpy() for key, value in points.items()}


@pytest.mark.parametrize(("c", "nu"), [(0.0, 0.0), (1.0, 0.0), (30.0, 0.05), (-4.0, 0.5)])
def test_reference_for_sin_is_the_analytic_solution(c, nu):
    rng = np.random.default_rng(0)
    x, t = rng.uniform(0, LENGTH, 500), rng.uniform(0, 1, 500)
    expected = np.exp(-nu * t) * np.sin(x - c * t)
    assert np.allclose(ConvectionDiffusion(c, nu, "sin")(x, t), expected, atol=1e-12)


def finite_difference_solution(c: float, nu: float, cells: int, duration: float) -> tuple:
    """Method of lines: second-order central differences on a periodic grid, RK4 in time with a
    step small enough that the time error stays below the space error."""
    x = np.arange(cells) * LENGTH / cells
    dx = LENGTH / cells
    steps = math.ceil(duration / min(0.1 * dx / max(abs(c), 1e-9), 0.1 * dx**2 / max(nu, 1e-9)))
    dt = duration / steps

    def rate(u):
        right, left = np.roll(u, -1), np.roll(u, 1)
        return -c * (right - left) / (2 * dx) + nu * (right - 2 * u + left) / dx**2

    u = initial_values("gaussian", x)
    for _ in range(steps):
        k1 = rate(u)
        k2 = rate(u + dt / 2 * k1)
        k3 = rate(u + dt / 2 * k2)
        k4 = rate(u + dt * k3)
        u = u + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x, u


def test_finite_differences_converge_to_the_reference_at_second_order():
    c, nu, duration = 2.0, 0.1, 0.5
    reference = ConvectionDiffusion(c, nu, "gaussian")
    errors = []
    for cells in (32, 64, 128):
        x, u = finite_difference_solution(c, nu, cells, duration)
        errors.append(np.abs(u - reference(x, duration)).max())
    orders = [math.log2(coarse / fine) for coarse, fine in zip(errors, errors[1:])]
    assert errors[-1] < 2e-3
    assert all(1.8 < order < 2.2 for order in orders), orders


def test_reference_starts_from_the_initial_data_and_stays_periodic():
    x = np.linspace(0, LENGTH, 97)
    for initial in ("sin", "gaussian"):
        reference = ConvectionDiffusion(3.0, 0.2, initial)
        assert np.allclose(reference(x, 0.0), initial_values(initial, x), atol=1e-3)
        assert np.allclose(reference(x, 0.7), reference(x + LENGTH, 0.7), atol=1e-9)


def test_gaussian_is_centred_with_width_pi_over_4():
    assert initial_values("gaussian", np.array([math.pi]))[0] == 1.0
    assert np.isclose(initial_values("gaussian", np.array([math.pi + math.pi / 4]))[0], math.exp(-0.5))


def test_points_fields_and_layout():
    periodic = draw(c=30.0, nu=0.05, duration=2.0)
    assert set(periodic) == {"interior", "initial", "u0", "left", "right"}
    assert all(value.shape == (4096, 2) for key, value in periodic.items() if key != "u0")
    x, t = periodic["interior"].T
    assert 0 <= x.min() and x.max() < LENGTH and 0 <= t.min() and t.max() <= 2.0
    assert np.all(periodic["initial"][:, 1] == 0)
    assert np.allclose(periodic["u0"][:, 0], np.sin(periodic["initial"][:, 0]), atol=1e-6)
    assert np.all(periodic["left"][:, 0] == 0) and np.allclose(periodic["right"][:, 0], LENGTH)
    assert np.array_equal(periodic["left"][:, 1], periodic["right"][:, 1])


def test_points_are_uniform_in_the_box():
    x, t = draw(batch=20000, c=1.0, nu=0.0, duration=3.0)["interior"].T
    assert abs(x.mean() - math.pi) < 0.05 and abs(x.var() - LENGTH**2 / 12) < 0.1
    assert abs(t.mean() - 1.5) < 0.03 and abs(t.var() - 9 / 12) < 0.03
    counts, _ = np.histogram(x, bins=8, range=(0, LENGTH))
    assert counts.min() > 0.9 * counts.mean()


def test_dirichlet_boundary_values_come_from_the_reference():
    points = draw(c=5.0, nu=0.1, initial="gaussian", boundary="dirichlet", batch=64)
    reference = ConvectionDiffusion(5.0, 0.1, "gaussian")
    t = points["left"][:, 1]
    assert np.allclose(points["u_left"][:, 0], reference(0.0, t), atol=1e-6)
    assert np.allclose(points["u_right"][:, 0], reference(LENGTH, t), atol=1e-6)


def test_points_follow_the_stream_seed():
    first, again, other = (draw(seed, batch=16, c=1.0, nu=0.1) for seed in (3, 3, 4))
    assert all(np.array_equal(first[key], again[key]) for key in first)
    assert not np.array_equal(first["interior"], other["interior"])


def test_grid_holds_every_point_once_with_its_reference_value():
    grid = sampler("convection_diffusion_grid", c=30.0, nu=0.05, nx=16, nt=5, duration=0.5)
    assert grid.size == 80
    data = {key: value.double().numpy() for key, value in grid.all().items()}
    x, t = data["points"].T
    assert np.array_equal(x, data["x"][:, 0]) and np.array_equal(t, data["t"][:, 0])
    assert sorted(set(np.round(t, 6))) == [0.0, 0.125, 0.25, 0.375, 0.5]
    assert len(set(np.round(x, 6))) == 16 and x.max() < LENGTH
    assert np.allclose(data["u_ref"][:, 0], np.exp(-0.05 * t) * np.sin(x - 30.0 * t), atol=1e-6)


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("convection_diffusion_points", {"c": 1.0, "nu": 0.1, "initial": "cos"}, "initial must be one of sin, gaussian"),
        ("convection_diffusion_points", {"c": 1.0, "nu": 0.1, "boundary": "neumann"}, "boundary must be one of"),
        ("convection_diffusion_points", {"c": 1.0, "nu": -0.1}, "nu is a diffusivity"),
        ("convection_diffusion_points", {"c": float("inf"), "nu": 0.1}, "c must be a finite speed"),
        ("convection_diffusion_grid", {"c": 1.0, "nu": 0.1, "duration": 0.0}, "duration must be > 0"),
        ("convection_diffusion_grid", {"c": 1.0, "nu": 0.1, "nx": 1}, "nx >= 2 and nt >= 2"),
    ],
)
def test_bad_arguments_are_rejected(name, args, message):
    with pytest.raises(ValueError, match=message):
        get_generator(name).bind(**args)


def test_bad_arguments_in_a_spec_point_at_the_data_line():
    text = textwrap.dedent(
        """
        model U() {
          in z: f32[B, 2]
          out u: f32[B, 1] = linear(z, 1)
        }
        data points = convection_diffusion_points(c = 1.0, nu = 0.1, boundary = "open")
        train fit {
          model net = U()
          data points
          loss mse(net(batch.initial), batch.u0)
          optimizer adam()
          steps 1
        }
        """
    )
    with pytest.raises(SpecError, match="boundary must be one of periodic, dirichlet") as caught:
        paperspec.loads(text, "bad.pspec").check()
    assert caught.value.span.line == 6
