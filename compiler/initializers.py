"""Initialisers an explicit `param` may name, e.g. `init = normal(0.02)`, and their torch lowering."""

from __future__ import annotations

from paperspec.compiler import ast
from paperspec.compiler.diagnostics import SpecError, did_you_mean
from paperspec.compiler.expressions import check_kind
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
    if isinstance(expr, ast.Name):
        name, args, keywords = expr.id, [], []
    elif isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name):
        name, args, keywords = expr.func.id, list(expr.args), list(expr.keywords)
    else:
        raise SpecError("`init` must name an initialiser, e.g. `normal(0.02)`", expr.span, f"initialisers: {', '.join(INITIALIZERS)}")
    if name not in INITIALIZERS:
        where = expr.span if isinstance(expr, ast.Name) else expr.func.span
        raise SpecError(f"unknown initialiser `{name}`", where, did_you_mean(name, INITIALIZERS) or f"initialisers: {', '.join(INITIALIZERS)}")
    signature, _ = INITIALIZERS[name]
    if len(args) > len(signature):
        raise SpecError(f"`{name}` takes {len(signature)} arguments, got {len(args)}", args[len(signature)].span)
    values = {}
    for arg, value_expr in zip(signature, args):
        values[arg.name] = check_kind(name, arg, evaluator.eval(value_expr), value_expr.span)
    names = [a.name for a in signature]
    for keyword in keywords:
        if keyword.name not in names:
            raise SpecError(f"`{name}` has no argument `{keyword.name}`", keyword.span, did_you_mean(keyword.name, names))
        arg = signature[names.index(keyword.name)]
        values[arg.name] = check_kind(name, arg, evaluator.eval(keyword.value), keyword.span)
    for arg in signature:
        if arg.name not in values:
            if arg.required:
                raise SpecError(f"missing argument `{arg.name}` of `{name}`", expr.span)
            values[arg.name] = arg.default
    return (name, values)


def needs_matrix(name: str) -> bool:
    return name in _NEEDS_MATRIX


def torch_init(name: str, values: dict, target: str) -> str:
    """The statement that initialises the parameter `target` (Python source)."""
    _, template = INITIALIZERS[name]
    return template.format(p=target, **{k: repr(v) for k, v in values.items()})
