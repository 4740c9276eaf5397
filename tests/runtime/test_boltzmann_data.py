"""The `bars_and_stripes` generator against a brute-force filter of every binary image."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import paperspec
from paperspec.runtime.data import get_generator

BARS = get_generator("bars_and_stripes")


def whole_dataset(size: int) -> np.ndarray:
    return BARS.sampler(BARS.bind(size=size)).all()["x"].numpy()


def brute_force_patterns(size: int) -> set:
    """Of all 2^(size^2) images, those whose rows are each constant or whose columns are."""
    images = (np.arange(2 ** (size * size))[:, None] >> np.arange(size * size)) & 1
    grids = images.reshape(-1, size, size)
    rows_constant = (grids == grids[:, :, :1]).all(axis=(1, 2))
    columns_constant = (grids == grids[:, :1, :]).all(axis=(1, 2))
    return {tuple(image) for image in images[rows_constant | columns_constant].astype(np.float32)}


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_every_pattern_once(size):
    patterns = whole_dataset(size)
    assert patterns.shape == (2 ** (size + 1) - 2, size * size) and patterns.dtype == np.float32
    assert len({tuple(p) for p in patterns}) == len(patterns)
    assert {tuple(p) for p in patterns} == brute_force_patterns(size)


def test_pattern_count_at_the_largest_size():
    assert len({tuple(p) for p in whole_dataset(10)}) == 2**11 - 2


def test_statistics_of_the_4x4_patterns():
    """By symmetry every pixel is on in half the patterns, and rows and columns are balanced."""
    patterns = whole_dataset(4)
    np.testing.assert_allclose(patterns.mean(axis=0), 0.5)
    grids = patterns.reshape(-1, 4, 4)
    stripes = (grids == grids[:, :, :1]).all(axis=(1, 2))
    bars = (grids == grids[:, :1, :]).all(axis=(1, 2))
    assert (stripes.sum(), bars.sum(), (stripes & bars).sum()) == (16, 16, 2)


def test_batches_are_distinct_patterns_up_to_the_dataset_size():
    sampler = BARS.sampler(BARS.bind(size=4))
    batch = sampler.sample(30, torch.Generator().manual_seed(0))["x"]
    assert len({tuple(row) for row in batch.numpy()}) == 30 and sampler.size == 30
    assert BARS.fields(BARS.bind(size=3))["x"].shape == (9,)


MINIMAL = """model M() {
  in x: f32[B, 16]
  out linear(x, 2)
}
DATA
train t {
  model net = M()
  data d
  loss mean(net(batch.x))
  optimizer sgd(lr = 0.1)
  steps 1
}
"""


@pytest.mark.parametrize("size", [0, 11])
def test_size_out_of_range_is_an_error_at_the_data_line(size):
    source = f"data d = bars_and_stripes(size = {size})\n"
    with pytest.raises(paperspec.SpecError, match=f"size must be between 1 and 10, got {size}") as caught:
        paperspec.loads(MINIMAL.replace("DATA\n", source)).procedures()
    assert caught.value.span.line == 5


def test_a_model_of_the_wrong_width_is_a_spec_error():
    source = "data d = bars_and_stripes(size = 3)\n"
    with pytest.raises(paperspec.SpecError, match=r"f32\[B, 16\]"):
        paperspec.loads(MINIMAL.replace("DATA\n", source)).procedures()
