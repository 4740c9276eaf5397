"""The trainer: runs a procedure's phases (data, loss, optimizer, schedule), evaluates and checkpoints."""

from __future__ import annotations

import csv
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

import torch

from paperspec.runtime.checkpoint import (
    latest_checkpoint,
    load_state,
    load_weights,
    save_checkpoint,
)
from paperspec.runtime.data import TensorSampler, get_generator
from paperspec.runtime.distributed import current_world, finish, shard, start
from paperspec.runtime.mixed_precision import prepare_mixed_precision
from paperspec.runtime.optim import build_optimizer
from paperspec.runtime.progress import add_progress, evaluation_arguments, fill_progress
from paperspec.runtime.schedules import make_scheduler
from paperspec.runtime.schedules import validate as schedule_problem
from paperspec.runtime.snapshots import refresh_snapshots, start_snapshots
from paperspec.runtime.updates import UpdateRuleError, get_update_rule
from paperspec.runtime.warm_start import warm_start_models
from paperspec.runtime.weightspace import compute_weight_space_models

EVAL_BATCHES = 8
FINAL = "final"


class TrainingError(Exception):
    """A run that cannot go on: a non-finite loss, missing teacher weights, a bad resume."""


@dataclass
class RunResult:
    procedure: str
    run_dir: Path
    steps: int
    metrics: dict  # the last evaluation: metric -> value
    history: list = field(default_factory=list)  # every evaluation: {"step": n, metric: value}
    train_loss: float = math.nan  # mean training loss over the last 50 steps
    first_loss: float = math.nan  # mean training loss over the first quarter of the steps
    last_loss: float = math.nan  # mean training loss over the last quarter
    improved: bool | None = None  # last quarter lower than the first by more than its noise (None: not trained)


