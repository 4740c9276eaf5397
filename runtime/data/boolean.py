"""Boolean-function tasks: sparse parity of a secret subset of input bits."""

from __future__ import annotations

import numpy as np

from paperspec.runtime.data.base import (
    Field,
    NumpyStreamSampler,
    register_generator,
    seed_problem,
    task_rng,
)


def secret_subset(n: int, k: int, seed: int) -> np.ndarray:
    """The k coordinates whose parity is the label; fixed by the seed so splits share the task."""
    return np.sort(task_rng(seed, "sparse_parity").choice(n, size=k, replace=False))


def _fields(args: dict) -> dict:
    return {"x": Field("f32", (args["n"],)), "y": Field("i64", ())}


def _sampler(args: dict) -> NumpyStreamSampler:
    subset = secret_subset(args["n"], args["k"], args["seed"])

    def draw(batch_size: int, rng: np.random.Generator) -> dict:
        x = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(batch_size, args["n"]))
        # y = 1 exactly when the subset holds an odd number of -1s, i.e. its product is -1.
        y = (np.prod(x[:, subset], axis=1) < 0).astype(np.int64)
        return {"x": x, "y": y}

    sampler = NumpyStreamSampler(draw, _fields(args))
    sampler.subset = subset
    return sampler


def _validate(args: dict) -> str | None:
    if args["n"] < 1:
        return f"sparse_parity needs n >= 1, got {args['n']}"
    if not 1 <= args["k"] <= args["n"]:
        return f"sparse_parity needs 1 <= k <= n, got k = {args['k']} with n = {args['n']}"
    return seed_problem(args)


register_generator(
    "sparse_parity",
    "n: int, k: int, seed: int = 0",
    _fields,
    _sampler,
    "(n, k)-sparse parity (Barak et al. 2022, 'Hidden progress in deep learning'): x uniform in "
    "{-1, +1}^n as f32[n]; y (i64, 0/1) is 1 when the product of x over a secret k-subset is -1. "
    "The subset is fixed by `seed`; the sampler exposes it as `.subset`.",
    validate=_validate,
)
