"""Equilibrium propagation (Scellier & Bengio 2017), an update rule.

The model is an energy function `energy(s, x) -> [B]` of a state s in [0, 1] (all units that are
not clamped, the output units last) and the clamped input x. The network settles to a free
state s0 (the prediction is its last units), is then nudged towards the target with strength
beta, and the parameters move by -(dE/dtheta(s_beta) - dE/dtheta(s_0)) / beta: a local,
contrastive update that approaches the gradient of the cost at s0 as beta -> 0. With
`symmetric = true` the second state is nudged by -beta instead of the free one (Laborieux et al.
2021), which removes the first-order bias of a finite beta.
"""

from __future__ import annotations

from paperspec.runtime.relaxation import relax
from paperspec.runtime.updates import UpdateRuleError, register_update_rule

NAME = "equilibrium_propagation"


class EquilibriumPropagation:
    def __init__(self, model, settings: dict):
        self.energy = model
        self.settings = settings

    def step(self, x, state, target):
        """Accumulates the EP estimate into the parameters' grads; returns the cost
        0.5 ||s0[:, -C:] - target||^2 at the free state, averaged over the batch."""
        _check(state, target)
        s = self.settings
        free = relax(self.energy, state, x, None, 0.0, s["steps"], s["step_size"])
        nudged = relax(self.energy, free, x, target, s["beta"], s["nudged_steps"], s["step_size"])
        if s["symmetric"]:
            other = relax(self.energy, free, x, target, -s["beta"], s["nudged_steps"], s["step_size"])
            spread = 2.0 * s["beta"]
        else:
            other, spread = free, s["beta"]
        contrast = (self.energy(nudged, x).mean() - self.energy(other, x).mean()) / spread
        contrast.backward()  # only the parameters get grads: the states are detached
        return 0.5 * ((free[:, -target.shape[-1]:] - target) ** 2).sum(-1).mean()

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def _check(state, target) -> None:
    if state.dim() != 2 or target.dim() != 2 or target.shape[0] != state.shape[0] or target.shape[1] > state.shape[1]:
        raise UpdateRuleError(
            f"`{NAME}` needs state [batch, units] and target [batch, k] with k <= units (the output units are the state's last k), "
            f"got {list(state.shape)} and {list(target.shape)}"
        )


def _check_settings(settings: dict) -> str | None:
    if settings["beta"] <= 0 or settings["step_size"] <= 0:
        return f"`beta` and `step_size` of {NAME} must be positive"
    if settings["steps"] < 1 or settings["nudged_steps"] < 1:
        return f"`steps` and `nudged_steps` of {NAME} must be at least 1"
    return None


register_update_rule(
    NAME,
    tensors="x, state, target",
    signature="beta: float = 0.5, steps: int = 20, nudged_steps: int = 10, step_size: float = 0.5, symmetric: bool = true",
    build=EquilibriumPropagation,
    check=_check_settings,
    doc="equilibrium propagation for an energy model energy(s, x) -> [B]: free and nudged relaxations, contrastive update; "
    "logs the cost at the free state",
)
