"""Elaboration of training procedures: models, data, loss and metric graphs, phases and claims."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from paperspec.compiler import ast
from paperspec.compiler.calls import bind_named_call
from paperspec.compiler.diagnostics import SpecError, did_you_mean
from paperspec.compiler.dims import Sym
from paperspec.compiler.ir import BlockGraph, ValueRef
from paperspec.compiler.mixed_precision import declare_mixed_precision, is_mixed_precision
from paperspec.compiler.snapshots import declare_snapshot
from paperspec.compiler.types import TensorType
from paperspec.compiler.values import BlockValue, Instance, TensorValue, describe
from paperspec.compiler.warm_start import check_warm_starts, declare_warm_start, is_warm_start
from paperspec.compiler.weightspace import declare_weight_space_model, is_weight_space_call

BATCH_DIM = "B"


@dataclass(frozen=True)
class DataSource:
    name: str  # the `data` declaration, or the generator for inline data
    generator: str
    args: dict
    fields: dict  # field name -> runtime.data Field (dtype, per-example shape)
    span: object
    batched: bool = True  # False: fields are whole packed batches (graphs) and get no batch dim


@dataclass
class PhaseSpec:
    name: str
    loss: BlockGraph
    data: DataSource
    batch: int
    steps: int | None  # None: set from `epochs` and the dataset's size when the run starts
    optimizer: tuple  # (name, args)
    schedule: tuple  # (name, args)
    freeze: list  # (freeze: bool, pattern parts)
    span: object
    teacher_steps: dict = field(default_factory=dict)  # teacher submodule -> checkpoint step (None: final)
    epochs: int | None = None
    update: UpdateSpec | None = None  # an update rule instead of a loss; `loss` then computes its tensors


@dataclass(frozen=True)
class UpdateSpec:
    """`update rule(model, tensors..., settings)`: the phase's graph outputs the tensors, by the
    names the rule gives them."""

    rule: str
    model: str
    settings: dict
    span: object


@dataclass
class EvalSpec:
    every: int | None  # None: only at the end
    data: DataSource
    metrics: BlockGraph  # one output per metric, named as the metric
    span: object
    batch: int | None = None  # examples per evaluation batch; None: the last phase's batch


@dataclass
class Procedure:
    name: str
    after: tuple
    span: object
    modules: BlockGraph  # the procedure's models (and teachers) as submodules
    models: list = field(default_factory=list)  # names of the models it trains
    teachers: dict = field(default_factory=dict)  # submodule -> (procedure, model)
    emas: dict = field(default_factory=dict)  # EMA model -> (the model it averages, decay)
    snapshots: dict = field(default_factory=dict)  # snapshot model -> (the model it copies, every N steps)
    warm_starts: dict = field(default_factory=dict)  # model -> (procedure, model) whose trained weights it starts from
    weight_space: dict = field(default_factory=dict)  # model -> WeightSpaceModel: weights computed from trained models
    mixed_precision: dict = field(default_factory=dict)  # model -> MixedPrecision: bit widths set when the run starts
    phases: list = field(default_factory=list)
    evaluations: list = field(default_factory=list)  # one EvalSpec per `eval` statement, on one schedule
    checkpoint_every: int | None = None
    seed: int = 0
    warnings: list = field(default_factory=list)  # SpecWarnings: bindings nothing reads

    @property
    def evaluation(self) -> EvalSpec | None:
        """The first evaluation; its `every` is the schedule of all of them."""
        return self.evaluations[0] if self.evaluations else None

    @property
    def steps(self) -> int:
        return sum(phase.steps or 0 for phase in self.phases)

    def metric_names(self) -> list:
        return [name for evaluation in self.evaluations for name, _, _ in evaluation.metrics.outputs]


class BatchValue:
    """`batch` inside a loss or metric: its fields become the graph's inputs on first use."""

    def __init__(self, graph: BlockGraph, data: DataSource):
        self.graph = graph
        self.data = data
        self.values: dict = {}

    def attribute(self, name: str, span):
        if name not in self.data.fields:
            raise SpecError(
                f"data `{self.data.name}` has no field `{name}`",
                span,
                did_you_mean(name, self.data.fields) or f"fields: {', '.join(self.data.fields)}",
            )
        if name not in self.values:
            spec = self.data.fields[name]
            batch_dims = (Sym.symbol(BATCH_DIM),) if self.data.batched else ()
            dims = batch_dims + tuple(Sym.symbol(d) if isinstance(d, str) else d for d in spec.shape)
            tensor_type = TensorType(spec.dtype, dims)
            node = self.graph.add_node("input", {"name": name}, [tensor_type], span, names=[name])
            from paperspec.compiler.ir import InputSpec

            self.graph.inputs.append(InputSpec(name, tensor_type, str(tensor_type), (), node.id))
            self.values[name] = TensorValue(ValueRef(node.id), tensor_type)
        return self.values[name]


