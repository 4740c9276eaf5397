"""The data-generator registry: what a batch holds (known at compile time) and how to draw one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from paperspec.compiler.ops.base import parse_signature

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Field:
    dtype: str  # 'f32' | 'i64' | 'bool'
    shape: tuple  # per example, without the batch dim; ints, or str naming a symbolic dim ('T')


class Sampler(Protocol):
    """Built once per run from bound arguments; draws CPU batches with the batch dim first."""

    size: int | None  # number of examples of a finite dataset, None for an endless stream

    def sample(self, batch_size: int, generator: torch.Generator) -> dict: ...


def _no_problem(args: dict) -> str | None:
    return None


def _no_symbols(args: dict) -> dict:
    return {}


@dataclass(frozen=True)
class GeneratorDef:
    name: str
    signature: tuple  # of Arg
    fields: Callable[[dict], dict]  # bound args -> {field name: Field}; never makes data
    sampler: Callable[[dict], Sampler]
    doc: str
    validate: Callable[[dict], str | None] = _no_problem  # a user-facing message, or None
    symbols: Callable[[dict], dict] = _no_symbols  # symbolic dim of a field -> its size here
    # False: `sample(n, ...)` returns n examples already packed into one example (a disjoint
    # union of n graphs), so the fields' shapes are the whole batch's and get no batch dim.
    batched: bool = True

    def describe(self) -> str:
        return f"{self.name}({', '.join(str(a) for a in self.signature)})"

    def bind(self, **values) -> dict:
        """Arguments from Python (tests, notebooks): defaults filled in, names and values checked."""
        names = [arg.name for arg in self.signature]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ValueError(f"`{self.name}` has no argument `{unknown[0]}`; arguments: {', '.join(names)}")
        args = {}
        for arg in self.signature:
            if arg.name not in values and arg.required:
                raise ValueError(f"missing argument `{arg.name}` of `{self.name}`")
            args[arg.name] = values.get(arg.name, arg.default)
        problem = self.validate(args)
        if problem:
            raise ValueError(problem)
        return args


_REGISTRY: dict[str, GeneratorDef] = {}


def register_generator(
    name: str,
    signature: str,
    fields: Callable[[dict], dict],
    sampler: Callable[[dict], Sampler],
    doc: str,
    **options,
) -> GeneratorDef:
    """Adds a data generator; the compiler learns its signature and fields from here."""
    assert name not in _REGISTRY, f"data generator {name} registered twice"
    definition = GeneratorDef(name, parse_signature(signature), fields, sampler, doc, **options)
    _REGISTRY[name] = definition
    return definition


def get_generator(name: str) -> GeneratorDef | None:
    _load_builtin_generators()
    return _REGISTRY.get(name)


def all_generators() -> dict:
    _load_builtin_generators()
    return dict(_REGISTRY)


_LOADED = False


def _load_builtin_generators() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    from paperspec.runtime.data import (  # noqa: F401  (they register on import)
        arithmetic,
        boltzmann,
        boolean,
        collocation,
        digits,
        files,
        grammars,
        graphs,
        pdes,
        points,
        regression,
        sequences,
        timepdes,
        trajectories,
        transport,
    )


def torch_dtype(dtype: str) -> torch.dtype:
    import torch

    return {"f32": torch.float32, "i64": torch.int64, "bool": torch.bool}[dtype]


def numpy_rng(generator: torch.Generator) -> np.random.Generator:
    """A numpy stream drawn from the torch one, so a run's seed still fixes every batch."""
    import torch

    seed = torch.randint(0, 2**62, (1,), generator=generator, dtype=torch.int64).item()
    return np.random.default_rng(seed)


def task_rng(seed: int, salt: str) -> np.random.Generator:
    """The stream a task's hidden structure comes from: fixed by `seed`, apart from batch streams."""
    return np.random.default_rng([seed, *salt.encode()])


def split_problem(args: dict) -> str | None:
    """Finite datasets come as a 'train' and a 'test' split."""
    return None if args["split"] in ("train", "test") else f"split must be 'train' or 'test', got {args['split']!r}"


def seed_problem(args: dict) -> str | None:
    """Task seeds seed numpy streams, which take only non-negative integers."""
    return None if args["seed"] >= 0 else f"seed must be >= 0, got {args['seed']}"


def as_tensors(arrays: dict, fields: dict) -> dict:
    """Numpy arrays -> CPU tensors with the dtypes their fields declare."""
    import torch

    return {name: torch.as_tensor(np.asarray(array)).to(torch_dtype(fields[name].dtype)) for name, array in arrays.items()}


class StreamSampler:
    """An endless stream: each batch is a fresh call of `draw(batch_size, generator)`."""

    size = None

    def __init__(self, draw: Callable[[int, torch.Generator], dict]):
        self.draw = draw

    def sample(self, batch_size: int, generator: torch.Generator) -> dict:
        return self.draw(batch_size, generator)


class NumpyStreamSampler(StreamSampler):
    """An endless stream drawn with numpy: `draw(batch_size, rng)` returns arrays per field."""

    def __init__(self, draw: Callable[[int, np.random.Generator], dict], fields: dict):
        super().__init__(lambda batch_size, generator: as_tensors(draw(batch_size, numpy_rng(generator)), fields))


class TensorSampler:
    """A finite dataset held in memory; batches are random examples, distinct while they last."""

    def __init__(self, tensors: dict):
        sizes = {len(tensor) for tensor in tensors.values()}
        assert len(sizes) == 1, f"fields differ in their number of examples: {sizes}"
        self.tensors = tensors
        self.size = sizes.pop()

    def sample(self, batch_size: int, generator: torch.Generator) -> dict:
        import torch

        if batch_size <= self.size:
            index = torch.randperm(self.size, generator=generator)[:batch_size]
        else:
            index = torch.randint(0, self.size, (batch_size,), generator=generator)
        return {name: tensor[index] for name, tensor in self.tensors.items()}

    def all(self) -> dict:
        """Every example once, in order: for evaluating on a whole split."""
        return dict(self.tensors)
