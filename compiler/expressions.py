"""Evaluates spec expressions: compile-time values are computed, tensor operations become IR nodes."""

from __future__ import annotations

import operator

from paperspec.compiler import ast
from paperspec.compiler.diagnostics import SpecError, did_you_mean
from paperspec.compiler.dims import Sym, is_dim
from paperspec.compiler.dims import floordiv as dim_floordiv
from paperspec.compiler.ir import ValueRef
from paperspec.compiler.ops.base import (
    ModuleRef,
    OpCall,
    OpDef,
    ShapeError,
    all_ops,
    get_op,
    types_of,
)
from paperspec.compiler.values import (
    BlockValue,
    Instance,
    OpValue,
    TensorValue,
    describe,
    is_compile_time,
)

TENSOR_BINARY_OPS = {
    "+": "add",
    "-": "sub",
    "*": "mul",
    "/": "div",
    "//": "floordiv",
    "%": "mod",
    "**": "pow",
    "@": "matmul",
    "==": "eq",
    "!=": "ne",
    "<": "lt",
    "<=": "le",
    ">": "gt",
    ">=": "ge",
}

_CONST_COMPARE = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}

BUILTIN_FUNCTIONS = ("min", "max", "len", "int", "float")


class ExpressionEvaluator:
    """Mixin of the block elaborator: needs `self.scope`, `self.graph` and `self.call_block`."""

    def eval(self, expr, hint: str | None = None):
        method = getattr(self, "eval_" + type(expr).__name__)
        return method(expr, hint)

    def eval_Literal(self, expr: ast.Literal, hint):
        return expr.value

    def eval_Name(self, expr: ast.Name, hint):
        found, value = self.scope.lookup(expr.id)
        if found:
            return value
        block = self.unit.find_block(expr.id)
        if block is not None:
            return block
        opdef = get_op(expr.id)
        if opdef is not None:
            return OpValue(opdef)
        if expr.id in BUILTIN_FUNCTIONS:
            return ("builtin", expr.id)
        hint_text = did_you_mean(expr.id, self.visible_names())
        if expr.id in ("True", "False", "None"):
            hint_text = f"write `{expr.id.lower()}`"
        raise SpecError(f"unknown name `{expr.id}`", expr.span, hint_text)

    def visible_names(self) -> list:
        return self.scope.names() + self.unit.block_names() + list(all_ops()) + list(BUILTIN_FUNCTIONS)

    def eval_ListExpr(self, expr: ast.ListExpr, hint):
        return tuple(self.eval(item) for item in expr.items)

    eval_TupleExpr = eval_ListExpr

    def eval_Conditional(self, expr: ast.Conditional, hint):
        condition = self.eval(expr.condition)
        if not isinstance(condition, bool):
            raise SpecError(f"condition must be a compile-time bool, got {describe(condition)}", expr.condition.span)
        return self.eval(expr.then if condition else expr.otherwise, hint)

    def eval_UnaryOp(self, expr: ast.UnaryOp, hint):
        operand = self.eval(expr.operand)
        if expr.op == "not":
            if isinstance(operand, bool):
                return not operand
            raise SpecError(f"`not` needs a compile-time bool, got {describe(operand)}", expr.operand.span)
        if isinstance(operand, TensorValue):
            return self.apply_op(get_op("neg"), [operand], {}, expr, [expr.operand.span], {}, hint)
        if isinstance(operand, (int, float, Sym)) and not isinstance(operand, bool):
            return -operand
        raise SpecError(f"cannot negate {describe(operand)}", expr.operand.span)

    def eval_BinaryOp(self, expr: ast.BinaryOp, hint):
        left = self.eval(expr.left)
        if expr.op in ("and", "or"):
            return self._logical(expr, left)
        right = self.eval(expr.right)
        return self._binary(expr, expr.op, left, right, hint)

    def eval_Compare(self, expr: ast.Compare, hint):
        left, right = self.eval(expr.left), self.eval(expr.right)
        return self._binary(expr, expr.op, left, right, hint)

    def _logical(self, expr: ast.BinaryOp, left):
        if not isinstance(left, bool):
            raise SpecError(f"`{expr.op}` needs compile-time bools, got {describe(left)}", expr.left.span)
        if (expr.op == "and" and not left) or (expr.op == "or" and left):
            return left
        right = self.eval(expr.right)
        if not isinstance(right, bool):
            raise SpecError(f"`{expr.op}` needs compile-time bools, got {describe(right)}", expr.right.span)
        return right

    def _binary(self, expr, op: str, left, right, hint):
        if isinstance(left, TensorValue) or isinstance(right, TensorValue):
            for side, value in (("left", left), ("right", right)):
                if not (isinstance(value, TensorValue) or _is_number(value)):
                    span = expr.left.span if side == "left" else expr.right.span
                    raise SpecError(f"cannot use {describe(value)} in tensor arithmetic `{op}`", span)
            opdef = get_op(TENSOR_BINARY_OPS[op])
            spans = [expr.left.span, expr.right.span]
            return self.apply_op(opdef, [left, right], {}, expr, spans, {}, hint)
        return self._constant_binary(expr, op, left, right)

    def _constant_binary(self, expr, op: str, left, right):
        if op in _CONST_COMPARE:
            if isinstance(left, Sym) or isinstance(right, Sym):
                if op in ("==", "!="):
                    return (left == right) == (op == "==")
                raise SpecError(f"cannot compare symbolic dims with `{op}` at compile time", expr.span)
            try:
                return _CONST_COMPARE[op](left, right)
            except TypeError:
                raise SpecError(f"cannot compare {describe(left)} with {describe(right)}", expr.span) from None
        if op == "+" and isinstance(left, tuple) and isinstance(right, tuple):
            return left + right
        for side, value in ((expr.left, left), (expr.right, right)):
            if not _is_number(value) and not isinstance(value, Sym):
                raise SpecError(f"cannot use {describe(value)} in arithmetic `{op}`", side.span)
        try:
            return _arithmetic(op, left, right)
        except ZeroDivisionError:
            raise SpecError("division by zero", expr.right.span) from None
        except TypeError as error:
            raise SpecError(f"cannot compute `{op}` at compile time: {error}", expr.span) from None

    def eval_Attribute(self, expr: ast.Attribute, hint):
        value = self.eval(expr.value)
        if isinstance(value, TensorValue):
            if expr.name == "shape":
                return tuple(value.type.shape)
            if expr.name == "rank":
                return value.type.rank
            raise SpecError(f"tensors have no attribute `{expr.name}`", expr.span, "tensors have `.shape` and `.rank`")
        if hasattr(value, "attribute"):
            return value.attribute(expr.name, expr.span)
        raise SpecError(f"{describe(value)} has no attribute `{expr.name}`", expr.span)

    def eval_Index(self, expr: ast.Index, hint):
        value = self.eval(expr.value)
        if isinstance(value, tuple):
            return self._index_constant(expr, value)
        if hasattr(value, "index_with"):
            if len(expr.subscripts) != 1 or isinstance(expr.subscripts[0], (ast.Slice, ast.EllipsisExpr)):
                raise SpecError(f"{describe(value)} takes one index", expr.span)
            return value.index_with(self.eval(expr.subscripts[0]), expr.span)
        if not isinstance(value, TensorValue):
            raise SpecError(f"cannot index {describe(value)}", expr.value.span)
        items = tuple(self._subscript(item) for item in expr.subscripts)
        return self.apply_op(get_op("index"), [value, items], {}, expr, [expr.value.span, expr.span], {}, hint)

    def _index_constant(self, expr: ast.Index, value: tuple):
        if len(expr.subscripts) != 1 or isinstance(expr.subscripts[0], (ast.Slice, ast.EllipsisExpr)):
            raise SpecError("a list takes one integer index", expr.span)
        index = self.eval(expr.subscripts[0])
        if not isinstance(index, int) or isinstance(index, bool):
            raise SpecError(f"list index must be an integer, got {describe(index)}", expr.subscripts[0].span)
        if not -len(value) <= index < len(value):
            raise SpecError(f"index {index} is out of range for a list of {len(value)}", expr.subscripts[0].span)
        return value[index]

    def _subscript(self, item):
        if isinstance(item, ast.EllipsisExpr):
            return ("ellipsis",)
        if isinstance(item, ast.Slice):
            parts = []
            for part in (item.start, item.stop, item.step):
                value = None if part is None else self.eval(part)
                if value is not None and not is_dim(value):
                    raise SpecError(f"slice bounds must be integers or dims, got {describe(value)}", part.span)
                parts.append(value)
            return ("slice", *parts)
        value = self.eval(item)
        if value is None:
            return ("newaxis",)
        if not is_dim(value):
            raise SpecError(f"tensor index must be an integer, a slice or `..`, got {describe(value)}", item.span)
        return ("int", value)

    def eval_Call(self, expr: ast.Call, hint):
        func = self.eval(expr.func)
        if isinstance(expr.func, ast.Name) and is_compile_time(func) and get_op(expr.func.id) is not None:
            # A constant is never callable, so a parameter such as `dropout: float` leaves the op usable.
            func = OpValue(get_op(expr.func.id))
        args = [self.eval(a) for a in expr.args]
        keywords = {}
        for keyword in expr.keywords:
            if keyword.name in keywords:
                raise SpecError(f"argument `{keyword.name}` given twice", keyword.span)
            keywords[keyword.name] = self.eval(keyword.value)
        arg_spans = [a.span for a in expr.args]
        keyword_spans = {k.name: k.span for k in expr.keywords}
        if isinstance(func, OpValue) and func.op.name in ("min", "max") and not _has_tensor(args, keywords):
            return self._builtin(func.op.name, args, keywords, expr)
        if isinstance(func, OpValue):
            return self.apply_op(func.op, args, keywords, expr, arg_spans, keyword_spans, hint)
        if isinstance(func, BlockValue):
            return self.instantiate(func, args, keywords, expr, arg_spans, keyword_spans)
        if isinstance(func, Instance):
            return self.apply_instance(func, args, keywords, expr, arg_spans, keyword_spans, hint)
        if isinstance(func, tuple) and func and func[0] == "builtin":
            return self._builtin(func[1], args, keywords, expr)
        raise SpecError(f"{describe(func)} is not callable", expr.func.span)

    def _builtin(self, name: str, args: list, keywords: dict, expr: ast.Call):
        if keywords:
            raise SpecError(f"`{name}` takes no keyword arguments", expr.span)
        if name in ("min", "max"):
            values = args[0] if len(args) == 1 and isinstance(args[0], tuple) else args
            if not values or not all(_is_number(v) for v in values):
                raise SpecError(f"`{name}` needs numbers known at compile time", expr.span)
            return (min if name == "min" else max)(values)
        if len(args) != 1:
            raise SpecError(f"`{name}` takes one argument", expr.span)
        value = args[0]
        if name == "len":
            if isinstance(value, tuple):
                return len(value)
            raise SpecError(f"`len` needs a list, got {describe(value)}", expr.args[0].span)
        if not _is_number(value):
            raise SpecError(f"`{name}` needs a number, got {describe(value)}", expr.args[0].span)
        return int(value) if name == "int" else float(value)

    # ---- ops ----

    def apply_op(self, opdef: OpDef, args: list, keywords: dict, expr, arg_spans: list, keyword_spans: dict, hint):
        bound, spans = bind_arguments(opdef, args, keywords, expr, arg_spans, keyword_spans)
        call = OpCall(opdef.name, {name: _type_view(value) for name, value in bound.items()})
        try:
            self.apply_block_args(opdef, call, bound, spans, expr)
            types = types_of(opdef.infer(call))
        except ShapeError as error:
            raise SpecError(error.message, spans.get(error.arg, expr.span), error.hint) from None
        node_args = {name: _ref_view(value) for name, value in bound.items()}
        self.check_input_grads(opdef, node_args, spans)
        node = self.graph.add_node(opdef.name, node_args, types, expr.span, derived=call.derived, call=call)
        if opdef.has_module:
            self.add_op_module(node, hint or opdef.name)
        values = [TensorValue(ValueRef(node.id, i), t) for i, t in enumerate(types)]
        return values[0] if len(values) == 1 and not call.derived.get("tuple_output") else tuple(values)


    def apply_block_args(self, opdef: OpDef, call: OpCall, bound: dict, spans: dict, expr) -> None:
        """Elaborates each block instance an op calls, on the input types the op gives it; the
        block's output types go to the shape rule as `call.derived[<arg>_outputs]`."""
        if opdef.block_inputs is None:
            return
        from paperspec.compiler.elaborate import bind_call_dims

        for name, types in opdef.block_inputs(call).items():
            instance = bound[name]
            try:
                graph = self.compiler.elaborate_block(instance.block, instance.args, list(types), expr.span, [spans[name]] * len(types))
            except SpecError as error:
                error.notes.append(f"in `{instance.block.definition.name}` as called by `{opdef.name}` at {expr.span}")
                raise
            self.attach_instance(instance, graph, expr)
            mapping = bind_call_dims(graph, list(types))
            call.derived[f"{name}_outputs"] = [graph.type_of(ref).substitute(mapping) for _, ref, _ in graph.outputs]
            call.derived[f"{name}_graph"] = graph  # backends lower the block where the op needs it
            bound[name] = ModuleRef(instance.module)
            call.args[name] = ModuleRef(instance.module)

    def check_input_grads(self, opdef: OpDef, node_args: dict, spans: dict) -> None:
        """Derivatives with respect to a tensor need that tensor to be an input of the graph."""
        for name in opdef.input_grads:
            ref = node_args[name]
            if self.graph.node(ref.node).op != "input":
                raise SpecError(
                    f"`{opdef.name}` differentiates with respect to `{name}`, which must be an input such as `batch.x`",
                    spans[name],
                )


