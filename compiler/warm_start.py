"""`model net = warm_start(TLEG(depth = 8), aux.net)`: a model that trains from another
procedure's trained weights instead of its random initialisation.

When the run starts, every parameter and buffer of the new model whose name the source model
also has gets the source's value (the shapes must agree); the others keep their initialisation.
So a model of another depth can start from the shared weights of a trained one (TLEG's
learngene), or a wider head from a trained body."""

from __future__ import annotations

import dataclasses

from paperspec.compiler import ast
from paperspec.compiler.diagnostics import SpecError, did_you_mean
from paperspec.compiler.ir import state_shapes

USAGE = "e.g. `model net = warm_start(MLP(width = 64), pretrain.net)` in `train finetune after pretrain`"


def is_warm_start(expr) -> bool:
    return isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and expr.func.id == "warm_start"


def declare_warm_start(elaborator, stmt: ast.TrainModel) -> ast.TrainModel:
    """Records where the model's first weights come from; returns the declaration of the model
    itself, which the procedure then declares like any other."""
    call = stmt.value
    if len(call.args) != 2 or call.keywords:
        raise SpecError("`warm_start` takes a model and another procedure's trained model", call.span, USAGE)
    model, source = call.args
    elaborator.procedure.warm_starts[stmt.name] = trained_model(elaborator, source)
    return dataclasses.replace(stmt, value=model)


def trained_model(elaborator, expr) -> tuple:
    """(procedure, model) of `proc.model`, a model of a procedure named in `after`."""
    after = elaborator.definition.after
    if not (isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name) and expr.value.id in after):
        hint = f"procedures in `after`: {', '.join(after)}" if after else USAGE
        raise SpecError("`warm_start` starts from a trained model of a procedure named in `after`, e.g. `pretrain.net`", expr.span, hint)
    procedure = elaborator.done[expr.value.id]
    if expr.name not in procedure.models:
        raise SpecError(f"procedure `{procedure.name}` has no model `{expr.name}`", expr.span, did_you_mean(expr.name, procedure.models))
    return procedure.name, expr.name


def check_warm_starts(elaborator) -> None:
    """The shapes a warm start copies must agree, and there must be some: checked here, so
    `paperspec check` finds the mismatch rather than the run that needed the source's weights."""
    for name, (procedure, model) in elaborator.procedure.warm_starts.items():
        instance = elaborator.declared[name]
        if instance.graph is None:
            continue  # unused: reported by the procedure
        source = state_shapes(elaborator.done[procedure].modules.modules[model].graph)
        target = state_shapes(instance.graph)
        shared = sorted(set(source) & set(target))
        if not shared:
            raise SpecError(f"`{name}` shares no parameter name with `{procedure}.{model}`, so the warm start copies nothing", instance.span)
        mismatched = [f"`{key}` {_shown(source[key])} vs {_shown(target[key])}" for key in shared if _differ(source[key], target[key])]
        if mismatched:
            raise SpecError(f"`{name}` cannot start from `{procedure}.{model}`: shapes differ: " + "; ".join(mismatched), instance.span)


def _differ(first: tuple, second: tuple) -> bool:
    if len(first) != len(second):
        return True
    return any(isinstance(a, int) and isinstance(b, int) and a != b for a, b in zip(first, second))


def _shown(shape: tuple) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"
