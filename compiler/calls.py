"""Binds calls of named things outside the op registry (initialisers, optimizers, schedules, data)."""

from __future__ import annotations

from paperspec.compiler import ast
from paperspec.compiler.diagnostics import SpecError, did_you_mean
from paperspec.compiler.expressions import check_kind


def bind_named_call(evaluator, expr, signatures: dict, what: str) -> tuple:
    """`normal(0.02)` or a bare `zeros` -> (name, {argument: value}) checked against `signatures`."""
    if isinstance(expr, ast.Name):
        name, name_span, args, keywords = expr.id, expr.span, [], []
    elif isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name):
        name, name_span, args, keywords = expr.func.id, expr.func.span, list(expr.args), list(expr.keywords)
    else:
        raise SpecError(f"expected {what}, e.g. `{next(iter(signatures), 'name')}(...)`", expr.span, _known(signatures, what))
    if name not in signatures:
        raise SpecError(f"unknown {what} `{name}`", name_span, did_you_mean(name, signatures) or _known(signatures, what))
    signature = signatures[name]
    if len(args) > len(signature):
        raise SpecError(f"`{name}` takes {len(signature)} arguments, got {len(args)}", args[len(signature)].span)
    values = {}
    for arg, value_expr in zip(signature, args):
        values[arg.name] = check_kind(name, arg, evaluator.eval(value_expr), value_expr.span)
    names = [a.name for a in signature]
    for keyword in keywords:
        if keyword.name not in names:
            raise SpecError(f"`{name}` has no argument `{keyword.name}`", keyword.span, did_you_mean(keyword.name, names) or f"arguments: {', '.join(names) or 'none'}")
        if keyword.name in values:
            raise SpecError(f"argument `{keyword.name}` of `{name}` given twice", keyword.span)
        arg = signature[names.index(keyword.name)]
        values[arg.name] = check_kind(name, arg, evaluator.eval(keyword.value), keyword.span)
    for arg in signature:
        if arg.name not in values:
            if arg.required:
                raise SpecError(f"missing argument `{arg.name}` of `{name}`", expr.span, f"arguments: {', '.join(str(a) for a in signature)}")
            values[arg.name] = arg.default
    return name, values


def _known(signatures: dict, what: str) -> str:
    return f"{what}s: {', '.join(sorted(signatures))}"
