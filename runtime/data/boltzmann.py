"""Bars and stripes: the small binary dataset on which Boltzmann machines are trained and scored
by their exact log-likelihood (MacKay 2003; Fischer and Igel 2010)."""

from __future__ import annotations

import itertools

import numpy as np

from paperspec.runtime.data.base import Field, TensorSampler, as_tensors, register_generator

# 2^(size + 1) - 2 patterns of size^2 pixels: 2,046 patterns at size 10, enough for any RBM
# whose partition function can still be enumerated.
LARGEST_SIZE = 10


def bars_and_stripes(size: int) -> np.ndarray:
    """Every size x size binary image whose rows are each all on or all off (stripes) or whose
    columns are (bars), flattened row by row: 2^(size + 1) - 2 distinct images, since the blank
    and the full image are both. Sorted, so the dataset's order is fixed."""
    patterns = set()
    for lines in itertools.product([0, 1], repeat=size):
        stripes = np.repeat(np.array(lines)[:, None], size, axis=1)
        patterns.add(tuple(stripes.flatten()))
        patterns.add(tuple(stripes.T.flatten()))
    return np.array(sorted(patterns), dtype=np.float32)


def _fields(args: dict) -> dict:
    return {"x": Field("f32", (args["size"] ** 2,))}


def _sampler(args: dict) -> TensorSampler:
    return TensorSampler(as_tensors({"x": bars_and_stripes(args["size"])}, _fields(args)))


def _validate(args: dict) -> str | None:
    if not 1 <= args["size"] <= LARGEST_SIZE:
        return f"size must be between 1 and {LARGEST_SIZE}, got {args['size']}"
    return None


register_generator(
    "bars_and_stripes",
    "size: int = 4",
    _fields,
    _sampler,
    "Bars and stripes (MacKay 2003): every size x size binary image whose rows are each all on or "
    "all off, or whose columns are; x = the pixels row by row (f32[size * size], 0 or 1). "
    "2^(size + 1) - 2 distinct images (30 at size 4), each once: a finite dataset, the whole "
    "distribution (the model that puts 1 / count on each has log-likelihood -log count).",
    validate=_validate,
)
