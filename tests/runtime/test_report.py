"""`paperspec reproduce FILE... --report FILE.md`: the generated claims table."""

import textwrap
from pathlib import Path

from paperspec.runtime.cli import main
from paperspec.runtime.report import BEGIN, END

SPEC = """
spec NAME
cite "Doe and Roe 2021, A Paper About Lines (ICML 2022, arXiv:2101.00001)"
model M(d: int = 3) {
  in x: f32[B, d]
  out y: f32[B] = linear(x, 1)[.., 0]
}
data pts = linear_teacher(dim = 3)
train fit {
  model net = M()
  data pts
  batch 16
  loss mse(net(batch.x), batch.y)
  optimizer adam(lr = 1e-2)
  steps 200
  eval every 100 { err = mse(net(batch.x), batch.y) }
}
expect fit.eval.err < BOUND
expect fit.train.loss < 10
"""


def write(tmp_path: Path, name: str, bound: str) -> str:
    path = tmp_path / f"{name}.pspec"
    path.write_text(textwrap.dedent(SPEC).replace("NAME", name).replace("BOUND", bound))
    return str(path)


def reproduce(tmp_path: Path, *files: str, report: Path) -> int:
    return main(["reproduce", *files, "--quiet", "--out", str(tmp_path / "runs"), "--report", str(report)])


def rows(report: Path) -> list:
    return [line for line in report.read_text().splitlines() if line.startswith("| ") and ".pspec" in line]


def test_report_has_a_row_per_claim_and_keeps_the_prose(tmp_path, capsys):
    report = tmp_path / "REPRO.md"
    report.write_text("# Results\n\nHand-written introduction.\n\n## Notes\n\nA note.\n")
    good, bad = write(tmp_path, "good", "1.0"), write(tmp_path, "bad", "0.0")
    assert reproduce(tmp_path, good, bad, report=report) == 1  # bad's first claim cannot hold
    text = report.read_text()
    assert text.startswith("# Results\n\nHand-written introduction.") and "A note." in text
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    table = rows(report)
    assert len(table) == 4
    assert table[0].startswith("| bad.pspec | A Paper About Lines (ICML 2022, arXiv:2101.00001) (2021) | `fit.eval.err < 0.0` |") and "| ✗ |" in table[0]
    assert table[2].startswith("| good.pspec |") and "| ✓ |" in table[2]
    assert "fit.eval.err = " in table[2]
    assert "3 of 4 claims hold (2 specs)." in text
    assert "wrote the claims of 2 specs" in capsys.readouterr().out


def test_reproducing_one_spec_again_keeps_the_other_rows(tmp_path):
    report = tmp_path / "REPRO.md"
    good, bad = write(tmp_path, "good", "1.0"), write(tmp_path, "bad", "0.0")
    reproduce(tmp_path, good, bad, report=report)
    before = rows(report)
    assert reproduce(tmp_path, write(tmp_path, "bad", "1.0"), report=report) == 0  # fixed
    after = rows(report)
    assert after[2:] == before[2:]  # good.pspec's rows, verbatim
    assert "`fit.eval.err < 1.0`" in after[0] and "| ✓ |" in after[0]
    assert "4 of 4 claims hold (2 specs)." in report.read_text()


def test_a_broken_spec_among_several_is_reported_and_the_rest_run(tmp_path, capsys):
    broken = tmp_path / "broken.pspec"
    broken.write_text("model M() {\n  in x: f32[B, 2]\n  out linear(x, 2) + nope\n}\ntrain t { model net = M() }\n")
    report = tmp_path / "REPRO.md"
    assert reproduce(tmp_path, str(broken), write(tmp_path, "good", "1.0"), report=report) == 1
    captured = capsys.readouterr()
    assert "broken.pspec:5:1: error: `t` has no `loss`" in captured.err
    assert len(rows(report)) == 2
