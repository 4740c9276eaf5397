"""Tensor types of the IR: a dtype and a shape of concrete or symbolic dims."""

from __future__ import annotations

from dataclasses import dataclass

from paperspec.compiler.dims import Dim, Sym, render, substitute

DTYPES = {
    "f16": "float16",
    "bf16": "bfloat16",
    "f32": "float32",
    "f64": "float64",
    "i32": "int32",
    "i64": "int64",
    "bool": "bool",
}
FLOAT_DTYPES = ("f16", "bf16", "f32", "f64")
INT_DTYPES = ("i32", "i64")


@dataclass(frozen=True)
class TensorType:
    dtype: str
    shape: tuple  # of Dim

    @property
    def rank(self) -> int:
        return len(self.shape)

    def __str__(self) -> str:
        return f"{self.dtype}[{', '.join(str(d) for d in self.shape)}]"

    def with_shape(self, shape) -> TensorType:
        return TensorType(self.dtype, tuple(shape))

    def with_dtype(self, dtype: str) -> TensorType:
        return TensorType(dtype, self.shape)

    def substitute(self, mapping: dict) -> TensorType:
        return TensorType(self.dtype, tuple(substitute(d, mapping) for d in self.shape))

    def symbols(self) -> set[str]:
        names: set[str] = set()
        for dim in self.shape:
            if isinstance(dim, Sym):
                names |= dim.atoms()
        return names


def is_float(dtype: str) -> bool:
    return dtype in FLOAT_DTYPES


def promote(a: str, b: str) -> str:
    """Result dtype of a binary arithmetic op, following torch's promotion for these dtypes."""
    order = ["bool", "i32", "i64", "f16", "bf16", "f32", "f64"]
    if {a, b} == {"f16", "bf16"}:
        return "f32"
    return max(a, b, key=order.index)


def render_dim(dim: Dim) -> str:
    return render(dim, str)
