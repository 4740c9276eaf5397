"""Elementwise ops: arithmetic with broadcasting, comparisons and activations."""

from __future__ import annotations

import math

from paperspec.compiler.ops.base import ShapeError, register
from paperspec.compiler.ops.shapes import binary_type, broadcast, require_float
from paperspec.compiler.types import TensorType, is_float

_ARITHMETIC = {
    "add": ("+", "x + y, broadcasting"),
    "sub": ("-", "x - y, broadcasting"),
    "mul": ("*", "x * y, broadcasting"),
    "div": ("/", "x / y, broadcasting (true division)"),
    "floordiv": ("//", "x // y, broadcasting"),
    "mod": ("%", "x % y, broadcasting"),
    "pow": ("**", "x ** y, broadcasting"),
}

_COMPARISONS = {
    "eq": "==",
    "ne": "!=",
    "lt": "<",
    "le": "<=",
    "gt": ">",
    "ge": ">=",
}


def _arithmetic_rule(symbol: str):
    def infer(call):
        a, b = call["x"], call["y"]
        if not isinstance(a, TensorType) and not isinstance(b, TensorType):
            raise ShapeError(f"`{symbol}` needs a tensor operand", "x")
        result = binary_type(a, b, symbol)
        if symbol == "/" and result.dtype not in ("f16", "bf16", "f32", "f64"):
            result = result.with_dtype("f32")
        return result

    return infer


def _comparison_rule(symbol: str):
    def infer(call):
        return binary_type(call["x"], call["y"], symbol).with_dtype("bool")

    return infer


def _floordiv_onnx(c, x: str, y: str, dtype: str) -> str:
    if is_float(dtype):
        return c.node("Floor", [c.node("Div", [x, y])])
    # x - x mod y is a multiple of y, so the truncating integer Div gives Python's floor division
    return c.node("Div", [c.node("Sub", [x, c.node("Mod", [x, y])]), y])


def _mod_onnx(c, x: str, y: str, dtype: str) -> str:
    if is_float(dtype):
        return c.node("Sub", [x, c.node("Mul", [y, c.node("Floor", [c.node("Div", [x, y])])])])
    return c.node("Mod", [x, y])  # fmod=0: the result takes the divisor's sign, like torch's %


_ARITHMETIC_ONNX = {
    "add": lambda c, x, y, dtype: c.node("Add", [x, y]),
    "sub": lambda c, x, y, dtype: c.node("Sub", [x, y]),
    "mul": lambda c, x, y, dtype: c.node("Mul", [x, y]),
    "div": lambda c, x, y, dtype: c.node("Div", [x, y]),
    "floordiv": _floordiv_onnx,
    "mod": _mod_onnx,
    "pow": lambda c, x, y, dtype: c.node("Pow", [x, y]),
}


def _arithmetic_onnx(name: str):
    def lower(c):
        dtype = c.out_types[0].dtype
        return _ARITHMETIC_ONNX[name](c, c.operand("x", dtype), c.operand("y", dtype), dtype)

    return lower


for _name, (_symbol, _doc) in _ARITHMETIC.items():
    register(
        _name,
        "x: scalar, y: scalar",
        _arithmetic_rule(_symbol),
        lambda c, s=_symbol: f"{c['x']} {s} {c['y']}",
        _doc,
        category="arithmetic",
        onnx=_arithmetic_onnx(_name),
    )

_COMPARISONS_ONNX = {"eq": "Equal", "ne": "Equal", "lt": "Less", "le": "LessOrEqual", "gt": "Greater", "ge": "GreaterOrEqual"}


def _comparison_onnx(name: str):
    def lower(c):
        dtype = binary_type(c.values["x"], c.values["y"], name).dtype
        result = c.node(_COMPARISONS_ONNX[name], [c.operand("x", dtype), c.operand("y", dtype)])
        return c.node("Not", [result]) if name == "ne" else result

    return lower


for _name, _symbol in _COMPARISONS.items():
    register(
        _name,
        "x: scalar, y: scalar",
        _comparison_rule(_symbol),
        lambda c, s=_symbol: f"{c['x']} {s} {c['y']}",
        f"x {_symbol} y elementwise, giving a bool tensor",
        category="arithmetic",
        onnx=_comparison_onnx(_name),
    )

def _neg(call):
    if call["x"].dtype == "bool":
        raise ShapeError(f"cannot negate a bool tensor {call['x']}", "x", "compare the other way round instead, e.g. `x <= 0` for the opposite of `x > 0`")
    return call["x"]


register("neg", "x: tensor", _neg, lambda c: f"-{c['x']}", "-x", category="arithmetic", onnx=lambda c: c.node("Neg", [c["x"]]))


def _float_unary(name: str):
    def infer(call):
        require_float(call["x"], name)
        return call["x"]

    return infer


# name -> (signature, torch expression template, doc)
ACTIVATIONS = {
    "relu": ("x: tensor", "F.relu({x})", "max(x, 0)"),
    "gelu": ("x: tensor, approximate: str = 'none'", "F.gelu({x}{approximate_kw})", "Gaussian error linear unit"),
    "silu": ("x: tensor", "F.silu({x})", "x * sigmoid(x) (swish)"),
    "tanh": ("x: tensor", "torch.tanh({x})", "hyperbolic tangent"),
    "sigmoid": ("x: tensor", "torch.sigmoid({x})", "logistic sigmoid"),
    "softplus": ("x: tensor, beta: float = 1.0", "F.softplus({x}{beta_kw})", "log(1 + exp(beta x)) / beta"),
}

