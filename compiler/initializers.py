"""Initialisers an explicit `param` may name, e.g. `init = normal(0.02)`, and their torch lowering."""

from __future__ import annotations

from paperspec.compiler.calls import bind_named_call
from paperspec.compiler.ops.base import parse_signature

INITIALIZERS = {
    "zeros": (parse_signature(""), "nn.init.zeros_({p})"),
    "ones": (parse_signature(""), "nn.init.ones_({p})"),
    "constant": (parse_signature("value: float"), "nn.init.constant_({p}, {value})"),
    "normal": (parse_signature("std: float = 1.0, mean: float = 0.0"), "nn.init.normal_({p}, mean={mean}, std={std})"),
    "uniform": (parse_signature("low: float = -1.0, high: float = 1.0"), "nn.init.uniform_({p}, a={low}, b={high})"),
    "xavier_uniform": (parse_signature("gain: float = 1.0"), "nn.init.xavier_uniform_({p}, gain={gain})"),
    "xavier_normal": (parse_signature("gain: float = 1.0"), "nn.init.xavier_normal_({p}, gain={gain})"),
    "orthogonal": (parse_signature("gain: float = 1.0"), "nn.init.orthogonal_({p}, gain={gain})"),
}

_NEEDS_MATRIX = ("xavier_uniform", "xavier_normal", "orthogonal")


def evaluate_init(evaluator, expr, dtype: str) -> tuple:
    """Turns `normal(0.02)` (or a bare `zeros`) into ("normal", {"std": 0.02, "mean": 0.0})."""
    if expr is None:
        return ("zeros", {})
    return bind_named_call(evaluator, expr, {name: sig for name, (sig, _) in INITIALIZERS.items()}, "initialiser")


def needs_matrix(name: str) -> bool:
    return name in _NEEDS_MATRIX


def torch_init(name: str, values: dict, target: str) -> str:
    """The statement that initialises the parameter `target` (Python source)."""
    _, template = INITIALIZERS[name]
    return template.format(p=target, **{k: repr(v) for k, v in values.items()})