@dataclass(frozen=True)
class ProcedureValue:
    """Another procedure named in `after`: its trained models as `teacher.net`, the steps of its
    checkpoints as `teacher.checkpoints`, and a model at one of them as `teacher[step].net`."""

    procedure: Procedure
    elaborator: object
    step: int | None = None  # None: the final weights

    def attribute(self, name: str, span):
        if name == "checkpoints" and self.step is None:
            return checkpoint_steps(self.procedure)
        return self.elaborator.teacher_instance(self.procedure, name, span, self.step)

    def index_with(self, step, span):
        steps = checkpoint_steps(self.procedure)
        if step not in steps:
            raise SpecError(
                f"procedure `{self.procedure.name}` saves no checkpoint at step {step!r}",
                span,
                f"its checkpoints: {', '.join(str(s) for s in steps)}",
            )
        return ProcedureValue(self.procedure, self.elaborator, step)


def checkpoint_steps(procedure: Procedure) -> tuple:
    """The steps at which a procedure's checkpoints are saved: every N steps, and the last."""
    if any(phase.steps is None for phase in procedure.phases):
        raise SpecError(
            f"the checkpoints of `{procedure.name}` are known only when it runs: it counts `epochs`", procedure.span,
            "give its phases `steps` to use its checkpoints here",
        )
    every, total = procedure.checkpoint_every, procedure.steps
    steps = list(range(every, total + 1, every)) if every else []
    if not steps or steps[-1] != total:
        steps.append(total)
    return tuple(steps)


def _registry_signatures(kind: str) -> dict:
    if kind == "optimizer":
        from paperspec.runtime.optim import all_optimizers

        return {name: d.signature for name, d in all_optimizers().items()}
    if kind == "schedule":
        from paperspec.runtime.schedules import all_schedules

        return {name: d.signature for name, d in all_schedules().items()}
    from paperspec.runtime.data import all_generators

    return {name: d.signature for name, d in all_generators().items()}


DEFAULTS = {"batch": 32, "seed": 0}
REQUIRED = ("loss", "data", "optimizer")
OBJECTIVES = ("loss", "update")  # a phase trains by one of them


