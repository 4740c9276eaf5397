"""The `paperspec` command line: exit codes, reports on stderr, and what each command prints."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import paperspec
from paperspec.runtime.cli import main

SPECS = Path(__file__).resolve().parents[2] / "specs"
SPEC_FILES = sorted(SPECS.glob("*.pspec"))
GPT = str(SPECS / "transformer.pspec")
SMALL = {
    "transformer.pspec": ["--set", "d=16", "--set", "layers=2", "--set", "heads=2", "--set", "ctx=8"],
    "mlp.pspec": ["--set", "inputs=12", "--set", "width=8", "--set", "depth=3"],
    "icl_attention.pspec": ["--set", "d=8", "--set", "heads=2", "--set", "layers=2"],
    "progressive_distillation.pspec": ["--set", "inputs=6", "--set", "width=5"],
    "edge_gnn.pspec": ["--model", "EdgeGNN", "--set", "width=8", "--set", "layers=3"],
    "lrnn_parity.pspec": ["--model", "DeltaNet", "--set", "d=8", "--set", "hidden=12"],
    "icl_gd.pspec": ["--model", "LSA", "--set", "dx=3"],
    "dyck_transformer.pspec": ["--set", "d=8", "--set", "pairs=2", "--set", "uniform_layer=0", "--set", "ctx=8"],
    "pinn.pspec": ["--model", "LagrangianPINN", "--set", "width=8", "--set", "depth=2"],
    "deep_linear.pspec": ["--set", "dim=4", "--set", "depth=3"],
    "equilibrium_propagation.pspec": ["--model", "HopfieldEnergy", "--set", "hidden=8"],
    "sam.pspec": ["--set", "width=8"],
    "lion.pspec": ["--model", "GPT", "--set", "d=16", "--set", "layers=2", "--set", "heads=2", "--set", "ctx=8"],
    "fno_deq.pspec": ["--model", "FNODEQ", "--set", "resolution=8", "--set", "width=6", "--set", "modes=3"],
    "forward_forward.pspec": ["--model", "FFNet", "--set", "width=8"],
    "noprop.pspec": ["--model", "NoProp", "--set", "blocks=3", "--set", "width=8"],
    "grokking.pspec": ["--set", "p=7", "--set", "width=8"],
    "neural_ode.pspec": ["--model", "NeuralODE", "--set", "width=8", "--set", "steps=3"],
    "git_rebasin.pspec": ["--set", "width=8"],
    "ps_kd.pspec": ["--set", "width=8"],
    "tleg.pspec": ["--model", "TLEG", "--set", "d=8", "--set", "hidden=12", "--set", "depth=3"],
    "hawq.pspec": ["--model", "QuantizedMLP", "--set", "width=8", "--set", "narrow=4"],
    "ibp_certified.pspec": ["--set", "width=8"],
    "rbm_cd.pspec": ["--set", "visible=9", "--set", "hidden=4"],
    "flow_matching_ot.pspec": ["--model", "ConditionalFlow", "--set", "width=8", "--set", "fine_steps=3"],
    "score_matching.pspec": ["--set", "width=8", "--set", "layers=2"],
    "memno.pspec": ["--model", "MemNO", "--set", "resolution=8", "--set", "width=6", "--set", "modes=3", "--set", "state=4"],
}
BROKEN = """model Broken(d: int = 8) {
  in  x: f32[B, d]
  out x + linear(x, 4)
}
"""


@pytest.fixture
def broken(tmp_path) -> str:
    path = tmp_path / "broken.pspec"
    path.write_text(BROKEN)
    return str(path)


def run(capsys, *argv: str) -> tuple:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_check_accepts_every_spec(capsys):
    code, out, err = run(capsys, "check", *map(str, SPEC_FILES))
    assert code == 0, err
    assert len(re.findall(r"^ok  ", out, re.MULTILINE)) == len(SPEC_FILES)
    assert "ok  " + GPT + "  (1 model: GPT, 2 procedures, 2 claims)" in out


def test_check_reports_a_broken_spec_with_its_location(capsys, broken):
    code, out, err = run(capsys, "check", GPT, broken)
    assert code == 1
    assert "ok  " + GPT in out
    assert re.match(rf"{re.escape(broken)}:3:\d+: error: .*shape", err)
    assert " 3 |   out x + linear(x, 4)" in err
    assert re.search(r"^\s+\|\s+\^+$", err, re.MULTILINE)
    assert "Traceback" not in err


def test_compile_writes_a_standalone_file(capsys, tmp_path):
    target = tmp_path / "out" / "gpt.py"
    code, out, err = run(capsys, "compile", GPT, *SMALL["transformer.pspec"], "-o", str(target))
    assert code == 0, err
    assert out.startswith(f"wrote {target}")
    source = target.read_text()
    compile(source, str(target), "exec")
    assert "class GPT(nn.Module):" in source
    assert "normal_embedding(64, 16, 0.02)" in source and "def normal_embedding(" in source


def test_compile_without_output_prints_the_source(capsys):
    code, out, _ = run(capsys, "compile", str(SPECS / "mlp.pspec"))
    assert code == 0
    assert "class MLP(nn.Module):" in out


def summary_rows(text: str) -> dict:
    """module path -> parameter count, from the summary table."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("module"))
    rows = {}
    for line in lines[start + 2:]:
        rows[line.split()[0]] = int(line.split()[-1].replace(",", ""))
    return rows


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.name)
def test_summary_counts_match_the_built_module(capsys, path):
    code, out, err = run(capsys, "summary", str(path), *SMALL[path.name])
    assert code == 0, err
    flags = list(zip(SMALL[path.name][::2], SMALL[path.name][1::2]))
    settings = dict(value.split("=") for flag, value in flags if flag == "--set")
    chosen = dict(flags).get("--model")  # specs with several models name one
    model = paperspec.load(str(path)).build(chosen, **{k: int(v) for k, v in settings.items()})
    rows = summary_rows(out)
    assert rows[type(model).__name__] == sum(p.numel() for p in model.parameters())
    for name, child in model.named_children():
        assert rows[name] == sum(p.numel() for p in child.parameters()), name


