"""`warm_start(Model(...), proc.model)`: elaboration, errors, and the weights a run starts from."""

import textwrap

import pytest
import torch
from safetensors.torch import load_file

import paperspec
from paperspec.runtime.train import Trainer, TrainingError

HEAD = """\
model Stack(depth: int = 2, width: int = 8) {
  in x: f32[B, 8]
  param shared: [width, 8] init = normal(0.1)
  h = x @ transpose(shared)
  repeat depth as l {
    param own: [width] init = zeros
    h = h + own * (l + 1) / depth
  }
  out logits = linear(h, 2)
}
data parity = sparse_parity(n = 8, k = 2, seed = 0)
train pretrain {
  model net = Stack(depth = 2)
  data parity
  loss cross_entropy(net(batch.x), batch.y)
  optimizer sgd(lr = 0.1)
  steps 3
}
"""

FINETUNE = """\
train finetune after pretrain {
  model deeper = warm_start(Stack(depth = 4), pretrain.net)
  data parity
  loss cross_entropy(deeper(batch.x), batch.y)
  optimizer sgd(lr = 0.1)
  steps 2
}
"""


def load(tmp_path, body: str = FINETUNE) -> paperspec.Spec:
    path = tmp_path / "w.pspec"
    path.write_text(HEAD + textwrap.dedent(body))
    return paperspec.load(str(path))


def test_a_warm_started_model_records_its_source():
    procedure = paperspec.loads(HEAD + FINETUNE, "w.pspec").procedure("finetune")
    assert procedure.models == ["deeper"] and procedure.warm_starts == {"deeper": ("pretrain", "net")}


def test_shared_names_start_from_the_trained_weights_and_the_rest_from_their_init(tmp_path):
    spec = load(tmp_path)
    pretrained = Trainer(spec, "pretrain", out_root=str(tmp_path / "runs"), progress=False).run()
    trained = load_file(pretrained.run_dir / "checkpoints" / "step_0000003" / "net.safetensors")
    trainer = Trainer(spec, "finetune", out_root=str(tmp_path / "runs"), progress=False)
    trainer.build()
    state = trainer.module.deeper.state_dict()
    for key in ("shared", "depth.0.own", "depth.1.own", "logits.weight", "logits.bias"):
        assert torch.equal(state[key], trained[key]), key
    assert torch.equal(state["depth.3.own"], torch.zeros(8))  # only the 4-layer model has it
    assert all(p.requires_grad for p in trainer.module.deeper.parameters())


def test_a_shape_mismatch_is_a_spec_error_naming_the_parameters():
    text = HEAD + FINETUNE.replace("Stack(depth = 4)", "Stack(depth = 4, width = 6)")
    with pytest.raises(paperspec.SpecError, match=r"`deeper` cannot start from `pretrain.net`: shapes differ: `depth.0.own` \[8\] vs \[6\]; .* `shared` \[8, 8\] vs \[6, 8\]") as caught:
        paperspec.loads(text, "w.pspec").procedures()
    assert caught.value.span.line == 20


def test_weights_that_no_longer_fit_are_refused_when_the_run_starts(tmp_path):
    """A checkpoint written by an older version of the source model (the spec changed since)."""
    from safetensors.torch import save_file

    from paperspec.runtime.warm_start import copy_matching

    target = torch.nn.Linear(4, 2)
    save_file({"weight": torch.zeros(3, 4), "bias": torch.zeros(2)}, str(tmp_path / "old.safetensors"))
    assert copy_matching(target, tmp_path / "old.safetensors") == "shapes differ: `weight` [3, 4] vs [2, 4]"
    save_file({"other": torch.zeros(1)}, str(tmp_path / "unrelated.safetensors"))
    assert "share no parameter name" in copy_matching(target, tmp_path / "unrelated.safetensors")


def test_a_missing_source_run_is_a_clear_error(tmp_path):
    with pytest.raises(TrainingError, match="starts `deeper` from the trained `pretrain.net`, but no checkpoint"):
        Trainer(load(tmp_path), "finetune", out_root=str(tmp_path / "empty"), progress=False).run()


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("warm_start(Stack(depth = 4), pretrain.net)", "warm_start(Stack(depth = 4))", "`warm_start` takes a model and another procedure's trained model"),
        ("pretrain.net)", "pretrain.nett)", "procedure `pretrain` has no model `nett`"),
        ("pretrain.net)", "other.net)", "`warm_start` starts from a trained model of a procedure named in `after`"),
        ("warm_start(Stack(depth = 4), pretrain.net)", "warm_start(Stack(depth = 4), pretrain.net, strict = true)", "`warm_start` takes a model"),
    ],
)
def test_mistakes_are_errors_in_the_spec(old, new, message):
    with pytest.raises(paperspec.SpecError, match=message) as caught:
        paperspec.loads(HEAD + FINETUNE.replace(old, new), "w.pspec").procedures()
    assert caught.value.span.line == 20
