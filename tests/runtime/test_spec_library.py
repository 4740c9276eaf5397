"""Every spec in specs/ reproduces end to end in its quick setting: each procedure runs, each
one that trains improves beyond minibatch noise, and the claims stay well-formed (the full
claims are checked by `make reproduce`, see docs/REPRODUCTIONS.md)."""

import math
from pathlib import Path

import pytest

import paperspec
from paperspec.runtime.cli import main
from paperspec.runtime.data import get_generator

SPECS = sorted((Path(__file__).resolve().parents[2] / "specs").glob("*.pspec"))


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_quick_reproduction(tmp_path, capsys, path):
    spec = paperspec.load(str(path), quick=True)
    assert spec.claims(), f"{path.name} states no claim"
    assert spec.cites, f"{path.name} cites no paper"
    code = main(["reproduce", str(path), "--quick", "--quiet", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "DID NOT IMPROVE" not in out


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_quick_settings_are_smaller(path):
    """A quick run does less work than the full one (fewer steps in total)."""
    full = paperspec.load(str(path)).procedures()
    quick = paperspec.load(str(path), quick=True).procedures()
    assert total_steps(quick) < total_steps(full)


def total_steps(procedures: dict) -> int:
    """Steps of every phase; a phase counted in `epochs` makes whole passes over its dataset."""
    total = 0
    for procedure in procedures.values():
        for phase in procedure.phases:
            if phase.epochs is None:
                total += phase.steps
            else:
                size = get_generator(phase.data.generator).sampler(phase.data.args).size
                total += phase.epochs * math.ceil(size / phase.batch)
    return total
