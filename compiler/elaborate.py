"""Elaboration: resolves names, evaluates compile-time values and builds one IR graph per block instance."""

from __future__ import annotations

import dataclasses
import os
import re

from paperspec.compiler import ast
from paperspec.compiler.diagnostics import SpecError, UsageError, did_you_mean
from paperspec.compiler.dims import Sym, is_dim, substitute
from paperspec.compiler.expressions import ExpressionEvaluator, check_kind
from paperspec.compiler.initializers import evaluate_init
from paperspec.compiler.ir import (
    BlockGraph,
    InputSpec,
    ModuleSpec,
    RepeatInfo,
    ValueRef,
    state_shapes,
)
from paperspec.compiler.ops.base import Arg, all_ops
from paperspec.compiler.parser import parse, parse_file
from paperspec.compiler.types import DTYPES, TensorType
from paperspec.compiler.values import BlockValue, Instance, OpValue, TensorValue, describe

PARAM_TYPES = {"int": "int", "float": "float", "bool": "bool", "str": "str", "fn": "fn", "dim": "dim", "list": "any", "any": "any"}


class Scope:
    """Names visible in a block; a repeat body's scope captures outer tensors as body inputs."""

    def __init__(self, values: dict | None = None, parent: Scope | None = None, capture=None):
        self.values = dict(values or {})
        self.parent = parent
        self.capture = capture

    def lookup(self, name: str):
        if name in self.values:
            return True, self.values[name]
        if self.parent is None:
            return False, None
        found, value = self.parent.lookup(name)
        if found and self.capture is not None and isinstance(value, TensorValue):
            value = self.capture(name, value)
            self.values[name] = value
        return found, value

    def set(self, name: str, value) -> None:
        self.values[name] = value

    def names(self) -> list:
        return list(self.values) + (self.parent.names() if self.parent else [])


@dataclasses.dataclass(frozen=True)
class UnitAlias:
    """`import "file.pspec" as name`: blocks of that file as `name.Block`."""

    unit: object

    def attribute(self, name: str, span):
        block = self.unit.blocks.get(name)
        if block is None:
            raise SpecError(f"`{self.unit.spec.path}` defines no block `{name}`", span, did_you_mean(name, self.unit.blocks))
        return block


class CompilationUnit:
    """One parsed spec file with its blocks and imports resolved."""

    def __init__(self, spec: ast.SpecFile, compiler: Compiler):
        self.spec = spec
        self.blocks: dict[str, BlockValue] = {}
        self.imported: list[CompilationUnit] = []
        self.aliases: dict[str, UnitAlias] = {}
        for definition in spec.blocks:
            if definition.name in self.blocks:
                raise SpecError(f"block `{definition.name}` is defined twice", definition.name_span)
            self.blocks[definition.name] = BlockValue(definition, self)
        for item in spec.imports:
            unit = compiler.load_import(item, spec.path)
            if item.alias:
                self.aliases[item.alias] = UnitAlias(unit)
            else:
                self.imported.append(unit)

    def find_block(self, name: str):
        if name in self.blocks:
            return self.blocks[name]
        if name in self.aliases:
            return self.aliases[name]
        for unit in self.imported:
            if name in unit.blocks:
                return unit.blocks[name]
        return None

    def block_names(self) -> list:
        names = list(self.blocks) + list(self.aliases)
        for unit in self.imported:
            names.extend(unit.blocks)
        return names

    def models(self) -> list:
        return [b.definition.name for b in self.blocks.values() if b.definition.kind == "model"]


