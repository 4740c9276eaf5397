"""The trainer: determinism, exact resume, phases, freezing, teachers, EMA, NaN stop, claims."""

import csv
import json
import re
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import paperspec
from paperspec.compiler.diagnostics import UsageError
from paperspec.runtime.checkpoint import latest_checkpoint
from paperspec.runtime.claims import check_claims, format_claims
from paperspec.runtime.cli import main
from paperspec.runtime.train import RunResult, Trainer, TrainingError, is_trainable

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


def run(spec, tmp_path: Path, out: str = "runs", name: str | None = None, resume: bool = False, **options):
    return Trainer(spec, name, out_root=str(tmp_path / out), progress=False, **options).run(resume=resume)


def assert_same_weights(first: dict, second: dict) -> None:
    assert sorted(first) == sorted(second)
    for key in first:
        assert torch.equal(first[key], second[key]), key


def interrupt_after(trainer: Trainer, stop: int) -> None:
    """Makes `trainer` die right after step `stop` (after that step's eval and checkpoint)."""
    original = trainer.after_step

    def after_step(step, *args):
        original(step, *args)
        if step == stop:
            raise KeyboardInterrupt

    trainer.after_step = after_step


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
    assert_same_weights(a, b)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert first.history == second.history and first.train_loss == second.train_loss
    assert (first.run_dir / "metrics.jsonl").read_text() == (second.run_dir / "metrics.jsonl").read_text()


# Two phases (the second with another optimizer), dropout, evaluations between checkpoints.
RESUMABLE = BASIC.replace("SEED", "1").replace("eval every 8", "eval every 4").replace(
    "  steps 24\n", "  phase one { steps 12 }\n  phase two { steps 12; optimizer sgd(lr = 0.05, momentum = 0.9) }\n"
)


def assert_same_run(whole: RunResult, resumed: RunResult) -> None:
    assert resumed.steps == whole.steps == 24
    assert_same_weights(weights(whole.run_dir, 24), weights(resumed.run_dir, 24))
    assert resumed.history == whole.history and [r["step"] for r in resumed.history] == [4, 8, 12, 16, 20, 24]
    assert resumed.metrics == whole.metrics and resumed.train_loss == whole.train_loss
    for name in ("metrics.jsonl", "metrics.csv"):
        assert (resumed.run_dir / name).read_text() == (whole.run_dir / name).read_text()


@pytest.mark.parametrize("stop", [14, 16, 20])
def test_resume_after_a_crash_reaches_the_uninterrupted_run(tmp_path, stop):
    spec = write(tmp_path, RESUMABLE)
    whole = run(spec, tmp_path, "whole")
    interrupted = Trainer(spec, out_root=str(tmp_path / "cut"), progress=False)
    interrupt_after(interrupted, stop)
    with pytest.raises(KeyboardInterrupt):
        interrupted.run()
    assert latest_checkpoint(interrupted.run_dir).name == f"step_{stop // 8 * 8:07d}"
    assert_same_run(whole, run(spec, tmp_path, "cut", resume=True))


@pytest.mark.parametrize("cap", [8, 12, 14, 16])
def test_resume_after_a_run_cut_short_by_steps(tmp_path, cap):
    """--steps stops at a checkpoint (8, 16), at the phase boundary (12) or between checkpoints (14)."""
    spec = write(tmp_path, RESUMABLE)
    whole = run(spec, tmp_path, "whole")
    short = run(spec, tmp_path, "cut", steps=cap)
    assert short.steps == cap and latest_checkpoint(short.run_dir).name == f"step_{cap:07d}"
    assert_same_run(whole, run(spec, tmp_path, "cut", resume=True))


def test_resume_through_the_command_line(tmp_path):
    spec = write(tmp_path, RESUMABLE)
    whole = run(spec, tmp_path, "whole")
    path, out = str(tmp_path / "t.pspec"), str(tmp_path / "cli")
    assert main(["train", path, "--steps", "10", "--out", out, "--quiet"]) == 0
    assert main(["train", path, "--resume", "--out", out, "--quiet"]) == 0
    (run_dir,) = (tmp_path / "cli" / "t" / "fit").iterdir()
    assert_same_weights(weights(whole.run_dir, 24), weights(run_dir, 24))


def test_resuming_a_finished_run_changes_nothing(tmp_path):
    spec = write(tmp_path, RESUMABLE)
    first = run(spec, tmp_path)
    again = run(spec, tmp_path, resume=True)
    assert again.run_dir == first.run_dir and again.steps == 24
    assert again.history == first.history and again.metrics == first.metrics
    assert latest_checkpoint(first.run_dir).name == "step_0000024"