MATH = {
    "exp": ("torch.exp({x})", "e ** x"),
    "log": ("torch.log({x})", "natural logarithm"),
    "sqrt": ("torch.sqrt({x})", "square root"),
    "abs": ("torch.abs({x})", "absolute value"),
    "sin": ("torch.sin({x})", "sine"),
    "cos": ("torch.cos({x})", "cosine"),
}


def _activation_torch(template: str):
    def lower(c):
        fields = dict(c.args)
        fields["approximate_kw"] = f", approximate={c['approximate']}" if c.values.get("approximate", "none") != "none" else ""
        fields["beta_kw"] = f", beta={c['beta']}" if c.values.get("beta", 1.0) != 1.0 else ""
        return template.format(**fields)

    return lower


def _check_gelu(call):
    require_float(call["x"], "gelu")
    if call["approximate"] not in ("none", "tanh"):
        raise ShapeError("`approximate` of gelu must be 'none' or 'tanh'", "approximate")
    return call["x"]


def _gelu_onnx(c):
    x, dtype, approximate = c["x"], c.values["x"].dtype, c.values["approximate"]
    if c.opset >= 20:
        return c.node("Gelu", [x], approximate=approximate)
    if approximate == "tanh":
        cube = c.node("Mul", [x, c.node("Mul", [x, x])])
        inner = c.node("Add", [x, c.node("Mul", [cube, c.const(0.044715, dtype)])])
        gate = c.node("Tanh", [c.node("Mul", [inner, c.const(math.sqrt(2 / math.pi), dtype)])])
    else:
        gate = c.node("Erf", [c.node("Div", [x, c.const(math.sqrt(2.0), dtype)])])
    return c.node("Mul", [c.node("Mul", [x, c.const(0.5, dtype)]), c.node("Add", [gate, c.const(1.0, dtype)])])


def _softplus_onnx(c):
    beta, dtype = c.values["beta"], c.values["x"].dtype
    if beta == 1.0:
        return c.node("Softplus", [c["x"]])
    scaled = c.node("Softplus", [c.node("Mul", [c["x"], c.const(beta, dtype)])])
    return c.node("Div", [scaled, c.const(beta, dtype)])


def _unary_onnx(op_type: str):
    return lambda c: c.node(op_type, [c["x"]])


ACTIVATIONS_ONNX = {
    "relu": _unary_onnx("Relu"),
    "gelu": _gelu_onnx,
    "silu": lambda c: c.node("Mul", [c["x"], c.node("Sigmoid", [c["x"]])]),
    "tanh": _unary_onnx("Tanh"),
    "sigmoid": _unary_onnx("Sigmoid"),
    "softplus": _softplus_onnx,
}

for _name, (_signature, _template, _doc) in ACTIVATIONS.items():
    register(
        _name,
        _signature,
        _check_gelu if _name == "gelu" else _float_unary(_name),
        _activation_torch(_template),
        _doc,
        category="activation",
        onnx=ACTIVATIONS_ONNX[_name],
    )

for _name, (_template, _doc) in MATH.items():
    register(
        _name,
        "x: tensor",
        _float_unary(_name),
        lambda c, t=_template: t.format(x=c["x"]),
        _doc,
        category="arithmetic",
        onnx=_unary_onnx(_name.capitalize()),
    )


def _where(call):
    condition, a, b = call["condition"], call["x"], call["y"]
    if condition.dtype != "bool":
        raise ShapeError(f"the condition of `where` must be a bool tensor, got {condition}", "condition")
    if not isinstance(a, TensorType) and not isinstance(b, TensorType):
        # torch.where with two numbers gives the default float dtype, or int64 for two ints
        value = TensorType("f32" if isinstance(a, float) or isinstance(b, float) else "i64", ())
    else:
        value = binary_type(a, b, "where")
    return value.with_shape(broadcast(condition.shape, value.shape, "where"))


register(
    "where",
    "condition: tensor, x: scalar, y: scalar",
    _where,
    lambda c: f"torch.where({c['condition']}, {c['x']}, {c['y']})",
    "x where condition holds, else y",
    category="arithmetic",
    onnx=lambda c: c.node("Where", [c["condition"], c.operand("x", c.out_types[0].dtype), c.operand("y", c.out_types[0].dtype)]),
)


def _clamp(call):
    x = call["x"]
    if call["min"] is None and call["max"] is None:
        raise ShapeError("`clamp` needs `min` or `max`", "min")
    if x.dtype == "bool":
        raise ShapeError(f"`clamp` needs a numeric tensor, got {x}", "x")
    for name in ("min", "max"):
        if not is_float(x.dtype) and call[name] is not None and not float(call[name]).is_integer():
            raise ShapeError(f"`clamp` of an integer tensor {x} needs integer bounds, got {name} = {call[name]}", name, "cast x to f32 first")
    return x


def _clamp_torch(c):
    # bounds arrive as floats; integer tensors get integer bounds so that they stay integer
    bounds = {name: c[name] if c.values[name] is None or is_float(c.values["x"].dtype) else str(int(c.values[name])) for name in ("min", "max")}
    return f"torch.clamp({c['x']}, min={bounds['min']}, max={bounds['max']})"


def _clamp_onnx(c):
    dtype = c.values["x"].dtype
    bounds = ["" if c.values[name] is None else c.const(c.values[name], dtype) for name in ("min", "max")]
    return c.node("Clip", [c["x"], *bounds])


register(
    "clamp",
    "x: tensor, min: float? = none, max: float? = none",
    _clamp,
    _clamp_torch,
    "limits x to [min, max]",
    category="arithmetic",
    onnx=_clamp_onnx,
)