class Trainer:
    """Executes one elaborated Procedure of a Spec."""

    def __init__(self, spec, name: str | None = None, device: str = "cpu", out_root: str = "runs",
                 steps: int | None = None, progress: bool | None = None, teacher_runs: dict | None = None):
        self.spec = spec
        self.procedure = spec.procedure(name)
        self.device = _device(device)
        self.out_root = Path(out_root)
        self.max_steps = steps
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.teacher_runs = teacher_runs or {}
        self.history: list = []
        self.losses: list = []
        self.world = current_world()
        self.rule = None  # the running phase's update rule, if it trains by one

    # ---- set-up ----

    def build(self) -> None:
        if self.world.distributed:
            self.device = torch.device(start(self.world, str(self.device)))
            if self.procedure.phases and self.procedure.phases[0].batch % self.world.size:
                raise TrainingError(f"batch {self.procedure.phases[0].batch} does not split over {self.world.size} processes")
        torch.manual_seed(self.procedure.seed)
        self.module = self.spec.build_procedure(self.procedure.name).to(self.device)
        self.models = {name: getattr(self.module, name) for name in self.procedure.models}
        self.trained = {n: m for n, m in self.models.items() if n not in self.procedure.emas and n not in self.procedure.snapshots}
        warm_start_models(self)  # before EMAs and snapshots copy the models
        for name, (source, _) in self.procedure.emas.items():
            self.models[name].load_state_dict(self.models[source].state_dict())
            self.models[name].requires_grad_(False)
        start_snapshots(self.procedure.snapshots, self.models)
        self.check_freeze_patterns()
        for module_name, (procedure, model) in self.procedure.teachers.items():
            self.load_teacher(module_name, procedure, model)
        compute_weight_space_models(self.module, self.procedure.weight_space)

    def load_teacher(self, module_name: str, procedure: str, model: str, step: int | None = None) -> None:
        """Loads a teacher's weights: its final checkpoint, or the one saved at `step`."""
        folder = self.final_checkpoint(procedure, f"needs the trained `{procedure}.{model}`")
        if step is not None:
            folder = folder.parent / f"step_{step:07d}"
            if not folder.is_dir():
                raise TrainingError(f"`{procedure}` has no checkpoint at step {step} in {folder.parent.parent}")
        teacher = getattr(self.module, module_name)
        try:
            load_weights(folder, {model: teacher})
        except (ValueError, FileNotFoundError) as error:
            raise TrainingError(f"`{self.procedure.name}` cannot use the trained `{procedure}.{model}`: {error}") from None
        teacher.requires_grad_(False)
        teacher.eval()

    def final_checkpoint(self, procedure: str, purpose: str) -> Path:
        """The last checkpoint of an earlier procedure, whose trained weights this one `purpose`."""
        run_dir = self.teacher_runs.get(procedure) or latest_run(self.out_root, self.spec, procedure)
        folder = latest_checkpoint(run_dir) if run_dir else None
        if folder is None:
            raise TrainingError(
                f"`{self.procedure.name}` {purpose}, but no checkpoint of `{procedure}` was found under {self.out_root}; "
                f"train `{procedure}` first (or run `paperspec reproduce`)"
            )
        return folder

    def phase_steps(self, phase) -> int:
        """A phase's length; `epochs` passes over a finite dataset, counted in whole batches."""
        if phase.epochs is None:
            return phase.steps
        size = getattr(get_generator(phase.data.generator).sampler(phase.data.args), "size", None)
        if not size:
            raise TrainingError(f"phase `{phase.name}` counts epochs, but data `{phase.data.name}` is an endless stream; use `steps`")
        steps = phase.epochs * math.ceil(size / phase.batch)
        problem = schedule_problem(phase.schedule[0], phase.schedule[1], steps)
        if problem:
            raise TrainingError(f"phase `{phase.name}` ({steps} steps from {phase.epochs} epochs): {problem}")
        return steps

    def phase_plan(self) -> list:
        """(phase, steps to run) after applying a --steps cap, in order."""
        if not hasattr(self, "_lengths"):
            self._lengths = [self.phase_steps(phase) for phase in self.procedure.phases]
        plan, left = [], self.max_steps
        for phase, length in zip(self.procedure.phases, self._lengths):
            steps = length if left is None else min(length, left)
            plan.append((phase, steps))
            left = None if left is None else left - steps
        return plan  # phases cut to 0 steps stay, so an index always names the same phase

    def run_dir_for(self, resume: bool) -> Path:
        if resume:
            run_dir = latest_run(self.out_root, self.spec, self.procedure.name)
            if run_dir is None or latest_checkpoint(run_dir) is None:
                raise TrainingError(f"nothing to resume: no checkpoint of `{self.procedure.name}` under {self.out_root}")
            return run_dir
        if not self.world.main:
            return None  # only rank 0 writes metrics and checkpoints
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = self.out_root / spec_label(self.spec) / self.procedure.name / stamp
        suffix = 1
        while run_dir.exists():
            run_dir = run_dir.with_name(f"{stamp}-{suffix}")
            suffix += 1
        run_dir.mkdir(parents=True)
        if Path(self.spec.path).is_file():
            shutil.copyfile(self.spec.path, run_dir / "spec.pspec")
        return run_dir

    # ---- the loop ----

    def run(self, resume: bool = False) -> RunResult:
        self.build()
        self.run_dir = self.run_dir_for(resume)
        if not resume:
            prepare_mixed_precision(self)  # a resumed run's bit widths come with its checkpoint
        start_step, state = self.restore() if resume else (0, None)
        self.final_state = state
        self.eval_batches = self.make_eval_batches()
        step = 0
        try:
            step = self.run_phases(start_step, state)
        finally:
            if self.world.distributed:
                finish()
        metrics = self.history[-1] if self.history and self.history[-1]["step"] == step else self.evaluate(step)
        self.checkpoint(step, metrics, self.final_state)
        first, last, improved = loss_trend(self.losses) if not resume else (math.nan, math.nan, None)  # resumed: first losses gone
        return RunResult(self.procedure.name, self.run_dir, step, metrics, self.history, _mean(self.losses[-50:]), first, last, improved)

    def restore(self) -> tuple:
        """(step, training state) of the run's last checkpoint, whose weights are loaded; the
        evaluation history is cut back to what an uninterrupted run has at that step."""
        folder = latest_checkpoint(self.run_dir)
        state, meta = load_state(folder)
        try:
            load_weights(folder, self.models)
        except (ValueError, FileNotFoundError) as error:
            raise TrainingError(f"cannot resume `{self.procedure.name}` from {folder}: {error}") from None
        start_step = meta["step"]
        if meta.get("spec_hash", self.spec.source_hash) != self.spec.source_hash:
            raise TrainingError(
                f"the spec changed after `{self.procedure.name}` wrote its checkpoint at step {start_step}, and resuming would "
                f"mix two procedures; {self.run_dir / 'spec.pspec'} is the spec that run used: restore it, or start a new run without --resume"
            )
        if self.max_steps is not None and self.max_steps < start_step:
            raise TrainingError(f"`{self.procedure.name}` is already at step {start_step} in {self.run_dir}; --steps {self.max_steps} would go back")
        self.losses = state["recent_losses"].tolist() if "recent_losses" in state else []
        every = self.procedure.evaluation.every if self.procedure.evaluation else None
        # The last evaluation of a run cut short by --steps is off the `eval every` schedule.
        self.history = [r for r in _read_history(self.run_dir) if r["step"] <= start_step and every and r["step"] % every == 0]
        if self.world.main:
            _write_history(self.run_dir, self.history)
        return start_step, state

    def run_phases(self, start_step: int, state) -> int:
        step = 0
        progress = self.progress and self.world.main
        self.last_step = sum(s for _, s in self.phase_plan())
        with _Progress(progress, self.last_step, self.procedure.name) as bar:
            bar.advance(start_step)
            for index, (phase, steps) in enumerate(self.phase_plan()):
                if steps == 0:
                    continue
                if step + steps <= start_step:
                    step += steps
                    continue
                step = self.run_phase(index, phase, steps, step, start_step, state, bar)
                state = None
        return step

    def run_phase(self, index: int, phase, steps: int, step: int, start_step: int, state, bar) -> int:
        self.apply_freezing(phase)
        for module_name, teacher_step in phase.teacher_steps.items():
            if teacher_step is not None:
                self.load_teacher(module_name, *self.procedure.teachers[module_name], teacher_step)
        named = [(n, p) for name, model in self.trained.items() for n, p in model.named_parameters(prefix=name)]
        optimizer = build_optimizer(phase.optimizer[0], phase.optimizer[1], named)
        self.rule = self.build_update_rule(phase, optimizer)
        scheduler = make_scheduler(optimizer, phase.schedule[0], phase.schedule[1], self._lengths[index])
        sampler = get_generator(phase.data.generator).sampler(phase.data.args)
        generator = torch.Generator().manual_seed(self.procedure.seed * 1_000_003 + index)
        done_in_phase = 0
        if start_step > step:
            if state is None or state.get("phase") != index:
                raise TrainingError(
                    f"the checkpoint at step {start_step} of `{self.procedure.name}` holds no training state for "
                    f"phase `{phase.name}`, so the run cannot be resumed exactly"
                )
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            generator.set_state(state["data_rng"])
            if self.rule is not None:
                self.rule.load_state_dict(state.get("update", {}))
            done_in_phase = start_step - step
            step = start_step
        if state is not None:
            self.restore_random_state(state)
        fields = [spec.name for spec in phase.loss.inputs]
        runner = self.module
        if self.world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            # Rebuilt per phase: which parameters train may change between phases.
            unused = set(self.trained) - _models_used(phase.loss)
            runner = DistributedDataParallel(self.module, find_unused_parameters=bool(unused))
        self.module.train()
        self.teachers_eval()
        for _ in range(done_in_phase, steps):
            batch = shard(sampler.sample(phase.batch, generator), self.world)
            batch = add_progress(batch, fields, step + 1, sum(self._lengths), self.device)
            optimizer.zero_grad(set_to_none=True)
            loss = self.descend(runner, phase, batch, fields)
            step += 1
            value = self.global_mean(loss)  # one host sync per step, reused for the check and the log
            if not math.isfinite(value):
                last = latest_checkpoint(self.run_dir) if self.run_dir else None
                raise TrainingError(
                    f"`{self.procedure.name}`: the loss is {value} at step {step} (phase `{phase.name}`); "
                    f"last good checkpoint: {last if last else 'none'}"
                )
            if getattr(optimizer, "needs_closure", False):
                optimizer.step(self.loss_closure(runner, phase, batch, fields, optimizer))
            else:
                optimizer.step()
            scheduler.step()
            if self.procedure.emas:
                self.update_emas()
            refresh_snapshots(self.procedure.snapshots, self.models, step)
            self.losses.append(value)
            bar.update(step, self.losses[-1])
            self.after_step(step, index, optimizer, scheduler, generator)
        self.final_state = self.training_state(index, optimizer, scheduler, generator)
        return step

    def descend(self, runner, phase, batch: dict, fields: list):
        """Fills the parameters' grads for one step, by backprop through the loss or by the
        phase's update rule; returns the value logged as the training loss."""
        outputs = runner(phase.loss.name, *(batch[f].to(self.device) for f in fields))
        if self.rule is None:
            outputs["loss"].backward()
            return outputs["loss"]
        tensors = [outputs[name] for name in get_update_rule(phase.update.rule).tensors]
        try:
            return self.rule.step(*tensors)
        except UpdateRuleError as error:
            raise TrainingError(f"{_update_site(phase)}: {error}") from None

    def build_update_rule(self, phase, optimizer):
        if phase.update is None:
            return None
        if self.world.distributed:
            raise TrainingError(f"{_update_site(phase)}: update rules run in one process; train without torchrun")
        if getattr(optimizer, "needs_closure", False):
            raise TrainingError(f"{_update_site(phase)}: optimizer `{phase.optimizer[0]}` re-evaluates a loss, and an update rule has none")
        try:
            return get_update_rule(phase.update.rule).build(self.models[phase.update.model], phase.update.settings)
        except UpdateRuleError as error:
            raise TrainingError(f"{_update_site(phase)}: {error}") from None

    def loss_closure(self, runner, phase, batch: dict, fields: list, optimizer):
        """Recomputes the loss and its gradients on the step's batch, for optimizers that
        evaluate it more than once per step (SAM)."""

        def closure():
            optimizer.zero_grad(set_to_none=True)
            loss = runner(phase.loss.name, *(batch[f].to(self.device) for f in fields))["loss"]
            loss.backward()
            return loss

        return closure

    def training_state(self, phase: int, optimizer, scheduler, generator) -> dict:
        """All a resumed run needs to go on exactly as if it had never stopped."""
        state = {
            "phase": phase,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "data_rng": generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "recent_losses": torch.tensor(self.losses[-50:], dtype=torch.float64),
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        if self.rule is not None:
            state["update"] = self.rule.state_dict()
        return state

    def restore_random_state(self, state: dict) -> None:
        """The global generators (dropout, random ops) as they were at the checkpoint."""
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)

    def after_step(self, step: int, phase: int, optimizer, scheduler, generator) -> None:
        evaluation = self.procedure.evaluation
        metrics = None
        if evaluation is not None and evaluation.every and step % evaluation.every == 0:
            metrics = self.evaluate(step)
        every = self.procedure.checkpoint_every
        # The last step's checkpoint is written once by `run`, with the final metrics.
        if every and step % every == 0 and step != self.last_step:
            self.checkpoint(step, metrics, self.training_state(phase, optimizer, scheduler, generator))

    def global_mean(self, loss) -> float:
        """The loss over the whole batch: each rank only computed its shard's."""
        if not self.world.distributed:
            return loss.item()
        import torch.distributed as dist

        value = loss.detach().clone()
        dist.all_reduce(value)
        return value.item() / self.world.size

    @torch.no_grad()
    def update_emas(self) -> None:
        for name, (source, decay) in self.procedure.emas.items():
            average, model = self.models[name], self.models[source]
            for kept, current in zip(average.parameters(), model.parameters()):
                kept.lerp_(current, 1.0 - decay)
            for kept, current in zip(average.buffers(), model.buffers()):
                kept.copy_(current)

    def apply_freezing(self, phase) -> None:
        """A parameter trains unless a rule freezes it; a tied one is frozen under any of its names."""
        trainable: dict = {}
        for key, parameter in self.parameter_names():
            trainable[parameter] = trainable.get(parameter, True) and is_trainable(key, phase.freeze)
        for parameter, flag in trainable.items():
            parameter.requires_grad_(flag)

    def parameter_names(self) -> list:
        """(path, parameter) of every trained model, tied parameters under each of their names."""
        return [(key, p) for name, model in self.trained.items() for key, p in model.named_parameters(prefix=name, remove_duplicate=False)]

    def check_freeze_patterns(self) -> None:
        """A `freeze` or `unfreeze` that matches nothing is a typo, not a no-op."""
        keys = [key for key, _ in self.parameter_names()]
        for phase in self.procedure.phases:
            for freeze, pattern in phase.freeze:
                if not any(_matches(key, pattern) for key in keys):
                    model = pattern[0]
                    known = sorted({".".join(key.split(".")[:-1]) or key for key in keys if key.split(".")[0] == model})
                    raise TrainingError(
                        f"`{'freeze' if freeze else 'unfreeze'} {'.'.join(pattern)}` in `{self.procedure.name}` "
                        f"(phase `{phase.name}`) matches no parameter; modules of `{model}`: {', '.join(known) or 'none'}"
                    )

    def teachers_eval(self) -> None:
        for module_name in [*self.procedure.teachers, *self.procedure.weight_space]:
            getattr(self.module, module_name).eval()

    # ---- evaluation and checkpoints ----

    def make_eval_batches(self) -> list:
        """Per `eval` statement: (its metrics method, batches of its data, each batch's weight)."""
        default = self.procedure.phases[-1].batch if self.procedure.phases else 64
        return [self.eval_set(e, index, e.batch or default) for index, e in enumerate(self.procedure.evaluations)]

    def eval_set(self, evaluation, index: int, size: int) -> tuple:
        sampler = get_generator(evaluation.data.generator).sampler(evaluation.data.args)
        generator = torch.Generator().manual_seed(self.procedure.seed * 7_919 + 104_729 + index)
        fields = [spec.name for spec in evaluation.metrics.inputs]
        if isinstance(sampler, TensorSampler):
            batches = _whole_dataset_batches(sampler, size, generator)
            weights = [len(next(iter(b.values()))) for b in batches]  # the last batch may be short
        else:
            count = max(1, min(64, math.ceil(sampler.size / size))) if getattr(sampler, "size", None) else EVAL_BATCHES
            batches = [sampler.sample(size, generator) for _ in range(count)]
            weights = [1] * len(batches)
        return evaluation.metrics.name, [evaluation_arguments(b, fields, self.device) for b in batches], weights

    @torch.no_grad()
    def evaluate(self, step: int) -> dict:
        if not self.world.main:
            return {"step": step}
        if not self.procedure.evaluations:
            return {"step": step, "train_loss": _mean(self.losses[-50:])}
        self.module.eval()
        record = {"step": step}
        for method, batches, weights in self.eval_batches:
            totals: dict[str, float] = {}
            for batch, weight in zip(batches, weights):
                for name, value in self.module(method, *fill_progress(batch, step, sum(self._lengths), self.device)).items():
                    totals[name] = totals.get(name, 0.0) + weight * float(value)
            # Metrics are batch means, so a short last batch counts by its size.
            record.update({k: v / sum(weights) for k, v in totals.items()})
        self.module.train()
        self.teachers_eval()
        record["train_loss"] = _mean(self.losses[-50:])
        self.history.append(record)
        _append_history(self.run_dir, record)
        return record

    def model_record(self, name: str) -> dict:
        """Which block (and parameters) a checkpointed model is, so `export` can rebuild it."""
        graph = self.procedure.modules.modules[name].graph
        return {"block": graph.block, "params": {k: _plain(v) for k, v in graph.args.items()}}

    def checkpoint(self, step: int, metrics: dict | None, state: dict | None) -> None:
        if not self.world.main:
            return
        metadata = {
            "spec": self.spec.path,
            "spec_hash": self.spec.source_hash,
            "procedure": self.procedure.name,
            "metrics": metrics or {},
            "models": {name: self.model_record(name) for name in self.saved_models()},
        }
        save_checkpoint(self.run_dir, step, self.saved_models(), state or {"phase": -1}, metadata)

    def saved_models(self) -> dict:
        """The procedure's models and its weight-space models (a merged model can be exported)."""
        computed = {name: getattr(self.module, name) for name in self.procedure.weight_space}
        return {**self.models, **computed}