class Compiler:
    """Loads spec files and elaborates models; caches one graph per distinct block instantiation."""

    def __init__(self, quick: bool = False):
        self.quick = quick  # the value of `quick` in data declarations and train bodies
        self.units: dict[str, CompilationUnit] = {}
        self.loading: list[str] = []
        self.graphs: dict = {}
        # Generated classes must not take the names of helpers the ops emit into the same file.
        self.class_names: set[str] = {"check_input"} | {name for op in all_ops().values() for name, _ in op.torch_helpers}
        self.next_class_suffix: dict[str, int] = {}  # names are never freed, so the search resumes here

    def load(self, path: str) -> CompilationUnit:
        key = os.path.abspath(path)
        if key not in self.units:
            self.loading.append(key)
            try:
                self.units[key] = CompilationUnit(parse_file(path), self)
            finally:
                self.loading.pop()
        return self.units[key]

    def load_text(self, text: str, path: str = "<string>") -> CompilationUnit:
        unit = CompilationUnit(parse(text, path), self)
        self.units[os.path.abspath(path)] = unit
        return unit

    def load_import(self, item: ast.Import, importer: str) -> CompilationUnit:
        path = os.path.join(os.path.dirname(importer), item.path)
        if os.path.abspath(path) in self.loading:
            raise SpecError(f"import cycle: `{item.path}` imports this file again", item.span)
        if not os.path.isfile(path):
            raise SpecError(f"cannot import `{item.path}`: no such file next to {importer}", item.span)
        return self.load(path)

    def class_name(self, base: str) -> str:
        suffix = self.next_class_suffix.get(base, 1)
        name = base if suffix == 1 else f"{base}_{suffix}"
        while name in self.class_names:
            suffix += 1
            name = f"{base}_{suffix}"
        self.class_names.add(name)
        self.next_class_suffix[base] = suffix + 1
        return name

    def elaborate_model(self, unit: CompilationUnit, model: str, overrides: dict | None = None) -> BlockGraph:
        """The graph of `model` with its parameters set from defaults and `overrides`."""
        block = unit.find_block(model)  # its own models, or one it imports (`import "gpt.pspec"`)
        if not isinstance(block, BlockValue) or block.definition.kind != "model":
            known = unit.models() + [m for imported in unit.imported for m in imported.models()]
            raise UsageError(f"{unit.spec.path} defines no model `{model}`", did_you_mean(model, known) or f"models: {', '.join(known) or 'none'}")
        try:
            args = bind_block_args(self, block, [], dict(overrides or {}), None, [], {}, external=True)
        except SpecError as error:
            if error.span is None:
                raise UsageError(error.message, error.hint) from None
            raise
        return self.elaborate_block(block, args, None, None, [])

    def elaborate_block(self, block: BlockValue, args: dict, input_types, call_span, arg_spans) -> BlockGraph:
        key = (id(block.definition), _freeze(args), symbol_pattern(input_types) if input_types is not None else None)
        if key in self.graphs:
            return self.graphs[key]
        definition = block.definition
        graph = BlockGraph(self.class_name(definition.name), definition.name, definition.kind, dict(args), definition.span)
        elaborator = BlockElaborator(self, block.unit, graph, Scope(args), input_types, call_span, arg_spans)
        elaborator.run(definition.body)
        if input_types is not None and elaborator.next_input < len(input_types):
            raise SpecError(
                f"`{definition.name}` takes {elaborator.next_input} inputs, got {len(input_types)}", call_span
            )
        if not graph.outputs:
            raise SpecError(f"block `{definition.name}` has no `out` statement", definition.name_span)
        self.graphs[key] = graph
        return graph


def _freeze(value):
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (tuple, list)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, OpValue):
        return ("op", value.op.name)
    return (type(value).__name__, value)


