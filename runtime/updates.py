"""Update rules: training steps that are not the gradient of a loss.

A procedure says `update contrastive_divergence(rbm, batch.x, k = 1)` instead of `loss ...`. The
rule gets the model, the tensors the spec computed from the batch, and its settings; each step
it writes a descent direction into the parameters' `.grad` (so the procedure's optimizer,
schedule and freezing apply as for a loss) and returns a scalar that the trainer logs as the
training loss. A rule may keep state between steps (persistent chains); `state_dict` and
`load_state_dict` carry it through checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from paperspec.compiler.ops.base import parse_signature
from paperspec.runtime.optim import check_arguments

if TYPE_CHECKING:
    import torch


class UpdateRuleError(ValueError):
    """The model or tensors do not fit the rule; the trainer adds the spec line."""


@dataclass(frozen=True)
class UpdateRuleDef:
    name: str
    tensors: tuple  # names of the tensor arguments after the model, in order
    signature: tuple  # of compiler.ops.base.Arg: the rule's settings
    build: Callable  # (model, settings) -> an object with step(*tensors), state_dict(), load_state_dict()
    doc: str
    check: Callable[[dict], str | None] | None = None  # rules beyond the argument kinds

    def describe(self) -> str:
        settings = ", ".join(str(a) for a in self.signature)
        return f"{self.name}(model, {', '.join(self.tensors)}{', ' + settings if settings else ''})"


_REGISTRY: dict[str, UpdateRuleDef] = {}


def register_update_rule(
    name: str, tensors: str, signature: str, build: Callable, doc: str, check: Callable[[dict], str | None] | None = None
) -> UpdateRuleDef:
    """Adds a rule; `tensors` names its tensor arguments ("data" or "x, target")."""
    assert name not in _REGISTRY, f"update rule {name} registered twice"
    names = tuple(part.strip() for part in tensors.split(",") if part.strip())
    definition = UpdateRuleDef(name, names, parse_signature(signature), build, doc, check)
    _REGISTRY[name] = definition
    return definition


def get_update_rule(name: str) -> UpdateRuleDef | None:
    _load_builtin_rules()
    return _REGISTRY.get(name)


def all_update_rules() -> dict:
    _load_builtin_rules()
    return dict(_REGISTRY)


def validate(name: str, settings: dict) -> str | None:
    definition = get_update_rule(name)
    problem = check_arguments(f"update rule `{name}`", definition.signature, settings)
    if problem is None and definition.check is not None:
        problem = definition.check(settings)
    return problem


def _load_builtin_rules() -> None:
    """Rule modules register on import; they import torch only when a rule is built."""
    from paperspec.runtime import equilibrium, rbm, unbiased_cd  # noqa: F401


def parameter(model, name: str, rule: str):
    """A parameter the rule's model must declare, by its name in the spec."""
    found = dict(model.named_parameters()).get(name)
    if found is None:
        names = ", ".join(n for n, _ in model.named_parameters()) or "none"
        raise UpdateRuleError(f"`{rule}` needs a parameter `{name}` in the model (it has: {names})")
    return found


def add_grad(param: torch.Tensor, direction: torch.Tensor) -> None:
    """Accumulates a descent direction, so a rule composes with frozen parameters (no grad kept)."""
    if not param.requires_grad:
        return
    direction = direction.detach().to(param.dtype)
    param.grad = direction.clone() if param.grad is None else param.grad + direction