class ProcedureElaborator:
    """Turns one `train` definition into a Procedure."""

    def __init__(self, compiler, unit, definition: ast.TrainDef, done: dict, data_decls: dict):
        from paperspec.compiler.elaborate import camel_case

        self.compiler = compiler
        self.unit = unit
        self.definition = definition
        self.done = done
        self.data_decls = data_decls
        name = compiler.class_name(camel_case(definition.name) + "Procedure")
        modules = BlockGraph(name, definition.name, "procedure", {}, definition.span)
        self.procedure = Procedure(definition.name, definition.after, definition.span, modules)
        self.scope = self._scope()
        self.declared: dict[str, Instance] = {}
        self.batches: dict = {}  # id of a loss or metric graph -> its `batch`
        self.teacher_steps: dict = {}  # teacher submodule -> checkpoint used by the phase being built

    def _scope(self):
        from paperspec.compiler.elaborate import Scope

        values = {"quick": self.compiler.quick}
        for name in self.definition.after:
            if name not in self.done:
                raise SpecError(f"`{self.definition.name}` runs after unknown procedure `{name}`", self.definition.span, did_you_mean(name, self.done))
            values[name] = ProcedureValue(self.done[name], self)
        return Scope(values)

    def evaluator(self, graph: BlockGraph | None = None, scope=None):
        from paperspec.compiler.elaborate import BlockElaborator

        return BlockElaborator(self.compiler, self.unit, graph or self.procedure.modules, scope or self.scope, None, None, [])

    # ---- statements ----

    def run(self) -> Procedure:
        settings, phases, freeze = {}, [], []
        for stmt in self.definition.body:
            if isinstance(stmt, ast.TrainPhase):
                phases.append((stmt, {}))
            elif isinstance(stmt, ast.TrainFor):
                phases.extend(self.expand_for(stmt))
            elif isinstance(stmt, ast.TrainEval):
                settings.setdefault("eval", []).append(stmt)
            elif isinstance(stmt, ast.TrainCheckpoint):
                self.procedure.checkpoint_every = self.positive_int(stmt.every, "checkpoint interval")
            else:
                self.setting(stmt, settings, freeze)
        self.procedure.seed = self.int_setting(settings.get("seed"), DEFAULTS["seed"], "seed", minimum=0)
        if self.evaluation_only(settings, phases):
            self.procedure.evaluations = self.evaluations(settings["eval"], settings.get("lets", []))
            self.procedure.warnings = _unread_bindings(self.definition.body, settings.get("lets", []))
            return self.procedure
        for index, (phase, bindings) in enumerate(phases or [(None, {})]):
            own, own_freeze = dict(settings), list(freeze)
            for key in OBJECTIVES:
                if phase is not None and _sets(phase, _other(key)):
                    own.pop(key, None)  # the phase replaces the outer objective
            if phase is not None:
                for stmt in phase.body:
                    if isinstance(stmt, (ast.TrainPhase, ast.TrainEval, ast.TrainCheckpoint, ast.TrainModel, ast.TrainFor)):
                        raise SpecError("a phase may set data, loss, optimizer, schedule, steps, batch and freezing only", stmt.span)
                    self.setting(stmt, own, own_freeze)
            name = (phase.name if phase and phase.name else f"phase{index}") if phases else "main"
            self.scope.values.update(bindings)
            self.teacher_steps = {}
            spec = self.phase(name, own, own_freeze, phase.span if phase else self.definition.span)
            spec.teacher_steps = self.teacher_steps
            self.procedure.phases.append(spec)
            for key in bindings:
                del self.scope.values[key]
        if "eval" in settings:
            self.teacher_steps = {}
            self.procedure.evaluations = self.evaluations(settings["eval"], settings.get("lets", []))
        self.attach_followers(self.procedure.emas, "averages")
        self.attach_followers(self.procedure.snapshots, "copies")
        check_warm_starts(self)
        unused = [m for m in self.procedure.models if self.declared[m].graph is None and m not in self.procedure.emas]
        if unused:
            raise SpecError(f"model `{unused[0]}` is never used by a loss", self.declared[unused[0]].span)
        self.procedure.warnings = _unread_bindings(self.definition.body, settings.get("lets", []))
        return self.procedure

    def setting(self, stmt, settings: dict, freeze: list) -> None:
        if isinstance(stmt, ast.TrainModel):
            self.declare_model(stmt)
        elif isinstance(stmt, ast.TrainData):
            settings["data"] = stmt
        elif isinstance(stmt, ast.TrainSetting):
            if stmt.key in OBJECTIVES:
                _one_objective(stmt, settings)
            settings[stmt.key] = stmt
        elif isinstance(stmt, ast.TrainFreeze):
            freeze.append((stmt.freeze, stmt.pattern, stmt.span))
        elif isinstance(stmt, ast.Assign):
            settings.setdefault("lets", []).append(stmt)
        else:
            raise SpecError("this statement cannot appear in a training procedure", stmt.span)

    def evaluation_only(self, settings: dict, phases: list) -> bool:
        """A procedure with no models of its own and no loss only evaluates (e.g. trained models
        of an earlier procedure on other data): `eval on DATA { ... }`."""
        if self.procedure.models or phases or "loss" in settings or "update" in settings or "eval" not in settings:
            return False
        for stmt in settings["eval"]:
            if stmt.data is None:
                raise SpecError("an evaluation-only procedure needs `eval on DATA { ... }`", stmt.span)
        return True

    def expand_for(self, stmt: ast.TrainFor) -> list:
        """Phases of a `for` loop, each with the loop variable bound to one item."""
        items = self.evaluator().eval(stmt.iterable)
        if not isinstance(items, tuple):
            raise SpecError(f"`for` needs a list, e.g. `teacher.checkpoints`, got {describe(items)}", stmt.iterable.span)
        phases = []
        for item in items:
            for inner in stmt.body:
                if not isinstance(inner, ast.TrainPhase):
                    raise SpecError("the body of a `for` in a procedure holds `phase { ... }` blocks", inner.span)
                phases.append((inner, {stmt.name: item}))
        return phases

    def declare_ema(self, stmt: ast.TrainModel) -> None:
        """`model avg = ema(net, decay = 0.999)`: an exponential moving average of `net`'s weights."""
        call = stmt.value
        if len(call.args) != 1 or not isinstance(call.args[0], ast.Name) or call.args[0].id not in self.declared:
            raise SpecError("`ema` takes a model of this procedure, e.g. `ema(net, decay = 0.999)`", call.span)
        decay = 0.999
        for keyword in call.keywords:
            if keyword.name != "decay":
                raise SpecError(f"`ema` has no argument `{keyword.name}`", keyword.span, "arguments: decay")
            decay = self.evaluator().eval(keyword.value)
            if not isinstance(decay, (int, float)) or isinstance(decay, bool) or not 0.0 <= decay < 1.0:
                raise SpecError(f"`decay` of ema must be in [0, 1), got {describe(decay)}", keyword.value.span)
        self.declare_follower(stmt, call.args[0].id)
        self.procedure.emas[stmt.name] = (call.args[0].id, float(decay))

    def declare_follower(self, stmt: ast.TrainModel, source: str) -> None:
        """A model of the procedure whose weights follow `source`'s (an average, a snapshot): the
        same block with the same arguments."""
        followed = self.declared[source]
        instance = Instance(followed.block, dict(followed.args), stmt.span, module=stmt.name, owner=self.procedure.modules)
        self.declared[stmt.name] = instance
        self.procedure.models.append(stmt.name)
        self.scope.set(stmt.name, instance)

    def attach_followers(self, followers: dict, verb: str) -> None:
        """A follower no loss calls is still a model (saved in checkpoints): it gets its source's graph."""
        for name, (source, _) in followers.items():
            instance, followed = self.declared[name], self.declared[source]
            if followed.graph is None:
                raise SpecError(f"`{name}` {verb} `{source}`, which no loss uses", instance.span)
            if instance.graph is None:
                from paperspec.compiler.ir import ModuleSpec

                instance.graph = followed.graph
                self.procedure.modules.modules[name] = ModuleSpec(name, "block", instance.span, graph=followed.graph)

    def declare_model(self, stmt: ast.TrainModel) -> None:
        if stmt.name in self.declared or stmt.name in self.scope.values:
            raise SpecError(f"`{stmt.name}` is already defined in `{self.definition.name}`", stmt.span)
        if isinstance(stmt.value, ast.Call) and isinstance(stmt.value.func, ast.Name) and stmt.value.func.id == "ema":
            self.declare_ema(stmt)
            return
        if isinstance(stmt.value, ast.Call) and isinstance(stmt.value.func, ast.Name) and stmt.value.func.id == "snapshot":
            declare_snapshot(self, stmt)
            return
        if is_weight_space_call(stmt.value):
            declare_weight_space_model(self, stmt)
            return
        if is_mixed_precision(stmt.value):
            stmt = declare_mixed_precision(self, stmt)  # then declared as the quantised model it wraps
        if is_warm_start(stmt.value):
            stmt = declare_warm_start(self, stmt)  # then declared as the model it starts
        value = self.evaluator().eval(stmt.value)
        if isinstance(value, BlockValue):
            value = self.evaluator().instantiate(value, [], {}, stmt.value, [], {})
        if not isinstance(value, Instance):
            raise SpecError(f"`model` needs a block or model instance such as `GPT(d = 64)`, got {describe(value)}", stmt.value.span)
        value.module = stmt.name
        value.owner = self.procedure.modules
        self.declared[stmt.name] = value
        self.procedure.models.append(stmt.name)
        self.scope.set(stmt.name, value)

    def teacher_instance(self, procedure: Procedure, model: str, span, step: int | None = None) -> Instance:
        module = f"{procedure.name}_{model}"
        previous = self.teacher_steps.setdefault(module, step)
        if previous != step:
            raise SpecError(f"one phase can use `{procedure.name}.{model}` at one checkpoint only", span)
        if module not in self.declared:
            spec = procedure.modules.modules.get(model)
            if spec is None or model not in procedure.models:
                raise SpecError(f"procedure `{procedure.name}` has no model `{model}`", span, did_you_mean(model, procedure.models))
            original = procedure.modules.modules[model]
            block = self.unit.find_block(original.graph.block)
            instance = Instance(block, dict(original.graph.args), span, module=module, owner=self.procedure.modules)
            self.declared[module] = instance
            self.procedure.teachers[module] = (procedure.name, model)
        return self.declared[module]

    # ---- settings ----

    def positive_int(self, expr, what: str) -> int:
        return self.int_setting(expr, None, what, minimum=1)

    def int_setting(self, stmt_or_expr, default, what: str, minimum: int) -> int:
        if stmt_or_expr is None:
            return default
        expr = stmt_or_expr.value if isinstance(stmt_or_expr, ast.TrainSetting) else stmt_or_expr
        value = self.evaluator().eval(expr)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise SpecError(f"{what} must be an integer >= {minimum}, got {describe(value)}", expr.span)
        return value

    def phase(self, name: str, settings: dict, freeze: list, span) -> PhaseSpec:
        for key in REQUIRED:
            if key not in settings and not (key == "loss" and "update" in settings):
                raise SpecError(f"`{self.definition.name}` has no `{key}`" + (f" in phase `{name}`" if name != "main" else ""), span, _required_hint(key))
        data = self.data_source(settings["data"].value)
        steps, epochs = self.length(settings, name, span)
        batch = self.int_setting(settings.get("batch"), DEFAULTS["batch"], "batch", minimum=1)
        optimizer = self.registry_call(settings["optimizer"].value, "optimizer")
        schedule = self.registry_call(settings["schedule"].value, "schedule", steps) if "schedule" in settings else ("constant", {})
        loss = self.function_graph(f"loss_{len(self.procedure.phases)}", data, settings)
        update = None
        if "update" in settings:
            update = self.update_rule(settings["update"], loss, settings)
        else:
            value = self.eval_in(loss, settings["loss"].value, settings)
            self.require_scalar(value, settings["loss"].value, "the loss")
            loss.outputs.append(("loss", value.ref, settings["loss"].span))
        for _, pattern, pattern_span in freeze:
            self.check_pattern(pattern, pattern_span)
        spec = PhaseSpec(name, loss, data, batch, steps, optimizer, schedule, [(f, p) for f, p, _ in freeze], span, epochs=epochs)
        spec.update = update
        return spec

    def update_rule(self, stmt: ast.TrainSetting, graph: BlockGraph, settings: dict) -> UpdateSpec:
        """`update contrastive_divergence(rbm, batch.x, k = 1)`: a model of this procedure, the
        rule's tensors (expressions on the batch, computed by `graph`) and its settings."""
        from paperspec.runtime.updates import all_update_rules, validate

        call = stmt.value
        rules = all_update_rules()
        if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
            raise SpecError("`update` names an update rule, e.g. `update contrastive_divergence(rbm, batch.x, k = 1)`", call.span, f"update rules: {', '.join(sorted(rules))}")
        name = call.func.id
        if name not in rules:
            raise SpecError(f"unknown update rule `{name}`", call.func.span, did_you_mean(name, rules) or f"update rules: {', '.join(sorted(rules))}")
        definition = rules[name]
        model, tensors, rest = _update_arguments(call, definition)
        if not isinstance(model, ast.Name) or model.id not in self.declared:
            raise SpecError(f"the first argument of `{name}` is the model it trains, one declared by `model` in this procedure", model.span, f"usage: {definition.describe()}")
        if model.id in {**self.procedure.emas, **self.procedure.snapshots, **self.procedure.weight_space}:
            raise SpecError(f"`{model.id}` follows other weights (an average, snapshot or weight-space model), so `{name}` cannot train it", model.span)
        values = self.eval_in(graph, ast.TupleExpr(tuple(expr for _, expr in tensors), call.span), settings)
        for (tensor_name, expr), value in zip(tensors, values):
            if not isinstance(value, TensorValue):
                raise SpecError(f"`{tensor_name}` of `{name}` must be a tensor, got {describe(value)}", expr.span)
            graph.outputs.append((tensor_name, value.ref, expr.span))
        _, rule_settings = bind_named_call(self.evaluator(), dataclasses.replace(call, args=(), keywords=rest), {name: definition.signature}, "update rule")
        problem = validate(name, rule_settings)
        if problem:
            raise SpecError(problem, call.span)
        return UpdateSpec(name, model.id, rule_settings, stmt.span)

    def length(self, settings: dict, name: str, span) -> tuple:
        """(steps, epochs) of a phase: exactly one of `steps N` or `epochs N`."""
        if "steps" in settings and "epochs" in settings:
            raise SpecError("give `steps` or `epochs`, not both", settings["epochs"].span)
        if "epochs" in settings:
            return None, self.positive_int(settings["epochs"].value, "epochs")
        if "steps" not in settings:
            where = f" in phase `{name}`" if name != "main" else ""
            raise SpecError(f"`{self.definition.name}` has no `steps`{where}", span, _required_hint("steps"))
        return self.positive_int(settings["steps"].value, "steps"), None

    def registry_call(self, expr, kind: str, steps: int | None = None) -> tuple:
        name, args = bind_named_call(self.evaluator(), expr, _registry_signatures(kind), kind)
        problem = _validate(kind, name, args, steps)
        if problem:
            raise SpecError(problem, expr.span)
        return name, args

    def data_source(self, expr) -> DataSource:
        if isinstance(expr, ast.Name) and expr.id in self.data_decls:
            return self.data_decls[expr.id]
        if isinstance(expr, ast.Name):
            raise SpecError(f"unknown data `{expr.id}`", expr.span, did_you_mean(expr.id, self.data_decls) or "declare it with `data NAME = generator(...)`")
        return make_data_source(self.evaluator(), "inline", expr)

    # ---- loss and metric graphs ----

    def function_graph(self, name: str, data: DataSource, settings: dict) -> BlockGraph:
        graph = BlockGraph(name, self.definition.name, "function", {}, self.definition.span)
        graph.modules = self.procedure.modules.modules
        graph.owner = self.procedure.modules
        self.batches[id(graph)] = BatchValue(graph, data)
        return graph

    def eval_in(self, graph: BlockGraph, expr, settings: dict, only_needed: bool = False):
        """`expr` on the graph's batch, after the procedure's bindings: all of them for a loss (so
        a binding with a mistake is an error even if unused), or only those `expr` reads for a
        metric, whose evaluation data may lack fields the training data has."""
        from paperspec.compiler.progress import TrainingScope

        scope = TrainingScope(graph, self.batches[id(graph)], self.scope)
        evaluator = self.evaluator(graph, scope)
        lets = settings.get("lets", [])
        for stmt in _needed_bindings(lets, expr) if only_needed else lets:
            evaluator.stmt_Assign(stmt)
        return evaluator.eval(expr)

    def require_scalar(self, value, expr, what: str) -> None:
        if not isinstance(value, TensorValue) or value.type.rank != 0 or value.type.dtype not in ("f16", "bf16", "f32", "f64"):
            raise SpecError(f"{what} must be a floating-point scalar, got {describe(value)}", expr.span, "reduce it, e.g. with mean(...)")

    def evaluations(self, stmts: list, lets: list) -> list:
        """One EvalSpec per `eval` statement (e.g. accuracy on the training split and on the
        test split); they run together, so they share one `every`, and metric names are unique."""
        evaluations, names = [], set()
        for index, stmt in enumerate(stmts):
            evaluation = self.evaluation(stmt, lets, "metrics" if index == 0 else f"metrics_{index}", names)
            if evaluations and evaluation.every != evaluations[0].every:
                first = evaluations[0]
                raise SpecError(
                    f"the `eval` statements of a procedure run together, but this one runs {_schedule(evaluation.every)} "
                    f"and the one at line {first.span.line} {_schedule(first.every)}",
                    stmt.span,
                    "give them the same `every`",
                )
            evaluations.append(evaluation)
        return evaluations

    def evaluation(self, stmt: ast.TrainEval, lets: list, method: str, names: set) -> EvalSpec:
        every = self.positive_int(stmt.every, "eval interval") if stmt.every is not None else None
        data = self.data_source(stmt.data) if stmt.data is not None else self.procedure.phases[-1].data
        graph = self.function_graph(method, data, {})
        settings = {"lets": lets}  # the procedure's bindings, on the evaluation batch
        for metric in stmt.metrics:
            name, expr = self.metric_name(metric), metric.value
            if name in names:
                raise SpecError(f"metric `{name}` is listed twice", metric.span, "name one with `name = ...`")
            names.add(name)
            if isinstance(expr, ast.Name) and expr.id == "loss" and self.scope.lookup("loss")[0] is False:
                expr = self._final_loss_expr(metric.span)
            value = self.eval_in(graph, expr, settings, only_needed=True)
            self.require_scalar(value, metric.value, f"metric `{name}`")
            graph.outputs.append((name, value.ref, metric.span))
        batch = self.positive_int(stmt.batch, "eval batch") if stmt.batch is not None else None
        return EvalSpec(every, data, graph, stmt.span, batch)

    def _final_loss_expr(self, span):
        if not any(isinstance(s, ast.TrainSetting) and s.key == "loss" for s in _settings_anywhere(self.definition.body)):
            raise SpecError(f"`loss` names the procedure's loss, but `{self.definition.name}` trains with an update rule", span, "name a metric, e.g. `error = mse(...)`")
        for stmt in reversed(self.definition.body):
            if isinstance(stmt, ast.TrainPhase):
                found = [s for s in stmt.body if isinstance(s, ast.TrainSetting) and s.key == "loss"]
                if found:
                    return found[-1].value
        return next(s.value for s in self.definition.body if isinstance(s, ast.TrainSetting) and s.key == "loss")

    @staticmethod
    def metric_name(metric: ast.Metric) -> str:
        if metric.name:
            return metric.name
        value = metric.value
        if isinstance(value, ast.Name):
            return value.id
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name):
            return value.func.id
        raise SpecError("name this metric: `name = expression`", metric.span)

    def check_pattern(self, pattern: tuple, span) -> None:
        if pattern[0] not in self.procedure.models:
            raise SpecError(f"`freeze` patterns start with a model of `{self.definition.name}`, got `{pattern[0]}`", span, did_you_mean(pattern[0], self.procedure.models))