def _update_site(phase) -> str:
    """Where a runtime error of an update rule comes from, in the spec."""
    return f"`update {phase.update.rule}` (line {phase.update.span.line}, phase `{phase.name}`)"


def _device(name: str) -> torch.device:
    from paperspec.compiler.diagnostics import UsageError

    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device `{name}`", "e.g. cpu, cuda, cuda:1") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device `{name}`: no CUDA device is available here", "train on `--device cpu`")
    return device


def is_trainable(key: str, rules: list) -> bool:
    """Applies freeze/unfreeze globs in order; a pattern matches a parameter path or any prefix of it."""
    trainable = True
    for freeze, pattern in rules:
        if _matches(key, pattern):
            trainable = not freeze
    return trainable


def _matches(key: str, pattern: tuple) -> bool:
    parts = key.split(".")
    return len(parts) >= len(pattern) and all(fnmatchcase(part, glob) for part, glob in zip(parts, pattern))


def _plain(value):
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return getattr(getattr(value, "op", None), "name", str(value))


def _models_used(graph) -> set:
    from paperspec.compiler.ops.base import ModuleRef

    used = {node.module for node in graph.nodes() if node.op == "call"}
    for node in graph.nodes():
        used |= {value.name for value in node.args.values() if isinstance(value, ModuleRef)}
    return used


