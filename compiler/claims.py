"""`expect` claims: checked at compile time to name procedures and metrics that exist."""

from __future__ import annotations

from dataclasses import dataclass

from paperspec.compiler import ast
from paperspec.compiler.diagnostics import SpecError, did_you_mean


@dataclass(frozen=True)
class Claim:
    condition: ast.Expr
    within: int | None
    text: str
    span: object


def check_claim(decl: ast.ExpectDecl, procedures: dict, spec) -> Claim:
    """Checks that a claim refers to procedures and metrics that exist."""
    _check_claim_functions(decl.condition)
    paths = _metric_paths(decl.condition)
    if not paths:
        raise SpecError("a claim reads at least one metric", decl.condition.span, "e.g. `expect run.eval.accuracy >= 0.9`")
    for path, span in paths:
        name = path[0]
        if name not in procedures:
            raise SpecError(f"unknown procedure `{name}` in claim", span, did_you_mean(name, procedures))
        if len(path) != 3 or path[1] not in ("eval", "train"):
            raise SpecError("a claim names metrics as `procedure.eval.metric` or `procedure.train.loss`", span)
        known = procedures[name].metric_names() if path[1] == "eval" else ["loss"]
        if path[2] not in known:
            raise SpecError(f"procedure `{name}` has no {path[1]} metric `{path[2]}`", span, did_you_mean(path[2], known) or f"metrics: {', '.join(known) or 'none'}")
    within = None
    if decl.within is not None:
        if not isinstance(decl.within, ast.Literal) or not isinstance(decl.within.value, int) or decl.within.value < 1:
            raise SpecError("`within` needs a positive integer number of steps", decl.within.span)
        within = decl.within.value
    lines = _source_lines(spec.path)
    text = lines[decl.span.line - 1][decl.span.column - 1 :].strip() if lines else "claim"
    return Claim(decl.condition, within, text, decl.span)


CLAIM_FUNCTIONS = ("abs", "min", "max", "steps_to")
CLAIM_OPERATORS = ("+", "-", "*", "/", "**", "and", "or")


def _check_claim_functions(expr) -> None:
    """Claims compare metrics and numbers with arithmetic, `and`/`or`/`not`, and calls of abs,
    min, max and steps_to(condition), nothing else."""
    if isinstance(expr, ast.Name):
        raise SpecError(f"unknown name `{expr.id}` in claim", expr.span, "claims read metrics as `procedure.eval.metric` or `procedure.train.loss`")
    supported = (ast.Literal, ast.Attribute, ast.UnaryOp, ast.BinaryOp, ast.Compare, ast.Call)
    if not isinstance(expr, supported) or (isinstance(expr, ast.BinaryOp) and expr.op not in CLAIM_OPERATORS):
        raise SpecError("a claim cannot use this expression", expr.span, "claims compare metrics and numbers, e.g. `run.eval.accuracy >= 0.9`")
    if isinstance(expr, ast.Attribute) and not _metric_paths(expr):
        raise SpecError("a claim names metrics as `procedure.eval.metric` or `procedure.train.loss`", expr.span)
    if isinstance(expr, ast.Call) and expr.keywords:
        raise SpecError("functions in claims take no keyword arguments", expr.keywords[0].span)
    if isinstance(expr, ast.Call):
        name = expr.func.id if isinstance(expr.func, ast.Name) else None
        if name not in CLAIM_FUNCTIONS:
            raise SpecError(f"a claim cannot call `{name or 'this'}`", expr.span, f"claims may use: {', '.join(CLAIM_FUNCTIONS)}")
        if name == "steps_to" and (len(expr.args) != 1 or not isinstance(expr.args[0], ast.Compare) or not _metric_paths(expr.args[0])):
            raise SpecError("`steps_to` takes one comparison, e.g. steps_to(run.eval.accuracy >= 0.9)", expr.span)
    for child in (getattr(expr, name, None) for name in ("left", "right", "operand")):
        if child is not None:
            _check_claim_functions(child)
    for child in getattr(expr, "args", ()):
        _check_claim_functions(child)


def _metric_paths(expr) -> list:
    if isinstance(expr, ast.Attribute):
        parts, node = [], expr
        while isinstance(node, ast.Attribute):
            parts.append(node.name)
            node = node.value
        if isinstance(node, ast.Name):
            return [(tuple([node.id] + list(reversed(parts))), expr.span)]
        return []
    found = []
    for child in (getattr(expr, name, None) for name in ("left", "right", "operand", "args")):
        if isinstance(child, tuple):
            for item in child:
                found.extend(_metric_paths(item))
        elif child is not None:
            found.extend(_metric_paths(child))
    return found


def _source_lines(path: str) -> list:
    from paperspec.compiler.diagnostics import _SOURCES

    source = _SOURCES.get(path)
    return source.text.splitlines() if source else []
