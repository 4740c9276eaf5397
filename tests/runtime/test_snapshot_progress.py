"""`snapshot(net, every = N)` models and the `progress` of a procedure: elaboration, errors, and
what the trainer does with them."""

import textwrap

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import paperspec
from paperspec.runtime.train import Trainer

HEAD = """\
model MLP(n: int = 8) {
  in x: f32[B, n]
  out linear(relu(linear(x, 16)), 2)
}
data parity = sparse_parity(n = 8, k = 2, seed = 0)
"""

SELF_DISTILLATION = """\
train fit {
  model net = MLP()
  model past = snapshot(net, every = 3)
  data parity
  logits = net(batch.x)
  loss (1 - progress) * cross_entropy(logits, batch.y) + progress * kl_div(logits, past(batch.x))
  optimizer sgd(lr = 0.1)
  steps 8
  checkpoint every 6
  eval every 2 { p = progress; gap = mse(net(batch.x), past(batch.x)) }
}
"""


def load(tmp_path, body: str) -> paperspec.Spec:
    path = tmp_path / "s.pspec"
    path.write_text(HEAD + textwrap.dedent(body))
    return paperspec.load(str(path))


def train(spec, tmp_path, steps=None) -> Trainer:
    trainer = Trainer(spec, "fit", out_root=str(tmp_path / "runs"), progress=False, steps=steps)
    trainer.result = trainer.run()
    return trainer


def test_a_snapshot_is_a_model_that_copies_another():
    fit = paperspec.loads(HEAD + SELF_DISTILLATION, "s.pspec").procedure("fit")
    assert fit.models == ["net", "past"] and fit.snapshots == {"past": ("net", 3)}


def test_the_snapshot_holds_the_weights_of_the_last_multiple_of_every(tmp_path):
    trainer = train(load(tmp_path, SELF_DISTILLATION), tmp_path)
    at_six = load_file(trainer.result.run_dir / "checkpoints" / "step_0000006" / "net.safetensors")
    for key, value in trainer.module.past.state_dict().items():
        assert torch.equal(value, at_six[key]), key
    assert not torch.equal(trainer.module.past.state_dict()["linear.weight"], trainer.module.net.state_dict()["linear.weight"])
    assert not any(p.requires_grad for p in trainer.module.past.parameters())


def test_before_the_first_copy_the_snapshot_is_the_initial_model(tmp_path):
    spec = load(tmp_path, SELF_DISTILLATION)
    trained = train(spec, tmp_path, steps=2)
    fresh = Trainer(spec, "fit", out_root=str(tmp_path / "other"), progress=False)
    fresh.build()  # the same seed gives the same initial weights
    for key, value in fresh.module.net.state_dict().items():
        assert torch.equal(trained.module.past.state_dict()[key], value), key


def test_progress_is_the_fraction_of_steps_done(tmp_path):
    trainer = train(load(tmp_path, SELF_DISTILLATION.replace("(1 - progress) * cross_entropy", "0 * cross_entropy").replace("progress * kl_div(logits, past(batch.x))", "progress + 0 * mean(logits)")), tmp_path)
    np.testing.assert_allclose(trainer.losses, [s / 8 for s in range(1, 9)], rtol=1e-6)
    assert [record["p"] for record in trainer.result.history] == pytest.approx([0.25, 0.5, 0.75, 1.0])


def test_progress_counts_the_whole_procedure_when_steps_cut_it_short(tmp_path):
    trainer = train(load(tmp_path, SELF_DISTILLATION), tmp_path, steps=4)
    assert [record["p"] for record in trainer.result.history] == pytest.approx([0.25, 0.5])


def test_a_binding_named_progress_hides_the_training_progress(tmp_path):
    body = SELF_DISTILLATION.replace("  logits = net(batch.x)\n", "  logits = net(batch.x)\n  progress = 0.5\n").replace("p = progress; ", "")
    graph = load(tmp_path, body).procedure("fit").phases[0].loss
    assert [spec.name for spec in graph.inputs] == ["x", "y"]


@pytest.mark.parametrize(
    "old, new, line, message",
    [
        ("snapshot(net, every = 3)", "snapshot(net)", 8, "`snapshot` needs `every = N`"),
        ("snapshot(net, every = 3)", "snapshot(net, every = 0)", 8, "`every` of snapshot must be an integer >= 1, got int 0"),
        ("snapshot(net, every = 3)", "snapshot(net, every = 3, decay = 0.5)", 8, "`snapshot` has no argument `decay`"),
        ("snapshot(net, every = 3)", "snapshot(nett, every = 3)", 8, "`snapshot` copies a model this procedure trains"),
        ("snapshot(net, every = 3)", "snapshot(MLP(), every = 3)", 8, "`snapshot` copies a model this procedure trains"),
    ],
)
def test_snapshot_mistakes_are_errors_at_the_call(old, new, line, message):
    with pytest.raises(paperspec.SpecError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        paperspec.loads(HEAD + SELF_DISTILLATION.replace(old, new), "s.pspec").procedures()
    assert caught.value.span.line == line


def test_progress_and_a_data_field_called_progress_is_an_error(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 8), np.float32), progress=np.zeros(4, np.float32))
    body = """\
    data table = npz(path = "d.npz")
    train fit {
      model net = MLP()
      data table
      loss mean(net(batch.x)) * progress
      optimizer sgd(lr = 0.1)
      steps 2
    }
    """
    with pytest.raises(paperspec.SpecError, match="the data has a field `progress` too"):
        load(tmp_path, body).procedures()
