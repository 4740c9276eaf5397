"""The trainer: determinism, exact resume, phases, freezing, teachers, EMA, NaN stop, claims."""

import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import paperspec
from paperspec.runtime.checkpoint import latest_checkpoint
from paperspec.runtime.claims import check_claims
from paperspec.runtime.cli import main
from paperspec.runtime.train import Trainer, TrainingError, is_trainable

MODEL = """
model MLP(n: int = 8, width: int = 16, p: float = 0.0) {
  in x: f32[B, n]
  out linear(dropout(relu(linear(x, width)), p), 2)
}
data parity = sparse_parity(n = 8, k = 2, seed = 0)
"""


def write(tmp_path: Path, body: str, name: str = "t.pspec") -> paperspec.Spec:
    path = tmp_path / name
    path.write_text(textwrap.dedent(MODEL) + textwrap.dedent(body))
    return paperspec.load(str(path))


def weights(run_dir: Path, step: int, model: str = "net") -> dict:
    return load_file(run_dir / "checkpoints" / f"step_{step:07d}" / f"{model}.safetensors")


def run(spec, tmp_path: Path, out: str = "runs", name: str | None = None, **options):
    return Trainer(spec, name, out_root=str(tmp_path / out), progress=False, **options).run()


BASIC = """
train fit {
  model net = MLP(p = 0.2)
  data parity
  batch 16
  seed SEED
  loss cross_entropy(net(batch.x), batch.y)
  optimizer adamw(lr = 0.01)
  schedule warmup_cosine(warmup = 3)
  steps 24
  checkpoint every 8
  eval every 8 { accuracy(net(batch.x), batch.y); loss }
}
"""


def test_same_seed_gives_identical_weights_and_another_seed_does_not(tmp_path):
    spec = write(tmp_path, BASIC.replace("SEED", "3"))
    first, second = run(spec, tmp_path, "a"), run(spec, tmp_path, "b")
    other = run(write(tmp_path, BASIC.replace("SEED", "4"), "u.pspec"), tmp_path, "c")
    a, b, c = weights(first.run_dir, 24), weights(second.run_dir, 24), weights(other.run_dir, 24)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_resume_reaches_the_weights_of_an_uninterrupted_run(tmp_path):
    text = BASIC.replace("SEED", "1").replace("  steps 24\n", "  phase one { steps 12 }\n  phase two { steps 12; optimizer sgd(lr = 0.05, momentum = 0.9) }\n")
    spec = write(tmp_path, text)
    whole = run(spec, tmp_path, "whole")
    interrupted = Trainer(spec, out_root=str(tmp_path / "cut"), progress=False)
    original = interrupted.after_step

    def crash(step, *args):
        original(step, *args)
        if step == 16:
            raise KeyboardInterrupt

    interrupted.after_step = crash
    with pytest.raises(KeyboardInterrupt):
        interrupted.run()
    resumed = Trainer(spec, out_root=str(tmp_path / "cut"), progress=False).run(resume=True)
    assert resumed.steps == 24
    a, b = weights(whole.run_dir, 24), weights(resumed.run_dir, 24)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["step"] for r in resumed.history] == [8, 16, 24]


def test_a_phase_with_zero_learning_rate_leaves_weights_alone(tmp_path):
    text = """
    train fit {
      model net = MLP()
      data parity
      loss cross_entropy(net(batch.x), batch.y)
      optimizer sgd(lr = 0.1)
      checkpoint every 5
      phase learn { steps 5 }
      phase still { steps 5; optimizer sgd(lr = 0.0) }
    }
    """
    result = run(write(tmp_path, text), tmp_path)
    a, b = weights(result.run_dir, 5), weights(result.run_dir, 10)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_freeze_keeps_matching_parameters_and_unfreeze_releases_them(tmp_path):
    text = """
    train fit {
      model net = MLP()
      data parity
      loss cross_entropy(net(batch.x), batch.y)
      optimizer sgd(lr = 0.1)
      checkpoint every 5
      freeze net.linear.*
      phase frozen { steps 5 }
      phase open { steps 5; unfreeze net.linear }
    }
    """
    spec = write(tmp_path, text)
    torch.manual_seed(0)
    initial = spec.build_procedure("fit").net.state_dict()
    result = run(spec, tmp_path)
    after_frozen, after_open = weights(result.run_dir, 5), weights(result.run_dir, 10)
    assert torch.equal(after_frozen["linear.weight"], initial["linear.weight"])
    assert not torch.equal(after_frozen["linear_1.weight"], initial["linear_1.weight"])
    assert not torch.equal(after_open["linear.weight"], after_frozen["linear.weight"])


@pytest.mark.parametrize(
    ("key", "rules", "expected"),
    [
        ("net.linear.weight", [(True, ("net", "linear"))], False),
        ("net.linear_1.weight", [(True, ("net", "linear"))], True),
        ("net.layers.3.attn.weight", [(True, ("net", "layers", "*", "attn"))], False),
        ("net.layers.3.mlp.weight", [(True, ("net", "layers", "*", "attn"))], True),
        ("net.a.weight", [(True, ("net",)), (False, ("net", "a"))], True),
    ],
)
def test_freeze_globs(key, rules, expected):
    assert is_trainable(key, rules) is expected


TEACHER = """
train teacher {
  model net = MLP(width = 32)
  model avg = ema(net, decay = 0.5)
  data parity
  loss cross_entropy(net(batch.x), batch.y)
  optimizer adam(lr = 0.01)
  steps 10
  checkpoint every 5
}
train student after teacher {
  model s = MLP(width = 4)
  data parity
  optimizer adam(lr = 0.01)
  for step in teacher.checkpoints {
    phase { loss kl_div(s(batch.x), teacher[step].net(batch.x)); steps 3 }
  }
  phase { loss kl_div(s(batch.x), teacher.avg(batch.x)); steps 2 }
}
"""