def bind_block_args(compiler, block: BlockValue, args: list, keywords: dict, span, arg_spans, keyword_spans, external=False) -> dict:
    """Binds a block's typed parameters; defaults may use earlier parameters."""
    definition = block.definition
    params = definition.params
    if len(args) > len(params):
        raise SpecError(f"`{definition.name}` takes {len(params)} parameters, got {len(args)}", arg_spans[len(params)])
    given = {p.name: (value, s) for p, value, s in zip(params, args, arg_spans)}
    names = [p.name for p in params]
    for name, value in keywords.items():
        if name not in names:
            where = keyword_spans.get(name, span)
            raise SpecError(f"`{definition.name}` has no parameter `{name}`", where, did_you_mean(name, names) or _params_hint(definition))
        if name in given:
            raise SpecError(f"parameter `{name}` of `{definition.name}` given twice", keyword_spans.get(name, span))
        given[name] = (value, keyword_spans.get(name, span))
    bound: dict = {}
    defaults = BlockElaborator(compiler, block.unit, None, Scope(bound), None, None, [])
    for param in params:
        kind = PARAM_TYPES.get(param.type_name)
        if kind is None:
            raise SpecError(f"unknown parameter type `{param.type_name}`", param.type_span, f"types: {', '.join(PARAM_TYPES)}")
        if param.name in given:
            value, where = given[param.name]
        elif param.default is not None:
            value, where = defaults.eval(param.default), param.default.span
        else:
            raise SpecError(f"missing parameter `{param.name}` of `{definition.name}`", span or param.span, _params_hint(definition))
        if external and kind == "float" and isinstance(value, int):
            value = float(value)
        if where is None and not external:
            where = param.span
        bound[param.name] = check_kind(definition.name, Arg(param.name, kind), value, where)
        if kind == "fn":
            bound[param.name] = value
    return bound


def _params_hint(definition: ast.BlockDef) -> str:
    return f"parameters: {', '.join(f'{p.name}: {p.type_name}' for p in definition.params) or 'none'}"


