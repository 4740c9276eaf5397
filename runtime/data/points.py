"""Low-dimensional point clouds for density models and classifiers: mixtures, moons, 8 Gaussians."""

from __future__ import annotations

import numpy as np

from paperspec.runtime.data.base import (
    Field,
    NumpyStreamSampler,
    register_generator,
    seed_problem,
    task_rng,
)


def mixture_weights(args: dict) -> np.ndarray:
    weights = np.ones(args["components"]) if args["weights"] is None else np.asarray(args["weights"], dtype=float)
    return weights / weights.sum()


def mixture_means(args: dict) -> np.ndarray:
    if args["means"] is not None:
        return np.asarray(args["means"], dtype=float)
    rng = task_rng(args["seed"], "gaussian_mixture")
    return args["spread"] * rng.standard_normal((args["components"], args["dim"]))


def _mixture_fields(args: dict) -> dict:
    return {"x": Field("f32", (args["dim"],)), "component": Field("i64", ())}


def _mixture_sampler(args: dict) -> NumpyStreamSampler:
    means, weights = mixture_means(args), mixture_weights(args)

    def draw(batch_size: int, rng: np.random.Generator) -> dict:
        component = rng.choice(len(weights), size=batch_size, p=weights)
        x = means[component] + rng.standard_normal((batch_size, means.shape[1]))
        return {"x": x, "component": component}

    sampler = NumpyStreamSampler(draw, _mixture_fields(args))
    sampler.means, sampler.weights = means, weights
    return sampler


def _weights_problem(weights: object, components: int) -> str | None:
    numbers = isinstance(weights, (tuple, list)) and all(
        isinstance(w, (int, float)) and not isinstance(w, bool) for w in weights
    )
    if not numbers or len(weights) != components:
        return f"weights must be none or a list of {components} numbers (one per component), got {weights!r}"
    if min(weights) < 0 or sum(weights) <= 0:
        return f"weights must be >= 0 and not all 0, got {list(weights)}"
    return None


def _means_problem(means: object, components: int, dim: int) -> str | None:
    def is_point(row: object) -> bool:
        return isinstance(row, (tuple, list)) and len(row) == dim and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in row
        )

    if not isinstance(means, (tuple, list)) or len(means) != components or not all(map(is_point, means)):
        return f"means must be none or a list of {components} lists of {dim} numbers (one point per component), got {means!r}"
    return None


def _mixture_problem(args: dict) -> str | None:
    if args["dim"] < 1 or args["components"] < 1:
        return f"gaussian_mixture needs dim >= 1 and components >= 1, got {args['dim']} and {args['components']}"
    if args["weights"] is not None and (problem := _weights_problem(args["weights"], args["components"])):
        return problem
    if args["means"] is not None and (problem := _means_problem(args["means"], args["components"], args["dim"])):
        return problem
    if args["spread"] < 0:
        return f"spread must be >= 0, got {args['spread']}"
    return seed_problem(args)


register_generator(
    "gaussian_mixture",
    "dim: int = 2, components: int = 3, weights: any? = none, spread: float = 5.0, seed: int = 0, means: any? = none",
    _mixture_fields,
    _mixture_sampler,
    "A Gaussian mixture (Bishop 2006, ch. 9): component ~ Categorical(weights) as i64 "
    "(uniform when weights is none; weights are normalised), x ~ N(mean[component], I) as "
    "f32[dim]. The means are `means` (one list of dim numbers per component) or, when that is "
    "none, N(0, spread^2 I), fixed by `seed`. The sampler exposes `.means` and `.weights`.",
    validate=_mixture_problem,
)


def _moons_fields(args: dict) -> dict:
    return {"x": Field("f32", (2,)), "y": Field("i64", ())}


def _moons_sampler(args: dict) -> NumpyStreamSampler:
    def draw(batch_size: int, rng: np.random.Generator) -> dict:
        y = rng.integers(0, 2, size=batch_size)
        angle = rng.uniform(0.0, np.pi, size=batch_size)
        # Moon 0 is the upper unit half circle around (0, 0); moon 1 the lower one around (1, 0.5).
        sign = 1 - 2 * y
        x = np.stack([y + sign * np.cos(angle), 0.5 * y + sign * np.sin(angle)], axis=1)
        return {"x": x + args["noise"] * rng.standard_normal((batch_size, 2)), "y": y}

    return NumpyStreamSampler(draw, _moons_fields(args))


register_generator(
    "two_moons",
    "noise: float = 0.1",
    _moons_fields,
    _moons_sampler,
    "Two interleaved half circles, as scikit-learn's make_moons: y uniform in {0, 1}; y = 0 "
    "lies on (cos t, sin t), y = 1 on (1 - cos t, 0.5 - sin t), t ~ U[0, pi], plus N(0, noise^2) "
    "per coordinate. x f32[2], y i64. A standard toy set for classifiers and flows.",
    validate=lambda args: None if args["noise"] >= 0 else f"noise must be >= 0, got {args['noise']}",
)


def _eight_fields(args: dict) -> dict:
    return {"x": Field("f32", (2,))}


def _eight_sampler(args: dict) -> NumpyStreamSampler:
    def draw(batch_size: int, rng: np.random.Generator) -> dict:
        angle = rng.integers(0, 8, size=batch_size) * (np.pi / 4)
        centers = args["radius"] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
        return {"x": centers + args["std"] * rng.standard_normal((batch_size, 2))}

    return NumpyStreamSampler(draw, _eight_fields(args))


def _eight_problem(args: dict) -> str | None:
    if args["radius"] <= 0 or args["std"] < 0:
        return f"eight_gaussians needs radius > 0 and std >= 0, got {args['radius']} and {args['std']}"
    return None


register_generator(
    "eight_gaussians",
    "radius: float = 2.0, std: float = 0.02",
    _eight_fields,
    _eight_sampler,
    "Eight Gaussians (Grathwohl et al. 2019, FFJORD; Lipman et al. 2023, flow matching): x f32[2] "
    "is radius * (cos(k pi / 4), sin(k pi / 4)) for a uniform k in 0..7, plus N(0, std^2) per "
    "coordinate.",
    validate=_eight_problem,
)


def _uniform_fields(args: dict) -> dict:
    return {"x": Field("f32", (args["dim"],))}


def _uniform_sampler(args: dict) -> NumpyStreamSampler:
    def draw(batch_size: int, rng: np.random.Generator) -> dict:
        return {"x": rng.uniform(args["low"], args["high"], size=(batch_size, args["dim"]))}

    return NumpyStreamSampler(draw, _uniform_fields(args))


def _uniform_problem(args: dict) -> str | None:
    if args["dim"] < 1:
        return f"uniform_points needs dim >= 1, got {args['dim']}"
    if args["high"] <= args["low"]:
        return f"uniform_points needs high > low, got low = {args['low']} and high = {args['high']}"
    return None


register_generator(
    "uniform_points",
    "dim: int = 2, low: float = -1.0, high: float = 1.0",
    _uniform_fields,
    _uniform_sampler,
    "Points uniform in the box [low, high]^dim as x f32[dim]: e.g. the starting points of "
    "Langevin samplers (Song & Ermon 2019 start from uniform noise).",
    validate=_uniform_problem,
)