def bind_arguments(opdef: OpDef, args: list, keywords: dict, expr, arg_spans: list, keyword_spans: dict):
    """Matches call arguments to an op's signature and checks each one's kind."""
    signature = opdef.signature
    bound, spans = {}, {}
    arg_spans = list(arg_spans) if arg_spans else [expr.span] * len(args)
    if signature and signature[-1].variadic and len(args) >= len(signature) - 1:
        fixed = len(signature) - 1
        args = list(args[:fixed]) + [tuple(args[fixed:])]
        arg_spans = arg_spans[:fixed] + [arg_spans[fixed] if len(arg_spans) > fixed else expr.span]
    if len(args) > len(signature):
        raise SpecError(
            f"`{opdef.name}` takes {len(signature)} arguments, got {len(args)}",
            arg_spans[len(signature)] if len(arg_spans) > len(signature) else expr.span,
            f"signature: {opdef.describe()}",
        )
    for arg, value, span in zip(signature, args, arg_spans):
        bound[arg.name], spans[arg.name] = value, span
    names = [a.name for a in signature]
    for name, value in keywords.items():
        if name not in names:
            raise SpecError(
                f"`{opdef.name}` has no argument `{name}`",
                keyword_spans.get(name, expr.span),
                did_you_mean(name, names) or f"signature: {opdef.describe()}",
            )
        if name in bound:
            raise SpecError(f"argument `{name}` of `{opdef.name}` given twice", keyword_spans.get(name, expr.span))
        bound[name], spans[name] = value, keyword_spans.get(name, expr.span)
    for arg in signature:
        if arg.name not in bound:
            if arg.required:
                raise SpecError(
                    f"missing argument `{arg.name}` of `{opdef.name}`", expr.span, f"signature: {opdef.describe()}"
                )
            bound[arg.name] = arg.default
            spans[arg.name] = expr.span
        bound[arg.name] = check_kind(opdef.name, arg, bound[arg.name], spans[arg.name])
    return bound, spans


