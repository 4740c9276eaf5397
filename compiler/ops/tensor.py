"""Tensor ops without weights: matmul, einsum, reshaping, joining, splitting and reductions."""

from __future__ import annotations

import re

from paperspec.compiler.dims import Dim, Sym, floordiv, mul
from paperspec.compiler.ops.base import ShapeError, register
from paperspec.compiler.ops.shapes import broadcast, normalize_axis
from paperspec.compiler.types import DTYPES, TensorType, promote

INT64_MAX = 2**63 - 1  # an open slice end in ONNX

TORCH_DTYPES = {name: f"torch.{full}" for name, full in DTYPES.items()}


def _product(dims) -> Dim:
    total: Dim = 1
    for dim in dims:
        total = mul(total, dim)
    return total


def exact_divide(total: Dim, part: Dim) -> Dim | None:
    """total / part when it is exact (part an int or a single monomial), else None."""
    if isinstance(part, int):
        if part == 0:
            return None
        result = floordiv(total, part)
        return result if mul(result, part) == total else None
    if len(part.terms) != 1 or isinstance(total, int):
        return None
    (monomial, coeff), = part.terms
    out = {}
    for mono, c in total.terms:
        rest = list(mono)
        for atom in monomial:
            if atom not in rest:
                return None
            rest.remove(atom)
        if c % coeff:
            return None
        out[tuple(rest)] = c // coeff
    return Sym.from_terms(out)


# ---- matmul and einsum ----


def _matmul(call):
    a, b = call["x"], call["y"]
    if a.rank == 0 or b.rank == 0:
        raise ShapeError(f"`@` needs tensors of rank >= 1, got {a} and {b}", "x")
    inner_a = a.shape[-1]
    inner_b = b.shape[0] if b.rank == 1 else b.shape[-2]
    if inner_a != inner_b:
        raise ShapeError(
            f"shape mismatch in `@`: {a} @ {b}", "y", f"the inner dims must agree: {inner_a} vs {inner_b}"
        )
    dtype = promote(a.dtype, b.dtype)
    if a.rank == 1 and b.rank == 1:
        return TensorType(dtype, ())
    if a.rank == 1:
        return TensorType(dtype, b.shape[:-2] + (b.shape[-1],))
    if b.rank == 1:
        return TensorType(dtype, a.shape[:-1])
    batch = broadcast(a.shape[:-2], b.shape[:-2], "@")
    return TensorType(dtype, batch + (a.shape[-2], b.shape[-1]))


def _matmul_onnx(c):
    dtype = c.out_types[0].dtype
    return c.node("MatMul", [c.operand("x", dtype), c.operand("y", dtype)])


register(
    "matmul",
    "x: tensor, y: tensor",
    _matmul,
    lambda c: f"{c['x']} @ {c['y']}",
    "matrix product with batch broadcasting (also `x @ y`)",
    onnx=_matmul_onnx,
)


def _einsum(call):
    equation, operands = call["equation"].replace(" ", ""), call["operands"]
    match = re.fullmatch(r"([a-zA-Z,]+)->([a-zA-Z]*)", equation)
    if not match:
        raise ShapeError(f"einsum equation {equation!r} must look like 'ij,jk->ik' (explicit output)", "equation")
    inputs = match.group(1).split(",")
    if len(inputs) != len(operands):
        raise ShapeError(f"einsum equation has {len(inputs)} operands, got {len(operands)} tensors", "equation")
    sizes: dict = {}
    for letters, operand in zip(inputs, operands):
        if len(letters) != operand.rank:
            raise ShapeError(f"einsum operand {letters!r} needs rank {len(letters)}, got {operand}", "operands")
        for letter, dim in zip(letters, operand.shape):
            if letter in sizes and sizes[letter] != dim and 1 not in (dim, sizes[letter]):
                raise ShapeError(f"einsum index {letter!r} is {sizes[letter]} in one operand and {dim} in another", "operands")
            if letter not in sizes or sizes[letter] == 1:
                sizes[letter] = dim
    out = match.group(2)
    for letter in out:
        if letter not in sizes:
            raise ShapeError(f"einsum output index {letter!r} appears in no operand", "equation")
    dtype = operands[0].dtype
    for operand in operands[1:]:
        dtype = promote(dtype, operand.dtype)
    return TensorType(dtype, tuple(sizes[letter] for letter in out))