def test_summary_counts_a_tied_weight_once(capsys):
    code, out, _ = run(capsys, "summary", GPT, *SMALL["transformer.pspec"])
    rows = summary_rows(out)
    assert code == 0
    assert rows["wte"] == rows["lm_head"] == 64 * 16
    top_level = [count for name, count in rows.items() if name not in ("GPT",) and "." not in name]
    assert rows["GPT"] == sum(top_level) - rows["lm_head"]


def test_forward_runs_forward_and_backward(capsys):
    code, out, err = run(capsys, "forward", GPT, *SMALL["transformer.pspec"], "--size", "T=5", "--size", "B=3")
    assert code == 0, err
    assert "out logits: (3, 5, 64) torch.float32" in out
    assert "gradients for" in out


def test_ops_lists_every_op(capsys):
    code, out, _ = run(capsys, "ops")
    assert code == 0
    for signature in ("linear(x: tensor, features: int", "attention(q: tensor", "dropout(x: tensor"):
        assert signature in out


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("data", ["digits(split: str = 'train'", "bars_and_stripes(size: int = 4)"]),
        ("optimizers", ["sam(lr: float, rho: float = 0.05", "lion(lr: float = 0.0001"]),
        ("schedules", ["warmup_cosine(warmup: int"]),
        ("updates", ["contrastive_divergence(model, data, k: int = 1", "equilibrium_propagation(model, x, state, target"]),
        ("weight-space", ["weight_matching(model: block, to: block"]),
        ("ops", ["linear(x: tensor, features: int"]),
    ],
)
def test_list_shows_what_a_spec_can_name(capsys, kind, expected):
    code, out, _ = run(capsys, "list", kind)
    assert code == 0
    for signature in expected:
        assert signature in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["summary", GPT, "--model", "GTP"], "no model `GTP`"),
        (["summary", GPT, "--set", "depth=3"], "no parameter `depth`"),
        (["compile", GPT, "--set", "d"], "--set expects NAME=VALUE"),
        (["compile", GPT, "--set", "=3"], "--set expects NAME=VALUE"),
        (["check", "no/such/file.pspec"], "no such spec file"),
        (["forward", GPT, "--size", "T=0"], "positive integers"),
        (["forward", GPT, *SMALL["transformer.pspec"], "--size", "T=9"], "T <= 8, got T = 9"),
    ],
    ids=["unknown-model", "unknown-parameter", "set-without-value", "set-without-name", "missing-file", "bad-size", "size-too-big"],
)
def test_usage_errors_exit_2_without_traceback(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith("paperspec: error:")
    assert message in err
    assert "Traceback" not in err


def test_unknown_subcommand_exits_2(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["frobnicate"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'frobnicate'" in err
    assert "Traceback" not in err


def test_command_line_in_a_subprocess(broken):
    result = subprocess.run(
        [sys.executable, "-m", "paperspec.runtime.cli", "check", broken],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"{broken}:3:")
    assert "error:" in result.stderr
    assert "Traceback" not in result.stderr
