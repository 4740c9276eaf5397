"""Weights for ONNX export: state_dict keys of a model, tied keys, and checks that a state_dict fits."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from paperspec.compiler.backends.pysource import identifier
from paperspec.compiler.diagnostics import UsageError
from paperspec.compiler.ir import BlockGraph, ModuleSpec, state_shapes


def torch_key(path) -> str:
    """A state_dict key as PyTorch spells it: submodule names go through `identifier`."""
    parts = path.split(".") if isinstance(path, str) else list(path)
    return ".".join(part if part.isdigit() else identifier(part) for part in parts)


def tied_keys(graph: BlockGraph, prefix: str = "") -> dict:
    """Tied key -> the key it shares its tensor with, for `tie` statements anywhere in the model."""
    ties = {prefix + torch_key(target): prefix + torch_key(source) for target, source, _ in graph.ties}
    for name, spec in graph.modules.items():
        ties.update(_module_ties(spec, f"{prefix}{torch_key(name)}."))
    return ties


def _module_ties(spec: ModuleSpec, prefix: str) -> dict:
    if spec.kind == "block":
        return tied_keys(spec.graph, prefix)
    if spec.kind == "repeat":
        ties: dict = {}
        for i, item in enumerate(spec.items):
            ties.update(_module_ties(item, f"{prefix}{i}."))
        return ties
    return {}


def canonical_key(key: str, ties: dict) -> str:
    seen = set()
    while key in ties and key not in seen:
        seen.add(key)
        key = ties[key]
    return key


def tie_group(key: str, ties: dict) -> list:
    """The keys sharing one tensor with `key`, the canonical (tied-to) key first."""
    root = canonical_key(key, ties)
    return [root] + [k for k in ties if k != root and canonical_key(k, ties) == root]


def _present(key: str, state: Mapping, ties: dict) -> str | None:
    """The key under which `state` holds the tensor of `key` (safetensors keeps one name per tie)."""
    return next((k for k in tie_group(key, ties) if k in state), None)


def expected_shapes(graph: BlockGraph) -> dict:
    """Every state_dict key of the compiled module (parameters, buffers, tied copies) and its shape."""
    return {torch_key(key): tuple(shape) for key, shape in state_shapes(graph, with_buffers=True).items()}


def check_state(graph: BlockGraph, state: Mapping, source: str) -> None:
    """Raises UsageError naming the model when `state` lacks keys, has foreign ones, or shapes differ."""
    expected = expected_shapes(graph)
    ties = tied_keys(graph)
    missing = [key for key in expected if not key.endswith("num_batches_tracked") and _present(key, state, ties) is None]
    unexpected = [key for key in state if key not in expected]
    wrong = [
        f"{key} is {list(np.shape(state[key]))}, expected {list(shape)}"
        for key, shape in expected.items()
        if key in state and tuple(np.shape(state[key])) != shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} tensor(s): {_first(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} tensor(s) the model does not have: {_first(unexpected)}")
    if wrong:
        problems.append(f"{len(wrong)} tensor(s) of the wrong shape: {_first(wrong)}")
    if problems:
        raise UsageError(
            f"the weights in {source} do not fit model `{graph.block}`: " + "; ".join(problems),
            "weights must come from this model with the same parameters (--set)",
        )


def _first(items: list, count: int = 3) -> str:
    return ", ".join(items[:count]) + (", ..." if len(items) > count else "")


def weight_lookup(graph: BlockGraph, state: Mapping) -> Callable[[str], tuple]:
    """key -> (initializer name, numpy array); tied keys resolve to the tensor they share."""
    ties = tied_keys(graph)

    def lookup(key: str) -> tuple:
        return canonical_key(key, ties), to_numpy(state[_present(key, state, ties)])

    return lookup


def to_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            raise UsageError("bf16 weights cannot be exported yet; cast the model to f32 or f16 first")
        return value.numpy()
    return np.asarray(value)
