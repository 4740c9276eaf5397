"""A small Python source emitter: indentation, safe identifiers, literals and dims rendered as code."""

from __future__ import annotations

import ast as python_ast
import builtins
import keyword
import re
from contextlib import contextmanager

from paperspec.compiler.dims import Dim, render

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Attributes every nn.Module has: a submodule named like one is shadowed (`self.double` is the
# method) or breaks the module (`self.training`), so such spec names get a suffix too.
NN_MODULE_ATTRIBUTES = {
    "T_destination", "add_module", "apply", "bfloat16", "buffers", "call_super_init", "children", "compile",
    "cpu", "cuda", "double", "dump_patches", "eval", "extra_repr", "float", "forward", "get_buffer",
    "get_extra_state", "get_parameter", "get_submodule", "half", "ipu", "load_state_dict", "modules", "mtia",
    "named_buffers", "named_children", "named_modules", "named_parameters", "parameters",
    "register_backward_hook", "register_buffer", "register_forward_hook", "register_forward_pre_hook",
    "register_full_backward_hook", "register_full_backward_pre_hook", "register_load_state_dict_post_hook",
    "register_load_state_dict_pre_hook", "register_module", "register_parameter",
    "register_state_dict_post_hook", "register_state_dict_pre_hook", "requires_grad_", "set_extra_state",
    "set_submodule", "share_memory", "state_dict", "to", "to_empty", "train", "training", "type", "xpu",
    "zero_grad",
}
RESERVED = (
    set(keyword.kwlist) | set(keyword.softkwlist) | set(dir(builtins)) | {"self", "torch", "nn", "F"} | NN_MODULE_ATTRIBUTES
    | {"interval_bounds"}  # the method a block's class gets when `interval_bounds` calls it
)


class CodeWriter:
    """Collects lines of Python with managed indentation."""

    def __init__(self, indent: str = "    "):
        self.lines: list[str] = []
        self.level = 0
        self.reserved: set[str] = set()  # helper names the generated code must not shadow
        self.unit = indent

    def line(self, text: str = "") -> None:
        self.lines.append(self.unit * self.level + text if text else "")

    def extend(self, lines) -> None:
        for text in lines:
            self.line(text)

    @contextmanager
    def indent(self):
        self.level += 1
        try:
            yield
        finally:
            self.level -= 1

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def identifier(name: str) -> str:
    """A spec name as a Python identifier; only grammar-valid names arrive here."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a valid identifier: {name!r}")
    return name + "_" if name in RESERVED else name


def render_dim(dim: Dim, symbols) -> str:
    return render(dim, symbols)


def literal(value, symbols=str) -> str:
    """Python source for a compile-time value (numbers, bools, strings, dims, lists)."""
    if value is None or isinstance(value, (bool, float, str)):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, tuple):
        inner = ", ".join(literal(v, symbols) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    return render_dim(value, symbols)


def is_atomic(expression: str) -> bool:
    """Whether an expression can be used as an operand without parentheses."""
    try:
        tree = python_ast.parse(expression, mode="eval").body
    except SyntaxError:
        return False
    return isinstance(tree, (python_ast.Name, python_ast.Call, python_ast.Attribute, python_ast.Subscript, python_ast.Constant))


def operand(expression: str) -> str:
    return expression if is_atomic(expression) else f"({expression})"
