"""Unbiased contrastive divergence for binary RBMs (an update rule): coupled Gibbs chains.

CD-k's negative phase, the model expectation of f(v) = (v h^T, v, h), comes from a chain that has
not reached the model's distribution. Jacob, O'Leary and Atchade (2020) remove that bias with two
chains X and Y from the same start, X one step ahead, moved by a coupled kernel under which they
eventually meet (X_t = Y_(t-1)) and then stay together:

    f(X_1) + sum over 1 < t < meeting time of [f(X_t) - f(Y_(t-1))]

is an unbiased estimate of E_model[f] (Qiu, Zhang and Wang 2020 start both chains at the data, as
CD does). Here each Gibbs half-step couples the two chains by common random numbers: unit j of
both chains compares the same uniform draw with its own probability, so the chains' marginals are
plain Gibbs and identical states stay identical. Taniguchi et al. (2023) couple Metropolis-Hastings
chains started at a local mode instead, so that they meet in one step more often; that is not
implemented here.
"""

from __future__ import annotations

from paperspec.runtime.rbm import ContrastiveDivergence
from paperspec.runtime.updates import register_update_rule

NAME = "unbiased_contrastive_divergence"


class UnbiasedContrastiveDivergence(ContrastiveDivergence):
    rule = NAME

    def __init__(self, model, settings: dict):
        super().__init__(model, {"k": 1, "persistent": False})
        self.max_steps = settings["max_steps"]
        self.meeting_steps = 0  # coupled steps the last update took until every pair had met

    def coupled_gibbs(self, x, y):
        """One Gibbs sweep v -> h -> v of both chains, each unit drawn by comparing one shared
        uniform with each chain's own probability."""
        import torch

        uniform = torch.rand(x.shape[0], self.weights.shape[1], dtype=x.dtype, device=x.device)
        hidden_x = (uniform < self.hidden_probabilities(x)).to(x.dtype)
        hidden_y = (uniform < self.hidden_probabilities(y)).to(x.dtype)
        uniform = torch.rand(x.shape, dtype=x.dtype, device=x.device)
        return (uniform < self.visible_probabilities(hidden_x)).to(x.dtype), (uniform < self.visible_probabilities(hidden_y)).to(x.dtype)

    def model_statistics(self, start) -> list:
        """Sums over the chains of the unbiased estimates of E[v h^T], E[v] and E[h] (h given v
        in expectation), each pair of chains started at one row of `start`."""
        x, y = self.gibbs(start), start  # X_1 and Y_0
        totals = self.statistics(x)
        apart = (x != y).any(dim=1)
        x, y = x[apart], y[apart]  # only pairs that have not met go on; the others add 0 from now
        self.meeting_steps = 0
        while len(x) and self.meeting_steps < self.max_steps:
            x, y = self.coupled_gibbs(x, y)
            totals = [t + a - b for t, a, b in zip(totals, self.statistics(x), self.statistics(y), strict=True)]
            apart = (x != y).any(dim=1)
            x, y = x[apart], y[apart]
            self.meeting_steps += 1
        return totals

    def statistics(self, visible) -> list:
        hidden = self.hidden_probabilities(visible)
        return [visible.T @ hidden, visible.sum(0), hidden.sum(0)]

    def model_term(self, data) -> tuple:
        """The unbiased estimates, each pair of chains started at one example of the data."""
        return tuple(total / data.shape[0] for total in self.model_statistics(data))


register_update_rule(
    NAME,
    tensors="data",
    signature="max_steps: int = 1000",
    build=UnbiasedContrastiveDivergence,
    check=lambda settings: None if settings["max_steps"] >= 1 else f"`max_steps` of {NAME} must be at least 1, got {settings['max_steps']}",
    doc="unbiased CD for a binary RBM (Jacob et al. 2020; Qiu et al. 2020): Gibbs chains from the data, coupled by common "
    "random numbers, telescoped until they meet (at most max_steps coupled steps; pairs still apart then are cut off, "
    "which biases them); logs the mean-field reconstruction error",
)
