"""Update rules: the registry, the `update` statement, and contrastive divergence against the
exact log-likelihood gradient of a tiny RBM (by enumerating every state)."""

import itertools
import textwrap

import numpy as np
import pytest
import torch
from test_train import assert_same_weights, interrupt_after, weights

import paperspec
from paperspec.runtime.train import Trainer, TrainingError
from paperspec.runtime.updates import UpdateRuleError, all_update_rules, get_update_rule


class TinyRBM(torch.nn.Module):
    def __init__(self, visible: int, hidden: int, scale: float = 1.0, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.W = torch.nn.Parameter(scale * torch.randn(visible, hidden, generator=generator, dtype=torch.float64))
        self.visible_bias = torch.nn.Parameter(0.5 * torch.randn(visible, generator=generator, dtype=torch.float64))
        self.hidden_bias = torch.nn.Parameter(0.5 * torch.randn(hidden, generator=generator, dtype=torch.float64))


def states(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)


def exact_nll(W, visible_bias, hidden_bias, data: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of `data` by summing over every (v, h)."""
    h = states(W.shape[1]).to(W.dtype)

    def neg_energy(v):  # -E(v, h) for every pair, [len(v), 2^H]
        return v @ W @ h.T + (v @ visible_bias)[:, None] + (h @ hidden_bias)[None, :]

    log_z = torch.logsumexp(neg_energy(states(W.shape[0]).to(W.dtype)).flatten(), 0)
    return (log_z - torch.logsumexp(neg_energy(data.to(W.dtype)), 1)).mean()


def exact_nll_gradients(rbm: TinyRBM, data: torch.Tensor) -> dict:
    nll = exact_nll(rbm.W, rbm.visible_bias, rbm.hidden_bias, data)
    return dict(zip(["W", "visible_bias", "hidden_bias"], torch.autograd.grad(nll, [rbm.W, rbm.visible_bias, rbm.hidden_bias])))


def rule_gradients(rbm: TinyRBM, data: torch.Tensor, **settings) -> dict:
    rule = get_update_rule("contrastive_divergence").build(rbm, {"k": 1, "persistent": False, **settings})
    rule.step(data)
    return {name: p.grad for name, p in rbm.named_parameters()}


@pytest.mark.parametrize("persistent", [False, True])
def test_long_chains_give_the_exact_log_likelihood_gradient(persistent):
    torch.manual_seed(0)
    rbm = TinyRBM(visible=3, hidden=2)
    patterns = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0]], dtype=torch.float64)
    data = patterns.repeat(40_000, 1)
    exact = exact_nll_gradients(rbm, data)
    estimated = rule_gradients(rbm, data, k=25, persistent=persistent)
    for name in exact:
        torch.testing.assert_close(estimated[name], exact[name], atol=0.015, rtol=0.0)


def test_one_gibbs_step_is_biased_towards_the_data():
    """CD-1 is not the likelihood gradient: from the data, one step cannot reach the model's
    distribution, so its negative phase differs from the exact one (here by far more than noise)."""
    torch.manual_seed(0)
    rbm = TinyRBM(visible=3, hidden=2, scale=3.0, seed=2)
    data = torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64).repeat(40_000, 1)
    exact = exact_nll_gradients(rbm, data)["W"]
    cd1 = rule_gradients(TinyRBM(visible=3, hidden=2, scale=3.0, seed=2), data, k=1)["W"]
    assert (cd1 - exact).abs().max() > 0.05


def sticky_rbm() -> TinyRBM:
    """One visible and one hidden unit so strongly coupled that a Gibbs chain keeps its state."""
    rbm = TinyRBM(visible=1, hidden=1)
    with torch.no_grad():
        rbm.W.fill_(30.0)
        rbm.visible_bias.fill_(-15.0)
        rbm.hidden_bias.fill_(-15.0)
    return rbm


def test_persistent_chains_continue_where_the_last_step_stopped():
    data = torch.zeros(8, 1, dtype=torch.float64)
    rbm = sticky_rbm()
    rule = get_update_rule("contrastive_divergence").build(rbm, {"k": 3, "persistent": True})
    rule.load_state_dict({"chains": torch.ones(4, 1, dtype=torch.float64)})
    rule.step(data)
    # Chains held at v = 1 see h = 1, the data (v = 0) sees h = 0: W's descent direction is
    # <vh>_model - <vh>_data = 1.
    assert rbm.W.grad.item() == pytest.approx(1.0, abs=1e-5)
    assert torch.equal(rule.state_dict()["chains"], torch.ones(4, 1, dtype=torch.float64))
    plain = sticky_rbm()
    get_update_rule("contrastive_divergence").build(plain, {"k": 3, "persistent": False}).step(data)
    assert plain.W.grad.item() == pytest.approx(0.0, abs=1e-5)


def test_the_model_must_declare_the_rbm_parameters():
    model = torch.nn.Linear(3, 2)
    with pytest.raises(UpdateRuleError, match="needs a parameter `W`.*weight, bias"):
        get_update_rule("contrastive_divergence").build(model, {"k": 1, "persistent": False})
    rbm = TinyRBM(visible=3, hidden=2)
    rule = get_update_rule("contrastive_divergence").build(rbm, {"k": 1, "persistent": False})
    with pytest.raises(UpdateRuleError, match=r"data of shape \[batch, 3\]"):
        rule.step(torch.zeros(4, 5, dtype=torch.float64))


def test_the_registry_describes_each_rule():
    described = all_update_rules()["contrastive_divergence"].describe()
    assert described == "contrastive_divergence(model, data, k: int = 1, persistent: bool = false)"


# ---- the `update` statement in specs ----

SPEC = """
spec bars "an RBM on 3x3 bars and stripes"

model RBM(visible: int = 9, hidden: int = 6) {
  in v: f32[B, visible]
  param W: f32[visible, hidden] init = normal(0.1)
  param visible_bias: f32[visible] init = zeros
  param hidden_bias: f32[hidden] init = zeros
  out free_energy: f32[B] = -(v @ visible_bias) - sum(softplus(v @ W + hidden_bias), dim = -1)
}

data patterns = npz("bars.npz", fields = ["x"])

train cd {
  model rbm = RBM()
  data patterns
  batch 14
  UPDATE
  optimizer sgd(lr = 0.5)
  steps 400
  checkpoint every 80
  eval every 80 { free_energy = mean(rbm(batch.x)) }
}
"""


def bars_and_stripes() -> np.ndarray:
    """The 14 distinct 3x3 images with every row (or every column) all on or all off."""
    patterns = set()
    for lines in itertools.product([0, 1], repeat=3):
        rows = np.repeat(np.array(lines)[:, None], 3, axis=1)
        patterns.add(tuple(rows.flatten()))
        patterns.add(tuple(rows.T.flatten()))
    return np.array(sorted(patterns), dtype=np.float32)


def bars_spec(tmp_path, update: str = "update contrastive_divergence(rbm, batch.x, k = 1, persistent = true)", name="bars.pspec"):
    np.savez(tmp_path / "bars.npz", x=bars_and_stripes())
    path = tmp_path / name
    path.write_text(textwrap.dedent(SPEC).replace("UPDATE", update))
    return paperspec.load(str(path))


def test_a_procedure_trains_by_an_update_rule(tmp_path):
    spec = bars_spec(tmp_path, "update contrastive_divergence(rbm, batch.x, k = 1)")
    result = Trainer(spec, out_root=str(tmp_path / "runs"), progress=False).run()
    assert result.improved  # the reconstruction error falls
    trained = weights(result.run_dir, 400, "rbm")
    nll = exact_nll(trained["W"], trained["visible_bias"], trained["hidden_bias"], torch.from_numpy(bars_and_stripes()))
    # Untrained (W near 0) the model is near uniform over 2^9 images: 9 log 2 = 6.24 nats each;
    # the best model puts 1/14 on each pattern: log 14 = 2.64.
    assert nll.item() < 9 * np.log(2) - 1.0


def test_resume_restores_the_persistent_chains(tmp_path):
    spec = bars_spec(tmp_path)
    whole = Trainer(spec, out_root=str(tmp_path / "whole"), progress=False).run()
    interrupted = Trainer(spec, out_root=str(tmp_path / "cut"), progress=False)
    interrupt_after(interrupted, 200)
    with pytest.raises(KeyboardInterrupt):
        interrupted.run()
    resumed = Trainer(spec, out_root=str(tmp_path / "cut"), progress=False).run(resume=True)
    assert_same_weights(weights(whole.run_dir, 400, "rbm"), weights(resumed.run_dir, 400, "rbm"))
    assert resumed.history == whole.history


def spec_error(tmp_path, update: str) -> paperspec.SpecError:
    with pytest.raises(paperspec.SpecError) as caught:
        bars_spec(tmp_path, update).procedures()
    return caught.value


@pytest.mark.parametrize(
    "update, message, column",
    [
        ("update contrastive_divergense(rbm, batch.x)", "unknown update rule `contrastive_divergense`", 10),
        ("update contrastive_divergence(net, batch.x)", "the first argument of `contrastive_divergence` is the model", 33),
        ("update contrastive_divergence(rbm)", "needs its tensor argument `data`", 10),
        ("update contrastive_divergence(rbm, batch.x, 2)", "settings of `contrastive_divergence` are keywords", 47),
        ("update contrastive_divergence(rbm, batch.x, k = 0)", "`k` of contrastive_divergence must be at least 1", 10),
        ("update contrastive_divergence(rbm, batch.x, steps = 2)", "has no argument `steps`", 47),
        ("update contrastive_divergence(rbm, batch.z)", "field", 38),
        ("update contrastive_divergence(rbm, 1.0)", "`data` of `contrastive_divergence` must be a tensor", 38),
        ("update rbm", "`update` names an update rule", 10),
    ],
)
def test_update_statement_errors_point_at_the_mistake(tmp_path, update, message, column):
    error = spec_error(tmp_path, update)
    assert message in str(error)
    assert (error.span.line, error.span.column) == (18, column)


def test_an_update_rule_cannot_train_a_model_that_copies_another(tmp_path):
    error = spec_error(tmp_path, "model past = snapshot(rbm, every = 10)\n  update contrastive_divergence(past, batch.x)")
    assert "`past` follows other weights" in str(error) and error.span.line == 19


def test_loss_and_update_exclude_each_other_in_one_body(tmp_path):
    error = spec_error(tmp_path, "update contrastive_divergence(rbm, batch.x)\n  loss mean(rbm(batch.x))")
    assert "trains by `loss` or by `update`, not both" in str(error) and error.span.line == 19


def test_a_phase_may_replace_the_outer_update_by_a_loss(tmp_path):
    spec = bars_spec(tmp_path, "update contrastive_divergence(rbm, batch.x)\n  phase a { steps 200 }\n  phase b { steps 200; loss mean(rbm(batch.x)) }")
    phases = spec.procedure("cd").phases
    assert [p.update is not None for p in phases] == [True, False]


def test_eval_loss_needs_a_loss(tmp_path):
    np.savez(tmp_path / "bars.npz", x=bars_and_stripes())
    path = tmp_path / "b.pspec"
    path.write_text(textwrap.dedent(SPEC).replace("UPDATE", "update contrastive_divergence(rbm, batch.x)").replace("{ free_energy = mean(rbm(batch.x)) }", "{ loss }"))
    with pytest.raises(paperspec.SpecError, match="trains with an update rule"):
        paperspec.load(str(path)).procedures()


def test_runtime_errors_of_a_rule_name_its_line(tmp_path):
    np.savez(tmp_path / "bars.npz", x=bars_and_stripes())
    path = tmp_path / "b.pspec"
    path.write_text(textwrap.dedent(SPEC).replace("UPDATE", "update contrastive_divergence(rbm, batch.x)").replace("W", "weights"))
    with pytest.raises(TrainingError, match=r"`update contrastive_divergence` \(line 18, phase `main`\): .*needs a parameter `W`"):
        Trainer(paperspec.load(str(path)), out_root=str(tmp_path / "runs"), progress=False).run()