def test_student_uses_the_teachers_weights_without_changing_them(tmp_path):
    spec = write(tmp_path, TEACHER)
    teacher = run(spec, tmp_path, name="teacher")
    trainer = Trainer(spec, "student", out_root=str(tmp_path / "runs"), progress=False, teacher_runs={"teacher": teacher.run_dir})
    student = trainer.run()
    assert student.steps == 8
    final = weights(teacher.run_dir, 10, "avg")
    held = trainer.module.teacher_avg.state_dict()
    assert all(torch.equal(final[k], held[k]) for k in final)
    assert [p.teacher_steps for p in spec.procedure("student").phases] == [
        {"teacher_net": 5},
        {"teacher_net": 10},
        {"teacher_avg": None},
    ]


def test_ema_moves_toward_the_model(tmp_path):
    spec = write(tmp_path, TEACHER)
    result = run(spec, tmp_path, name="teacher")
    net, avg, start = weights(result.run_dir, 10), weights(result.run_dir, 10, "avg"), weights(result.run_dir, 5, "avg")
    assert not torch.equal(avg["linear.weight"], net["linear.weight"])
    assert (avg["linear.weight"] - net["linear.weight"]).abs().max() < (start["linear.weight"] - net["linear.weight"]).abs().max()


def test_a_student_without_a_trained_teacher_is_a_clear_error(tmp_path):
    spec = write(tmp_path, TEACHER)
    with pytest.raises(TrainingError, match="train `teacher` first"):
        Trainer(spec, "student", out_root=str(tmp_path / "empty"), progress=False).run()


def test_a_non_finite_loss_stops_with_the_step_and_last_checkpoint(tmp_path):
    text = """
    train blowup {
      model net = MLP()
      data parity
      loss mean(log(net(batch.x) - 1000.0))
      optimizer sgd(lr = 0.1)
      steps 5
    }
    """
    with pytest.raises(TrainingError, match=r"the loss is nan at step 1 \(phase `main`\); last good checkpoint: none"):
        run(write(tmp_path, text), tmp_path)
    code = main(["train", str(tmp_path / "t.pspec"), "--out", str(tmp_path / "cli"), "--quiet"])
    assert code == 1


def test_eval_history_and_learning(tmp_path):
    text = """
    data teacher_data = linear_teacher(dim = 4, seed = 0)
    model Line() {
      in x: f32[B, 4]
      out linear(x, 1)[:, 0]
    }
    train fit {
      model net = Line()
      data teacher_data
      loss mse(net(batch.x), batch.y)
      optimizer sgd(lr = 0.1)
      steps 40
      eval every 10 { mse = mse(net(batch.x), batch.y) }
    }
    expect fit.eval.mse < 0.01
    expect fit.eval.mse < 1e-9
    expect fit.eval.mse < 0.5 within 10 steps
    """
    spec = write(tmp_path, text)
    result = run(spec, tmp_path)
    assert [r["step"] for r in result.history] == [10, 20, 30, 40]
    assert result.history[-1]["mse"] < result.history[0]["mse"]
    lines = (result.run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 4 and (result.run_dir / "metrics.csv").read_text().startswith("step,mse,train_loss")
    outcomes = check_claims(spec.claims(), {"fit": result})
    assert [o.passed for o in outcomes] == [True, False, outcomes[2].passed]
    assert outcomes[0].measured.startswith("fit.eval.mse = ")


def test_reproduce_prints_the_claim_table_and_fails_on_a_failed_claim(tmp_path, capsys):
    text = BASIC.replace("SEED", "0") + "expect fit.eval.accuracy > 2.0\n"
    path = tmp_path / "claims.pspec"
    path.write_text(textwrap.dedent(MODEL) + textwrap.dedent(text))
    assert main(["reproduce", str(path), "--out", str(tmp_path / "r"), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "expect fit.eval.accuracy > 2.0  FAIL" in out and "0 passed, 1 failed" in out


def test_progress_bar_path_runs(tmp_path):
    spec = write(tmp_path, BASIC.replace("SEED", "0"))
    result = Trainer(spec, out_root=str(tmp_path / "p"), progress=True, steps=4).run()
    assert result.steps == 4 and latest_checkpoint(result.run_dir) is not None


def test_epochs_count_whole_passes_over_a_finite_dataset(tmp_path):
    text = """
    data table = modular_arithmetic(modulus = 7, train_fraction = 0.5, split = "train")
    model Add() {
      in x: i64[B, 2]
      out linear(embedding(x[:, 0], 7, 8) + embedding(x[:, 1], 7, 8), 7)
    }
    train fit {
      model net = Add()
      data table
      batch 8
      loss cross_entropy(net(batch.x), batch.y)
      optimizer adam(lr = 0.01)
      schedule warmup_cosine(warmup = 2)
      epochs 3
    }
    """
    spec = write(tmp_path, text)
    assert spec.procedure("fit").phases[0].steps is None
    size = len(range(49)) // 2  # 24 of the 49 pairs train
    result = run(spec, tmp_path)
    assert result.steps == 3 * -(-size // 8)


def test_epochs_need_a_finite_dataset(tmp_path):
    text = BASIC.replace("SEED", "0").replace("  steps 24\n", "  epochs 2\n").replace("  checkpoint every 8\n", "").replace("  eval every 8", "  eval")
    with pytest.raises(TrainingError, match="endless stream"):
        run(write(tmp_path, text), tmp_path)
