"""The `digits` generator: scikit-learn's 8x8 digits, a stratified train/test split."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

import paperspec
from paperspec.runtime.data import get_generator
from paperspec.runtime.data.digits import load_images

pytest.importorskip("sklearn")

DIGITS = get_generator("digits")


def whole_split(split: str, **args) -> dict:
    return DIGITS.sampler(DIGITS.bind(split=split, **args)).all()


def rows(x: torch.Tensor) -> set:
    return {tuple(row) for row in x.numpy().round(4)}


def test_split_sizes_add_up_to_the_dataset():
    train, test = whole_split("train"), whole_split("test")
    assert (len(train["y"]), len(test["y"])) == (1438, 359)
    assert DIGITS.sampler(DIGITS.bind(split="test")).size == 359
    assert train["x"].shape == (1438, 64) and train["x"].dtype == torch.float32
    assert test["y"].dtype == torch.int64


def test_pixels_are_scaled_to_the_unit_interval():
    x = whole_split("train")["x"]
    assert x.min() == 0.0 and x.max() == 1.0
    images, _ = load_images()
    assert set(np.unique(images * 16)) <= set(range(17))  # grey levels 0..16, divided by 16


def test_split_is_stratified():
    counts = {split: np.bincount(whole_split(split)["y"].numpy(), minlength=10) for split in ("train", "test")}
    total = counts["train"] + counts["test"]
    assert np.all(np.abs(counts["test"] - 0.2 * total) <= 0.5)  # round(0.2 * count) per class
    assert counts["test"].min() >= 35


def test_splits_are_disjoint_and_cover_the_dataset():
    train, test = rows(whole_split("train")["x"]), rows(whole_split("test")["x"])
    images, _ = load_images()
    everything = {tuple(row) for row in images.astype(np.float32).round(4)}
    assert not train & test
    assert train | test == everything


def test_split_follows_the_seed_and_is_deterministic():
    first, again = whole_split("test"), whole_split("test")
    other = whole_split("test", seed=1)
    assert torch.equal(first["x"], again["x"])
    assert not torch.equal(first["x"], other["x"])


def test_labels_match_the_images():
    """The same image keeps its label through the split."""
    images, labels = load_images()
    lookup = {tuple(row): label for row, label in zip(images.astype(np.float32).round(4), labels)}
    test = whole_split("test")
    assert all(lookup[tuple(row)] == label for row, label in zip(test["x"].numpy().round(4), test["y"].tolist()))


def test_label_noise_replaces_that_fraction_of_labels_by_other_classes():
    clean, noisy = whole_split("train"), whole_split("train", label_noise=0.4)
    assert torch.equal(clean["x"], noisy["x"])
    changed = clean["y"] != noisy["y"]
    assert changed.sum().item() == round(0.4 * 1438)  # each chosen label moves to another class
    landed = torch.bincount(noisy["y"][changed], minlength=10).float()
    assert landed.min() > 0.5 * landed.mean()  # spread over the classes
    assert torch.equal(whole_split("train", label_noise=0.4)["y"], noisy["y"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"split": "valid"}, "split must be 'train' or 'test'"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"seed": -1}, "seed"),
        ({"label_noise": 1.0}, "label_noise"),
    ],
)
def test_bad_arguments_are_errors_at_the_data_line(args, message):
    arguments = ", ".join(f"{k} = {v!r}".replace("'", '"') for k, v in args.items())
    source = f"data d = digits({arguments})\n"
    with pytest.raises(paperspec.SpecError, match=message) as caught:
        paperspec.loads(MINIMAL.replace("DATA\n", source)).procedures()
    assert caught.value.span.line == 5


def test_without_scikit_learn_the_error_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name, *a))
    with pytest.raises(paperspec.SpecError, match=r"pip install 'paperspec\[digits\]'"):
        paperspec.loads(MINIMAL.replace("DATA\n", "data d = digits()\n")).procedures()


MINIMAL = """model M() {
  in x: f32[B, 64]
  out linear(x, 10)
}
DATA
train t {
  model net = M()
  data d
  loss cross_entropy(net(batch.x), batch.y)
  optimizer adam()
  steps 1
}
"""
