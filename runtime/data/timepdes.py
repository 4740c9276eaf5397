"""Time-dependent PDE trajectories: Kuramoto-Sivashinsky solved pseudo-spectrally, observed coarsely and with noise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from paperspec.runtime.data.base import (
    Field,
    TensorSampler,
    as_tensors,
    register_generator,
    seed_problem,
    split_problem,
    task_rng,
)

# The largest solver step; an observation interval is cut into equal steps no longer than this.
# ETDRK4 integrates the stiff linear part exactly, so the step is bounded by the nonlinear term only.
MAX_SOLVER_STEP = 0.1
# Points on the circle of the contour integrals that give the ETDRK4 coefficients.
CONTOUR_POINTS = 32


@dataclass(frozen=True)
class KSGrid:
    """A periodic grid of `points` on [0, length) for u_t + u u_x + u_xx + viscosity u_xxxx = 0."""

    points: int
    length: float
    viscosity: float

    @property
    def wavenumbers(self) -> np.ndarray:
        return 2 * np.pi / self.length * np.arange(self.points // 2 + 1)

    @property
    def linear_rates(self) -> np.ndarray:
        """Growth rate of each Fourier mode under the linear terms: k^2 - viscosity k^4."""
        k = self.wavenumbers
        return k**2 - self.viscosity * k**4


@dataclass(frozen=True)
class ETDRK4:
    """Cox-Matthews exponential time differencing, RK4 (coefficients by Kassam and Trefethen's contour integrals)."""

    exp_full: np.ndarray
    exp_half: np.ndarray
    stage: np.ndarray  # the factor of the half-step stages' nonlinear terms
    weights: tuple  # f1, f2, f3: the final combination's factors
    derivative: np.ndarray  # -i k / 2: the nonlinear term -(u^2 / 2)_x is derivative * fft(u^2)
    dealias: np.ndarray  # 2/3 rule: which modes of u^2 survive

    @classmethod
    def build(cls, grid: KSGrid, dt: float) -> ETDRK4:
        rates = grid.linear_rates * dt
        # phi functions at z = rates as means over a circle around z, which stays accurate where
        # the closed forms cancel catastrophically (z near 0)
        roots = np.exp(1j * np.pi * (np.arange(1, CONTOUR_POINTS + 1) - 0.5) / CONTOUR_POINTS)
        z = rates[:, None] + roots[None, :]
        half = z / 2

        def mean(values: np.ndarray) -> np.ndarray:
            return values.mean(axis=1).real

        f1 = dt * mean((-4 - z + np.exp(z) * (4 - 3 * z + z**2)) / z**3)
        f2 = dt * mean((2 + z + np.exp(z) * (-2 + z)) / z**3)
        f3 = dt * mean((-4 - 3 * z - z**2 + np.exp(z) * (4 - z)) / z**3)
        stage = dt * mean((np.exp(half) - 1) / z)
        k = grid.wavenumbers
        dealias = np.arange(len(k)) < grid.points / 3
        return cls(np.exp(rates), np.exp(rates / 2), stage, (f1, f2, f3), -0.5j * k, dealias)

    def nonlinear(self, spectrum: np.ndarray, points: int) -> np.ndarray:
        u = np.fft.irfft(spectrum, n=points, axis=-1)
        return self.derivative * self.dealias * np.fft.rfft(u * u, axis=-1)

    def step(self, v: np.ndarray, points: int) -> np.ndarray:
        """One step of the Fourier coefficients v [..., points // 2 + 1]."""
        f1, f2, f3 = self.weights
        nv = self.nonlinear(v, points)
        a = self.exp_half * v + self.stage * nv
        na = self.nonlinear(a, points)
        b = self.exp_half * v + self.stage * na
        nb = self.nonlinear(b, points)
        c = self.exp_half * a + self.stage * (2 * nb - nv)
        nc = self.nonlinear(c, points)
        return self.exp_full * v + f1 * nv + 2 * f2 * (na + nb) + f3 * nc


def solve_ks(u0: np.ndarray, grid: KSGrid, times: np.ndarray, dt: float) -> np.ndarray:
    """u at each of `times` (increasing, from 0, each a whole number of steps dt) from u0 [..., points]:
    [..., len(times), points]. A time of 0 gives u0."""
    stepper = ETDRK4.build(grid, dt)
    steps = np.rint(np.asarray(times) / dt).astype(int)
    assert np.allclose(steps * dt, times) and np.all(np.diff(steps) >= 0), "times must be whole, increasing steps"
    v, done, frames = np.fft.rfft(u0, axis=-1), 0, []
    for target in steps:
        for _ in range(target - done):
            v = stepper.step(v, grid.points)
        done = target
        frames.append(np.fft.irfft(v, n=grid.points, axis=-1))
    return np.stack(frames, axis=-2)


def random_initial_conditions(rng: np.random.Generator, count: int, grid: KSGrid, waves: int = 8) -> np.ndarray:
    """Smooth periodic fields: sums of the lowest `waves` sine modes with random amplitudes and phases, [count, points]."""
    x = np.arange(grid.points) * grid.length / grid.points
    modes = np.arange(1, waves + 1)
    amplitudes = rng.uniform(-0.5, 0.5, size=(count, waves))
    phases = rng.uniform(0, 2 * np.pi, size=(count, waves))
    angles = 2 * np.pi * modes[None, :, None] * x[None, None, :] / grid.length + phases[..., None]
    return np.einsum("cw,cwx->cx", amplitudes, np.sin(angles))


def solver_step(interval: float) -> float:
    return interval / int(np.ceil(interval / MAX_SOLVER_STEP - 1e-9))


def observed_trajectories(args: dict) -> tuple:
    """(past [n, frames, resolution] with noise, next [n, resolution] without) for the chosen split."""
    grid = KSGrid(args["grid"], args["length"], args["viscosity"])
    rng = task_rng(args["seed"], f"kuramoto_sivashinsky/{args['split']}")
    u0 = random_initial_conditions(rng, args["trajectories"], grid)
    times = args["warmup"] + args["interval"] * np.arange(args["frames"] + 1)
    fine = solve_ks(u0, grid, np.concatenate([[0.0], times]), solver_step(args["interval"]))[:, 1:]
    # every (grid // resolution)-th point, as a coarse sensor grid sees the field
    coarse = fine[..., :: args["grid"] // args["resolution"]]
    past = coarse[:, :-1] + args["noise"] * rng.standard_normal(coarse[:, :-1].shape)
    return past, coarse[:, -1]


def _fields(args: dict) -> dict:
    return {"past": Field("f32", (args["frames"], args["resolution"])), "next": Field("f32", (args["resolution"],))}


def _sampler(args: dict) -> TensorSampler:
    past, following = observed_trajectories(args)
    return TensorSampler(as_tensors({"past": past, "next": following}, _fields(args)))


def _validate(args: dict) -> str | None:
    grid, resolution = args["grid"], args["resolution"]
    if grid < 8 or grid % 2:
        return f"kuramoto_sivashinsky needs an even grid >= 8, got {grid}"
    if resolution < 4 or grid % resolution:
        return f"resolution must be >= 4 and divide grid = {grid}, got {resolution}"
    if args["frames"] < 1 or args["trajectories"] < 1:
        return f"kuramoto_sivashinsky needs frames >= 1 and trajectories >= 1, got {args['frames']} and {args['trajectories']}"
    for name in ("length", "viscosity", "interval"):
        if args[name] <= 0:
            return f"{name} must be > 0, got {args[name]}"
    if args["warmup"] < 0 or args["noise"] < 0:
        return f"warmup and noise must be >= 0, got {args['warmup']} and {args['noise']}"
    problem = split_problem(args)
    if problem:
        return problem
    return seed_problem(args)


register_generator(
    "kuramoto_sivashinsky",
    "resolution: int = 32, frames: int = 8, grid: int = 128, length: float = 64.0, viscosity: float = 1.0, "
    "interval: float = 1.0, warmup: float = 40.0, noise: float = 0.0, trajectories: int = 1024, "
    "split: str = 'train', seed: int = 0",
    _fields,
    _sampler,
    "Kuramoto-Sivashinsky trajectories, u_t + u u_x + u_xx + viscosity u_xxxx = 0 on a periodic "
    "[0, length), observed coarsely (the setting of Buitrago Ruiz et al. 2024, 'On the Benefits of "
    "Memory for Modeling Time-Dependent PDEs'). Each trajectory starts from a random sum of the 8 "
    "lowest sine modes, is solved on `grid` points (pseudo-spectral, ETDRK4, 2/3 dealiasing, steps "
    "<= 0.1), and is observed every `interval` after `warmup` on every (grid / resolution)-th "
    "point. Fields: past f32[frames, resolution] (the observed frames, plus Gaussian noise of std "
    "`noise`), next f32[resolution] (the noise-free frame one interval after the last). A finite "
    "dataset of `trajectories` examples per split; `seed` fixes both splits.",
    validate=_validate,
)
