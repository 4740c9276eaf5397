"""gaussians_to_moons: its source, target and times have the stated laws and are independent."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paperspec.runtime.data import get_generator


def draw(batch_size: int, stream_seed: int = 0, **args) -> dict:
    definition = get_generator("gaussians_to_moons")
    batch = definition.sampler(definition.bind(**args)).sample(batch_size, torch.Generator().manual_seed(stream_seed))
    return {key: value.numpy() for key, value in batch.items()}


@pytest.fixture(scope="module")
def batch() -> dict:
    return draw(20000, radius=3.0, std=0.05, noise=0.0)


def test_sources_sit_on_eight_centres_of_the_circle(batch):
    x0 = batch["x0"]
    sector = np.round(np.arctan2(x0[:, 1], x0[:, 0]) / (np.pi / 4)).astype(int) % 8
    centres = 3.0 * np.stack([np.cos(sector * np.pi / 4), np.sin(sector * np.pi / 4)], axis=1)
    assert np.allclose((x0 - centres).std(axis=0), 0.05, atol=0.003)
    assert np.allclose(np.bincount(sector, minlength=8) / len(x0), 1 / 8, atol=0.015)


def test_targets_lie_on_the_moon_their_label_names(batch):
    x1, y = batch["x1"], batch["y"]
    assert np.allclose(np.linalg.norm(x1[y == 0], axis=1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(x1[y == 1] - [1, 0.5], axis=1), 1, atol=1e-5)
    assert abs(y.mean() - 0.5) < 0.02


def test_times_are_uniform_on_the_unit_interval(batch):
    t = batch["t"][:, 0]
    assert t.min() >= 0 and t.max() <= 1
    assert abs(t.mean() - 0.5) < 0.01 and abs(t.var() - 1 / 12) < 0.005


def test_source_target_and_time_are_drawn_independently(batch):
    """An independent coupling: no correlation between any coordinate of x0, x1 and t."""
    columns = np.concatenate([batch["x0"], batch["x1"], batch["t"]], axis=1)
    correlation = np.corrcoef(columns.T)
    field = ["x0", "x0", "x1", "x1", "t"]  # of each column
    across = [correlation[i, j] for i in range(5) for j in range(5) if field[i] != field[j]]
    assert max(abs(c) for c in across) < 0.03


def test_noise_blurs_the_moons():
    x1, y = (draw(20000, noise=0.1)[k] for k in ("x1", "y"))
    radial = np.linalg.norm(x1[y == 0], axis=1) - 1
    assert abs(radial.std() - 0.1) < 0.01


def test_bad_arguments_say_what_they_need():
    for args in ({"radius": 0.0}, {"std": -1.0}, {"noise": -0.1}):
        with pytest.raises(ValueError, match="radius > 0, std >= 0 and noise >= 0"):
            get_generator("gaussians_to_moons").bind(**args)
