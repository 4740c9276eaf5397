"""Convolutions (conv1d, conv2d) and pooling (max and average, 1-d and 2-d) over [N, C, ...] tensors."""

from __future__ import annotations

from paperspec.compiler.dims import Dim, floordiv
from paperspec.compiler.ops.base import ShapeError, register
from paperspec.compiler.ops.shapes import require_float, require_rank


def output_length(size: Dim, kernel: int, stride: int, padding: int, dilation: int = 1) -> Dim:
    """torch's output size of a sliding window: (size + 2p - d(k - 1) - 1) // s + 1."""
    reach = dilation * (kernel - 1) + 1
    return floordiv(size + 2 * padding - reach, stride) + 1


def _spatial(call, op: str, names: tuple, spatial: int) -> dict:
    """Window arguments as tuples of one int per spatial dim, each checked."""
    out = {}
    for name in names:
        value = call[name]
        if value is None:  # a pooling stride left out is the kernel
            out[name] = out["kernel"]
            continue
        pair = (value,) * spatial if isinstance(value, int) else tuple(value)
        if len(pair) != spatial:
            raise ShapeError(f"`{name}` of {op} must be an int or a list of {spatial} ints, got {list(value)}", name)
        lowest = 0 if name == "padding" else 1
        if any(v < lowest for v in pair):
            kind = "non-negative" if name == "padding" else "positive"
            raise ShapeError(f"`{name}` of {op} must be {kind}, got {_show(value)}", name)
        out[name] = pair
    return out


def _output_shape(x, op: str, window: dict, dilation: tuple | None) -> tuple:
    """The spatial output dims (pooling passes no dilation); concrete ones must be at least 1."""
    out = []
    for axis, size in enumerate(x.shape[2:]):
        kernel, stride, padding = window["kernel"][axis], window["stride"][axis], window["padding"][axis]
        length = output_length(size, kernel, stride, padding, dilation[axis] if dilation else 1)
        if isinstance(length, int) and length < 1:
            reach = (dilation[axis] if dilation else 1) * (kernel - 1) + 1
            remedy = "a smaller kernel or dilation" if dilation else "a smaller kernel"
            raise ShapeError(
                f"`{op}` input {x} is too small along dim {axis + 2}: "
                f"the window spans {reach} elements but the padded size is {size + 2 * padding}",
                "kernel",
                f"use {remedy}, or more padding",
            )
        out.append(length)
    return tuple(out)


def _show(value) -> str:
    return str(list(value)) if isinstance(value, tuple) else str(value)


def _compact(pair: tuple) -> str:
    """(3, 3) -> '3', (3, 5) -> '(3, 5)': how a person writes a window size."""
    return str(pair[0]) if len(set(pair)) == 1 else str(pair)


# ---- convolutions ----


def _conv(op: str, spatial: int):
    def infer(call):
        x = call["x"]
        require_float(x, op)
        require_rank(x, op, (spatial + 2,))
        in_channels, channels, groups = x.shape[1], call["channels"], call["groups"]
        if not isinstance(in_channels, int):
            raise ShapeError(f"`{op}` needs a known channel count in dim 1, got {x}", "x", "declare the channels as a number or parameter, e.g. f32[B, 3, L]")
        if channels <= 0:
            raise ShapeError(f"`channels` of {op} must be positive, got {channels}", "channels")
        if groups <= 0:
            raise ShapeError(f"`groups` of {op} must be positive, got {groups}", "groups")
        for name, count in (("input", in_channels), ("output", channels)):
            if count % groups:
                raise ShapeError(f"`groups` = {groups} does not divide the {count} {name} channels of {op}", "groups")
        window = _spatial(call, op, ("kernel", "stride", "padding", "dilation"), spatial)
        call.derived.update(window, in_channels=in_channels)
        shape = _output_shape(x, op, window, window["dilation"])
        return x.with_shape((x.shape[0], channels) + shape)

    return infer


