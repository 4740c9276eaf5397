"""`--quick`: the spec's `quick` settings, separate run folders, and the "training improves" check."""

import textwrap
from pathlib import Path

import pytest

import paperspec
from paperspec import SpecError
from paperspec.runtime.cli import main

SPEC = """
spec q
model M(d: int = 4) {
  in x: f32[B, d]
  out y: f32[B] = linear(x, 1)[.., 0]
}
data pts = linear_teacher(dim = 2 if quick else 4)
train fit {
  model net = M(d = 2 if quick else 4)
  data pts
  batch 16
  loss mse(net(batch.x), batch.y)
  optimizer adam(lr = LR)
  steps 30 if quick else 400
}
expect fit.train.loss < 1e-8
"""


def write(tmp_path: Path, lr: str = "1e-2") -> str:
    path = tmp_path / "q.pspec"
    path.write_text(textwrap.dedent(SPEC).replace("LR", lr))
    return str(path)


def test_quick_is_false_unless_asked(tmp_path):
    full, quick = paperspec.load(write(tmp_path)), paperspec.load(write(tmp_path), quick=True)
    assert (full.quick, quick.quick) == (False, True)
    assert (full.procedure("fit").steps, quick.procedure("fit").steps) == (400, 30)
    assert full.procedure("fit").phases[0].data.args["dim"] == 4
    assert quick.procedure("fit").phases[0].data.args["dim"] == 2


def test_quick_is_not_visible_inside_models(tmp_path):
    text = "model M() {\n  in x: f32[B, 4]\n  out linear(x, 2 if quick else 3)\n}\n"
    with pytest.raises(SpecError, match="quick") as error:
        paperspec.loads(text, quick=True).graph("M")
    assert error.value.span.line == 3


def test_reproduce_quick_checks_improvement_not_claims(tmp_path, capsys):
    spec, out = write(tmp_path), tmp_path / "runs"
    assert main(["reproduce", spec, "--quick", "--quiet", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "fit: 30 steps" in text
    assert "improved" in text and "1 claim not checked" in text
    assert (out / "q-quick" / "fit").is_dir() and not (out / "q").exists()  # full runs never read quick weights
    # The full run checks the claim (400 steps on a noiseless teacher reach 1e-8; 30 would not).
    assert main(["reproduce", spec, "--quiet", "--out", str(out)]) == 0
    assert "1 passed, 0 failed" in capsys.readouterr().out


def test_a_quick_run_whose_loss_does_not_fall_fails(tmp_path, capsys):
    assert main(["reproduce", write(tmp_path, lr="0.0"), "--quick", "--quiet", "--out", str(tmp_path / "runs")]) == 1
    assert "DID NOT IMPROVE" in capsys.readouterr().out
