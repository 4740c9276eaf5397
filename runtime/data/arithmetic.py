"""Modular arithmetic tables split into train and test pairs, as in the grokking experiments."""

from __future__ import annotations

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


def _inverse(b: np.ndarray, p: int) -> np.ndarray:
    return np.array([pow(int(v), p - 2, p) for v in b], dtype=np.int64)  # Fermat: p is prime


OPERATIONS = {
    "add": lambda a, b, p: (a + b) % p,
    "sub": lambda a, b, p: (a - b) % p,
    "mul": lambda a, b, p: (a * b) % p,
    "div": lambda a, b, p: (a * _inverse(b, p)) % p,
}


def operation_table(modulus: int, op: str) -> tuple:
    """Every pair (a, b) the operation is defined on, and a op b mod modulus."""
    a, b = (grid.ravel() for grid in np.meshgrid(np.arange(modulus), np.arange(modulus), indexing="ij"))
    if op == "div":
        a, b = a[b != 0], b[b != 0]
    return np.stack([a, b], axis=1), OPERATIONS[op](a, b, modulus)


def split_table(args: dict) -> tuple:
    """(pairs, labels) of the chosen split; the shuffle and the corrupted labels follow `seed`."""
    pairs, labels = operation_table(args["modulus"], args["op"])
    order = task_rng(args["seed"], "modular_arithmetic").permutation(len(pairs))
    train_size = _train_size(args, len(pairs))
    index = order[:train_size] if args["split"] == "train" else order[train_size:]
    pairs, labels = pairs[index], labels[index]
    if args["split"] == "train":
        labels = corrupt_labels(labels, args["corrupt"], args["modulus"], args["seed"])
    return pairs, labels


def corrupt_labels(labels: np.ndarray, fraction: float, modulus: int, seed: int) -> np.ndarray:
    """Exactly round(fraction * n) labels, chosen by the seed, replaced by uniform wrong ones."""
    rng = task_rng(seed, "modular_arithmetic/corrupt")
    chosen = rng.choice(len(labels), size=round(fraction * len(labels)), replace=False)
    labels = labels.copy()
    labels[chosen] = (labels[chosen] + rng.integers(1, modulus, size=len(chosen))) % modulus
    return labels


def _train_size(args: dict, total: int) -> int:
    return round(args["train_fraction"] * total)


def _fields(args: dict) -> dict:
    return {"x": Field("i64", (2,)), "y": Field("i64", ())}


def _sampler(args: dict) -> TensorSampler:
    pairs, labels = split_table(args)
    return TensorSampler(as_tensors({"x": pairs, "y": labels}, _fields(args)))


def _is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, int(n**0.5) + 1))


def _validate(args: dict) -> str | None:
    modulus, op = args["modulus"], args["op"]
    if modulus < 2:
        return f"modular_arithmetic needs modulus >= 2, got {modulus}"
    if op not in OPERATIONS:
        return f"unknown op {op!r}; choose one of {', '.join(OPERATIONS)}"
    if op == "div" and not _is_prime(modulus):
        return f"op 'div' needs a prime modulus, got {modulus}"
    problem = split_problem(args)
    if problem:
        return problem
    if not 0.0 <= args["corrupt"] <= 1.0:
        return f"corrupt must be between 0 and 1, got {args['corrupt']}"
    total = modulus * (modulus - 1 if op == "div" else modulus)
    if not 0 < _train_size(args, total) < total:
        return f"train_fraction {args['train_fraction']} leaves the train or test split of {total} pairs empty"
    return seed_problem(args)


register_generator(
    "modular_arithmetic",
    "modulus: int = 97, op: str = 'add', train_fraction: float = 0.5, corrupt: float = 0.0, "
    "split: str = 'train', seed: int = 0",
    _fields,
    _sampler,
    "Grokking tables (Power et al. 2022): x = (a, b) as i64[2], y = a op b mod `modulus` (i64), "
    "op one of add, sub, mul, div (b != 0, prime modulus). All pairs are shuffled by `seed`; the "
    "first round(train_fraction * pairs) form the 'train' split, the rest 'test'. `corrupt` "
    "replaces that fraction of train labels with uniformly drawn wrong ones, fixed by `seed` "
    "(label noise as in Doshi et al. 2023, 'To grok or not to grok'). A finite dataset: the "
    "sampler's `size` is the split's size.",
    validate=_validate,
)
