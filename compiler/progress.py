"""`progress` in a loss or metric: how far the procedure's training is, a run-time scalar.

A schedule that a loss needs (the weight of a distillation term that grows over training, as in
PS-KD) reads `progress`: s / N at the s-th of the procedure's N training steps (1 / N at the
first, 1 at the last), and s / N at an evaluation after step s. N is the procedure's own length,
so a run cut short with `--steps` is the beginning of the full run. The graph gets a scalar input
named `progress` on first use, which the trainer fills in."""

from __future__ import annotations

from paperspec.compiler.diagnostics import SpecError
from paperspec.compiler.elaborate import Scope
from paperspec.compiler.ir import BlockGraph, InputSpec, ValueRef
from paperspec.compiler.types import TensorType
from paperspec.compiler.values import TensorValue

PROGRESS = "progress"
PROGRESS_TYPE = TensorType("f32", ())


class TrainingScope(Scope):
    """The scope of a loss or metric graph: `batch`, and `progress` when nothing else has that name."""

    def __init__(self, graph: BlockGraph, batch, parent: Scope):
        super().__init__({"batch": batch}, parent=parent)
        self.graph = graph

    def lookup(self, name: str):
        found, value = super().lookup(name)
        if found or name != PROGRESS:
            return found, value
        if PROGRESS in self.values["batch"].data.fields:
            # The graph input would be ambiguous; the field stays readable as `batch.progress`.
            raise SpecError(
                "`progress` is the training progress, but the data has a field `progress` too", self.graph.span,
                "rename the data field",
            )
        self.values[name] = progress_input(self.graph)
        return True, self.values[name]


def progress_input(graph: BlockGraph) -> TensorValue:
    node = graph.add_node("input", {"name": PROGRESS}, [PROGRESS_TYPE], graph.span, names=[PROGRESS])
    graph.inputs.append(InputSpec(PROGRESS, PROGRESS_TYPE, str(PROGRESS_TYPE), (), node.id))
    return TensorValue(ValueRef(node.id), PROGRESS_TYPE)
