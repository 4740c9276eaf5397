"""The handwritten digits that ship with scikit-learn (8x8 images), split into train and test."""

from __future__ import annotations

import importlib.util

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

CLASSES = 10
PIXEL_MAX = 16.0  # the images hold integer grey levels 0..16


def load_images() -> tuple:
    """(images f64[1797, 64] in [0, 1], labels i64[1797]) from scikit-learn's bundled copy."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.data / PIXEL_MAX, digits.target.astype(np.int64)


def held_out_indices(labels: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """A stratified split: round(test_fraction * count) examples of each class, chosen by `seed`."""
    rng = task_rng(seed, "digits")
    chosen = []
    for label in range(CLASSES):
        members = np.flatnonzero(labels == label)
        chosen.append(rng.permutation(members)[: round(test_fraction * len(members))])
    return np.sort(np.concatenate(chosen))


def split_digits(args: dict) -> tuple:
    """(images, labels) of the chosen split, in the dataset's order."""
    images, labels = load_images()
    in_test = np.zeros(len(labels), dtype=bool)
    in_test[held_out_indices(labels, args["test_fraction"], args["seed"])] = True
    keep = in_test if args["split"] == "test" else ~in_test
    return images[keep], labels[keep]


def _fields(args: dict) -> dict:
    return {"x": Field("f32", (64,)), "y": Field("i64", ())}


def corrupt_labels(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """round(fraction * n) labels, chosen by `seed`, replaced by a different class drawn uniformly."""
    rng = task_rng(seed, "digits_noise")
    noisy = labels.copy()
    chosen = rng.permutation(len(labels))[: round(fraction * len(labels))]
    noisy[chosen] = (labels[chosen] + rng.integers(1, CLASSES, len(chosen))) % CLASSES
    return noisy


def _sampler(args: dict) -> TensorSampler:
    images, labels = split_digits(args)
    if args["label_noise"] > 0:
        labels = corrupt_labels(labels, args["label_noise"], args["seed"])
    return TensorSampler(as_tensors({"x": images, "y": labels}, _fields(args)))


def _validate(args: dict) -> str | None:
    if importlib.util.find_spec("sklearn") is None:
        return "the digits data ships with scikit-learn, which is not installed: pip install 'paperspec[digits]'"
    problem = split_problem(args)
    if problem:
        return problem
    if not 0.0 <= args["label_noise"] < 1.0:
        return f"label_noise is the fraction of labels replaced, in [0, 1); got {args['label_noise']}"
    if not 0.0 < args["test_fraction"] < 1.0:
        return f"test_fraction must be between 0 and 1 (exclusive), got {args['test_fraction']}"
    return seed_problem(args)


register_generator(
    "digits",
    "split: str = 'train', test_fraction: float = 0.2, label_noise: float = 0.0, seed: int = 0",
    _fields,
    _sampler,
    "The handwritten digits of scikit-learn (UCI optical recognition of handwritten digits; 1,797 "
    "8x8 images, about 180 per class; needs `pip install 'paperspec[digits]'`): x = the 64 pixels, "
    "row by row, scaled to [0, 1] (f32[64]), y = the digit (i64). A stratified split: "
    "round(test_fraction * count) images of each class, chosen by `seed`, form 'test' (359 of "
    "1,797 at the default 0.2), the rest 'train' (1,438). With `label_noise`, that fraction of "
    "the split's labels (chosen by `seed`) is replaced by a different class, uniformly. A finite dataset.",
    validate=_validate,
)