def _einsum_onnx(c):
    dtype = c.out_types[0].dtype
    operands = [c.cast(name, t.dtype, dtype) for name, t in zip(c["operands"], c.values["operands"], strict=True)]
    return c.node("Einsum", operands, equation=c.values["equation"].replace(" ", ""))


register(
    "einsum",
    "equation: str, *operands: tensor",
    _einsum,
    lambda c: f"torch.einsum({c['equation']}, {c['operands'][1:-1]})",
    "Einstein summation, e.g. einsum('bij,bjk->bik', a, b)",
    onnx=_einsum_onnx,
)

# ---- reshaping ----


def _reshape(call):
    x, shape = call["x"], list(call["shape"])
    total = _product(x.shape)
    unknown = [i for i, d in enumerate(shape) if d == -1]
    if len(unknown) > 1:
        raise ShapeError("reshape takes at most one -1", "shape")
    if any(isinstance(d, int) and d < -1 for d in shape):
        raise ShapeError(f"reshape dims must be positive (or one -1), got {list(shape)}", "shape")
    if unknown:
        known = _product(d for i, d in enumerate(shape) if i != unknown[0])
        inferred = exact_divide(total, known)
        if inferred is None:
            raise ShapeError(f"cannot reshape {x} to {_dims(shape)}: {total} elements do not divide by {known}", "shape")
        shape[unknown[0]] = inferred
    elif _product(shape) != total:
        raise ShapeError(f"cannot reshape {x} ({total} elements) to {_dims(shape)} ({_product(shape)} elements)", "shape")
    return x.with_shape(shape)


