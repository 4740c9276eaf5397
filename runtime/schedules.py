"""The learning-rate schedule registry: pure-Python factors per phase step, wrapped in LambdaLR."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from paperspec.compiler.ops.base import parse_signature
from paperspec.runtime.optim import check_arguments, with_defaults

if TYPE_CHECKING:
    import torch

# factor(step within the phase, the phase's steps, bound args) -> learning-rate multiplier
Factor = Callable[[int, int, dict], float]


@dataclass(frozen=True)
class ScheduleDef:
    name: str
    signature: tuple  # of compiler.ops.base.Arg
    factor: Factor
    doc: str
    check: Callable[[dict, int], str | None] | None = None  # (bound args, phase steps)

    def describe(self) -> str:
        return f"{self.name}({', '.join(str(a) for a in self.signature)})"


_REGISTRY: dict[str, ScheduleDef] = {}


def register_schedule(
    name: str,
    signature: str,
    factor: Factor,
    doc: str,
    check: Callable[[dict, int], str | None] | None = None,
) -> ScheduleDef:
    assert name not in _REGISTRY, f"schedule {name} registered twice"
    definition = ScheduleDef(name, parse_signature(signature), factor, doc, check)
    _REGISTRY[name] = definition
    return definition


def get_schedule(name: str) -> ScheduleDef | None:
    return _REGISTRY.get(name)


def all_schedules() -> dict:
    return dict(_REGISTRY)


def validate(name: str, args: dict, total_steps: int) -> str | None:
    """A message naming the schedule and argument when `args` do not fit the phase, else None."""
    definition = get_schedule(name)
    if definition is None:
        return f"unknown schedule `{name}` (known: {', '.join(sorted(_REGISTRY))})"
    if total_steps < 1:
        return f"schedule `{name}`: the phase needs at least 1 step, got {total_steps}"
    problem = check_arguments(f"schedule `{name}`", definition.signature, args)
    if problem or definition.check is None:
        return problem
    return definition.check(with_defaults(definition.signature, args), total_steps)


def make_scheduler(
    optimizer: torch.optim.Optimizer, name: str, args: dict, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR whose lr at step s is each group's base lr times the schedule's factor."""
    from torch.optim.lr_scheduler import LambdaLR

    problem = validate(name, args, total_steps)
    if problem:
        raise ValueError(problem)
    definition = _REGISTRY[name]
    bound = with_defaults(definition.signature, args)
    return LambdaLR(optimizer, lambda step: definition.factor(step, total_steps, bound))


# ---- factors ----


def _warmup(step: int, warmup: int) -> float:
    # (step + 1) so that the first step already learns and step warmup - 1 reaches the full rate.
    return min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0


def _half_cosine(progress: float, min_factor: float) -> float:
    progress = min(1.0, max(0.0, progress))
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _constant(step: int, total: int, args: dict) -> float:
    return 1.0


def _step(step: int, total: int, args: dict) -> float:
    return args["gamma"] ** (step // args["every"])


def _cosine(step: int, total: int, args: dict) -> float:
    return _half_cosine(step / total, args["min_factor"])


def _warmup_cosine(step: int, total: int, args: dict) -> float:
    warmup = args["warmup"]
    if step < warmup:
        return _warmup(step, warmup)
    return _half_cosine((step - warmup) / max(1, total - warmup), args["min_factor"])


def _linear_warmup(step: int, total: int, args: dict) -> float:
    return _warmup(step, args["warmup"])


def _warmup_constant_cooldown(step: int, total: int, args: dict) -> float:
    cooldown = args["cooldown"]
    # Like cosine, the decay reaches 0 at step == total, just after the phase's last step.
    decay = min(1.0, (total - step) / cooldown) if cooldown > 0 else 1.0
    return max(0.0, min(_warmup(step, args["warmup"]), decay))


# ---- checks ----


def _check_step(args: dict, total: int) -> str | None:
    if args["every"] < 1:
        return f"schedule `step`: `every` must be >= 1, got {args['every']}"
    if args["gamma"] <= 0:
        return f"schedule `step`: `gamma` must be > 0, got {args['gamma']}"
    return None


def _check_min_factor(name: str) -> Callable[[dict, int], str | None]:
    def check(args: dict, total: int) -> str | None:
        if not 0.0 <= args["min_factor"] <= 1.0:
            return f"schedule `{name}`: `min_factor` must be in [0, 1], got {args['min_factor']}"
        if "warmup" in args:
            return _check_length(name, "warmup", args["warmup"], total)
        return None

    return check


def _check_length(name: str, arg: str, value: int, total: int) -> str | None:
    if value < 0:
        return f"schedule `{name}`: `{arg}` must be >= 0, got {value}"
    if value > total:
        return f"schedule `{name}`: `{arg}` ({value}) is longer than the phase's {total} steps"
    return None


def _check_linear_warmup(args: dict, total: int) -> str | None:
    return _check_length("linear_warmup", "warmup", args["warmup"], total)


def _check_wsd(args: dict, total: int) -> str | None:
    name = "warmup_constant_cooldown"
    warmup, cooldown = args["warmup"], args["cooldown"]
    problem = _check_length(name, "warmup", warmup, total) or _check_length(name, "cooldown", cooldown, total)
    if problem is None and warmup + cooldown > total:
        problem = f"schedule `{name}`: `warmup` ({warmup}) and `cooldown` ({cooldown}) overlap in the phase's {total} steps"
    return problem


# ---- built-in schedules ----

register_schedule("constant", "", _constant, "The optimizer's learning rate throughout.")
register_schedule(
    "step",
    "every: int, gamma: float = 0.1",
    _step,
    "Multiplies the learning rate by `gamma` every `every` steps (torch StepLR).",
    _check_step,
)
register_schedule(
    "cosine",
    "min_factor: float = 0.0",
    _cosine,
    "Half-cosine decay from the full rate to `min_factor` of it over the phase (torch CosineAnnealingLR).",
    _check_min_factor("cosine"),
)
register_schedule(
    "warmup_cosine",
    "warmup: int, min_factor: float = 0.0",
    _warmup_cosine,
    "Linear warmup over `warmup` steps, then half-cosine decay to `min_factor` (nanoGPT).",
    _check_min_factor("warmup_cosine"),
)
register_schedule(
    "linear_warmup",
    "warmup: int",
    _linear_warmup,
    "Linear warmup over `warmup` steps, then the full rate.",
    _check_linear_warmup,
)
register_schedule(
    "warmup_constant_cooldown",
    "warmup: int = 0, cooldown: int",
    _warmup_constant_cooldown,
    "Warmup, constant rate, then linear decay to 0 over the last `cooldown` steps (WSD).",
    _check_wsd,
)
