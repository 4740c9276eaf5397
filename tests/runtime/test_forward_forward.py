"""specs/forward_forward.pspec: per-layer losses with detached inputs, and its random wrong labels."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import paperspec

SPEC = str(Path(__file__).resolve().parents[2] / "specs" / "forward_forward.pspec")
LAYERS = ("layer1", "layer2", "layer3")


@pytest.fixture(scope="module")
def spec():
    return paperspec.load(SPEC)


def digits_like(batch: int = 16) -> tuple:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(batch, 64, generator=generator), torch.randint(0, 10, (batch,), generator=generator)


def layer_grads(net: torch.nn.Module, layer: str) -> list:
    return [p.grad for p in getattr(net, layer).parameters()]


@pytest.mark.parametrize("trained", range(3))
def test_no_gradient_crosses_layers(spec, trained):
    """Backprop from one layer's goodness reaches that layer's weights and no other's (the other
    layers see exact zeros: the gradient `stack` sends to the goodness not differentiated)."""
    net = spec.build("FFNet", width=8)
    x, y = digits_like()
    net(x, y)[:, trained].sum().backward()
    for index, layer in enumerate(LAYERS):
        grads = layer_grads(net, layer)
        if index == trained:
            assert all(g is not None and g.abs().sum() > 0 for g in grads)
        else:
            assert all(g is None or not g.any() for g in grads), f"{layer} got a gradient from layer {trained + 1}'s goodness"


def test_summed_loss_trains_each_layer_on_its_own_loss(spec):
    """The procedure's loss sums the layers' losses; each layer's gradient equals that of its own
    loss alone, computed by hand from the goodness of that layer."""
    procedure = spec.build_procedure("forward_forward")
    x, y = digits_like()
    torch.manual_seed(3)
    procedure.loss_0(y, x)["loss"].backward()
    summed = {layer: [g.clone() for g in layer_grads(procedure.net, layer)] for layer in LAYERS}
    torch.manual_seed(3)  # the same wrong labels
    wrong = (y + torch.randint(1, 10, y.shape)) % 10
    for index, layer in enumerate(LAYERS):
        procedure.net.zero_grad(set_to_none=True)
        positive, negative = procedure.net(x, y)[:, index], procedure.net(x, wrong)[:, index]
        own = (torch.nn.functional.softplus(10.0 - positive) + torch.nn.functional.softplus(negative - 10.0)).mean() / len(LAYERS)
        own.backward()
        for got, expected in zip(summed[layer], layer_grads(procedure.net, layer)):
            torch.testing.assert_close(got, expected)


def test_classification_picks_the_label_with_the_most_goodness(spec):
    """The metric's tiled batch against a loop over the ten labels."""
    procedure = spec.build_procedure("forward_forward")
    x, y = digits_like(batch=24)
    with torch.no_grad():
        totals = torch.stack([procedure.net(x, torch.full_like(y, label)).sum(-1) for label in range(10)], dim=-1)
        expected = (totals.argmax(-1) == y).float().mean()
        assert procedure.metrics(x, y)["accuracy"] == pytest.approx(expected.item())


def test_wrong_labels_are_uniform_over_the_other_classes():
    spec = paperspec.loads("model Wrong() {\n  in y: i64[B]\n  out (y + randint([B], 10, low = 1)) % 10\n}\n")
    model = spec.build()
    torch.manual_seed(0)
    y = torch.arange(10).repeat(2000)
    wrong = model(y)
    assert not (wrong == y).any()
    for label in range(10):
        counts = torch.bincount(wrong[y == label], minlength=10).float()
        others = torch.cat([counts[:label], counts[label + 1:]])
        assert others.min() > 0.8 * 2000 / 9 and others.max() < 1.2 * 2000 / 9  # 2000 draws per class


def test_randint_is_not_exportable():
    from paperspec.compiler.backends.onnx import export_spec

    spec = paperspec.loads("model Noise() {\n  in y: i64[B]\n  out y + randint([B], 10)\n}\n")
    with pytest.raises(paperspec.SpecError, match="`randint` cannot be exported to ONNX: .*generator") as caught:
        export_spec(spec)
    assert caught.value.span.line == 3
