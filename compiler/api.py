"""The Python API: load a spec, check it, and build its models as PyTorch modules."""

from __future__ import annotations

import linecache
import types as python_types
from dataclasses import dataclass, field

from paperspec.compiler.backends import torch as torch_backend
from paperspec.compiler.diagnostics import SpecError, UsageError, did_you_mean
from paperspec.compiler.elaborate import CompilationUnit, Compiler
from paperspec.compiler.ir import BlockGraph, count_parameters
from paperspec.compiler.passes.cse import eliminate_common_subexpressions
from paperspec.compiler.passes.unused import (
    drop_unused_bindings,
    eliminate_dead_code,
    unused_values,
)
from paperspec.compiler.passes.validate import validate


@dataclass
class Spec:
    """A loaded spec file. `build(model, **params)` gives an nn.Module."""

    unit: CompilationUnit
    compiler: Compiler
    _graphs: dict = field(default_factory=dict)
    _warnings: dict = field(default_factory=dict)
    _procedures: tuple | None = None

    @property
    def path(self) -> str:
        return self.unit.spec.path

    @property
    def name(self) -> str | None:
        return self.unit.spec.name

    @property
    def title(self) -> str | None:
        return self.unit.spec.title

    @property
    def cites(self) -> tuple:
        return self.unit.spec.cites

    @property
    def quick(self) -> bool:
        """Loaded for a quick run: `quick` is true in data declarations and train bodies."""
        return self.compiler.quick

    @property
    def source_hash(self) -> str:
        return self.unit.spec.source_hash

    def models(self) -> list:
        return self.unit.models()

    def default_model(self, model: str | None) -> str:
        if model is not None:
            return model
        models = self.models()
        if len(models) == 1:
            return models[0]
        if not models:
            raise SpecError(f"{self.path} defines no model", None)
        raise SpecError(f"{self.path} defines several models ({', '.join(models)}); choose one with --model", None)

    def graph(self, model: str | None = None, **params) -> BlockGraph:
        """The elaborated, shape-checked IR of a model."""
        model = self.default_model(model)
        key = (model, tuple(sorted(params.items(), key=lambda item: item[0])))
        if key not in self._graphs:
            graph = self.compiler.elaborate_model(self.unit, model, params)
            self._warnings[key] = unused_values(graph)
            eliminate_dead_code(graph)
            eliminate_common_subexpressions(graph)
            problems = validate(graph)
            assert not problems, "invalid IR: " + "; ".join(problems)
            self._graphs[key] = graph
        return self._graphs[key]

    def warnings(self, model: str | None = None, **params) -> list:
        """Warnings about a model (values computed but never used), after it is checked."""
        model = self.default_model(model)
        self.graph(model, **params)
        return self._warnings[(model, tuple(sorted(params.items(), key=lambda item: item[0])))]

    def procedure_warnings(self) -> list:
        """Warnings about the training procedures (bindings nothing reads), after they elaborate."""
        return [warning for procedure in self.procedures().values() for warning in procedure.warnings]

    def check(self) -> list:
        """Elaborates every model with its default parameters, and every training procedure and
        claim; returns the model names."""
        for model in self.models():
            self.graph(model)
        self.procedures()
        return self.models()

    def procedures(self) -> dict:
        """The `train` procedures, in dependency order (name -> Procedure)."""
        if self._procedures is None:
            from paperspec.compiler.procedures import elaborate_procedures

            self._procedures = elaborate_procedures(self.compiler, self.unit)
        return self._procedures[0]

    def claims(self) -> list:
        """The `expect` claims, checked against the procedures and their metrics."""
        self.procedures()
        return self._procedures[1]

    def procedure(self, name: str | None = None):
        procedures = self.procedures()
        if name is None:
            if len(procedures) == 1:
                return next(iter(procedures.values()))
            raise UsageError(
                f"{self.path} has {len(procedures) or 'no'} training procedures; name one" if procedures else f"{self.path} has no `train` procedure",
                f"procedures: {', '.join(procedures)}" if procedures else None,
            )
        if name not in procedures:
            raise UsageError(f"{self.path} has no procedure `{name}`", did_you_mean(name, procedures) or f"procedures: {', '.join(procedures) or 'none'}")
        return procedures[name]

    def procedure_source(self, name: str | None = None) -> str:
        """Source of the procedure's module: its models, and a method per loss and for metrics."""
        procedure = self.procedure(name)
        functions = [phase.loss for phase in procedure.phases]
        functions.extend(evaluation.metrics for evaluation in procedure.evaluations)
        for graph in functions:
            drop_unused_bindings(graph)
            eliminate_common_subexpressions(graph)
        return torch_backend.generate_procedure(procedure.modules, functions, self.path)

    def build_procedure(self, name: str | None = None):
        """The nn.Module a trainer drives: models as submodules, `loss_<i>(...)` and `metrics(...)`."""
        procedure = self.procedure(name)
        namespace = _execute(self.procedure_source(procedure.name), f"<paperspec {self.path}:{procedure.name}>")
        return namespace[procedure.modules.name]()

    def source(self, model: str | None = None, **params) -> str:
        """A standalone Python file (imports only torch) defining the model's classes."""
        return torch_backend.generate(self.graph(model, **params), self.path)

    def module_class(self, model: str | None = None, **params) -> type:
        graph = self.graph(model, **params)
        namespace = _execute(torch_backend.generate(graph, self.path), f"<paperspec {self.path}:{graph.name}>")
        return namespace[graph.name]

    def build(self, model: str | None = None, **params):
        """An nn.Module for `model` with its parameters overridden by `params`."""
        model = self.default_model(model)
        instance = self.module_class(model, **params)()
        instance.paperspec_model = {"spec": self.path, "model": model, "params": dict(params), "source_hash": self.source_hash}
        return instance

    def parameter_count(self, model: str | None = None, **params) -> int:
        return count_parameters(self.graph(model, **params))


def _execute(source: str, filename: str) -> dict:
    """Runs generated code (never spec text) so its classes can be used; keeps it for tracebacks."""
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = python_types.ModuleType(filename)
    module.__file__ = filename
    exec(compile(source, filename, "exec"), module.__dict__)  # noqa: S102 - generated from validated IR
    return module.__dict__


def load(path: str, quick: bool = False) -> Spec:
    """Parses a spec file (and its imports); errors are SpecError with a location. With
    `quick`, procedures see `quick = true` (smaller settings for a fast end-to-end run)."""
    compiler = Compiler(quick)
    return Spec(compiler.load(path), compiler)


def loads(text: str, path: str = "<string>", quick: bool = False) -> Spec:
    compiler = Compiler(quick)
    return Spec(compiler.load_text(text, path), compiler)
