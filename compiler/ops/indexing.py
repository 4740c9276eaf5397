"""Indexing and slicing, the op behind the `x[...]` syntax."""

from __future__ import annotations

from paperspec.compiler.dims import Dim, floordiv
from paperspec.compiler.ops.base import ShapeError, register
from paperspec.compiler.ops.tensor import INT64_MAX

# ---- indexing (the `x[...]` syntax) ----


def _slice_length(size: Dim, start, stop, step) -> Dim:
    step = 1 if step is None else step
    if not isinstance(step, int) or step <= 0:
        raise ShapeError(f"slice step must be a positive integer, got {step}", "items")
    if isinstance(size, int) and all(isinstance(v, int) or v is None for v in (start, stop)):
        return len(range(size)[slice(start, stop, step)])

    def resolve(value, default):
        if value is None:
            return default
        if isinstance(value, int) and value < 0:
            return size + value
        return value

    length = resolve(stop, size) - resolve(start, 0)
    return length if step == 1 else floordiv(length + (step - 1), step)


def _index(call):
    x, items = call["x"], call["items"]
    consumed = sum(1 for item in items if item[0] in ("int", "slice"))
    if sum(1 for item in items if item[0] == "ellipsis") > 1:
        raise ShapeError("an index may use `..` once", "items")
    if consumed > x.rank:
        raise ShapeError(f"too many indices ({consumed}) for {x}", "items")
    shape, axis = [], 0
    for item in items:
        if item[0] == "ellipsis":
            skip = x.rank - consumed
            shape.extend(x.shape[axis : axis + skip])
            axis += skip
        elif item[0] == "newaxis":
            shape.append(1)
        elif item[0] == "int":
            size, value = x.shape[axis], item[1]
            if isinstance(size, int) and isinstance(value, int) and not -size <= value < size:
                raise ShapeError(f"index {value} is out of range for dim {axis} of {x}", "items")
            axis += 1
        else:
            shape.append(_slice_length(x.shape[axis], *item[1:]))
            axis += 1
    shape.extend(x.shape[axis:])
    return x.with_shape(shape)


def _index_torch(c):
    from paperspec.compiler.backends.pysource import render_dim

    parts = []
    for item in c.values["items"]:
        if item[0] == "ellipsis":
            parts.append("...")
        elif item[0] == "newaxis":
            parts.append("None")
        elif item[0] == "int":
            parts.append(render_dim(item[1], c.symbols))
        else:
            bounds = ["" if v is None else render_dim(v, c.symbols) for v in item[1:]]
            parts.append(":".join(bounds[:2]) + (f":{bounds[2]}" if bounds[2] else ""))
    return f"{c['x']}[{', '.join(parts)}]"


def _index_plan(x, items) -> tuple:
    """(slices as (axis, start, stop, step), integer indices as (axis, index), new-axis positions)."""
    consumed = sum(1 for item in items if item[0] in ("int", "slice"))
    slices, picks, new_axes = [], [], []
    axis = position = 0
    for item in items:
        if item[0] == "ellipsis":
            axis += x.rank - consumed
            position += x.rank - consumed
        elif item[0] == "newaxis":
            new_axes.append(position)
            position += 1
        elif item[0] == "int":
            picks.append((axis, item[1]))
            axis += 1
        else:
            start, stop, step = item[1:]
            if (start, stop, step or 1) != (None, None, 1):
                slices.append((axis, start or 0, INT64_MAX if stop is None else stop, step or 1))
            axis += 1
            position += 1
    return slices, picks, new_axes


def _index_onnx(c):
    """One Slice for the slices, a Gather per integer index (last axis first), one Unsqueeze."""
    x = c["x"]
    slices, picks, new_axes = _index_plan(c.values["x"], c.values["items"])
    if slices:
        bounds = [c.dims([s[i] for s in slices]) for i in (1, 2, 0, 3)]
        x = c.node("Slice", [x, *bounds])
    for axis, index in reversed(picks):
        x = c.node("Gather", [x, c.scalar_dim(index)], axis=axis)
    if new_axes:
        x = c.node("Unsqueeze", [x, c.const(new_axes, "i64")])
    return x if x != c["x"] else c.node("Identity", [x])


register(
    "index",
    "x: tensor, items: any",
    _index,
    _index_torch,
    "indexing and slicing, written x[i, a:b, .., none]",
    category="syntax",
    onnx=_index_onnx,
)