def snake_case(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def camel_case(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


class BlockElaborator(ExpressionEvaluator):
    """Runs a block body's statements, adding nodes to its graph."""

    def __init__(self, compiler, unit, graph, scope, input_types, call_span, arg_spans, parent=None):
        self.compiler = compiler
        self.unit = unit
        self.graph = graph
        self.scope = scope
        self.input_types = input_types
        self.call_span = call_span
        self.arg_spans = arg_spans
        self.next_input = 0
        self.parent = parent  # the elaborator of the block around a repeat body
        self.outer_modules: set[str] = set()
        self.pending_symbols: set[str] = set()  # dims named by an `in` type, not yet bound
        self.call_dims: dict = {}  # the block's symbolic dims -> the caller's dims they stand for

    def run(self, statements) -> None:
        for statement in statements:
            getattr(self, "stmt_" + type(statement).__name__)(statement)

    # ---- inputs and outputs ----

    def stmt_InputDecl(self, stmt: ast.InputDecl) -> None:
        if self.graph.kind == "repeat":
            raise SpecError("`in` cannot appear inside `repeat`", stmt.span)
        if any(spec.name == stmt.name for spec in self.graph.inputs):
            raise SpecError(f"input `{stmt.name}` is declared twice", stmt.span)
        dtype = self.check_dtype(stmt.type)
        declared, constraints, text = self.declared_dims(stmt.type)
        if self.input_types is None:
            if any(d == ".." for d in declared):
                raise SpecError("a model input cannot start with `..`: name its dims", stmt.type.span)
            tensor_type = TensorType(dtype, tuple(declared))
        else:
            tensor_type = self.match_input(stmt, dtype, declared, text)
        pending = []
        for dim_name, op, bound, span in constraints:
            value = self.scope.lookup(dim_name)[1]
            if isinstance(value, int) and isinstance(bound, int):
                if not _holds(value, op, bound):
                    where = self.arg_spans[self.next_input] if self.input_types is not None else span
                    raise SpecError(f"input `{stmt.name}` needs {dim_name} {op} {bound}, got {dim_name} = {value}", where)
            else:
                pending.append((dim_name, op, bound))
        node = self.graph.add_node("input", {"name": stmt.name}, [tensor_type], stmt.span, names=[stmt.name])
        self.graph.inputs.append(InputSpec(stmt.name, tensor_type, text, tuple(pending), node.id))
        self.scope.set(stmt.name, TensorValue(ValueRef(node.id), tensor_type))
        self.next_input += 1

    def check_dtype(self, tensor_type: ast.TensorTypeExpr) -> str:
        dtype = tensor_type.dtype or "f32"
        if dtype not in DTYPES:
            raise SpecError(f"unknown dtype `{dtype}`", tensor_type.dtype_span or tensor_type.span, did_you_mean(dtype, DTYPES) or f"dtypes: {', '.join(DTYPES)}")
        return dtype

    def declared_dims(self, tensor_type: ast.TensorTypeExpr):
        """Evaluates declared dims; unbound names become new symbolic dims. Returns dims, constraints, text."""
        dims, constraints, texts = [], [], []
        for expr in tensor_type.dims:
            if isinstance(expr, ast.EllipsisExpr):
                dims.append("..")
                texts.append("..")
                continue
            if isinstance(expr, ast.Compare) and isinstance(expr.left, ast.Name):
                dim = self.dim_name(expr.left)
                bound = self.eval(expr.right)
                if not is_dim(bound):
                    raise SpecError(f"a dim bound must be an integer, got {describe(bound)}", expr.right.span)
                constraints.append((expr.left.id, expr.op, bound, expr.span))
                dims.append(dim)
                texts.append(f"{expr.left.id} {expr.op} {bound}")
                continue
            dim = self.dim_name(expr) if isinstance(expr, ast.Name) else self.eval(expr)
            if not is_dim(dim):
                raise SpecError(f"a dim must be an integer or a name, got {describe(dim)}", expr.span)
            dims.append(dim)
            texts.append(str(dim))
        return dims, constraints, f"{tensor_type.dtype or 'f32'}[{', '.join(texts)}]"

    def dim_name(self, expr: ast.Name):
        found, value = self.scope.lookup(expr.id)
        if not found:
            value = Sym.symbol(expr.id)
            self.scope.set(expr.id, value)
            self.pending_symbols.add(expr.id)
        elif not is_dim(value):
            raise SpecError(f"`{expr.id}` is {describe(value)}, not a dim", expr.span)
        return value

    def match_input(self, stmt: ast.InputDecl, dtype: str, declared: list, text: str) -> TensorType:
        index = self.next_input
        if index >= len(self.input_types):
            raise SpecError(f"`{self.graph.block}` needs input `{stmt.name}`: {text}", self.call_span)
        actual = self.input_types[index]
        where = self.arg_spans[index] if index < len(self.arg_spans) else self.call_span
        problem = f"argument {index + 1} of `{self.graph.block}` is {actual}, but input `{stmt.name}` is declared {text}"
        if actual.dtype != dtype:
            raise SpecError(problem, where, f"dtype {actual.dtype} is not {dtype}")
        fixed = [d for d in declared if d != ".."]
        if ".." in declared:
            if actual.rank < len(fixed):
                raise SpecError(problem, where, f"rank {actual.rank} is less than {len(fixed)}")
            lead = actual.shape[: actual.rank - len(fixed)]
        elif actual.rank != len(fixed):
            raise SpecError(problem, where, f"rank {actual.rank} is not {len(fixed)}")
        else:
            lead = ()
        lead = tuple(self.lead_symbol(dim) for dim in lead)
        concrete: dict = {}
        for axis, (want, got) in enumerate(zip(fixed, actual.shape[len(lead):])):
            name = _fresh_symbol(want)
            if name is not None and name in self.pending_symbols:
                # A block sees symbolic sizes under its own names; only concrete sizes specialise it.
                self.pending_symbols.discard(name)
                self.call_dims[name] = got
                if isinstance(got, int):
                    self.scope.set(name, got)
                    concrete[name] = got
                    fixed[axis] = got
                continue
            if substitute(want, self.call_dims) != got:
                raise SpecError(problem, where, f"dim {axis + len(lead)} is {got}, expected {substitute(want, self.call_dims)}")
            fixed[axis] = substitute(want, concrete)
        return TensorType(dtype, tuple(lead) + tuple(fixed))

    def lead_symbol(self, dim):
        """A leading dim matched by `..`: kept if concrete, else named lead0, lead1, ... in the block."""
        if isinstance(dim, int):
            return dim
        name = f"lead{sum(1 for n in self.call_dims if n.startswith('lead'))}"
        self.call_dims[name] = dim
        return Sym.symbol(name)

    def stmt_OutputDecl(self, stmt: ast.OutputDecl) -> None:
        if self.graph.kind == "repeat":
            raise SpecError("`out` cannot appear inside `repeat`", stmt.span)
        if stmt.value is None:
            value = self.eval(ast.Name(stmt.name, stmt.span))
        else:
            value = self.eval(stmt.value, hint=stmt.name)
        if not isinstance(value, TensorValue):
            raise SpecError(f"an output must be a tensor, got {describe(value)}", (stmt.value or stmt).span)
        name = stmt.name
        if name is None:
            name = stmt.value.id if isinstance(stmt.value, ast.Name) else "out"
        taken = {n for n, _, _ in self.graph.outputs}
        if name in taken:
            if stmt.name is not None:
                raise SpecError(f"output `{name}` is declared twice", stmt.span)
            name = next(f"out_{i}" for i in range(1, len(taken) + 2) if f"out_{i}" not in taken)
        if stmt.type is not None:
            self.check_declared_type(stmt, value.type)
        if stmt.name is not None:
            self.name_value(value, name)
        self.graph.outputs.append((name, value.ref, stmt.span))

    def check_declared_type(self, stmt: ast.OutputDecl, actual: TensorType) -> None:
        dtype = self.check_dtype(stmt.type)
        dims = []
        for expr in stmt.type.dims:
            if isinstance(expr, ast.EllipsisExpr):
                raise SpecError("an output type cannot use `..`", expr.span)
            dims.append(self.eval(expr))
        declared = TensorType(dtype, tuple(dims))
        if declared != actual:
            raise SpecError(f"output `{stmt.name}` is {actual}, but is declared {declared}", stmt.span)

    # ---- bindings ----

    def stmt_Assign(self, stmt: ast.Assign) -> None:
        hint = stmt.targets[0] if len(stmt.targets) == 1 else None
        value = self.eval(stmt.value, hint=hint)
        if len(stmt.targets) == 1:
            self.bind(stmt.targets[0], value)
            return
        if not isinstance(value, tuple) or len(value) != len(stmt.targets):
            count = len(value) if isinstance(value, tuple) else 1
            raise SpecError(f"cannot unpack {count} value(s) into {len(stmt.targets)} names", stmt.span)
        for name, item in zip(stmt.targets, value):
            self.bind(name, item)

    def bind(self, name: str, value) -> None:
        if isinstance(value, Instance) and value.module is None:
            value.hint = name
        if isinstance(value, TensorValue):
            self.name_value(value, name)
        self.scope.set(name, value)

    def name_value(self, value: TensorValue, name: str) -> None:
        node = self.graph.node(value.ref.node)
        if node.names[value.ref.index] is None:
            node.names[value.ref.index] = name

    def stmt_ParamDecl(self, stmt: ast.ParamDecl) -> None:
        dtype = self.check_dtype(stmt.type)
        shape = []
        for expr in stmt.type.dims:
            value = self.eval(expr) if not isinstance(expr, ast.EllipsisExpr) else ".."
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise SpecError(f"a parameter's dims must be known non-negative integers, got {describe(value)}", expr.span)
            shape.append(value)
        init = evaluate_init(self, stmt.init, dtype)
        name = self.graph.allocate_module_name(stmt.name)
        if name != stmt.name:
            raise SpecError(f"`{stmt.name}` is already the name of a submodule or parameter", stmt.span)
        tensor_type = TensorType(dtype, tuple(shape))
        node = self.graph.add_node("param", {"name": name}, [tensor_type], stmt.span, names=[stmt.name], module=name)
        self.graph.modules[name] = ModuleSpec(name, "param", stmt.span, node=node, shape=tuple(shape), dtype=dtype, init=init)
        self.scope.set(stmt.name, TensorValue(ValueRef(node.id), tensor_type))

    def stmt_Tie(self, stmt: ast.Tie) -> None:
        target = self.resolve_parameter(stmt.target, stmt.target_span)
        source = self.resolve_parameter(stmt.source, stmt.source_span)
        if target != source:
            raise SpecError(
                f"cannot tie `{'.'.join(stmt.target)}` {list(target)} to `{'.'.join(stmt.source)}` {list(source)}: shapes differ",
                stmt.span,
            )
        self.graph.ties.append((stmt.target, stmt.source, stmt.span))

    def resolve_parameter(self, path: tuple, span) -> tuple:
        shapes = state_shapes(self.graph, with_buffers=False)
        key = ".".join(path)
        if key not in shapes:
            raise SpecError(f"`{key}` is not a parameter of `{self.graph.block}`", span, did_you_mean(key, shapes))
        return shapes[key]

    # ---- control flow ----

    def stmt_If(self, stmt: ast.If) -> None:
        condition = self.eval(stmt.condition)
        if not isinstance(condition, bool):
            raise SpecError(f"`if` needs a compile-time bool, got {describe(condition)}", stmt.condition.span)
        self.run(stmt.then if condition else stmt.otherwise)

    def stmt_Repeat(self, stmt: ast.Repeat) -> None:
        from paperspec.compiler.repeat import elaborate_repeat

        elaborate_repeat(self, stmt)

    # ---- blocks ----

    def instantiate(self, block: BlockValue, args, keywords, expr, arg_spans, keyword_spans) -> Instance:
        for value, span in zip(args, arg_spans):
            if isinstance(value, TensorValue):
                raise SpecError(
                    f"`{block.definition.name}(...)` takes compile-time parameters; apply it to tensors with a second call",
                    span,
                    f"write `{block.definition.name}(...)(x)`",
                )
        bound = bind_block_args(self.compiler, block, args, keywords, expr.span, arg_spans, keyword_spans)
        return Instance(block, bound, expr.span, owner=self.graph)

    def apply_instance(self, instance: Instance, args, keywords, expr, arg_spans, keyword_spans, hint):
        name = instance.block.definition.name
        if keywords:
            raise SpecError(f"pass the inputs of `{name}` positionally", expr.span)
        for value, span in zip(args, arg_spans):
            if not isinstance(value, TensorValue):
                raise SpecError(f"inputs of `{name}` must be tensors, got {describe(value)}", span)
        try:
            graph = self.compiler.elaborate_block(instance.block, instance.args, [a.type for a in args], expr.span, arg_spans)
        except SpecError as error:
            if error.span is not None and error.span.path == expr.span.path and error.span.line == expr.span.line:
                raise
            error.notes.append(f"in `{name}` applied at {expr.span}")
            raise
        if instance.module is None and instance.hint is None:
            instance.hint = hint  # `y = Block(...)(x)` names the submodule `y`, as for ops
        self.attach_instance(instance, graph, expr)
        mapping = bind_call_dims(graph, [a.type for a in args])
        types = [graph.type_of(ref).substitute(mapping) for _, ref, _ in graph.outputs]
        outer = instance.owner is not self.graph and instance.owner is not self.graph.owner
        node = self.graph.add_node(
            "call", {"inputs": tuple(a.ref for a in args)}, types, expr.span, module=instance.module, derived={"graph": graph, "outer": outer}
        )
        values = [TensorValue(ValueRef(node.id, i), t) for i, t in enumerate(types)]
        return values[0] if len(values) == 1 else tuple(values)

    def attach_instance(self, instance: Instance, graph: BlockGraph, expr) -> None:
        if instance.module is None:
            # The submodule lives where `Block(...)` was written, so an instance made outside a
            # repeat and first applied inside it is one module shared by every iteration.
            home = instance.owner or self.graph
            instance.module = home.allocate_module_name(instance.hint or snake_case(instance.block.definition.name))
            instance.owner = home
            instance.graph = graph
            home.modules[instance.module] = ModuleSpec(instance.module, "block", expr.span, graph=graph)
            if home is self.graph:
                return
        if instance.graph is None:
            # A procedure's model: declared up front, its graph known at its first use in a loss.
            instance.graph = graph
            self.graph.modules[instance.module] = ModuleSpec(instance.module, "block", expr.span, graph=graph)
            return
        if instance.owner is not self.graph and instance.owner is not self.graph.owner:
            if self.parent is None or instance.owner is not self.parent.graph:
                raise SpecError(f"instance `{instance.module}` belongs to another block", expr.span)
            self.outer_modules.add(instance.module)
        if graph is not instance.graph and state_shapes(graph) != state_shapes(instance.graph):
            raise SpecError(
                f"instance `{instance.module}` is applied to inputs its weights do not fit",
                expr.span,
                "a shared instance must see inputs of the same feature sizes at every use",
            )
        if graph is not instance.graph:
            self.generalize(instance, expr)

    def generalize(self, instance: Instance, expr) -> None:
        """A shared instance applied at two different sizes (a model called on 2 and on 10
        candidates) is compiled from its declaration with symbolic sizes, so its one module
        serves both uses instead of the first one's sizes."""
        if instance.generic:
            return
        try:
            generic = self.compiler.elaborate_block(instance.block, instance.args, None, None, [])
        except SpecError as error:
            raise SpecError(
                f"instance `{instance.module}` is applied at two different sizes, and its block does not compile "
                f"for symbolic sizes: {error.message}",
                expr.span,
            ) from None
        if state_shapes(generic) != state_shapes(instance.graph):
            raise SpecError(f"instance `{instance.module}` is applied to inputs its weights do not fit", expr.span)
        instance.graph, instance.generic = generic, True
        home = instance.owner if instance.owner is not None and instance.module in instance.owner.modules else self.graph
        home.modules[instance.module] = dataclasses.replace(home.modules[instance.module], graph=generic)

    def add_op_module(self, node, hint: str) -> None:
        name = self.graph.allocate_module_name(hint)
        node.module = name
        self.graph.modules[name] = ModuleSpec(name, "op", node.span, node=node)


def bind_call_dims(graph: BlockGraph, actual_types: list) -> dict:
    """Maps a block's own symbolic dims to the dims of the arguments of one call."""
    mapping: dict = {}
    for spec, actual in zip(graph.inputs, actual_types):
        for local, dim in zip(spec.type.shape, actual.shape):
            name = _fresh_symbol(local)
            if name is not None and name not in mapping:
                mapping[name] = dim
    return mapping


def symbol_pattern(types) -> tuple:
    """Input types with symbolic dims replaced by the order they first appear in: the cache key
    of a block instantiation, since a block depends only on concrete sizes and on which
    symbolic sizes are equal."""
    seen: dict = {}
    key = []
    for tensor_type in types:
        dims = tuple(d if isinstance(d, int) else seen.setdefault(d, f"${len(seen)}") for d in tensor_type.shape)
        key.append((tensor_type.dtype, dims))
    return tuple(key)


def _fresh_symbol(dim) -> str | None:
    if isinstance(dim, Sym) and len(dim.terms) == 1:
        (mono, coeff), = dim.terms
        if coeff == 1 and len(mono) == 1 and isinstance(mono[0], str):
            return mono[0]
    return None


def _holds(value: int, op: str, bound: int) -> bool:
    return {"<=": value <= bound, "<": value < bound, ">=": value >= bound, ">": value > bound, "==": value == bound, "!=": value != bound}[op]


__all__ = ["Compiler", "CompilationUnit", "BlockElaborator", "Scope", "snake_case", "camel_case", "RepeatInfo"]
