"""Unbiased contrastive divergence: the coupled Gibbs sweep against the exact transition of a tiny
RBM, and the estimate against the exact log-likelihood gradient by enumeration."""

import pytest
import torch
from test_updates import TinyRBM, bars_spec, exact_nll_gradients, rule_gradients, states

from paperspec.runtime.updates import UpdateRuleError, all_update_rules, get_update_rule

RULE = get_update_rule("unbiased_contrastive_divergence")


def build(rbm, max_steps: int = 1000):
    return RULE.build(rbm, {"max_steps": max_steps})


def gibbs_transition(rbm: TinyRBM, start: torch.Tensor) -> torch.Tensor:
    """P(v' | v = start) of one sweep v -> h -> v', for every v' (counting order), by enumeration."""
    hidden, visible = states(rbm.W.shape[1]), states(rbm.W.shape[0])

    def bernoulli(states_, probabilities):  # P(states_ | probabilities) per row of probabilities
        return (states_[None] * probabilities[:, None] + (1 - states_[None]) * (1 - probabilities[:, None])).prod(-1)

    p_hidden = bernoulli(hidden, torch.sigmoid(start @ rbm.W + rbm.hidden_bias)[None])[0]
    p_visible = bernoulli(visible, torch.sigmoid(hidden @ rbm.W.T + rbm.visible_bias))
    return p_hidden @ p_visible


def frequencies(samples: torch.Tensor) -> torch.Tensor:
    codes = (samples * 2 ** torch.arange(samples.shape[1] - 1, -1, -1, dtype=samples.dtype)).sum(1).long()
    return torch.bincount(codes, minlength=2 ** samples.shape[1]).double() / len(samples)


def test_each_coupled_chain_moves_by_plain_gibbs():
    torch.manual_seed(0)
    rbm = TinyRBM(visible=3, hidden=2, scale=1.5, seed=1)
    x_start, y_start = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64), torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64)
    with torch.no_grad():
        x, y = build(rbm).coupled_gibbs(x_start.repeat(100_000, 1), y_start.repeat(100_000, 1))
        torch.testing.assert_close(frequencies(x), gibbs_transition(rbm, x_start), atol=0.006, rtol=0)
        torch.testing.assert_close(frequencies(y), gibbs_transition(rbm, y_start), atol=0.006, rtol=0)
    assert 0 < (x == y).all(1).double().mean() < 1  # they can meet, and do not always


def test_chains_that_met_stay_together():
    torch.manual_seed(0)
    rbm = TinyRBM(visible=4, hidden=3)
    start = torch.bernoulli(torch.full((500, 4), 0.5, dtype=torch.float64))
    with torch.no_grad():
        x, y = build(rbm).coupled_gibbs(start, start.clone())
    assert torch.equal(x, y)


def test_the_estimate_is_the_exact_log_likelihood_gradient_where_cd1_is_biased():
    """The RBM and data of test_updates' CD-1 bias test: there CD-1 misses the exact W gradient by
    several times the noise; the coupled estimate, averaged over 40,000 chain pairs, does not."""
    torch.manual_seed(0)
    data = torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64).repeat(40_000, 1)
    exact = exact_nll_gradients(TinyRBM(visible=3, hidden=2, scale=3.0, seed=2), data)
    rbm = TinyRBM(visible=3, hidden=2, scale=3.0, seed=2)
    rule = build(rbm)
    rule.step(data)
    assert 1 < rule.meeting_steps < 1000
    for name, parameter in rbm.named_parameters():
        torch.testing.assert_close(parameter.grad, exact[name], atol=0.015, rtol=0.0)
    cd1 = rule_gradients(TinyRBM(visible=3, hidden=2, scale=3.0, seed=2), data, k=1)["W"]
    assert (cd1 - exact["W"]).abs().max() > 0.03  # twice the tolerance the coupled estimate meets


def test_pairs_still_apart_after_max_steps_are_cut_off():
    data = torch.bernoulli(torch.full((2000, 6), 0.5, dtype=torch.float64), generator=torch.Generator().manual_seed(0))
    uncapped, capped = build(TinyRBM(visible=6, hidden=4, scale=3.0)), build(TinyRBM(visible=6, hidden=4, scale=3.0), max_steps=3)
    torch.manual_seed(0)
    uncapped.step(data)
    torch.manual_seed(0)
    capped.step(data)
    assert uncapped.meeting_steps > 3 and capped.meeting_steps == 3


def test_pairs_whose_first_step_returns_to_the_data_have_met():
    rbm = TinyRBM(visible=1, hidden=1)
    with torch.no_grad():  # so strongly coupled that a chain never leaves its state
        rbm.W.fill_(40.0)
        rbm.visible_bias.fill_(-20.0)
        rbm.hidden_bias.fill_(-20.0)
    rule = build(rbm)
    rule.step(torch.ones(4, 1, dtype=torch.float64))
    assert rule.meeting_steps == 0
    assert rbm.W.grad.item() == pytest.approx(0.0, abs=1e-6)  # model and data statistics agree


def test_errors_name_the_rule():
    with pytest.raises(UpdateRuleError, match="`unbiased_contrastive_divergence` needs a parameter `W`"):
        build(torch.nn.Linear(3, 2))
    assert all_update_rules()["unbiased_contrastive_divergence"].describe() == (
        "unbiased_contrastive_divergence(model, data, max_steps: int = 1000)"
    )


def test_a_spec_checks_max_steps(tmp_path):
    import paperspec

    with pytest.raises(paperspec.SpecError, match="`max_steps` of unbiased_contrastive_divergence must be at least 1"):
        bars_spec(tmp_path, "update unbiased_contrastive_divergence(rbm, batch.x, max_steps = 0)").procedures()
