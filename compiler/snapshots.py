"""`model past = snapshot(net, every = N)`: a frozen copy of a model's weights, taken every N steps.

A loss can then compare the model with itself as it was up to N steps ago, e.g. with its own
predictions of the previous epoch (PS-KD, Kim et al. 2021). Before the first copy, at step N,
the snapshot holds the model's initial weights."""

from __future__ import annotations

from paperspec.compiler import ast
from paperspec.compiler.diagnostics import SpecError

USAGE = "e.g. `model past = snapshot(net, every = 100)`"


def declare_snapshot(elaborator, stmt: ast.TrainModel) -> None:
    """Declares the snapshot as a model of the procedure with the copied model's block."""
    call, procedure = stmt.value, elaborator.procedure
    source = call.args[0].id if len(call.args) == 1 and isinstance(call.args[0], ast.Name) else None
    if source not in elaborator.declared or source in procedure.emas or source in procedure.snapshots:
        raise SpecError("`snapshot` copies a model this procedure trains", call.span, USAGE)
    every = None
    for keyword in call.keywords:
        if keyword.name != "every":
            raise SpecError(f"`snapshot` has no argument `{keyword.name}`", keyword.span, "arguments: every")
        every = elaborator.positive_int(keyword.value, "`every` of snapshot")
    if every is None:
        raise SpecError("`snapshot` needs `every = N`, the steps between copies", call.span, USAGE)
    elaborator.declare_follower(stmt, source)
    procedure.snapshots[stmt.name] = (source, every)
