"""The op registry: one OpDef per op holds its signature, shape rule and lowerings side by side."""

from __future__ import annotations

import ast as python_ast
from collections.abc import Callable
from dataclasses import dataclass, field

from paperspec.compiler.types import TensorType

REQUIRED = object()

# Argument kinds a signature may use, and what a value of that kind is at compile time.
ARG_KINDS = {
    "tensor": "a tensor",
    "tensors": "a list of tensors",
    "scalar": "a tensor or a number",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "str": "a string",
    "dim": "a dim (integer or symbolic)",
    "dims": "a list of dims",
    "ints": "an integer or a list of integers",
    "fn": "an activation op such as gelu",
    "any": "a value",
    "block": "a block instance such as `Cell(d)`",
}


@dataclass(frozen=True)
class Arg:
    name: str
    kind: str
    default: object = REQUIRED
    optional: bool = False  # `none` is accepted
    variadic: bool = False  # `*name`: takes all remaining positional arguments as a list

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def __str__(self) -> str:
        if self.variadic:
            return f"*{self.name}: tensor"
        kind = self.kind + ("?" if self.optional else "")
        if self.required:
            return f"{self.name}: {kind}"
        return f"{self.name}: {kind} = {_show_default(self.default)}"


def _show_default(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)


@dataclass(frozen=True)
class ModuleRef:
    """A block instance passed to an op: the submodule the op calls."""

    name: str


class ShapeError(Exception):
    """Raised by a shape rule; `arg` names the argument whose span the error points at."""

    def __init__(self, message: str, arg: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.arg = arg
        self.hint = hint


@dataclass
class OpCall:
    """What a shape rule sees: bound arguments (tensors as TensorType) and derived attributes."""

    op: str
    args: dict  # name -> value; tensor args are TensorType, tensor lists are tuples of them
    derived: dict = field(default_factory=dict)  # attributes a rule works out, e.g. in_features

    def __getitem__(self, name: str):
        return self.args[name]


@dataclass
class TorchCall:
    """What a PyTorch lowering sees: arguments rendered as Python source, and the op's types."""

    args: dict  # name -> Python source text
    values: dict  # name -> compile-time value (tensor args: their TensorType)
    derived: dict
    out_types: list
    module: str | None  # expression of the op's submodule, e.g. `self.q_proj`
    device: str = "None"  # expression of the device new tensors belong on
    symbols: object = str  # maps a symbolic dim's name to its Python expression

    def __getitem__(self, name: str) -> str:
        return self.args[name]


@dataclass(frozen=True)
class OpDef:
    name: str
    signature: tuple  # of Arg
    infer: Callable[[OpCall], object]  # -> TensorType or list of TensorType
    torch: Callable[[TorchCall], str]  # forward expression
    doc: str
    category: str = "tensor"
    torch_module: Callable[[OpCall], str] | None = None  # constructor of the owned nn.Module
    parameters: Callable[[OpCall], dict] | None = None  # parameter name -> shape tuple
    buffers: Callable[[OpCall], dict] | None = None  # buffer name -> shape (running stats)
    torch_helpers: tuple = ()  # (name, source) pairs the generated file needs
    onnx: Callable | None = None
    # Why no call of the op exports, or a function of the OpCall giving why this call does not
    # (None when it does): odeint exports its fixed-step methods only.
    not_exportable: str | Callable[[OpCall], str | None] | None = None
    stochastic: bool = False  # behaves differently in training (dropout)
    # For ops taking `block` arguments: arg name -> the input types the op applies that block to.
    block_inputs: Callable[[OpCall], dict] | None = None
    input_grads: tuple = ()  # tensor args that must be graph inputs requiring grad (derivatives)

    @property
    def has_module(self) -> bool:
        return self.torch_module is not None

    def describe(self) -> str:
        return f"{self.name}({', '.join(str(a) for a in self.signature)})"

    def export_blocker(self, call: OpCall) -> str | None:
        """Why `call` cannot be exported to ONNX, or None if it can."""
        return self.not_exportable(call) if callable(self.not_exportable) else self.not_exportable


_REGISTRY: dict[str, OpDef] = {}


def parse_signature(text: str) -> tuple:
    """'x: tensor, features: int, bias: bool = true' -> Args; defaults are literals."""
    args = []
    for part in _split_top_level(text):
        name, _, rest = part.partition(":")
        kind, _, default_text = rest.partition("=")
        kind, name = kind.strip(), name.strip()
        variadic = name.startswith("*")
        if variadic:
            name, kind = name[1:], "tensors"
        optional = kind.endswith("?")
        kind = kind.rstrip("?")
        assert kind in ARG_KINDS, f"unknown argument kind {kind!r} in signature {text!r}"
        default = _parse_default(default_text.strip()) if default_text.strip() else REQUIRED
        args.append(Arg(name, kind, default, optional or default is None, variadic))
    return tuple(args)


def _split_top_level(text: str) -> list:
    parts, depth, current = [], 0, ""
    for char in text:
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current.strip())
    return parts


def _parse_default(text: str) -> object:
    words = {"true": True, "false": False, "none": None}
    if text in words:
        return words[text]
    value = python_ast.literal_eval(text)
    return tuple(value) if isinstance(value, list) else value


def register(
    name: str,
    signature: str,
    infer: Callable,
    torch: Callable,
    doc: str,
    **options,
) -> OpDef:
    """Adds an op to the registry; the parser and the backends' cores never change for it."""
    assert name not in _REGISTRY, f"op {name} registered twice"
    definition = OpDef(name, parse_signature(signature), infer, torch, doc, **options)
    _REGISTRY[name] = definition
    return definition


def get_op(name: str) -> OpDef | None:
    _load_builtin_ops()
    return _REGISTRY.get(name)


def all_ops() -> dict:
    _load_builtin_ops()
    return dict(_REGISTRY)


_LOADED = False


def _load_builtin_ops() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    import importlib
    import pkgutil

    from paperspec.compiler import ops

    # Every module of this package registers its ops on import; a new op family is a new file.
    for module in pkgutil.iter_modules(ops.__path__):
        if module.name not in ("base", "shapes") and not module.name.startswith("onnx"):
            importlib.import_module(f"paperspec.compiler.ops.{module.name}")
    _load_entry_point_ops()


def _load_entry_point_ops() -> None:
    """Ops that installed packages offer under the `paperspec.ops` entry-point group."""
    from importlib.metadata import entry_points

    for entry in entry_points(group="paperspec.ops"):
        entry.load()


def types_of(value) -> list:
    """Normalises what a shape rule returned to a list of TensorType."""
    if isinstance(value, TensorType):
        return [value]
    return list(value)