def _schedule(every: int | None) -> str:
    return f"every {every} steps" if every else "once at the end"


def _needed_bindings(lets: list, expr) -> list:
    """The bindings `expr` reads, directly or through other bindings, in their order."""
    wanted, needed = _names(expr), []
    for stmt in reversed(lets):
        if wanted & set(stmt.targets):
            needed.append(stmt)
            wanted |= _names(stmt.value)
    return needed[::-1]


def _unread_bindings(body: tuple, lets: list) -> list:
    """A warning for each binding that no loss, update rule or metric reads, even through other
    bindings: it is checked, but nothing computes it."""
    from paperspec.compiler.passes.unused import SpecWarning

    roots = [s.value for s in _settings_anywhere(body) if isinstance(s, ast.TrainSetting) and s.key in OBJECTIVES]
    roots += [metric.value for s in body if isinstance(s, ast.TrainEval) for metric in s.metrics]
    read = {id(stmt) for root in roots for stmt in _needed_bindings(lets, root)}
    return [
        SpecWarning(f"`{stmt.targets[0]}` is bound but no loss or metric reads it", stmt.span)
        for stmt in lets
        if id(stmt) not in read
    ]


def _names(node) -> set:
    """Every name an expression mentions."""
    if isinstance(node, ast.Name):
        return {node.id}
    if isinstance(node, (list, tuple)):
        return set().union(*(_names(item) for item in node)) if node else set()
    if dataclasses.is_dataclass(node):
        return set().union(*(_names(getattr(node, f.name)) for f in dataclasses.fields(node)))
    return set()


