"""`model q = mixed_precision(warm_start(Model(...), proc.net), average_bits = 3)`: a quantised model
whose per-layer bit widths are chosen when the run starts (after `warm_start` loaded its weights)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from paperspec.compiler import ast
from paperspec.compiler.calls import bind_named_call
from paperspec.compiler.diagnostics import SpecError
from paperspec.compiler.ops.base import parse_signature
from paperspec.compiler.ops.quantization import MAX_BITS

NAME = "mixed_precision"
ALLOCATIONS = ("hessian", "uniform")
SIGNATURE = parse_signature(
    "average_bits: float, allocation: str = 'hessian', choices: ints = [2, 3, 4, 5, 6, 8], batches: int = 4, iterations: int = 50"
)
USAGE = f"usage: {NAME}(model, " + ", ".join(str(arg) for arg in SIGNATURE) + ")"


@dataclass(frozen=True)
class MixedPrecision:
    allocation: str  # "hessian": by HAWQ's sensitivity; "uniform": average_bits everywhere
    average_bits: float  # the parameter-weighted mean the allocation may not exceed
    choices: tuple  # the bit widths a layer may get
    batches: int  # batches of the first phase's data the Hessian is estimated on
    iterations: int  # power-iteration steps per layer at most
    span: object


def is_mixed_precision(expr) -> bool:
    return isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and expr.func.id == NAME


def declare_mixed_precision(elaborator, stmt: ast.TrainModel) -> ast.TrainModel:
    """Records the allocation in the procedure and returns `model q = Model(...)` (or a
    `warm_start(...)` of it), which is then declared like any other model of the procedure."""
    call = stmt.value
    if len(call.args) != 1:
        raise SpecError(f"`{NAME}` takes one model, e.g. `{NAME}(warm_start(Quantized(), full_precision.net), average_bits = 3)`", call.span, USAGE)
    _, settings = bind_named_call(elaborator.evaluator(), dataclasses.replace(call, args=()), {NAME: SIGNATURE}, "model construct")
    choices = tuple(sorted(set(_as_tuple(settings["choices"]))))
    problem = settings_problem(settings["allocation"], settings["average_bits"], choices, settings["batches"], settings["iterations"])
    if problem:
        raise SpecError(problem, _keyword_span(call, problem), USAGE)
    elaborator.procedure.mixed_precision[stmt.name] = MixedPrecision(
        settings["allocation"], settings["average_bits"], choices, settings["batches"], settings["iterations"], call.span
    )
    return dataclasses.replace(stmt, value=call.args[0])


def settings_problem(allocation: str, average_bits: float, choices: tuple, batches: int, iterations: int) -> str | None:
    """What is wrong with the settings, starting with the argument's name, or None."""
    if allocation not in ALLOCATIONS:
        return f"allocation must be one of {', '.join(ALLOCATIONS)}, got {allocation!r}"
    if not choices or any(not 2 <= bits <= MAX_BITS for bits in choices):
        return f"choices must be bit widths from 2 to {MAX_BITS}, got {list(choices)}"
    if allocation == "uniform" and (average_bits != int(average_bits) or not 2 <= average_bits <= MAX_BITS):
        return f"average_bits of a uniform allocation is every layer's width, an integer from 2 to {MAX_BITS}; got {average_bits:g}"
    if allocation == "hessian" and not choices[0] <= average_bits <= choices[-1]:
        return f"average_bits must lie between the smallest and largest choice ({choices[0]} and {choices[-1]}), got {average_bits:g}"
    if batches < 1:
        return f"batches must be at least 1, got {batches}"
    if iterations < 1:
        return f"iterations must be at least 1, got {iterations}"
    return None


def _as_tuple(value) -> tuple:
    return value if isinstance(value, tuple) else (value,)


def _keyword_span(call: ast.Call, problem: str):
    """The span of the keyword a problem names (its first word), else the whole call."""
    name = problem.split(" ", 1)[0]
    return next((keyword.span for keyword in call.keywords if keyword.name == name), call.span)
