"""Ops that make new tensors: zeros, ones, randn, randint, arange."""

from __future__ import annotations

from paperspec.compiler.ops.base import ShapeError, register
from paperspec.compiler.ops.tensor import TORCH_DTYPES
from paperspec.compiler.types import DTYPES, TensorType

# ---- creation ----


def _creation(name: str):
    def infer(call):
        shape = call["shape"]
        if call["dtype"] not in DTYPES:
            raise ShapeError(f"unknown dtype {call['dtype']!r}", "dtype", f"dtypes: {', '.join(DTYPES)}")
        for d in shape:
            if isinstance(d, int) and d < 0:
                raise ShapeError(f"`{name}` needs non-negative dims, got {list(shape)}", "shape")
        if name == "randn" and call["dtype"] not in ("f16", "bf16", "f32", "f64"):
            raise ShapeError("`randn` makes floating-point tensors", "dtype")
        return TensorType(call["dtype"], tuple(shape))

    return infer


def _creation_torch(function: str):
    def lower(c):
        return f"torch.{function}({c['shape']}, dtype={TORCH_DTYPES[c.values['dtype']]}, device={c.device})"

    return lower


def _fill_onnx(value):
    return lambda c: c.fill(c.dims(c.values["shape"]), value, c.values["dtype"])


register(
    "zeros",
    "shape: dims, dtype: str = 'f32'",
    _creation("zeros"),
    _creation_torch("zeros"),
    "a tensor of zeros",
    category="creation",
    onnx=_fill_onnx(0),
)
register(
    "ones",
    "shape: dims, dtype: str = 'f32'",
    _creation("ones"),
    _creation_torch("ones"),
    "a tensor of ones",
    category="creation",
    onnx=_fill_onnx(1),
)
register(
    "randn",
    "shape: dims, dtype: str = 'f32'",
    _creation("randn"),
    _creation_torch("randn"),
    "standard normal samples",
    category="creation",
    stochastic=True,
    not_exportable="its samples come from PyTorch's generator, which ONNX runtimes cannot reproduce; pass noise in as a model input",
)


def _randint(call):
    if any(isinstance(d, int) and d < 0 for d in call["shape"]):
        raise ShapeError(f"`randint` needs non-negative dims, got {list(call['shape'])}", "shape")
    if call["high"] <= call["low"]:
        raise ShapeError(f"`randint` draws from low..high-1, so it needs high > low; got low = {call['low']}, high = {call['high']}", "high")
    return TensorType("i64", tuple(call["shape"]))


register(
    "randint",
    "shape: dims, high: int, low: int = 0",
    _randint,
    lambda c: f"torch.randint({c.values['low']}, {c.values['high']}, {c['shape']}, device={c.device})",
    "uniform random integers low..high-1 (i64), e.g. a random wrong class: (y + randint([B], classes - 1, low = 1)) % classes",
    category="creation",
    stochastic=True,
    not_exportable="its samples come from PyTorch's generator, which ONNX runtimes cannot reproduce; pass them in as a model input",
)


def _arange(call):
    if isinstance(call["n"], int) and call["n"] < 0:
        raise ShapeError(f"arange needs n >= 0, got {call['n']}", "n")
    if call["dtype"] not in DTYPES:
        raise ShapeError(f"unknown dtype {call['dtype']!r}", "dtype")
    return TensorType(call["dtype"], (call["n"],))


def _arange_onnx(c):
    dtype = c.values["dtype"]
    counting = dtype if dtype in ("f32", "f64", "i32", "i64") else "i64"  # the types Range takes
    limit = c.cast(c.scalar_dim(c.values["n"]), "i64", counting)
    values = c.node("Range", [c.const(0, counting), limit, c.const(1, counting)])
    return c.cast(values, counting, dtype)


register(
    "arange",
    "n: dim, dtype: str = 'i64'",
    _arange,
    lambda c: f"torch.arange({c['n']}, dtype={TORCH_DTYPES[c.values['dtype']]}, device={c.device})",
    "0, 1, ..., n-1",
    category="creation",
    onnx=_arange_onnx,
)

