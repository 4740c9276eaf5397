"""gaussian_mixture with explicit means and uniform_points: statistics and argument checks."""

import numpy as np
import pytest
import torch

from paperspec.runtime.data import get_generator


def draw(name: str, count: int, **args) -> tuple:
    definition = get_generator(name)
    sampler = definition.sampler(definition.bind(**args))
    batch = sampler.sample(count, torch.Generator().manual_seed(0))
    return sampler, {key: value.numpy() for key, value in batch.items()}


def test_mixture_with_explicit_means_has_its_weights_and_unit_components():
    means = ((-5.0, -5.0), (5.0, 5.0))
    sampler, batch = draw("gaussian_mixture", 40000, dim=2, components=2, weights=(0.2, 0.8), means=means)
    assert np.array_equal(sampler.means, np.array(means))
    component, x = batch["component"], batch["x"]
    assert abs(np.mean(component == 0) - 0.2) < 0.006  # 3 standard errors
    offsets = x - sampler.means[component]
    assert np.allclose(offsets.mean(axis=0), 0, atol=0.02) and np.allclose(offsets.var(axis=0), 1, atol=0.03)


def test_uniform_points_fill_their_box():
    _, batch = draw("uniform_points", 40000, dim=3, low=-8.0, high=8.0)
    x = batch["x"]
    assert x.shape == (40000, 3) and x.dtype == np.float32
    assert x.min() >= -8.0 and x.max() <= 8.0
    assert np.allclose(x.mean(axis=0), 0, atol=0.08) and np.allclose(x.var(axis=0), 16**2 / 12, atol=0.3)


@pytest.mark.parametrize(
    "name, args, message",
    [
        ("gaussian_mixture", {"components": 2, "means": ((0.0, 0.0),)}, "list of 2 lists of 2 numbers"),
        ("gaussian_mixture", {"components": 2, "means": ((0.0, 0.0), (1.0,))}, "list of 2 lists of 2 numbers"),
        ("gaussian_mixture", {"components": 1, "means": (("a", 0.0),)}, "lists of 2 numbers"),
        ("uniform_points", {"low": 1.0, "high": 1.0}, "high > low"),
        ("uniform_points", {"dim": 0}, "dim >= 1"),
    ],
)
def test_bad_arguments_are_clear_errors(name, args, message):
    with pytest.raises(ValueError, match=message):
        get_generator(name).bind(**args)