def check_kind(owner: str, arg, value, span):
    """Checks (and normalises) one argument value against its declared kind."""
    if value is None and arg.optional:
        return None
    kind = arg.kind
    ok = True
    if kind == "tensor":
        ok = isinstance(value, TensorValue)
    elif kind == "tensors":
        ok = isinstance(value, tuple) and bool(value) and all(isinstance(v, TensorValue) for v in value)
    elif kind == "scalar":
        ok = isinstance(value, TensorValue) or _is_number(value)
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "float":
        ok = _is_number(value) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "str":
        ok = isinstance(value, str)
    elif kind == "dim":
        ok = is_dim(value)
    elif kind == "dims":
        value = (value,) if is_dim(value) else value
        ok = isinstance(value, tuple) and all(is_dim(v) for v in value)
    elif kind == "ints":
        ok = (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, tuple) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        )
    elif kind == "fn":
        ok = isinstance(value, (OpValue, str))
        value = value.op.name if isinstance(value, OpValue) else value
    elif kind == "any":
        ok = is_compile_time(value) or isinstance(value, (TensorValue, tuple))
    elif kind == "block":
        ok = isinstance(value, Instance)
    if not ok:
        from paperspec.compiler.ops.base import ARG_KINDS

        raise SpecError(f"argument `{arg.name}` of `{owner}` must be {ARG_KINDS[kind]}, got {describe(value)}", span)
    return value


def _type_view(value):
    if isinstance(value, TensorValue):
        return value.type
    if isinstance(value, tuple):
        return tuple(_type_view(v) for v in value)
    return value


def _ref_view(value):
    if isinstance(value, TensorValue):
        return value.ref
    if isinstance(value, tuple):
        return tuple(_ref_view(v) for v in value)
    return value


def _has_tensor(args: list, keywords: dict) -> bool:
    values = list(args) + list(keywords.values())
    return any(isinstance(v, TensorValue) or (isinstance(v, tuple) and any(isinstance(i, TensorValue) for i in v)) for v in values)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _arithmetic(op: str, left, right):
    symbolic = isinstance(left, Sym) or isinstance(right, Sym)
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    if op == "//":
        if symbolic:
            return dim_floordiv(left, right)
        return left // right
    if op == "/":
        if symbolic:
            raise TypeError("use `//` to divide symbolic dims")
        return left / right
    if op == "%":
        if symbolic:
            raise TypeError("`%` is not defined on symbolic dims")
        return left % right
    if op == "**":
        if symbolic:
            raise TypeError("`**` is not defined on symbolic dims")
        return left**right
    raise TypeError(f"`{op}` is not an arithmetic operator on numbers")