def _conv_module(module: str):
    def constructor(c):
        d = c.derived
        parts = [str(d["in_channels"]), str(c["channels"]), f"kernel_size={_compact(d['kernel'])}"]
        for name, default in (("stride", 1), ("padding", 0), ("dilation", 1)):
            if set(d[name]) != {default}:
                parts.append(f"{name}={_compact(d[name])}")
        if c["groups"] != 1:
            parts.append(f"groups={c['groups']}")
        if not c["bias"]:
            parts.append("bias=False")
        return f"nn.{module}({', '.join(parts)})"

    return constructor


def _window_attributes(c) -> dict:
    """ONNX attributes of a sliding window; pads list every dim's start, then every dim's end."""
    d = c.derived
    return {"kernel_shape": list(d["kernel"]), "strides": list(d["stride"]), "pads": list(d["padding"]) * 2}


def _conv_onnx(c):
    inputs = [c["x"], c.weight("weight")] + ([c.weight("bias")] if c.values["bias"] else [])
    return c.node("Conv", inputs, dilations=list(c.derived["dilation"]), group=c.values["groups"], **_window_attributes(c))


def _conv_params(c):
    weight = (c["channels"], c.derived["in_channels"] // c["groups"]) + c.derived["kernel"]
    return {"weight": weight, "bias": (c["channels"],)} if c["bias"] else {"weight": weight}


_CONV_ARGS = "stride: {t} = 1, padding: {t} = 0, dilation: {t} = 1, groups: int = 1, bias: bool = true"

for _name, _spatial_dims, _kind, _layout in (("conv1d", 1, "int", "[N, C, L]"), ("conv2d", 2, "ints", "[N, C, H, W]")):
    register(
        _name,
        f"x: tensor, channels: int, kernel: {_kind}, " + _CONV_ARGS.format(t=_kind),
        _conv(_name, _spatial_dims),
        lambda c: f"{c.module}({c['x']})",
        f"{_spatial_dims}-d convolution of {_layout} to `channels` output channels (nn.Conv{_spatial_dims}d)",
        category="layer",
        torch_module=_conv_module(f"Conv{_spatial_dims}d"),
        parameters=_conv_params,
        onnx=_conv_onnx,
    )

# ---- pooling ----


def _pool(op: str, spatial: int):
    def infer(call):
        x = call["x"]
        require_float(x, op)
        require_rank(x, op, (spatial + 2,))
        window = _spatial(call, op, ("kernel", "stride", "padding"), spatial)
        for kernel, padding in zip(window["kernel"], window["padding"], strict=True):
            if 2 * padding > kernel:
                raise ShapeError(
                    f"`padding` of {op} must be at most half the kernel, got padding {padding} for kernel {kernel}",
                    "padding",
                )
        call.derived.update(window)
        return x.with_shape(x.shape[:2] + _output_shape(x, op, window, None))

    return infer


def _pool_torch(function: str):
    def lower(c):
        d = c.derived
        parts = [c["x"], _compact(d["kernel"])]
        if d["stride"] != d["kernel"]:
            parts.append(f"stride={_compact(d['stride'])}")
        if set(d["padding"]) != {0}:
            parts.append(f"padding={_compact(d['padding'])}")
        return f"F.{function}({', '.join(parts)})"

    return lower


def _pool_onnx(op_type: str):
    # torch's avg_pool counts the zero padding in each window's size by default
    extra = {"count_include_pad": 1} if op_type == "AveragePool" else {}
    return lambda c: c.node(op_type, [c["x"]], **extra, **_window_attributes(c))


for _name, _spatial_dims, _kind, _what, _layout, _onnx in (
    ("max_pool1d", 1, "int", "maximum", "[N, C, L]", "MaxPool"),
    ("max_pool2d", 2, "ints", "maximum", "[N, C, H, W]", "MaxPool"),
    ("avg_pool1d", 1, "int", "average", "[N, C, L]", "AveragePool"),
    ("avg_pool2d", 2, "ints", "average", "[N, C, H, W]", "AveragePool"),
):
    register(
        _name,
        f"x: tensor, kernel: {_kind}, stride: {_kind}? = none, padding: {_kind} = 0",
        _pool(_name, _spatial_dims),
        _pool_torch(_name),
        f"{_what} over {_spatial_dims}-d windows of {_layout}; stride defaults to the kernel (F.{_name})",
        category="pooling",
        onnx=_pool_onnx(_onnx),
    )
