"""Checkpoints are atomic, keep tied weights tied, and refuse weights of another model."""

import json
import os

import pytest
import torch

import paperspec
from paperspec.runtime.checkpoint import (
    latest_checkpoint,
    load_state,
    load_weights,
    save_checkpoint,
)

TIED = """
model Tied(vocab: int = 11, d: int = 6) {
  in tokens: i64[B, T]
  wte = embedding(tokens, vocab, d)
  out head = linear(wte, vocab, bias = false)
  tie head.weight = wte.weight
}
"""


def models():
    torch.manual_seed(0)
    return {"net": paperspec.loads(TIED, "tied.pspec").build()}


def test_a_crash_before_the_rename_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    first = models()
    save_checkpoint(tmp_path, 1, first, {"phase": 0}, {"note": "first"})
    second = models()
    with torch.no_grad():
        second["net"].wte.weight.add_(1.0)
    real_replace = os.replace

    def crash(source, target):
        if "staging" in str(source):
            raise OSError("disk vanished")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path, 2, second, {"phase": 0}, {"note": "second"})
    folder = latest_checkpoint(tmp_path)
    assert folder.name == "step_0000001"
    state, meta = load_state(folder)
    assert meta["note"] == "first" and state == {"phase": 0}
    restored = models()
    with torch.no_grad():
        restored["net"].wte.weight.zero_()
    load_weights(folder, restored)
    assert torch.equal(restored["net"].wte.weight, first["net"].wte.weight)


def crash_on(monkeypatch, marker: str) -> None:
    """Makes os.replace fail for sources whose name contains `marker`, as a crash there would."""
    real_replace = os.replace

    def replace(source, target):
        if marker in os.path.basename(str(source)):
            raise OSError(f"crash while renaming {source}")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)


def shifted(amount: float) -> dict:
    saved = models()
    with torch.no_grad():
        saved["net"].wte.weight.add_(amount)
    return saved


@pytest.mark.parametrize("marker", [".staging-", ".tmp-"])
@pytest.mark.parametrize("step", [1, 2], ids=["same step", "next step"])
def test_a_crash_at_any_rename_leaves_a_valid_latest_checkpoint(tmp_path, monkeypatch, marker, step):
    """Rewriting the step `latest.json` names (the end of a run) must be as safe as writing a new one."""
    first = shifted(0.0)
    save_checkpoint(tmp_path, 1, first, {"phase": 0}, {"note": "first"})
    crash_on(monkeypatch, marker)
    with pytest.raises(OSError, match="crash while renaming"):
        save_checkpoint(tmp_path, step, shifted(1.0), {"phase": 0}, {"note": "second"})
    folder = latest_checkpoint(tmp_path)
    assert folder is not None and load_state(folder)[1]["note"] == "first"
    restored = shifted(5.0)
    load_weights(folder, restored)
    assert torch.equal(restored["net"].wte.weight, first["net"].wte.weight)
    monkeypatch.undo()
    save_checkpoint(tmp_path, 3, shifted(2.0), {"phase": 0}, {"note": "third"})  # leftovers do not block the next save
    assert latest_checkpoint(tmp_path).name == "step_0000003"
    assert load_state(latest_checkpoint(tmp_path))[1]["note"] == "third"


def test_rewriting_a_step_replaces_it_and_cleans_up(tmp_path):
    save_checkpoint(tmp_path, 4, shifted(0.0), {"phase": 0}, {"note": "periodic"})
    save_checkpoint(tmp_path, 4, shifted(1.0), {"phase": -1}, {"note": "final"})
    folder = latest_checkpoint(tmp_path)
    assert folder.name == "step_0000004" and load_state(folder)[1]["note"] == "final"
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest.json", "step_0000004"]
    restored = shifted(5.0)
    load_weights(folder, restored)
    assert torch.equal(restored["net"].wte.weight, shifted(1.0)["net"].wte.weight)


def test_tied_weights_round_trip_and_stay_tied(tmp_path):
    saved = models()
    folder = save_checkpoint(tmp_path, 3, saved, {}, {})
    loaded = models()
    with torch.no_grad():
        loaded["net"].wte.weight.normal_()
    load_weights(folder, loaded)
    net = loaded["net"]
    assert net.head.weight is net.wte.weight
    assert torch.equal(net.wte.weight, saved["net"].wte.weight)
    assert json.loads((tmp_path / "checkpoints" / "latest.json").read_text())["step"] == 3


def test_weights_of_another_model_are_refused(tmp_path):
    folder = save_checkpoint(tmp_path, 1, models(), {}, {})
    other = {"net": paperspec.loads(TIED.replace("d: int = 6", "d: int = 7"), "other.pspec").build()}
    with pytest.raises(ValueError, match="do not fit model `net`: size mismatch for (wte|head).weight"):
        load_weights(folder, other)
    with pytest.raises(FileNotFoundError, match="no weights for model `student`"):
        load_weights(folder, {"student": other["net"]})


def test_weights_of_another_architecture_name_what_differs(tmp_path):
    folder = save_checkpoint(tmp_path, 1, models(), {}, {})
    untied = TIED.replace("  tie head.weight = wte.weight\n", "").replace("linear(wte, vocab, bias = false)", "linear(wte, vocab)")
    other = {"net": paperspec.loads(untied, "untied.pspec").build()}
    with pytest.raises(ValueError, match=r"do not fit model `net`: missing \['head.bias'"):
        load_weights(folder, other)
