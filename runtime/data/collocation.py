"""Collocation points and exact reference solutions for physics-informed training on 1-D
convection-diffusion, u_t + c u_x = nu u_xx on x in [0, 2 pi) with periodic boundaries."""

from __future__ import annotations

import math

import numpy as np

from paperspec.runtime.data.base import (
    Field,
    NumpyStreamSampler,
    TensorSampler,
    as_tensors,
    register_generator,
)

LENGTH = 2 * math.pi
INITIALS = ("sin", "gaussian")
BOUNDARIES = ("periodic", "dirichlet")
# The initial data are sampled at this many points; the reference is exact for their
# trigonometric interpolant (the Gaussian's coefficients fall below 1e-200 long before the last).
MODES_GRID = 256


def initial_values(initial: str, x: np.ndarray) -> np.ndarray:
    """u(x, 0): sin(x), or a Gaussian bump of width pi / 4 centred at pi."""
    if initial == "sin":
        return np.sin(x)
    return np.exp(-((x - math.pi) ** 2) / (2 * (math.pi / 4) ** 2))


class ConvectionDiffusion:
    """The exact solution for periodic initial data: Fourier mode k moves at speed c and decays
    as exp(-nu k^2 t), so u(x, t) = sum_k a_k exp(-nu k^2 t) exp(i k (x - c t))."""

    def __init__(self, c: float, nu: float, initial: str):
        self.c, self.nu = c, nu
        grid = np.arange(MODES_GRID) * LENGTH / MODES_GRID
        spectrum = np.fft.rfft(initial_values(initial, grid)) / MODES_GRID
        weights = np.full(len(spectrum), 2.0)
        weights[0] = weights[-1] = 1.0  # the mean and the Nyquist mode appear once in a real signal
        self.coefficients = spectrum * weights
        self.wavenumbers = np.arange(len(spectrum))

    def __call__(self, x: np.ndarray, t: np.ndarray) -> np.ndarray:
        x, t = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(t, dtype=float))
        k = self.wavenumbers
        phase = np.exp(1j * np.multiply.outer(x - self.c * t, k))
        decay = np.exp(-self.nu * np.multiply.outer(t, k**2))
        return np.real(phase * decay @ self.coefficients)


def _problem(args: dict) -> str | None:
    if args["initial"] not in INITIALS:
        return f"initial must be one of {', '.join(INITIALS)}; got {args['initial']!r}"
    if not math.isfinite(args["c"]):
        return f"c must be a finite speed, got {args['c']}"
    if not (math.isfinite(args["nu"]) and args["nu"] >= 0):
        return f"nu is a diffusivity, >= 0; got {args['nu']}"
    if not (math.isfinite(args["duration"]) and args["duration"] > 0):
        return f"duration must be > 0, got {args['duration']}"
    return None


def _points_fields(args: dict) -> dict:
    point, value = Field("f32", (2,)), Field("f32", (1,))
    fields = {"interior": point, "initial": point, "u0": value, "left": point, "right": point}
    if args["boundary"] == "dirichlet":
        fields.update(u_left=value, u_right=value)
    return fields


def _points_sampler(args: dict) -> NumpyStreamSampler:
    duration, initial = args["duration"], args["initial"]
    solution = ConvectionDiffusion(args["c"], args["nu"], initial) if args["boundary"] == "dirichlet" else None

    def draw(batch_size: int, rng: np.random.Generator) -> dict:
        x, t = rng.uniform(0, LENGTH, batch_size), rng.uniform(0, duration, batch_size)
        x0, tb = rng.uniform(0, LENGTH, batch_size), rng.uniform(0, duration, batch_size)
        zeros, ends = np.zeros(batch_size), np.full(batch_size, LENGTH)
        batch = {
            "interior": np.stack([x, t], axis=1),
            "initial": np.stack([x0, zeros], axis=1),
            "u0": initial_values(initial, x0)[:, None],
            "left": np.stack([zeros, tb], axis=1),
            "right": np.stack([ends, tb], axis=1),
        }
        if solution is not None:
            batch["u_left"], batch["u_right"] = solution(zeros, tb)[:, None], solution(ends, tb)[:, None]
        return batch

    return NumpyStreamSampler(draw, _points_fields(args))


def _points_problem(args: dict) -> str | None:
    if args["boundary"] not in BOUNDARIES:
        return f"boundary must be one of {', '.join(BOUNDARIES)}; got {args['boundary']!r}"
    return _problem(args)


register_generator(
    "convection_diffusion_points",
    "c: float, nu: float, initial: str = 'sin', boundary: str = 'periodic', duration: float = 1.0",
    _points_fields,
    _points_sampler,
    "Collocation points for a physics-informed loss on u_t + c u_x = nu u_xx, x in [0, 2 pi), "
    "t in [0, duration] (Raissi et al. 2019; the convection setting of Krishnapriyan et al. 2021). "
    "Per example, drawn uniformly: interior f32[2] (x, t); initial f32[2] (x, 0) with u0 f32[1] = "
    "u(x, 0), sin(x) or the Gaussian exp(-(x - pi)^2 / (2 (pi/4)^2)); left f32[2] (0, t) and right "
    "f32[2] (2 pi, t) at one boundary time. A periodic boundary asks u(left) = u(right); "
    "`boundary = 'dirichlet'` adds the exact boundary values u_left and u_right f32[1].",
    validate=_points_problem,
)


def _grid_fields(args: dict) -> dict:
    value = Field("f32", (1,))
    return {"points": Field("f32", (2,)), "x": value, "t": value, "u_ref": value}


def _grid_sampler(args: dict) -> TensorSampler:
    x = np.arange(args["nx"]) * LENGTH / args["nx"]
    t = np.linspace(0, args["duration"], args["nt"])
    xs, ts = (grid.ravel() for grid in np.meshgrid(x, t, indexing="ij"))
    u = ConvectionDiffusion(args["c"], args["nu"], args["initial"])(xs, ts)
    arrays = {"points": np.stack([xs, ts], axis=1), "x": xs[:, None], "t": ts[:, None], "u_ref": u[:, None]}
    return TensorSampler(as_tensors(arrays, _grid_fields(args)))


def _grid_problem(args: dict) -> str | None:
    if args["nx"] < 2 or args["nt"] < 2:
        return f"the grid needs nx >= 2 and nt >= 2, got {args['nx']} and {args['nt']}"
    return _problem(args)


register_generator(
    "convection_diffusion_grid",
    "c: float, nu: float, initial: str = 'sin', duration: float = 1.0, nx: int = 128, nt: int = 64",
    _grid_fields,
    _grid_sampler,
    "The reference solution of u_t + c u_x = nu u_xx on a grid, for error metrics of a "
    "physics-informed model: points f32[2] (x, t) at nx points of [0, 2 pi) by nt times of "
    "[0, duration], the same as x f32[1] and t f32[1], and u_ref f32[1]. Exact: each Fourier mode k of the initial data (as in "
    "convection_diffusion_points) moves at speed c and decays as exp(-nu k^2 t); for sin(x) "
    "that is exp(-nu t) sin(x - c t). A finite dataset of nx * nt examples.",
    validate=_grid_problem,
)
