"""Checks a spec's `expect` claims against the results of its training runs."""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

from paperspec.compiler import ast

_COMPARE = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_ARITHMETIC = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv, "**": operator.pow}
_FUNCTIONS = {"abs": abs, "min": min, "max": max}


@dataclass(frozen=True)
class ClaimResult:
    text: str
    passed: bool
    measured: str  # the metric values the claim read
    step: int | None  # for `within`: the first evaluation step where it held


class _Reader:
    """Evaluates a claim's expression over run results; spec text is never executed."""

    def __init__(self, results: dict, record: dict | None = None, procedure: str | None = None):
        self.results = results
        self.record = record
        self.procedure = procedure
        self.read: dict[str, float] = {}

    def value(self, expr):
        if isinstance(expr, ast.Literal):
            return expr.value
        if isinstance(expr, ast.Attribute):
            return self.metric(expr)
        if isinstance(expr, ast.UnaryOp):
            operand = self.value(expr.operand)
            return -operand if expr.op == "-" else not operand
        if isinstance(expr, ast.Compare):
            return _COMPARE[expr.op](self.value(expr.left), self.value(expr.right))
        if isinstance(expr, ast.BinaryOp) and expr.op in ("and", "or"):
            left = self.value(expr.left)
            return (left and self.value(expr.right)) if expr.op == "and" else (left or self.value(expr.right))
        if isinstance(expr, ast.BinaryOp) and expr.op in _ARITHMETIC:
            return _ARITHMETIC[expr.op](self.value(expr.left), self.value(expr.right))
        if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and expr.func.id == "steps_to":
            return self.steps_to(expr.args[0])
        if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and expr.func.id in _FUNCTIONS:
            return _FUNCTIONS[expr.func.id](*(self.value(a) for a in expr.args))
        raise ValueError(f"claims cannot use this expression (line {expr.span.line})")

    def steps_to(self, condition) -> float:
        """The first evaluation step at which `condition` held (inf if it never did)."""
        procedure = _procedure_of(condition)
        # Keyed by the condition: one claim may compare two thresholds of the same procedure.
        key = f"steps_to({_text(condition)})"
        for record in self.results[procedure].history:
            if _Reader(self.results, record, procedure).value(condition):
                self.read[key] = record["step"]
                return record["step"]
        self.read[key] = math.inf
        return math.inf

    def metric(self, expr: ast.Attribute) -> float:
        metric, kind, name = expr.name, expr.value.name, expr.value.value.id
        result = self.results[name]
        if self.record is not None and name == self.procedure:
            # `within` and `steps_to` read the evaluation at one step, the training loss included.
            value = self.record[metric] if kind == "eval" else self.record.get("train_loss", math.nan)
        elif kind == "eval":
            value = result.metrics[metric]
        else:
            value = result.train_loss
        self.read[f"{name}.{kind}.{metric}"] = value
        return value


def check_claims(claims: list, results: dict) -> list:
    """One ClaimResult per claim, in order."""
    return [_check(claim, results) for claim in claims]


def _check(claim, results: dict) -> ClaimResult:
    if claim.within is None:
        reader = _Reader(results)
        passed = bool(reader.value(claim.condition))
        return ClaimResult(claim.text, passed, _show(reader.read), None)
    procedure = _procedure_of(claim.condition)
    for record in results[procedure].history:
        if record["step"] > claim.within:
            break
        reader = _Reader(results, record, procedure)
        if reader.value(claim.condition):
            return ClaimResult(claim.text, True, _show(reader.read) + f" at step {record['step']}", record["step"])
    reader = _Reader(results)
    reader.value(claim.condition)
    return ClaimResult(claim.text, False, _show(reader.read) + f" (not within {claim.within} steps)", None)


def _procedure_of(expr) -> str | None:
    """The first procedure an expression reads (the compiler checked there is one)."""
    if isinstance(expr, ast.Attribute):
        while isinstance(expr.value, ast.Attribute):
            expr = expr.value
        return expr.value.id
    children = [getattr(expr, name, None) for name in ("left", "right", "operand")] + list(getattr(expr, "args", ()))
    for child in children:
        found = _procedure_of(child) if child is not None else None
        if found is not None:
            return found
    return None


def _text(expr) -> str:
    """A claim's sub-expression written back as spec text, to label the values it read."""
    if isinstance(expr, ast.Attribute):
        return f"{_text(expr.value)}.{expr.name}"
    if isinstance(expr, ast.Name):
        return expr.id
    if isinstance(expr, ast.Literal):
        return str(expr.value).lower() if isinstance(expr.value, bool) else str(expr.value)
    if isinstance(expr, (ast.BinaryOp, ast.Compare)):
        return f"{_text(expr.left)} {expr.op} {_text(expr.right)}"
    if isinstance(expr, ast.UnaryOp):
        return f"{expr.op}{' ' if expr.op == 'not' else ''}{_text(expr.operand)}"
    if isinstance(expr, ast.Call):
        return f"{_text(expr.func)}({', '.join(_text(a) for a in expr.args)})"
    return "..."


def _show(values: dict) -> str:
    return ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}" for k, v in values.items())


def format_claims(results: list) -> str:
    width = max([len("claim")] + [len(r.text) for r in results])
    lines = [f"{'claim'.ljust(width)}  result  measured", f"{'-' * width}  ------  --------"]
    for result in results:
        lines.append(f"{result.text.ljust(width)}  {'pass' if result.passed else 'FAIL'}    {result.measured}")
    return "\n".join(lines)