def make_data_source(evaluator, name: str, expr) -> DataSource:
    """Binds a generator call and asks the generator for its fields (no data is made)."""
    from paperspec.runtime.data import get_generator

    generator, args = bind_named_call(evaluator, expr, _registry_signatures("data"), "data generator")
    if isinstance(args.get("path"), str) and not os.path.isabs(args["path"]):
        # File data is found next to the spec that names it, wherever paperspec runs from.
        args["path"] = os.path.join(os.path.dirname(os.path.abspath(expr.span.path)), args["path"])
    definition = get_generator(generator)
    problem = definition.validate(args)
    if problem:
        raise SpecError(problem, expr.span)
    try:
        fields = definition.fields(args)
    except (OSError, ValueError) as error:
        raise SpecError(f"data `{name}`: {error}", expr.span) from None
    return DataSource(name if name != "inline" else generator, generator, args, fields, expr.span, definition.batched)


def _validate(kind: str, name: str, args: dict, steps: int | None):
    if kind == "optimizer":
        from paperspec.runtime.optim import validate

        return validate(name, args)
    from paperspec.runtime.schedules import validate

    # With `epochs` the length is known at run time, where the schedule is checked again.
    return validate(name, args, steps if steps is not None else 10**12)


def _other(key: str) -> str:
    return OBJECTIVES[1 - OBJECTIVES.index(key)]