def spec_label(spec) -> str:
    """The runs folder of a spec; quick runs keep apart so a full run never reads their weights."""
    label = spec.name or Path(spec.path).stem
    return label + "-quick" if getattr(spec, "quick", False) else label


def latest_run(out_root: Path, spec, procedure: str) -> Path | None:
    folder = Path(out_root) / spec_label(spec) / procedure
    runs = sorted(p for p in folder.glob("*") if p.is_dir()) if folder.exists() else []
    return runs[-1] if runs else None


def _whole_dataset_batches(sampler: TensorSampler, size: int, generator: torch.Generator, limit: int = 64) -> list:
    """A finite evaluation set in batches, each example once; past `limit` batches, a fixed
    random subset of that many batches' worth."""
    tensors = sampler.all()
    if sampler.size > limit * size:
        keep = torch.randperm(sampler.size, generator=generator)[: limit * size].sort().values
        tensors = {name: tensor[keep] for name, tensor in tensors.items()}
    count = len(next(iter(tensors.values())))
    return [{name: tensor[i : i + size] for name, tensor in tensors.items()} for i in range(0, count, size)]


def loss_trend(losses: list) -> tuple:
    """(mean of the first quarter, mean of the last quarter, whether training improved): the last
    quarter must be lower by more than twice the standard error of the difference, so minibatch
    noise around a flat loss does not count."""
    if len(losses) < 2:
        return math.nan, math.nan, None
    quarter = max(1, len(losses) // 4)
    first, last = losses[:quarter], losses[-quarter:]
    noise = math.sqrt(_variance(first) / len(first) + _variance(last) / len(last))
    return _mean(first), _mean(last), _mean(last) < _mean(first) - 2 * noise


def _variance(values: list) -> float:
    mean = _mean(values)
    return sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0


def _mean(values: list) -> float:
    return sum(values) / len(values) if values else math.nan


def _append_history(run_dir: Path, record: dict) -> None:
    """One evaluation as a JSON line and a CSV row; a value that is not finite (the training loss
    of an evaluation-only run, a diverged metric) is null in JSON, which has no NaN."""
    finite = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
    with open(run_dir / "metrics.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps(finite, allow_nan=False) + "\n")
    path = run_dir / "metrics.csv"
    new = not path.exists()
    with open(path, "a", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(record))
        if new:
            writer.writeheader()
        writer.writerow(record)


def _write_history(run_dir: Path, records: list) -> None:
    for name in ("metrics.jsonl", "metrics.csv"):
        (run_dir / name).unlink(missing_ok=True)
    for record in records:
        _append_history(run_dir, record)


def _read_history(run_dir: Path) -> list:
    path = run_dir / "metrics.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [{k: math.nan if v is None else v for k, v in record.items()} for record in records]


class _Progress:
    """A rich progress bar (step, loss, steps/s, ETA) on a terminal; silent otherwise."""

    def __init__(self, enabled: bool, total: int, label: str):
        self.enabled = enabled
        self.total = total
        self.label = label

    def __enter__(self):
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.4f}"),
                TextColumn("{task.fields[rate]} steps/s"),
                TimeRemainingColumn(),
                transient=False,
            )
            self.bar.__enter__()
            self.task = self.bar.add_task(self.label, total=self.total, loss=math.nan, rate="-")
            self.started = time.perf_counter()
        return self

    def advance(self, steps: int) -> None:
        if self.enabled and steps:
            self.bar.update(self.task, completed=steps)

    def update(self, step: int, loss: float) -> None:
        if self.enabled:
            rate = step / max(time.perf_counter() - self.started, 1e-9)
            self.bar.update(self.task, completed=step, loss=loss, rate=f"{rate:.0f}")

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.bar.__exit__(*exc)
