"""Linear regression tasks: a fixed teacher, and fresh tasks per example for in-context learning."""

from __future__ import annotations

import numpy as np

from paperspec.runtime.data.base import (
    Field,
    NumpyStreamSampler,
    register_generator,
    seed_problem,
    task_rng,
)

COVARIANCES = ("isotropic", "anisotropic")


def anisotropic_eigenvalues(dim: int) -> np.ndarray:
    """lambda_i proportional to 1 / i, scaled to mean 1 so the total variance matches isotropic."""
    harmonic = 1.0 / np.arange(1, dim + 1)
    return harmonic * dim / harmonic.sum()


def random_rotation(dim: int, rng: np.random.Generator) -> np.ndarray:
    """A Haar-distributed orthogonal matrix (QR of a Gaussian, with the signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))


def covariance_root(dim: int, covariance: str, seed: int) -> np.ndarray:
    """L with L L^T = Sigma: the identity, or Q diag(sqrt lambda) with Q fixed by the seed."""
    if covariance == "isotropic":
        return np.eye(dim)
    rotation = random_rotation(dim, task_rng(seed, "linear_regression_icl"))
    return rotation * np.sqrt(anisotropic_eigenvalues(dim))


def _icl_fields(args: dict) -> dict:
    dim = args["dim"]
    # 'N' (= points + 1) rather than a number, so a test split with a longer context checks too.
    return {
        "tokens": Field("f32", ("N", dim + 1)),
        "target": Field("f32", ()),
        "xs": Field("f32", ("N", dim)),
        "ys": Field("f32", ("N",)),
        "ridge": Field("f32", ()),
    }


def bayes_prediction(xs: np.ndarray, ys: np.ndarray, noise: float) -> np.ndarray:
    """The posterior-mean prediction of y_q from the context (the Bayes-optimal estimator under
    squared loss): ridge regression with lambda = noise^2 * dim, the prior w ~ N(0, I/dim)
    against N(0, noise^2) label noise; the least-norm fit when there is no noise."""
    context, query, labels = xs[:, :-1], xs[:, -1], ys[:, :-1]
    dim = xs.shape[-1]
    gram = np.einsum("bnd,bne->bde", context, context)
    moment = np.einsum("bnd,bn->bd", context, labels)
    if noise > 0:
        w = np.linalg.solve(gram + noise**2 * dim * np.eye(dim), moment[..., None])[..., 0]
    else:
        w = np.einsum("bde,be->bd", np.linalg.pinv(gram), moment)
    return np.einsum("bd,bd->b", w, query)


def _icl_sampler(args: dict) -> NumpyStreamSampler:
    dim, count, noise = args["dim"], args["points"] + 1, args["noise"]
    root = covariance_root(dim, args["covariance"], args["seed"])

    def draw(batch_size: int, rng: np.random.Generator) -> dict:
        w = rng.standard_normal((batch_size, dim)) / np.sqrt(dim)
        xs = rng.standard_normal((batch_size, count, dim)) @ root.T
        ys = np.einsum("bnd,bd->bn", xs, w) + noise * rng.standard_normal((batch_size, count))
        tokens = np.concatenate([xs, ys[..., None]], axis=-1)
        tokens[:, -1, -1] = 0.0  # the query token hides its answer
        return {"tokens": tokens, "target": ys[:, -1], "xs": xs, "ys": ys, "ridge": bayes_prediction(xs, ys, noise)}

    sampler = NumpyStreamSampler(draw, _icl_fields(args))
    sampler.covariance = root @ root.T
    return sampler


def _icl_problem(args: dict) -> str | None:
    if args["dim"] < 1 or args["points"] < 1:
        return f"linear_regression_icl needs dim >= 1 and points >= 1, got {args['dim']} and {args['points']}"
    if args["covariance"] not in COVARIANCES:
        return f"covariance must be 'isotropic' or 'anisotropic', got {args['covariance']!r}"
    return _noise_problem(args) or seed_problem(args)


def _noise_problem(args: dict) -> str | None:
    return None if args["noise"] >= 0 else f"noise is a standard deviation, >= 0; got {args['noise']}"


register_generator(
    "linear_regression_icl",
    "dim: int, points: int, noise: float = 0.0, covariance: str = 'isotropic', seed: int = 0",
    _icl_fields,
    _icl_sampler,
    "In-context linear regression (Garg et al. 2022, 'What can transformers learn in-context?'; "
    "von Oswald et al. 2023). Per example a fresh w ~ N(0, I/dim), N = points + 1 inputs "
    "x_i ~ N(0, Sigma) and y_i = <w, x_i> + noise * N(0, 1). Sigma is I ('isotropic') or "
    "Q diag(lambda) Q^T ('anisotropic') with lambda_i proportional to 1/i, mean 1, and a "
    "rotation Q fixed by `seed`. Fields: tokens f32[N, dim + 1] (rows (x_i, y_i), the last "
    "(x_q, 0)), target f32[] (y_q), xs f32[N, dim] and ys f32[N] (all N, the query last) for "
    "baselines, and ridge f32[] (the Bayes-optimal prediction of y_q: ridge with lambda = "
    "noise^2 * dim). The sampler exposes `.covariance`.",
    validate=_icl_problem,
    symbols=lambda args: {"N": args["points"] + 1},
)


def teacher_weights(dim: int, seed: int) -> np.ndarray:
    return task_rng(seed, "linear_teacher").standard_normal(dim) / np.sqrt(dim)


def _teacher_fields(args: dict) -> dict:
    return {"x": Field("f32", (args["dim"],)), "y": Field("f32", ())}


def _teacher_sampler(args: dict) -> NumpyStreamSampler:
    teacher, noise = teacher_weights(args["dim"], args["seed"]), args["noise"]

    def draw(batch_size: int, rng: np.random.Generator) -> dict:
        x = rng.standard_normal((batch_size, len(teacher)))
        return {"x": x, "y": x @ teacher + noise * rng.standard_normal(batch_size)}

    sampler = NumpyStreamSampler(draw, _teacher_fields(args))
    sampler.teacher = teacher
    return sampler


def _teacher_problem(args: dict) -> str | None:
    if args["dim"] < 1:
        return f"linear_teacher needs dim >= 1, got {args['dim']}"
    return _noise_problem(args) or seed_problem(args)


register_generator(
    "linear_teacher",
    "dim: int, noise: float = 0.0, seed: int = 0",
    _teacher_fields,
    _teacher_sampler,
    "Teacher-student linear regression (Seung, Sompolinsky & Tishby 1992; Advani & Saxe 2017): "
    "x ~ N(0, I) as f32[dim], y = <w*, x> + noise * N(0, 1) as f32[], with the teacher "
    "w* ~ N(0, I/dim) fixed by `seed`. The sampler exposes `.teacher`.",
    validate=_teacher_problem,
)


def linear_map_teacher(inputs: int, outputs: int, decay: float, seed: int) -> np.ndarray:
    """W = U diag(s) V^T with random orthonormal U, V fixed by `seed` and s_i proportional to
    decay^i, scaled so that E ||W x||^2 / outputs = 1 for x ~ N(0, I)."""
    rng = task_rng(seed, "linear_map")
    rank = min(inputs, outputs)
    u = random_rotation(outputs, rng)[:, :rank]
    v = random_rotation(inputs, rng)[:, :rank]
    strengths = decay ** np.arange(rank)
    strengths *= np.sqrt(outputs / np.sum(strengths**2))
    return (u * strengths) @ v.T


def _map_fields(args: dict) -> dict:
    return {"x": Field("f32", (args["inputs"],)), "y": Field("f32", (args["outputs"],))}


def _map_sampler(args: dict) -> NumpyStreamSampler:
    teacher, noise = linear_map_teacher(args["inputs"], args["outputs"], args["decay"], args["seed"]), args["noise"]

    def draw(batch_size: int, rng: np.random.Generator) -> dict:
        x = rng.standard_normal((batch_size, teacher.shape[1]))
        return {"x": x, "y": x @ teacher.T + noise * rng.standard_normal((batch_size, teacher.shape[0]))}

    sampler = NumpyStreamSampler(draw, _map_fields(args))
    sampler.teacher = teacher
    return sampler


def _map_problem(args: dict) -> str | None:
    if args["inputs"] < 1 or args["outputs"] < 1:
        return f"linear_map needs inputs >= 1 and outputs >= 1, got {args['inputs']} and {args['outputs']}"
    if not 0 < args["decay"] <= 1:
        return f"decay is the ratio of successive singular values, in (0, 1]; got {args['decay']}"
    return _noise_problem(args) or seed_problem(args)


register_generator(
    "linear_map",
    "inputs: int, outputs: int, decay: float = 0.5, noise: float = 0.0, seed: int = 0",
    _map_fields,
    _map_sampler,
    "A linear teacher map with a graded spectrum, the input-output correlation of Saxe et al. 2014 "
    "('Exact solutions to the nonlinear dynamics of learning in deep linear neural networks'): "
    "x ~ N(0, I) as f32[inputs], y = W x + noise * N(0, I) as f32[outputs], W = U diag(s) V^T with "
    "random orthonormal U, V fixed by `seed` and singular values s_i proportional to decay^i, "
    "scaled so the mean squared output is 1 (the loss of predicting 0). The sampler exposes `.teacher`.",
    validate=_map_problem,
)