def test_resume_problems_are_training_errors(tmp_path):
    spec = write(tmp_path, RESUMABLE)
    with pytest.raises(TrainingError, match="nothing to resume: no checkpoint of `fit`"):
        run(spec, tmp_path, resume=True)
    run(spec, tmp_path, steps=16)
    with pytest.raises(TrainingError, match="already at step 16 .*--steps 8 would go back"):
        run(spec, tmp_path, resume=True, steps=8)
    wider = write(tmp_path, RESUMABLE.replace("MLP(p = 0.2)", "MLP(p = 0.2, width = 12)"))
    with pytest.raises(TrainingError, match="cannot resume `fit` from .*step_0000016: .*do not fit model `net`"):
        run(wider, tmp_path, resume=True)
    changed = write(tmp_path, RESUMABLE.replace("phase two { steps 12;", "phase two { steps 20;"))
    with pytest.raises(TrainingError, match="the spec changed after `fit` wrote its checkpoint at step 16.*spec.pspec is the spec"):
        run(changed, tmp_path, resume=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_resume_is_exact_on_a_gpu_with_dropout(tmp_path):
    spec = write(tmp_path, RESUMABLE)
    whole = run(spec, tmp_path, "whole", device="cuda")
    run(spec, tmp_path, "cut", device="cuda", steps=14)
    assert_same_run(whole, run(spec, tmp_path, "cut", device="cuda", resume=True))


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


TIED = """
model Tied(vocab: int = 11, d: int = 6) {
  in tokens: i64[B, T]
  wte = embedding(tokens, vocab, d)
  out head = linear(relu(linear(wte, d)), vocab, bias = false)
  tie head.weight = wte.weight
}
data pairs = modular_arithmetic(modulus = 7)
train lm {
  model net = Tied()
  data pairs
  batch 4
  loss cross_entropy(net(batch.x), batch.x)
  optimizer sgd(lr = 0.5)
  steps 3
  freeze PATTERN
}
"""


def test_freezing_a_tied_weight_under_either_name_keeps_it(tmp_path):
    for pattern in ("net.head", "net.wte"):
        spec = write(tmp_path, TIED.replace("PATTERN", pattern))
        torch.manual_seed(0)
        initial = spec.build_procedure("lm").net.state_dict()
        result = run(spec, tmp_path, pattern)
        final = weights(result.run_dir, 3)  # a tied weight is stored once, under one of its names
        assert torch.equal(final.get("wte.weight", final.get("head.weight")), initial["wte.weight"]), pattern
        assert not torch.equal(final["linear.weight"], initial["linear.weight"]), pattern


def test_a_freeze_pattern_that_matches_nothing_is_an_error(tmp_path):
    spec = write(tmp_path, TIED.replace("PATTERN", "net.hed"))
    with pytest.raises(TrainingError, match=r"`freeze net.hed` in `lm` \(phase `main`\) matches no parameter; modules of `net`: .*net.head"):
        run(spec, tmp_path)


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


def test_a_student_loads_the_teachers_final_weights_and_leaves_them_alone(tmp_path):
    for_loop = "  for step in teacher.checkpoints {\n    phase { loss kl_div(s(batch.x), teacher[step].net(batch.x)); steps 3 }\n  }\n"
    final_teacher = "  phase { loss kl_div(s(batch.x), teacher.net(batch.x)); steps 3 }\n"
    assert for_loop in TEACHER
    spec = write(tmp_path, TEACHER.replace(for_loop, final_teacher))
    assert [p.teacher_steps for p in spec.procedure("student").phases] == [{"teacher_net": None}, {"teacher_avg": None}]
    teacher = run(spec, tmp_path, name="teacher")
    saved = {path.name: path.read_bytes() for path in (teacher.run_dir / "checkpoints" / "step_0000010").iterdir()}
    trainer = Trainer(spec, "student", out_root=str(tmp_path / "runs"), progress=False)  # finds the teacher's run itself
    student = trainer.run()
    assert student.steps == 5
    assert_same_weights(weights(teacher.run_dir, 10), trainer.module.teacher_net.state_dict())
    assert not any(p.requires_grad for p in trainer.module.teacher_net.parameters())
    assert saved == {path.name: path.read_bytes() for path in (teacher.run_dir / "checkpoints" / "step_0000010").iterdir()}
    assert sorted(p.name for p in (student.run_dir / "checkpoints" / "step_0000005").glob("*.safetensors")) == ["s.safetensors"]


def test_a_teacher_run_of_another_shape_is_a_clear_error(tmp_path):
    teacher = run(write(tmp_path, TEACHER), tmp_path, name="teacher")
    changed = write(tmp_path, TEACHER.replace("MLP(width = 32)", "MLP(width = 24)"), "changed.pspec")
    trainer = Trainer(changed, "student", out_root=str(tmp_path / "other"), progress=False, teacher_runs={"teacher": teacher.run_dir})
    with pytest.raises(TrainingError, match="`student` cannot use the trained `teacher.net`: weights in .* do not fit"):
        trainer.run()


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


LINE = """
data teacher_data = linear_teacher(dim = 4, seed = 0)
model Line() {
  in x: f32[B, 4]
  out linear(x, 1)[:, 0]
}
"""


def test_a_diverging_run_stops_at_the_first_non_finite_loss(tmp_path, capsys):
    text = LINE + """
    train fit {
      model net = Line()
      data teacher_data
      loss mse(net(batch.x), batch.y)
      optimizer sgd(lr = 1e4)
      steps 50
      checkpoint every 1
    }
    """
    spec = write(tmp_path, text)
    with pytest.raises(TrainingError) as caught:
        run(spec, tmp_path)
    message = str(caught.value)
    step = int(re.search(r"the loss is (?:nan|inf) at step (\d+) \(phase `main`\)", message).group(1))
    assert step > 2
    (run_dir,) = (tmp_path / "runs" / "t" / "fit").iterdir()
    last = run_dir / "checkpoints" / f"step_{step - 1:07d}"
    assert message.endswith(f"last good checkpoint: {last}")
    assert latest_checkpoint(run_dir) == last and not (run_dir / "checkpoints" / f"step_{step:07d}").exists()
    code = main(["train", str(tmp_path / "t.pspec"), "--out", str(tmp_path / "cli"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("paperspec: error: `fit`: the loss is") and "Traceback" not in err


def test_eval_history_and_learning(tmp_path):
    text = LINE + """
    train fit {
      model net = Line()
      data teacher_data
      loss mse(net(batch.x), batch.y)
      optimizer sgd(lr = 0.1)
      steps 40
      eval every 10 { mse = mse(net(batch.x), batch.y); loss }
    }
    """
    result = run(write(tmp_path, text), tmp_path)
    assert [r["step"] for r in result.history] == [10, 20, 30, 40]
    assert result.metrics == result.history[-1] and set(result.metrics) == {"step", "mse", "loss", "train_loss"}
    assert result.history[-1]["mse"] < result.history[0]["mse"] / 10
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert all(r["mse"] == pytest.approx(r["loss"]) for r in result.history)
    lines = (result.run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == result.history
    rows = list(csv.DictReader((result.run_dir / "metrics.csv").open()))
    assert [int(row["step"]) for row in rows] == [10, 20, 30, 40] and list(rows[0]) == ["step", "mse", "loss", "train_loss"]
    assert float(rows[-1]["mse"]) == pytest.approx(result.metrics["mse"])
    meta = json.loads((latest_checkpoint(result.run_dir) / "meta.json").read_text())
    assert meta["step"] == 40 and meta["metrics"] == result.metrics and meta["models"]["net"]["block"] == "Line"


def test_without_an_interval_evaluation_runs_once_at_the_end(tmp_path):
    text = LINE + """
    train fit {
      model net = Line()
      data teacher_data
      loss mse(net(batch.x), batch.y)
      optimizer sgd(lr = 0.1)
      steps 7
      eval { loss }
    }
    """
    result = run(write(tmp_path, text), tmp_path)
    assert [r["step"] for r in result.history] == [7] and result.metrics["step"] == 7
    assert len((result.run_dir / "metrics.jsonl").read_text().splitlines()) == 1


def test_an_evaluation_only_run_writes_valid_json_with_a_null_training_loss(tmp_path):
    text = LINE + """
    train fit {
      model net = Line()
      data teacher_data
      loss mse(net(batch.x), batch.y)
      optimizer sgd(lr = 0.1)
      steps 5
    }
    train check after fit {
      eval on teacher_data { err = mse(fit.net(batch.x), batch.y) }
    }
    """
    spec = write(tmp_path, text)
    run(spec, tmp_path, name="fit")
    result = run(spec, tmp_path, name="check")
    (line,) = (result.run_dir / "metrics.jsonl").read_text().splitlines()
    record = json.loads(line)  # strict JSON: no NaN
    assert record["train_loss"] is None and record["step"] == 0 and record["err"] > 0


def test_evaluation_on_a_finite_dataset_sees_every_example_once(tmp_path):
    text = LINE + """
    data pairs = modular_arithmetic(modulus = 11, split = "test")
    train fit {
      model net = Line()
      data teacher_data
      batch 8
      loss mse(net(batch.x), batch.y)
      optimizer sgd(lr = 0.1)
      steps 2
      eval on pairs { label = mean(batch.y * 1.0); first = mean(batch.x[:, 0] * 1.0) }
    }
    """
    result = run(write(tmp_path, text), tmp_path)
    from paperspec.runtime.data import get_generator

    every = get_generator("modular_arithmetic").sampler({"modulus": 11, "op": "add", "train_fraction": 0.5, "corrupt": 0.0, "split": "test", "seed": 0}).all()
    assert len(every["y"]) % 8 != 0  # a short last batch, counted by its size
    assert result.metrics["label"] == pytest.approx(every["y"].double().mean().item(), rel=1e-6)
    assert result.metrics["first"] == pytest.approx(every["x"][:, 0].double().mean().item(), rel=1e-6)


def test_two_evaluations_are_recorded_together(tmp_path):
    text = LINE + """
    data other = linear_teacher(dim = 4, seed = 5)
    train fit {
      model net = Line()
      data teacher_data
      loss mse(net(batch.x), batch.y)
      optimizer sgd(lr = 0.1)
      steps 6
      eval every 3 on teacher_data { own = mse(net(batch.x), batch.y) }
      eval every 3 on other { transfer = mse(net(batch.x), batch.y) }
    }
    """
    result = run(write(tmp_path, text), tmp_path)
    assert [sorted(r) for r in result.history] == [["own", "step", "train_loss", "transfer"]] * 2
    assert result.metrics["transfer"] > result.metrics["own"]  # another teacher: the fit does not carry over
    lines = (result.run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [3, 6]


CLAIMS = LINE + """
train fit {
  model net = Line()
  data teacher_data
  loss mse(net(batch.x), batch.y)
  optimizer sgd(lr = 0.1)
  steps 30
  eval every 10 { acc = mse(net(batch.x), batch.y) }
}
expect fit.eval.acc >= 0.9
expect fit.eval.acc >= 0.99
expect fit.eval.acc >= 0.9 within 20 steps
expect fit.eval.acc >= 0.9 within 15 steps
expect fit.train.loss < 0.2 within 20 steps
expect fit.train.loss < 0.2 within 30 steps
expect abs(fit.eval.acc - 0.95) < 0.01 within 25 steps
expect steps_to(fit.eval.acc >= 0.9) <= 20 and fit.train.loss < 0.2
"""


def test_claims_with_and_without_a_step_window(tmp_path):
    """Claims over a hand-made history: `within` reads each evaluation, the training loss included."""
    spec = write(tmp_path, CLAIMS)
    history = [
        {"step": 10, "acc": 0.5, "train_loss": 0.5},
        {"step": 20, "acc": 0.95, "train_loss": 0.3},
        {"step": 30, "acc": 0.98, "train_loss": 0.1},
    ]
    result = RunResult("fit", tmp_path, 30, history[-1], history, train_loss=0.1)
    outcomes = check_claims(spec.claims(), {"fit": result})
    assert [o.passed for o in outcomes] == [True, False, True, False, False, True, True, True]
    assert [o.step for o in outcomes] == [None, None, 20, None, None, 30, 20, None]
    assert outcomes[0].measured == "fit.eval.acc = 0.98"
    assert outcomes[2].measured == "fit.eval.acc = 0.95 at step 20"
    assert outcomes[3].measured == "fit.eval.acc = 0.98 (not within 15 steps)"
    assert outcomes[7].measured == "steps_to(fit.eval.acc >= 0.9) = 20, fit.train.loss = 0.1"
    table = format_claims(outcomes).splitlines()
    assert table[0].startswith("claim") and table[0].endswith("result  measured")
    assert table[3].startswith("expect fit.eval.acc >= 0.99") and "  FAIL  " in table[3]
    assert table[4].startswith("expect fit.eval.acc >= 0.9 within 20 steps") and "  pass  " in table[4]


def test_reproduce_passes_when_every_claim_holds(tmp_path, capsys):
    path = tmp_path / "ok.pspec"
    path.write_text(textwrap.dedent(MODEL) + textwrap.dedent(LINE + """
    train fit {
      model net = Line()
      data teacher_data
      loss mse(net(batch.x), batch.y)
      optimizer sgd(lr = 0.1)
      steps 40
      eval every 10 { mse = mse(net(batch.x), batch.y) }
    }
    expect fit.eval.mse < 0.01
    expect fit.eval.mse < 0.5 within 20 steps
    """))
    assert main(["reproduce", str(path), "--out", str(tmp_path / "r"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "expect fit.eval.mse < 0.01  " in out and "2 passed, 0 failed" in out and "FAIL" not in out


def test_reproduce_prints_the_claim_table_and_fails_on_a_failed_claim(tmp_path, capsys):
    text = BASIC.replace("SEED", "0") + "expect fit.eval.accuracy > 2.0\n"
    path = tmp_path / "claims.pspec"
    path.write_text(textwrap.dedent(MODEL) + textwrap.dedent(text))
    assert main(["reproduce", str(path), "--out", str(tmp_path / "r"), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "expect fit.eval.accuracy > 2.0  FAIL" in out and "0 passed, 1 failed" in out
    assert "fit: 24 steps" in out


def test_the_command_line_reports_errors_without_a_traceback(tmp_path, capsys):
    good = tmp_path / "good.pspec"
    good.write_text(textwrap.dedent(MODEL) + textwrap.dedent(BASIC.replace("SEED", "0")))
    teacher = tmp_path / "teacher.pspec"
    teacher.write_text(textwrap.dedent(MODEL) + textwrap.dedent(TEACHER))
    out = str(tmp_path / "runs")
    cases = [
        (["train", str(teacher), "student", "--out", out, "--quiet"], 1, "paperspec: error: `student` needs the trained `teacher.net`"),
        (["train", str(good), "--resume", "--out", out, "--quiet"], 1, "paperspec: error: nothing to resume"),
        (["train", str(teacher), "--out", out, "--quiet"], 2, "has 2 training procedures; name one"),
        (["train", str(good), "fitt", "--out", out], 2, "has no procedure `fitt`"),
        (["train", str(tmp_path / "missing.pspec")], 2, "no such spec file"),
        (["train", str(good), "--steps", "0"], 2, "--steps: expected a positive integer"),
        (["train", str(good), "--device", "gpu", "--out", out], 2, "unknown device `gpu`"),
        (["reproduce", str(good), "--steps", "-1"], 2, "--steps: expected a positive integer"),
    ]
    for argv, code, message in cases:
        try:
            returned = main(argv)
        except SystemExit as exit:  # argparse's own usage errors
            returned = exit.code
        captured = capsys.readouterr()
        assert returned == code, (argv, captured.err)
        assert message in captured.err and "Traceback" not in captured.err + captured.out, (argv, captured.err)


def test_an_unusable_device_is_a_usage_error(tmp_path):
    spec = write(tmp_path, BASIC.replace("SEED", "0"))
    with pytest.raises(UsageError, match="unknown device `gpu`"):
        Trainer(spec, device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA device is available"):
            Trainer(spec, device="cuda")


def test_progress_bar_path_runs(tmp_path):
    spec = write(tmp_path, BASIC.replace("SEED", "0"))
    result = Trainer(spec, out_root=str(tmp_path / "p"), progress=True, steps=4).run()
    assert result.steps == 4 and latest_checkpoint(result.run_dir) is not None
    resumed = Trainer(spec, out_root=str(tmp_path / "p"), progress=True, steps=10).run(resume=True)
    assert resumed.steps == 10 and resumed.run_dir == result.run_dir


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


def test_eval_batch_sets_how_many_examples_a_metric_sees_at_once(tmp_path):
    """A metric that is not a mean over examples (here the largest value) is exact over the
    whole set only when one batch holds it: `eval on D batch N`."""
    import numpy as np

    values = np.arange(10, dtype=np.float32)[:, None] * np.ones((1, 8), np.float32)
    np.savez(tmp_path / "ten.npz", x=values, y=np.zeros(10, np.int64))
    body = BASIC.replace("SEED", "0").replace(
        "  eval every 8 { accuracy(net(batch.x), batch.y); loss }\n",
        "  eval on ten batch 10 { largest = max(batch.x) }\n  eval on ten batch 4 { mean_of_batch_maxima = max(batch.x) }\n",
    )
    spec = write(tmp_path, 'data ten = npz("ten.npz", fields = ["x", "y"])\n' + body)
    trainer = Trainer(spec, out_root=str(tmp_path / "runs"), progress=False)
    trainer.build()
    whole, fours = trainer.make_eval_batches()
    assert [len(arguments[0]) for arguments in whole[1]] == [10]
    assert sorted(len(arguments[0]) for arguments in fours[1]) == [2, 4, 4]
    metrics = run(spec, tmp_path).metrics
    assert metrics["largest"] == 9.0
    assert metrics["mean_of_batch_maxima"] < 9.0
