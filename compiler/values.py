"""Values an expression can have while a spec is elaborated: constants, tensors, ops, blocks."""

from __future__ import annotations

from dataclasses import dataclass, field

from paperspec.compiler import ast
from paperspec.compiler.dims import Sym, is_dim
from paperspec.compiler.ir import BlockGraph, ValueRef
from paperspec.compiler.ops.base import OpDef
from paperspec.compiler.types import TensorType


@dataclass(frozen=True)
class TensorValue:
    ref: ValueRef
    type: TensorType


@dataclass(frozen=True)
class OpValue:
    """An op named without being called, e.g. `act = gelu`."""

    op: OpDef


@dataclass(frozen=True)
class BlockValue:
    """A block definition; calling it with compile-time arguments makes an instance."""

    definition: ast.BlockDef
    unit: object  # the CompilationUnit (spec file) that defines it


@dataclass(eq=False)
class Instance:
    """A block instantiated with arguments; applying it to tensors runs it (shared weights)."""

    block: BlockValue
    args: dict
    span: object
    hint: str | None = None  # the name it was bound to, used as its submodule name
    module: str | None = None  # submodule name, given at first application
    graph: BlockGraph | None = None  # graph of the first application
    owner: BlockGraph | None = None  # the graph that holds it as a submodule
    generic: bool = False  # its graph was compiled with symbolic sizes, to serve uses at several sizes
    applications: list = field(default_factory=list)

    def attribute(self, name: str, span):
        """`net.width`: the value of a parameter the instance was made with (or its default), so
        a procedure can size a tensor by its model instead of repeating the number."""
        if name in self.args:
            return self.args[name]
        from paperspec.compiler.diagnostics import SpecError, did_you_mean

        block = self.block.definition.name
        raise SpecError(f"`{block}` has no parameter `{name}`", span, did_you_mean(name, self.args) or f"parameters: {', '.join(self.args) or 'none'}")


def describe(value: object) -> str:
    """How a value is named in error messages."""
    if isinstance(value, TensorValue):
        return f"tensor {value.type}"
    if isinstance(value, OpValue):
        return f"op `{value.op.name}`"
    if isinstance(value, BlockValue):
        return f"block `{value.definition.name}`"
    if isinstance(value, Instance):
        return f"instance of block `{value.block.definition.name}`"
    if isinstance(value, bool):
        return f"bool {'true' if value else 'false'}"
    if isinstance(value, Sym):
        return f"dim {value}"
    if is_dim(value):
        return f"int {value}"
    if isinstance(value, float):
        return f"float {value}"
    if isinstance(value, str):
        return f"string {value!r}"
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return "list"
    return type(value).__name__


def is_compile_time(value: object) -> bool:
    if isinstance(value, tuple):
        return all(is_compile_time(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str, Sym))