def _sets(phase: ast.TrainPhase, key: str) -> bool:
    return any(isinstance(s, ast.TrainSetting) and s.key == key for s in phase.body)


def _one_objective(stmt: ast.TrainSetting, settings: dict) -> None:
    """`loss` and `update` in one body contradict each other; a phase may replace the outer one,
    which `run` drops from the phase's settings before reading its body."""
    other = settings.get(_other(stmt.key))
    if other is not None:
        raise SpecError(f"a procedure trains by `loss` or by `update`, not both (`{other.key}` at line {other.span.line})", stmt.span)


def _settings_anywhere(body) -> list:
    found = []
    for stmt in body:
        found.extend(_settings_anywhere(stmt.body) if isinstance(stmt, (ast.TrainPhase, ast.TrainFor)) else [stmt])
    return found


def _update_arguments(call: ast.Call, definition) -> tuple:
    """(model expr, [(tensor name, expr)], remaining keywords) of an update rule's call."""
    positional = list(call.args)
    by_name = {k.name: k for k in call.keywords}
    model = positional.pop(0) if positional else by_name.pop("model", None)
    if model is None:
        raise SpecError(f"`{definition.name}` needs the model it trains first", call.span, f"usage: {definition.describe()}")
    tensors = []
    for tensor_name in definition.tensors:
        if positional:
            tensors.append((tensor_name, positional.pop(0)))
        elif tensor_name in by_name:
            tensors.append((tensor_name, by_name.pop(tensor_name).value))
        else:
            raise SpecError(f"`{definition.name}` needs its tensor argument `{tensor_name}`", call.span, f"usage: {definition.describe()}")
    if positional:
        raise SpecError(f"the settings of `{definition.name}` are keywords", positional[0].span, f"usage: {definition.describe()}")
    return model, tensors, tuple(by_name.values())


