"""Elementwise ops: arithmetic with broadcasting, comparisons and activations."""

from __future__ import annotations

from paperspec.compiler.ops.base import ShapeError, register
from paperspec.compiler.ops.shapes import binary_type, broadcast, require_float
from paperspec.compiler.types import TensorType

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


for _name, (_symbol, _doc) in _ARITHMETIC.items():
    register(
        _name,
        "x: scalar, y: scalar",
        _arithmetic_rule(_symbol),
        lambda c, s=_symbol: f"{c['x']} {s} {c['y']}",
        _doc,
        category="arithmetic",
    )

for _name, _symbol in _COMPARISONS.items():
    register(
        _name,
        "x: scalar, y: scalar",
        _comparison_rule(_symbol),
        lambda c, s=_symbol: f"{c['x']} {s} {c['y']}",
        f"x {_symbol} y elementwise, giving a bool tensor",
        category="arithmetic",
    )

register("neg", "x: tensor", lambda c: c["x"], lambda c: f"-{c['x']}", "-x", category="arithmetic")


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


for _name, (_signature, _template, _doc) in ACTIVATIONS.items():
    register(
        _name,
        _signature,
        _check_gelu if _name == "gelu" else _float_unary(_name),
        _activation_torch(_template),
        _doc,
        category="activation",
    )

for _name, (_template, _doc) in MATH.items():
    register(_name, "x: tensor", _float_unary(_name), lambda c, t=_template: t.format(x=c["x"]), _doc, category="arithmetic")


def _where(call):
    condition, a, b = call["condition"], call["x"], call["y"]
    if condition.dtype != "bool":
        raise ShapeError(f"the condition of `where` must be a bool tensor, got {condition}", "condition")
    value = binary_type(a, b, "where")
    return value.with_shape(broadcast(condition.shape, value.shape, "where"))


register(
    "where",
    "condition: tensor, x: scalar, y: scalar",
    _where,
    lambda c: f"torch.where({c['condition']}, {c['x']}, {c['y']})",
    "x where condition holds, else y",
    category="arithmetic",
)


def _clamp(call):
    if call["min"] is None and call["max"] is None:
        raise ShapeError("`clamp` needs `min` or `max`", "min")
    return call["x"]


register(
    "clamp",
    "x: tensor, min: float? = none, max: float? = none",
    _clamp,
    lambda c: f"torch.clamp({c['x']}, min={c['min']}, max={c['max']})",
    "limits x to [min, max]",
    category="arithmetic",
)
