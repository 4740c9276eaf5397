"""Trajectories of small linear ODEs (damped spirals and oscillators), for fitting neural ODEs."""

from __future__ import annotations

import numpy as np

from paperspec.runtime.data.base import Field, NumpyStreamSampler, register_generator

SYSTEMS = ("spiral", "oscillator")


def system_matrix(system: str, damping: float, frequency: float) -> np.ndarray:
    """A of dy/dt = A y. The spiral rotates at `frequency` while shrinking at rate `damping`;
    the oscillator is x'' + 2 damping x' + frequency^2 x = 0 with y = (x, x')."""
    if system == "spiral":
        return np.array([[-damping, frequency], [-frequency, -damping]])
    return np.array([[0.0, 1.0], [-(frequency**2), -2.0 * damping]])


def expm_2x2(matrix: np.ndarray, times: np.ndarray) -> np.ndarray:
    """exp(A t) for each t, [len(times), 2, 2], in closed form. With s = trace / 2 and
    M = A - s I, M^2 = q I, so exp(A t) = exp(s t) (C(t) I + S(t) M) where C and S are cosh and
    sinh (q > 0), cos and sin (q < 0) or 1 and t (q = 0) of sqrt|q| t. Unlike an eigen-
    decomposition this holds for defective A too (the critically damped oscillator)."""
    shift = np.trace(matrix) / 2.0
    nilpotent_part = matrix - shift * np.eye(2)
    q = nilpotent_part[0, 0] ** 2 + nilpotent_part[0, 1] * nilpotent_part[1, 0]
    root = np.sqrt(abs(q))
    if root < 1e-12:
        even, odd = np.ones_like(times), times
    elif q > 0:
        even, odd = np.cosh(root * times), np.sinh(root * times) / root
    else:
        even, odd = np.cos(root * times), np.sin(root * times) / root
    flows = even[:, None, None] * np.eye(2) + odd[:, None, None] * nilpotent_part
    return np.exp(shift * times)[:, None, None] * flows


def time_grid(args: dict) -> np.ndarray:
    return np.linspace(0.0, args["horizon"], args["points"])


def _fields(args: dict) -> dict:
    # K is symbolic, so a test split over a longer horizon (more points) feeds the same model.
    return {"y0": Field("f32", (2,)), "t": Field("f32", ("K",)), "ys": Field("f32", ("K", 2))}


def _sampler(args: dict) -> NumpyStreamSampler:
    matrix = system_matrix(args["system"], args["damping"], args["frequency"])
    times = time_grid(args)
    flows = expm_2x2(matrix, times)
    radius, noise = args["radius"], args["noise"]

    def draw(batch_size: int, rng: np.random.Generator) -> dict:
        y0 = rng.uniform(-radius, radius, (batch_size, 2))
        ys = np.einsum("kij,bj->bki", flows, y0)
        ys = ys + noise * rng.standard_normal(ys.shape)
        return {"y0": y0, "t": np.tile(times, (batch_size, 1)), "ys": ys}

    sampler = NumpyStreamSampler(draw, _fields(args))
    sampler.matrix = matrix
    return sampler


def _problem(args: dict) -> str | None:
    if args["system"] not in SYSTEMS:
        return f"system must be 'spiral' or 'oscillator', got {args['system']!r}"
    if args["points"] < 2 or args["horizon"] <= 0:
        return f"trajectories need points >= 2 and horizon > 0, got {args['points']} and {args['horizon']}"
    if args["damping"] < 0 or args["frequency"] < 0 or args["radius"] <= 0:
        return "damping and frequency must be >= 0 and radius > 0"
    if args["noise"] < 0:
        return f"noise is a standard deviation, >= 0; got {args['noise']}"
    return None


register_generator(
    "trajectories",
    "system: str = 'spiral', points: int = 20, horizon: float = 5.0, damping: float = 0.1, "
    "frequency: float = 1.0, radius: float = 2.0, noise: float = 0.0",
    _fields,
    _sampler,
    "Solutions of a linear ODE dy/dt = A y in 2-D (the spiral of Chen et al. 2018, 'Neural "
    "Ordinary Differential Equations'): 'spiral' A = [[-damping, frequency], [-frequency, "
    "-damping]], 'oscillator' x'' + 2 damping x' + frequency^2 x = 0 with y = (x, x'). Per "
    "example y0 ~ U[-radius, radius]^2 as f32[2], the shared times t = linspace(0, horizon, "
    "points) as f32[K], and ys = exp(A t_k) y0 + noise * N(0, I) as f32[K, 2]. The system is "
    "fixed by its arguments, so there is no task seed; evaluation draws fresh initial states. "
    "The sampler exposes `.matrix` (A).",
    validate=_problem,
    symbols=lambda args: {"K": args["points"]},
)
