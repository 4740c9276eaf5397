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