def _dims(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _reshape_onnx(c):
    """Reshape to the inferred shape; symbolic dims come from the inputs' shapes, one as -1."""
    return c.node("Reshape", [c["x"], c.dims(c.out_types[0].shape, wildcard=True)])


register(
    "reshape",
    "x: tensor, shape: dims",
    _reshape,
    lambda c: f"{c['x']}.reshape({c['shape']})",
    "same elements in a new shape; one dim may be -1",
    onnx=_reshape_onnx,
)


def _flatten(call):
    x = call["x"]
    if x.rank == 0:
        return x.with_shape((1,))
    start, end = normalize_axis(call["start"], x.rank, "start"), normalize_axis(call["end"], x.rank, "end")
    if start > end:
        raise ShapeError(f"flatten start {call['start']} is after end {call['end']}", "start")
    return x.with_shape(x.shape[:start] + (_product(x.shape[start : end + 1]),) + x.shape[end + 1 :])


register(
    "flatten",
    "x: tensor, start: int = 0, end: int = -1",
    _flatten,
    lambda c: f"{c['x']}.flatten({c['start']}, {c['end']})",
    "merges dims start..end into one",
    onnx=_reshape_onnx,
)


def _transpose(call):
    x = call["x"]
    a, b = normalize_axis(call["dim0"], x.rank, "dim0"), normalize_axis(call["dim1"], x.rank, "dim1")
    shape = list(x.shape)
    shape[a], shape[b] = shape[b], shape[a]
    return x.with_shape(shape)


def _transpose_onnx(c):
    rank = c.values["x"].rank
    perm = list(range(rank))
    a, b = normalize_axis(c.values["dim0"], rank), normalize_axis(c.values["dim1"], rank)
    perm[a], perm[b] = perm[b], perm[a]
    return c.node("Transpose", [c["x"]], perm=perm)


register(
    "transpose",
    "x: tensor, dim0: int = -2, dim1: int = -1",
    _transpose,
    lambda c: f"{c['x']}.transpose({c['dim0']}, {c['dim1']})",
    "swaps two dims",
    onnx=_transpose_onnx,
)


def _permute(call):
    x, dims = call["x"], call["dims"]
    dims = (dims,) if isinstance(dims, int) else dims
    axes = [normalize_axis(d, x.rank, "dims") for d in dims]
    if sorted(axes) != list(range(x.rank)):
        raise ShapeError(f"permute needs each of the {x.rank} dims of {x} once, got {list(dims)}", "dims")
    return x.with_shape(tuple(x.shape[a] for a in axes))


def _permute_onnx(c):
    dims, rank = c.values["dims"], c.values["x"].rank
    dims = (dims,) if isinstance(dims, int) else dims
    return c.node("Transpose", [c["x"]], perm=[normalize_axis(d, rank) for d in dims])


register("permute", "x: tensor, dims: ints", _permute, lambda c: f"{c['x']}.permute({c['dims']})", "reorders all dims", onnx=_permute_onnx)


def _unsqueeze(call):
    x = call["x"]
    axis = normalize_axis(call["dim"], x.rank + 1)
    return x.with_shape(x.shape[:axis] + (1,) + x.shape[axis:])


register(
    "unsqueeze",
    "x: tensor, dim: int",
    _unsqueeze,
    lambda c: f"{c['x']}.unsqueeze({c['dim']})",
    "inserts a dim of size 1",
    onnx=lambda c: c.node("Unsqueeze", [c["x"], c.const([c.values["dim"]], "i64")]),
)


def _squeeze(call):
    x = call["x"]
    axis = normalize_axis(call["dim"], x.rank)
    if x.shape[axis] != 1:
        raise ShapeError(f"cannot squeeze dim {call['dim']} of {x}: its size is {x.shape[axis]}, not 1", "dim")
    return x.with_shape(x.shape[:axis] + x.shape[axis + 1 :])


register(
    "squeeze",
    "x: tensor, dim: int",
    _squeeze,
    lambda c: f"{c['x']}.squeeze({c['dim']})",
    "removes a dim of size 1",
    onnx=lambda c: c.node("Squeeze", [c["x"], c.const([c.values["dim"]], "i64")]),
)


def _cast(call):
    if call["dtype"] not in DTYPES:
        raise ShapeError(f"unknown dtype {call['dtype']!r}", "dtype", f"dtypes: {', '.join(DTYPES)}")
    return call["x"].with_dtype(call["dtype"])


register(
    "cast",
    "x: tensor, dtype: str",
    _cast,
    lambda c: f"{c['x']}.to({TORCH_DTYPES[c.values['dtype']]})",
    "converts to another dtype",
    onnx=lambda c: c.cast(c["x"], c.values["x"].dtype, c.values["dtype"]),
)

# ---- joining and splitting ----


def _join(name: str, new_axis: bool):
    def infer(call):
        xs = call["xs"]
        first = xs[0]
        rank = first.rank + (1 if new_axis else 0)
        axis = normalize_axis(call["dim"], rank)
        dtype = first.dtype
        for i, t in enumerate(xs[1:], start=1):
            dtype = promote(dtype, t.dtype)
            if t.rank != first.rank:
                raise ShapeError(f"`{name}` needs tensors of one rank: {first} vs {t} (item {i})", "xs")
            for d, (p, q) in enumerate(zip(first.shape, t.shape)):
                if p != q and (new_axis or d != axis):
                    raise ShapeError(f"`{name}` shapes differ in dim {d}: {first} vs {t} (item {i})", "xs")
        if new_axis:
            shape = first.shape[:axis] + (len(xs),) + first.shape[axis:]
        else:
            joined: Dim = 0
            for t in xs:
                joined = joined + t.shape[axis]
            shape = first.shape[:axis] + (joined,) + first.shape[axis + 1 :]
        return TensorType(dtype, shape)

    return infer


def _join_onnx(new_axis: bool):
    def lower(c):
        dtype, rank = c.out_types[0].dtype, c.out_types[0].rank
        parts = [c.cast(name, t.dtype, dtype) for name, t in zip(c["xs"], c.values["xs"], strict=True)]
        axis = normalize_axis(c.values["dim"], rank)
        if new_axis:
            parts = [c.node("Unsqueeze", [part, c.const([axis], "i64")]) for part in parts]
        return c.node("Concat", parts, axis=axis)

    return lower


register(
    "concat",
    "xs: tensors, dim: int = 0",
    _join("concat", False),
    lambda c: f"torch.cat({c['xs']}, dim={c['dim']})",
    "joins tensors along an existing dim",
    onnx=_join_onnx(False),
)
register(
    "stack",
    "xs: tensors, dim: int = 0",
    _join("stack", True),
    lambda c: f"torch.stack({c['xs']}, dim={c['dim']})",
    "joins tensors along a new dim",
    onnx=_join_onnx(True),
)


def _split(call):
    x, sections = call["x"], call["sections"]
    axis = normalize_axis(call["dim"], x.rank)
    size = x.shape[axis]
    if isinstance(sections, int):
        if sections <= 0:
            raise ShapeError(f"split needs a positive number of parts, got {sections}", "sections")
        part = exact_divide(size, sections)
        if part is None:
            raise ShapeError(f"cannot split dim {call['dim']} of size {size} into {sections} equal parts", "sections")
        sizes = [part] * sections
    else:
        sizes = list(sections)
        if sum(sizes) != size:
            raise ShapeError(f"split sizes {list(sections)} add up to {sum(sizes)}, but dim {call['dim']} of {x} is {size}", "sections")
    call.derived["tuple_output"] = True
    return [x.with_shape(x.shape[:axis] + (s,) + x.shape[axis + 1 :]) for s in sizes]


def _split_torch(c):
    if isinstance(c.values["sections"], int):
        return f"{c['x']}.chunk({c['sections']}, dim={c['dim']})"
    return f"{c['x']}.split({list(c.values['sections'])}, dim={c['dim']})"


def _split_onnx(c):
    axis = normalize_axis(c.values["dim"], c.values["x"].rank)
    sizes = [t.shape[axis] for t in c.out_types]
    if all(isinstance(size, int) for size in sizes):
        return c.node("Split", [c["x"], c.const(sizes, "i64")], outputs=len(sizes), axis=axis)
    return c.node("Split", [c["x"]], outputs=len(sizes), axis=axis, num_outputs=len(sizes))


register(
    "split",
    "x: tensor, sections: ints, dim: int = -1",
    _split,
    _split_torch,
    "splits into `sections` equal parts, or parts of the listed sizes; gives a tuple",
    onnx=_split_onnx,
)

# ---- reductions ----


def _reduction(name: str):
    def infer(call):
        x, dims = call["x"], call["dim"]
        if name == "mean" and x.dtype not in ("f16", "bf16", "f32", "f64"):
            raise ShapeError(f"`mean` needs a floating-point tensor, got {x}", "x")
        if name == "sum" and x.dtype in ("bool", "i32"):  # torch sums these as int64
            x = x.with_dtype("i64")
        if dims is None:
            return x.with_shape(()) if not call["keepdim"] else x.with_shape((1,) * x.rank)
        dims = (dims,) if isinstance(dims, int) else dims
        axes = {normalize_axis(d, x.rank) for d in dims}
        if len(axes) != len(dims):
            raise ShapeError(f"`{name}` names a dim twice in dim = {list(dims)} for {x}", "dim")
        if call["keepdim"]:
            shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
        else:
            shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
        return x.with_shape(shape)

    return infer


def _reduction_torch(method: str):
    def lower(c):
        if c.values["dim"] is None:
            if c.values["keepdim"]:
                return f"{c['x']}.{method}(dim=tuple(range({c['x']}.dim())), keepdim=True)"
            return f"{c['x']}.{method}()"
        keep = ", keepdim=True" if c.values["keepdim"] else ""
        return f"{c['x']}.{method}(dim={c['dim']}{keep})"

    return lower


def _reduction_onnx(op: str):
    def lower(c):
        dims, rank = c.values["dim"], c.values["x"].rank
        inputs = [c.cast(c["x"], c.values["x"].dtype, c.out_types[0].dtype)]  # bool and i32 sums are i64
        if dims is not None:
            dims = (dims,) if isinstance(dims, int) else dims
            inputs.append(c.const([normalize_axis(d, rank) for d in dims], "i64"))
        return c.node(op, inputs, keepdims=int(c.values["keepdim"]))

    return lower


_REDUCTIONS = (
    ("sum", "sum", "ReduceSum", "sum over dims"),
    ("mean", "mean", "ReduceMean", "mean over dims"),
    ("max", "amax", "ReduceMax", "maximum over dims"),
    ("min", "amin", "ReduceMin", "minimum over dims"),
)
for _name, _method, _onnx_op, _doc in _REDUCTIONS:
    register(
        _name,
        "x: tensor, dim: ints? = none, keepdim: bool = false",
        _reduction(_name),
        _reduction_torch(_method),
        _doc + " (all dims when dim is none)",
        category="reduction",
        onnx=_reduction_onnx(_onnx_op),
    )
