"""Weight-space models in procedures (`model m = interpolate(a.net, b.net, 0.5)`): checks, and the
permutation groups of an MLP's hidden units that weight matching permutes."""

from __future__ import annotations

from dataclasses import dataclass

from paperspec.compiler import ast
from paperspec.compiler.calls import bind_named_call
from paperspec.compiler.diagnostics import SpecError
from paperspec.compiler.ir import BlockGraph, ModuleSpec, ValueRef, parameter_shapes
from paperspec.compiler.ops.elementwise import ACTIVATIONS, MATH
from paperspec.compiler.values import Instance

ELEMENTWISE = frozenset(ACTIVATIONS) | frozenset(MATH) | {"dropout"}  # act on each unit alone
NORMS = frozenset({"layernorm", "rmsnorm"})  # over the units: their weights follow the permutation
CHAIN_HINT = "weight matching handles chains linear -> activations or norms -> linear"


@dataclass(frozen=True)
class WeightSpaceModel:
    function: str
    sources: dict  # argument -> submodule of the procedure holding that model
    args: dict  # the other arguments
    axes: dict | None  # state key -> permutation group per axis (functions that permute)
    span: object


def _functions() -> dict:
    from paperspec.runtime.weightspace import all_weight_space_functions

    return all_weight_space_functions()


def is_weight_space_call(expr) -> bool:
    return isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and expr.func.id in _functions()


def declare_weight_space_model(elaborator, stmt: ast.TrainModel) -> None:
    """A model whose weights are computed, once, from trained models before the procedure runs."""
    functions = _functions()
    signatures = {name: definition.signature for name, definition in functions.items()}
    name, args = bind_named_call(elaborator.evaluator(), stmt.value, signatures, "weight-space function")
    definition = functions[name]
    problem = definition.check(args) if definition.check else None
    if problem:
        raise SpecError(problem, stmt.value.span)
    models = {arg.name: args.pop(arg.name) for arg in definition.signature if arg.kind == "block"}
    sources = {argument: _source(elaborator, name, argument, model, stmt.value.span) for argument, model in models.items()}
    _require_one_architecture(name, models, stmt.value.span)
    graphs = [_model_graph(elaborator, model) for model in models.values()]  # each a submodule to read
    first, graph = next(iter(models.values())), graphs[0]
    axes = permutation_axes(graph, _label(elaborator, first), stmt.value.span) if definition.permutes else None
    procedure = elaborator.procedure
    instance = Instance(first.block, dict(first.args), stmt.span, module=stmt.name, owner=procedure.modules, graph=graph, generic=True)
    procedure.modules.modules[stmt.name] = ModuleSpec(stmt.name, "block", stmt.span, graph=graph)
    procedure.weight_space[stmt.name] = WeightSpaceModel(name, sources, args, axes, stmt.span)
    elaborator.scope.set(stmt.name, instance)


def _source(elaborator, function: str, argument: str, model: Instance, span) -> str:
    """The submodule of a model argument: a trained model of an `after` procedure (final weights)
    or an earlier weight-space model of this procedure."""
    procedure = elaborator.procedure
    module = model.module
    if module in procedure.teachers:
        if elaborator.teacher_steps.get(module) is not None:
            raise SpecError(f"`{function}` reads final weights; `{argument}` is a checkpoint of {_label(elaborator, model)}", span, "use e.g. `a.net`")
        return module
    if module in procedure.weight_space:
        return module
    raise SpecError(
        f"argument `{argument}` of `{function}` must be a trained model of a procedure named in `after` (e.g. `a.net`) "
        f"or a weight-space model declared before it, got {_label(elaborator, model)}",
        span,
    )


def _label(elaborator, model: Instance) -> str:
    teacher = elaborator.procedure.teachers.get(model.module)
    if teacher:
        return f"`{'.'.join(teacher)}`"
    return f"`{model.module}`" if model.module else f"an instance of `{model.block.definition.name}`"


