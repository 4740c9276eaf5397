"""Contrastive divergence for binary restricted Boltzmann machines (an update rule).

The model declares `param W: f32[visible, hidden]`, `param visible_bias: f32[visible]` and
`param hidden_bias: f32[hidden]`; its energy is E(v, h) = -v.W.h - b.v - c.h. The gradient of
the log-likelihood is <v h^T>_data - <v h^T>_model: the first term is exact given the data, the
second is estimated from the end of a k-step Gibbs chain — started at the data (CD-k, Hinton
2002) or carried over from the previous step (persistent CD, Tieleman 2008).
"""

from __future__ import annotations

from paperspec.runtime.updates import UpdateRuleError, add_grad, parameter, register_update_rule

NAME = "contrastive_divergence"


class ContrastiveDivergence:
    rule = NAME  # the name errors give; rules built on this one name themselves

    def __init__(self, model, settings: dict):
        self.weights = parameter(model, "W", self.rule)
        self.visible_bias = parameter(model, "visible_bias", self.rule)
        self.hidden_bias = parameter(model, "hidden_bias", self.rule)
        visible, hidden = self._sizes()
        if tuple(self.visible_bias.shape) != (visible,) or tuple(self.hidden_bias.shape) != (hidden,):
            raise UpdateRuleError(
                f"`{self.rule}` needs visible_bias: [{visible}] and hidden_bias: [{hidden}] to match W: [{visible}, {hidden}], "
                f"got {list(self.visible_bias.shape)} and {list(self.hidden_bias.shape)}"
            )
        self.k = settings["k"]
        self.persistent = settings["persistent"]
        self.chains = None  # persistent CD: the visible states where the chains stopped

    def _sizes(self) -> tuple:
        if self.weights.dim() != 2:
            raise UpdateRuleError(f"`{self.rule}` needs W to be [visible, hidden], got {list(self.weights.shape)}")
        return tuple(self.weights.shape)

    def hidden_probabilities(self, visible):
        import torch

        return torch.sigmoid(visible @ self.weights + self.hidden_bias)

    def visible_probabilities(self, hidden):
        import torch

        return torch.sigmoid(hidden @ self.weights.T + self.visible_bias)

    def gibbs(self, visible):
        """k alternating samples h ~ p(h | v), v ~ p(v | h)."""
        import torch

        for _ in range(self.k):
            hidden = torch.bernoulli(self.hidden_probabilities(visible))
            visible = torch.bernoulli(self.visible_probabilities(hidden))
        return visible

    def step(self, data):
        """Writes the negated estimate of the log-likelihood gradient, <.>_model - <.>_data,
        into the parameters' grads; returns the mean squared error of a mean-field
        reconstruction of the data."""
        import torch

        with torch.no_grad():
            data = self._check(data)
            data_hidden = self.hidden_probabilities(data)
            model_vh, model_v, model_h = self.model_term(data)
            add_grad(self.weights, model_vh - data.T @ data_hidden / data.shape[0])
            add_grad(self.visible_bias, model_v - data.mean(0))
            add_grad(self.hidden_bias, model_h - data_hidden.mean(0))
            reconstruction = self.visible_probabilities(data_hidden)
            return ((reconstruction - data) ** 2).mean()

    def model_term(self, data) -> tuple:
        """<v h^T>, <v> and <h> under the model, from the ends of k-step Gibbs chains (h given
        v in expectation)."""
        import torch

        if self.persistent:
            start = self.chains if self.chains is not None else torch.bernoulli(data)
        else:
            start = data
        visible = self.gibbs(start)
        if self.persistent:
            self.chains = visible
        hidden = self.hidden_probabilities(visible)
        return visible.T @ hidden / visible.shape[0], visible.mean(0), hidden.mean(0)

    def _check(self, data):
        visible, _ = self._sizes()
        if data.dim() != 2 or data.shape[1] != visible:
            raise UpdateRuleError(f"`{self.rule}` needs data of shape [batch, {visible}] (W is [{visible}, ...]), got {list(data.shape)}")
        if not data.is_floating_point():
            raise UpdateRuleError(f"`{self.rule}` needs floating-point data in [0, 1], got {data.dtype}")
        return data.to(self.weights.dtype)

    def state_dict(self) -> dict:
        return {"chains": self.chains}

    def load_state_dict(self, state: dict) -> None:
        self.chains = state.get("chains")


register_update_rule(
    NAME,
    tensors="data",
    signature="k: int = 1, persistent: bool = false",
    build=ContrastiveDivergence,
    check=lambda settings: None if settings["k"] >= 1 else f"`k` of {NAME} must be at least 1, got {settings['k']}",
    doc="CD-k (or persistent CD) for a binary RBM with parameters W [visible, hidden], visible_bias, hidden_bias; "
    "logs the mean-field reconstruction error",
)