def _required_hint(key: str) -> str:
    examples = {
        "loss": "e.g. `loss cross_entropy(net(batch.x), batch.y)`",
        "data": "e.g. `data train_set` after `data train_set = sparse_parity(n = 20, k = 3)`",
        "steps": "e.g. `steps 1000`, or `epochs 10` for a finite dataset",
        "optimizer": "e.g. `optimizer adamw(lr = 1e-3)`",
    }
    return examples[key]


def elaborate_procedures(compiler, unit) -> tuple:
    """All procedures of a spec file in dependency order, and its claims."""
    from paperspec.compiler.elaborate import BlockElaborator, Scope

    evaluator = BlockElaborator(compiler, unit, None, Scope({"quick": compiler.quick}), None, None, [])
    data_decls = {}
    for decl in unit.spec.data:
        if decl.name in data_decls:
            raise SpecError(f"data `{decl.name}` is declared twice", decl.span)
        data_decls[decl.name] = make_data_source(evaluator, decl.name, decl.value)
    done: dict[str, Procedure] = {}
    for definition in _dependency_order(unit.spec.trains):
        done[definition.name] = ProcedureElaborator(compiler, unit, definition, done, data_decls).run()
    from paperspec.compiler.claims import check_claim

    claims = [check_claim(decl, done, unit.spec) for decl in unit.spec.expects]
    return done, claims


def _dependency_order(trains: tuple) -> list:
    by_name = {}
    for definition in trains:
        if definition.name in by_name:
            raise SpecError(f"procedure `{definition.name}` is defined twice", definition.name_span)
        by_name[definition.name] = definition
    order, state = [], {}

    def visit(definition) -> None:
        if state.get(definition.name) == "done":
            return
        state[definition.name] = "active"
        for name, span in zip(definition.after, definition.after_spans or [definition.span] * len(definition.after)):
            if name not in by_name:
                raise SpecError(f"unknown procedure `{name}` in `after`", span, did_you_mean(name, by_name))
            if state.get(name) == "active":
                raise SpecError(f"procedure `{name}` depends on itself through `after` (via `{definition.name}`)", span)
            visit(by_name[name])
        state[definition.name] = "done"
        order.append(definition)

    for definition in trains:
        visit(definition)
    return order
