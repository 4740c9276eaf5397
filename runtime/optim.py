"""The optimizer registry: signatures the compiler checks without torch, builders the trainer calls."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from paperspec.compiler.ops.base import parse_signature

if TYPE_CHECKING:
    import torch

NamedParameters = list  # of (name, torch.nn.Parameter)


@dataclass(frozen=True)
class OptimizerDef:
    name: str
    signature: tuple  # of compiler.ops.base.Arg
    build: Callable[[NamedParameters, dict], torch.optim.Optimizer]  # trainable params, bound args
    doc: str
    check: Callable[[dict], str | None] | None = None  # rules beyond the shared argument ranges

    def describe(self) -> str:
        return f"{self.name}({', '.join(str(a) for a in self.signature)})"


_REGISTRY: dict[str, OptimizerDef] = {}


def register_optimizer(
    name: str,
    signature: str,
    build: Callable[[NamedParameters, dict], torch.optim.Optimizer],
    doc: str,
    check: Callable[[dict], str | None] | None = None,
) -> OptimizerDef:
    """Adds an optimizer; `build` must import torch itself so that reading signatures stays cheap."""
    assert name not in _REGISTRY, f"optimizer {name} registered twice"
    definition = OptimizerDef(name, parse_signature(signature), build, doc, check)
    _REGISTRY[name] = definition
    return definition


def get_optimizer(name: str) -> OptimizerDef | None:
    return _REGISTRY.get(name)


def all_optimizers() -> dict:
    return dict(_REGISTRY)


# ---- arguments (shared with runtime.schedules) ----

_KIND_CHECKS = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
    "bool": lambda v: isinstance(v, bool),
}
_KIND_WORDS = {"int": "an integer", "float": "a finite number", "bool": "true or false"}


def check_arguments(owner: str, signature: tuple, args: dict) -> str | None:
    """Unknown, missing or ill-typed arguments; the compiler has already caught these for specs."""
    names = [arg.name for arg in signature]
    for name in args:
        if name not in names:
            return f"{owner} has no argument `{name}` (arguments: {', '.join(names) or 'none'})"
    for arg in signature:
        if arg.name not in args:
            if arg.required:
                return f"{owner} needs argument `{arg.name}`"
            continue
        kind_ok = _KIND_CHECKS.get(arg.kind, lambda v: True)
        if not kind_ok(args[arg.name]):
            return f"{owner}: `{arg.name}` must be {_KIND_WORDS[arg.kind]}, got {args[arg.name]!r}"
    return None


def with_defaults(signature: tuple, args: dict) -> dict:
    return {arg.name: args.get(arg.name, arg.default) for arg in signature}


# ---- validation ----

# Ranges by argument name, for every optimizer: the names carry their usual meaning.
_RANGES = {
    "lr": (0.0, None, "must be >= 0"),
    "momentum": (0.0, 1.0, "must be in [0, 1)"),
    "beta1": (0.0, 1.0, "must be in [0, 1)"),
    "beta2": (0.0, 1.0, "must be in [0, 1)"),
    "eps": (0.0, None, "must be >= 0"),
    "weight_decay": (0.0, None, "must be >= 0"),
}


def validate(name: str, args: dict) -> str | None:
    """A message naming the optimizer and argument when `args` are unusable, else None."""
    definition = get_optimizer(name)
    if definition is None:
        return f"unknown optimizer `{name}` (known: {', '.join(sorted(_REGISTRY))})"
    owner = f"optimizer `{name}`"
    problem = check_arguments(owner, definition.signature, args)
    if problem:
        return problem
    args = with_defaults(definition.signature, args)
    for arg_name, value in args.items():
        if arg_name in _RANGES:
            low, high, words = _RANGES[arg_name]
            if value < low or (high is not None and value >= high):
                return f"{owner}: `{arg_name}` {words}, got {value}"
    return definition.check(args) if definition.check else None


def _check_sgd(args: dict) -> str | None:
    if args["nesterov"] and args["momentum"] == 0:
        return "optimizer `sgd`: `nesterov = true` needs `momentum` > 0"
    return None


# ---- building ----


def build_optimizer(
    name: str, args: dict, named_parameters: NamedParameters
) -> torch.optim.Optimizer:
    """Builds a registered optimizer over the trainable, deduplicated parameters."""
    problem = validate(name, args)
    if problem:
        raise ValueError(problem)
    definition = _REGISTRY[name]
    params = trainable_parameters(named_parameters)
    if not params:
        raise ValueError(f"optimizer `{name}`: no trainable parameters (all are frozen)")
    return definition.build(params, with_defaults(definition.signature, args))


def trainable_parameters(named_parameters: NamedParameters) -> NamedParameters:
    """Drops frozen parameters and repeats of tied ones (same object under two names)."""
    seen, kept = set(), []
    for name, param in named_parameters:
        if param.requires_grad and id(param) not in seen:
            seen.add(id(param))
            kept.append((name, param))
    return kept


def decay_groups(named_parameters: NamedParameters, args: dict) -> list:
    """Param groups where biases and norm weights (ndim < 2) get no weight decay, as in nanoGPT."""
    params = [param for _, param in named_parameters]
    if args["decay_all"]:
        return [{"params": params}]
    groups = [
        {"params": [p for p in params if p.ndim >= 2]},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return [group for group in groups if group["params"]]


def _build_sgd(named_parameters: NamedParameters, args: dict) -> torch.optim.Optimizer:
    import torch

    return torch.optim.SGD(
        decay_groups(named_parameters, args),
        lr=args["lr"],
        momentum=args["momentum"],
        nesterov=args["nesterov"],
        weight_decay=args["weight_decay"],
    )


def _build_adam(named_parameters: NamedParameters, args: dict) -> torch.optim.Optimizer:
    import torch

    return torch.optim.Adam(decay_groups(named_parameters, args), **_adam_settings(args))


def _build_adamw(named_parameters: NamedParameters, args: dict) -> torch.optim.Optimizer:
    import torch

    return torch.optim.AdamW(decay_groups(named_parameters, args), **_adam_settings(args))


def _adam_settings(args: dict) -> dict:
    return {
        "lr": args["lr"],
        "betas": (args["beta1"], args["beta2"]),
        "eps": args["eps"],
        "weight_decay": args["weight_decay"],
    }


def _build_lion(named_parameters: NamedParameters, args: dict) -> torch.optim.Optimizer:
    return _lion_class()(
        decay_groups(named_parameters, args),
        lr=args["lr"],
        betas=(args["beta1"], args["beta2"]),
        weight_decay=args["weight_decay"],
    )


# ---- Lion ----


@cache
def _lion_class() -> type:
    """Defined on first use, so that importing this module never imports torch."""
    import torch

    class Lion(torch.optim.Optimizer):
        """Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms").

        update = sign(beta1 * m + (1 - beta1) * g); p -= lr * (update + weight_decay * p);
        m = beta2 * m + (1 - beta2) * g.
        """

        def __init__(self, params, lr: float = 1e-4, betas=(0.9, 0.99), weight_decay: float = 0.0):
            args = {"lr": lr, "beta1": betas[0], "beta2": betas[1], "weight_decay": weight_decay}
            problem = validate("lion", args)
            if problem:
                raise ValueError(problem)
            super().__init__(params, {"lr": lr, "betas": tuple(betas), "weight_decay": weight_decay})

        @torch.no_grad()
        def step(self, closure=None):
            loss = None
            if closure is not None:
                with torch.enable_grad():
                    loss = closure()
            for group in self.param_groups:
                for param in group["params"]:
                    if param.grad is not None:
                        self._update(param, group)
            return loss

        def _update(self, param, group: dict) -> None:
            beta1, beta2 = group["betas"]
            state = self.state[param]
            if not state:
                state["exp_avg"] = torch.zeros_like(param)
            momentum = state["exp_avg"]
            # Decoupled decay, as in AdamW: it shrinks the weights before the sign step.
            param.mul_(1 - group["lr"] * group["weight_decay"])
            param.add_(momentum.lerp(param.grad, 1 - beta1).sign_(), alpha=-group["lr"])
            momentum.lerp_(param.grad, 1 - beta2)

    # Pickle finds the class as `paperspec.runtime.optim.Lion` through the module __getattr__.
    Lion.__module__, Lion.__qualname__ = __name__, "Lion"
    return Lion


# ---- SAM ----


@cache
def _sam_class() -> type:
    import torch

    class SAM(torch.optim.SGD):
        """Sharpness-Aware Minimization (Foret et al. 2021) around SGD: from the gradient g at w,
        step to w + rho g / ||g|| (the worst point of a rho-ball, to first order), take the
        gradient there, come back to w and let SGD step with that gradient. It needs the loss
        twice per step, so `step` takes a closure that recomputes it; the trainer passes one."""

        needs_closure = True

        def __init__(self, params, lr: float, rho: float = 0.05, momentum: float = 0.0, weight_decay: float = 0.0):
            super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
            self.rho = rho

        @torch.no_grad()
        def step(self, closure=None):
            if closure is None:
                raise RuntimeError("SAM needs a closure that recomputes the loss and its gradients")
            params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
            scale = self.rho / (norm + 1e-12)
            moves = [p.grad * scale for p in params]
            torch._foreach_add_(params, moves)
            with torch.enable_grad():
                loss = closure()  # gradients at w + e
            torch._foreach_sub_(params, moves)
            super().step()
            return loss

    SAM.__module__, SAM.__qualname__ = __name__, "SAM"
    return SAM


def _build_sam(named_parameters: NamedParameters, args: dict) -> torch.optim.Optimizer:
    return _sam_class()(
        decay_groups(named_parameters, args), lr=args["lr"], rho=args["rho"], momentum=args["momentum"], weight_decay=args["weight_decay"]
    )


def _check_sam(args: dict) -> str | None:
    return None if args["rho"] > 0 else f"optimizer `sam`: `rho` (the neighbourhood radius) must be > 0, got {args['rho']}"


def __getattr__(name: str):
    if name == "Lion":
        return _lion_class()
    if name == "SAM":
        return _sam_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---- built-in optimizers ----

register_optimizer(
    "sgd",
    "lr: float, momentum: float = 0.0, nesterov: bool = false, weight_decay: float = 0.0,"
    " decay_all: bool = false",
    _build_sgd,
    "Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay.",
    check=_check_sgd,
)
register_optimizer(
    "adam",
    "lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,"
    " weight_decay: float = 0.0, decay_all: bool = false",
    _build_adam,
    "Adam (Kingma & Ba 2015); weight decay is the coupled L2 penalty.",
)
register_optimizer(
    "adamw",
    "lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,"
    " weight_decay: float = 0.01, decay_all: bool = false",
    _build_adamw,
    "AdamW (Loshchilov & Hutter 2019): Adam with decoupled weight decay.",
)
register_optimizer(
    "lion",
    "lr: float = 1e-4, beta1: float = 0.9, beta2: float = 0.99, weight_decay: float = 0.0,"
    " decay_all: bool = false",
    _build_lion,
    "Lion (Chen et al. 2023): sign of interpolated momentum, decoupled weight decay.",
)
register_optimizer(
    "sam",
    "lr: float, rho: float = 0.05, momentum: float = 0.0, weight_decay: float = 0.0, decay_all: bool = false",
    _build_sam,
    "SAM (Foret et al. 2021): SGD with the gradient taken at the worst point of a rho-ball (two passes per step).",
    check=_check_sam,
)
