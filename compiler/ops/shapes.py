"""Shape helpers shared by the shape rules of many ops."""

from __future__ import annotations

from paperspec.compiler.ops.base import ShapeError
from paperspec.compiler.types import TensorType, is_float, promote


def broadcast(a: tuple, b: tuple, op: str) -> tuple:
    """numpy/torch broadcasting of two shapes; symbolic dims must match exactly unless one is 1."""
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            raise ShapeError(
                f"shape mismatch in `{op}`: {_shape(a)} vs {_shape(b)}",
                hint=f"dim {-i} is {x} on the left and {y} on the right; they must be equal or 1",
            )
    return tuple(reversed(out))


def _shape(shape: tuple) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def normalize_axis(axis: int, rank: int, arg: str = "dim") -> int:
    if not -rank <= axis < max(rank, 1):
        raise ShapeError(f"dim {axis} is out of range for a tensor of rank {rank}", arg)
    return axis % rank if rank else 0


def require_float(t: TensorType, op: str, arg: str = "x") -> None:
    if not is_float(t.dtype):
        raise ShapeError(f"`{op}` needs a floating-point tensor, got {t}", arg)


def require_rank(t: TensorType, op: str, ranks, arg: str = "x") -> None:
    if t.rank not in ranks:
        want = " or ".join(str(r) for r in ranks)
        raise ShapeError(f"`{op}` needs a tensor of rank {want}, got {t}", arg)


def last_dim(t: TensorType, op: str, arg: str = "x") -> int:
    if t.rank == 0:
        raise ShapeError(f"`{op}` needs at least one dim, got a scalar {t}", arg)
    dim = t.shape[-1]
    if not isinstance(dim, int):
        raise ShapeError(f"`{op}` needs a known feature size, but the last dim of {t} is symbolic", arg)
    return dim


def binary_type(a, b, op: str) -> TensorType:
    """Result type of elementwise arithmetic where either side may be a Python number."""
    if isinstance(a, TensorType) and isinstance(b, TensorType):
        return TensorType(promote(a.dtype, b.dtype), broadcast(a.shape, b.shape, op))
    tensor, number = (a, b) if isinstance(a, TensorType) else (b, a)
    dtype = tensor.dtype
    if isinstance(number, float) and not is_float(dtype):
        dtype = "f32"
    elif dtype == "bool":  # torch: a bool tensor with an int gives int64
        dtype = "i64"
    return TensorType(dtype, tensor.shape)