def _require_one_architecture(function: str, models: dict, span) -> None:
    (first_arg, first), *others = models.items()
    for argument, model in others:
        if model.block.definition is not first.block.definition or model.args != first.args:
            raise SpecError(
                f"`{function}` needs models of one architecture: `{first_arg}` is {_architecture(first)} and `{argument}` is {_architecture(model)}",
                span,
            )


def _architecture(model: Instance) -> str:
    args = ", ".join(f"{key} = {value}" for key, value in model.args.items())
    return f"{model.block.definition.name}({args})"


def _model_graph(elaborator, model: Instance) -> BlockGraph:
    """The model's graph, compiled for symbolic sizes if no loss or metric has applied it yet, so
    that it is a submodule whose weights can be read."""
    if model.graph is None:
        model.graph = elaborator.compiler.elaborate_block(model.block, model.args, None, None, [])
        model.generic = True
        elaborator.procedure.modules.modules[model.module] = ModuleSpec(model.module, "block", model.span, graph=model.graph)
    return model.graph


# ---- permutation groups ----


def permutation_axes(graph: BlockGraph, label: str, span) -> dict:
    """State key -> the group permuting each axis (None: fixed). A group is the output units of
    a linear layer that feeds, through activations and norms only, exactly one next linear
    layer: its weight rows and bias, the norms' weights, and the next layer's weight columns."""
    _require_chain_modules(graph, label, span)
    axes: dict = {}
    for node in graph.nodes():
        if node.op != "linear":
            continue
        chain = _chain_to_next_linear(graph, node, label, span)
        if chain is None:
            continue
        norms, consumer = chain
        group = node.module
        for key, shape in parameter_shapes(graph.modules[group]).items():
            axes.setdefault(f"{group}.{key}", [None] * len(shape))[0] = group
        for norm in norms:
            for key in parameter_shapes(graph.modules[norm.module]):
                axes[f"{norm.module}.{key}"] = [group]
        axes.setdefault(f"{consumer.module}.weight", [None, None])[1] = group
    if not axes:
        raise SpecError(f"{label} has no hidden layer to permute: no linear layer feeds another", span, CHAIN_HINT)
    return {key: tuple(groups) for key, groups in axes.items()}


def _require_chain_modules(graph: BlockGraph, label: str, span) -> None:
    if graph.ties:
        raise SpecError(f"weight matching cannot permute {label}: it ties parameters", span, CHAIN_HINT)
    for name, module in graph.modules.items():
        op = module.node.op if module.kind == "op" else None
        if op not in NORMS and op != "linear":
            what = f"`{op}`" if op else f"a {module.kind}"
            raise SpecError(f"weight matching cannot permute {label}: its submodule `{name}` is {what}", span, CHAIN_HINT)


def _chain_to_next_linear(graph: BlockGraph, layer, label: str, span):
    """(norms on the way, the next linear node) if the layer's output reaches one through
    elementwise ops and norms used nowhere else; None if it is an output layer."""
    value, norms = ValueRef(layer.id, 0), []
    while True:
        users = [graph.node(target) for _, target, data in graph.graph.out_edges(value.node, data=True) if data["index"] == value.index]
        if not users:
            return None  # the model's output (or unused): its units stay in place
        if len(users) > 1 or any(ref == value for _, ref, _ in graph.outputs):
            raise SpecError(f"weight matching cannot permute {label}: the output of `{layer.module}` is used more than once", span, CHAIN_HINT)
        user = users[0]
        if user.op == "linear":
            return norms, user
        if user.op not in ELEMENTWISE and user.op not in NORMS:
            raise SpecError(
                f"weight matching cannot permute {label}: the output of `{layer.module}` goes to `{user.op}` (line {user.span.line})",
                span,
                CHAIN_HINT,
            )
        if user.op in NORMS:
            norms.append(user)
        value = ValueRef(user.id, 0)
