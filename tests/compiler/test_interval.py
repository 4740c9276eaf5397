"""interval_bounds: bounds that contain every output over the box, exact for one affine layer, equal
to a hand-written IBP in numpy for a ReLU network; ops without a rule are errors at their line."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from spec_helpers import model_spec

import paperspec
from paperspec.compiler.backends.onnx import export_spec

# Every rule on the way from input to output: affine layers, convolution, @ a weight, monotone
# activations, shape ops, + and - of intervals, products by numbers and by tensors of either
# sign, an interval times an interval, abs, a nested block with two outputs.
SPEC = """
block Pair(width: int) {
  in x: f32[B, 6]
  out a = tanh(linear(x, width))
  out b = abs(x - 0.5) * -2.0
}

block Everything() {
  in x: f32[B, 6]
  param W: [6, 5] init = normal(1.0)
  param s: [5] init = normal(1.0)
  a, b = Pair(4)(x)
  images = reshape(x, [-1, 1, 2, 3])
  c = flatten(relu(conv2d(images, 2, [1, 2])), 1)
  m = (x @ W) * s - neg(sigmoid(x[:, 0:5])) / -3.0
  p = a * softplus(b[:, 0:4])
  out concat([p, c, m, sum(b, dim = -1, keepdim = true)], dim = -1)
}

model Boxed() {
  in lower: f32[B, 6]
  in upper: f32[B, 6]
  f = Everything()
  low, high = interval_bounds(f, lower, upper)
  out low
  out high
}

block Affine(features: int = 3) {
  in x: f32[B, 4]
  out linear(x, features)
}

model AffineBox() {
  in lower: f32[B, 4]
  in upper: f32[B, 4]
  low, high = interval_bounds(Affine(), lower, upper)
  out low
  out high
}

block ReluNet(width: int = 16) {
  in x: f32[B, 8]
  h = relu(linear(x, width))
  h = relu(linear(h, width))
  out linear(h, 5)
}

model ReluBox() {
  in lower: f32[B, 8]
  in upper: f32[B, 8]
  net = ReluNet()
  low, high = interval_bounds(net, lower, upper)
  out low
  out high
}
"""


@pytest.fixture(scope="module")
def spec() -> paperspec.Spec:
    return paperspec.loads(SPEC, "<interval>")


def random_box(rows: int, width: int, generator: torch.Generator) -> tuple:
    center = torch.randn(rows, width, generator=generator)
    radius = 0.3 * torch.rand(rows, width, generator=generator)
    return center - radius, center + radius


def vertices(lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """Every corner of each box: [2 ** width, rows, width]."""
    corners = torch.tensor(list(itertools.product([0.0, 1.0], repeat=lower.shape[1])))
    return lower + corners[:, None, :] * (upper - lower)


def test_bounds_contain_sampled_points_and_vertices(spec):
    torch.manual_seed(0)
    model = spec.build("Boxed").eval()
    generator = torch.Generator().manual_seed(1)
    lower, upper = random_box(4, 6, generator)
    low, high = model(lower, upper)
    inside = lower + torch.rand(2000, *lower.shape, generator=generator) * (upper - lower)
    points = torch.cat([inside, vertices(lower, upper)])
    with torch.no_grad():
        outputs = model.f(points.reshape(-1, 6)).reshape(len(points), *low.shape)
    assert (outputs >= low - 1e-5).all() and (outputs <= high + 1e-5).all()
    assert (low <= high).all()
    # the bounds are not vacuous: each is within a few box widths of what the samples reach
    assert (outputs.amin(0) - low).max() < 10 and (high - outputs.amax(0)).max() < 10


def test_point_box_gives_the_output(spec):
    torch.manual_seed(0)
    model = spec.build("Boxed").eval()
    x = torch.randn(3, 6)
    low, high = model(x, x)
    torch.testing.assert_close(low, model.f(x))
    torch.testing.assert_close(high, model.f(x))


def test_single_linear_layer_is_exact(spec):
    torch.manual_seed(0)
    model = spec.build("AffineBox").eval()
    lower, upper = random_box(5, 4, torch.Generator().manual_seed(2))
    low, high = model(lower, upper)
    weight = model.affine.linear.weight.detach().numpy().astype(np.float64)
    bias = model.affine.linear.bias.detach().numpy().astype(np.float64)
    low_end, high_end = lower.numpy().astype(np.float64), upper.numpy().astype(np.float64)
    # each output's extremes over the box, term by term: the smaller and larger of w * l and w * u
    terms = np.stack([low_end[:, None, :] * weight, high_end[:, None, :] * weight])
    np.testing.assert_allclose(low.detach().numpy(), terms.min(0).sum(-1) + bias, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(high.detach().numpy(), terms.max(0).sum(-1) + bias, rtol=1e-5, atol=1e-5)
    # and attained: the vertex with l where w > 0 (u elsewhere) reaches the lower bound
    for j in range(weight.shape[0]):
        corner = np.where(weight[j] > 0, low_end, high_end)
        np.testing.assert_allclose(low.detach().numpy()[:, j], corner @ weight[j] + bias[j], rtol=1e-5, atol=1e-5)


def numpy_ibp(layers: list, lower: np.ndarray, upper: np.ndarray) -> tuple:
    """Interval bound propagation written out: min/max of the affine map per weight sign, ReLU on the ends."""
    for index, (weight, bias) in enumerate(layers):
        positive, negative = np.maximum(weight, 0), np.minimum(weight, 0)
        lower, upper = lower @ positive.T + upper @ negative.T + bias, upper @ positive.T + lower @ negative.T + bias
        if index < len(layers) - 1:
            lower, upper = np.maximum(lower, 0), np.maximum(upper, 0)
    return lower, upper


def test_relu_network_matches_a_numpy_ibp(spec):
    torch.manual_seed(0)
    model = spec.build("ReluBox").eval()
    lower, upper = random_box(7, 8, torch.Generator().manual_seed(3))
    low, high = model(lower, upper)
    net = model.net
    layers = [
        (layer.weight.detach().numpy().astype(np.float64), layer.bias.detach().numpy().astype(np.float64))
        for layer in (net.linear, net.linear_1, net.linear_2)
    ]
    expected_low, expected_high = numpy_ibp(layers, lower.numpy().astype(np.float64), upper.numpy().astype(np.float64))
    np.testing.assert_allclose(low.detach().numpy(), expected_low, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(high.detach().numpy(), expected_high, rtol=1e-5, atol=1e-5)


def test_bounds_are_differentiable(spec):
    """IBP training backpropagates through the bounds into the weights."""
    model = spec.build("ReluBox")
    lower, upper = random_box(3, 8, torch.Generator().manual_seed(4))
    low, high = model(lower, upper)
    (high - low).sum().backward()
    assert model.net.linear.weight.grad is not None and model.net.linear.weight.grad.abs().sum() > 0


def test_generated_method_reads_like_ibp(spec):
    source = spec.source("ReluBox")
    assert "def interval_bounds(self, x_lower, x_upper):" in source
    assert "F.linear(radius, self.linear.weight.abs())" in source
    assert "low, high = self.net.interval_bounds(lower, upper)" in source


UNSUPPORTED = [
    ("out softmax(h)", "no interval rule for `softmax`", 7),
    ("out h @ transpose(h)", "no interval rule for `matmul` of two intervals", 7),
    ("out where(h > 0.5, h, 0.0)", "no interval rule for `gt`", 13),
    ("out 1.0 / h", "no interval rule for `div` with an interval `y`", 7),
    ("out dropout(h)", "no interval rule for `dropout`", 7),
]


@pytest.mark.parametrize("statement, message, column", UNSUPPORTED)
def test_op_without_rule_is_an_error_at_its_line(statement, message, column):
    text = f"""block Net() {{
  in x: f32[B, 4]
  h = linear(x, 4)
  {statement}
}}
model M() {{
  in x: f32[B, 4]
  low, high = interval_bounds(Net(), x - 0.1, x + 0.1)
  out low
}}
"""
    with pytest.raises(paperspec.SpecError) as raised:
        paperspec.loads(text, "<unsupported>").graph("M")
    error = raised.value
    assert message in error.message
    assert (error.span.line, error.span.column) == (4, column)
    assert statement in error.format()
    assert "in `Net`, bounded by `interval_bounds`" in error.format()


def test_bad_arguments_are_errors_at_the_argument():
    text = """block Two() {
  in x: f32[B, 4]
  out a = relu(x)
  out b = relu(x)
}
model M() {
  in x: f32[B, 4]
  low, high = interval_bounds(Two(), x, x)
  out low
}
model N() {
  in x: f32[B, 4]
  in y: f32[B, 3]
  low, high = interval_bounds(Two(), x, y)
  out low
}
"""
    spec = paperspec.loads(text, "<arguments>")
    with pytest.raises(paperspec.SpecError, match="one output") as raised:
        spec.graph("M")
    assert raised.value.span.line == 8 and raised.value.span.column == 31
    with pytest.raises(paperspec.SpecError, match="bounds of one type") as raised:
        spec.graph("N")
    assert raised.value.span.column == 41


def test_export_is_refused_at_the_op(spec):
    with pytest.raises(paperspec.SpecError, match="not exportable|cannot be exported") as raised:
        export_spec(spec, "ReluBox")
    assert raised.value.span.line == SPEC.splitlines().index("  low, high = interval_bounds(net, lower, upper)") + 1


def test_submodule_named_like_the_method_keeps_working():
    spec = model_spec("in x: f32[B, 4]; interval_bounds = linear(x, 3); out interval_bounds", "<name>")
    module = spec.build("M")
    assert "interval_bounds_.weight" in module.state_dict()


# Repeats, bounded iteration by iteration: alike iterations (a loop over one layer, over a block,
# over a body class of two layers with a residual and a value from outside the loop, or applying
# one instance defined outside), iterations that differ (the body reads the index), a repeat in a
# repeat, and the same residual network written out layer by layer.
REPEATS = """
block Layer(width: int = 8) {
  in x: f32[B, 8]
  out x + relu(linear(x, width)) * 0.5
}

block Stacked() {
  in x: f32[B, 4]
  h = linear(x, 8)
  repeat 3 { h = Layer()(h) }
  out linear(h, 3)
}

block Shared() {
  in x: f32[B, 4]
  h = linear(x, 8)
  layer = Layer()
  repeat 3 { h = layer(h) }
  out linear(h, 3)
}

block Deep(width: int = 8, depth: int = 3) {
  in x: f32[B, 4]
  h = relu(linear(x, width))
  repeat depth { h = relu(linear(h, width)) }
  out linear(h, 3)
}

block Indexed(width: int = 8) {
  in x: f32[B, 4]
  h = relu(linear(x, width))
  repeat 3 as i { h = relu(linear(h, width * (i + 1) // (i + 1))) }
  out linear(h, 3)
}

block Residual(width: int = 8) {
  in x: f32[B, 4]
  h = relu(linear(x, width))
  skip = linear(x, width)
  repeat 2 { h = relu(linear(h, width)); h = h + relu(linear(h, width)) * -0.5 + skip }
  out linear(h, 3)
}

block Nested() {
  in x: f32[B, 4]
  h = linear(x, 8)
  repeat 2 as i { repeat 2 { h = relu(linear(h, 8)) * (i + 1) } }
  out linear(h, 3)
}

block ResidualWrittenOut(width: int = 8) {
  in x: f32[B, 4]
  h = relu(linear(x, width))
  skip = linear(x, width)
  h = relu(linear(h, width))
  h = h + relu(linear(h, width)) * -0.5 + skip
  h = relu(linear(h, width))
  h = h + relu(linear(h, width)) * -0.5 + skip
  out linear(h, 3)
}

model Boxed(net: str = "deep") {
  in lower: f32[B, 4]
  in upper: f32[B, 4]
  f = Deep() if net == "deep" else Indexed() if net == "indexed" else Residual() if net == "residual" else Stacked() if net == "stacked" else Shared() if net == "shared" else Nested() if net == "nested" else ResidualWrittenOut()
  low, high = interval_bounds(f, lower, upper)
  out low
  out high
}
"""


@pytest.fixture(scope="module")
def repeats() -> paperspec.Spec:
    return paperspec.loads(REPEATS, "<repeats>")


def bounds_and_samples(model, generator: torch.Generator) -> tuple:
    """The bounds over random boxes, and f at random points of each box and at its 16 vertices."""
    lower, upper = random_box(3, 4, generator)
    low, high = model(lower, upper)
    inside = lower + torch.rand(1000, *lower.shape, generator=generator) * (upper - lower)
    points = torch.cat([inside, vertices(lower, upper)])
    with torch.no_grad():
        outputs = model.f(points.reshape(-1, 4)).reshape(len(points), *low.shape)
    return low, high, outputs


@pytest.mark.parametrize("net", ["deep", "indexed", "residual", "stacked", "shared", "nested"])
def test_repeat_bounds_contain_sampled_points_and_vertices(repeats, net):
    torch.manual_seed(0)
    model = repeats.build("Boxed", net=net).eval()
    low, high, outputs = bounds_and_samples(model, torch.Generator().manual_seed(5))
    assert (outputs >= low - 1e-5).all() and (outputs <= high + 1e-5).all()
    assert (outputs.amin(0) - low).max() < 10 and (high - outputs.amax(0)).max() < 10


@pytest.mark.parametrize("net, depth", [("deep", 3), ("deep", 1), ("indexed", 3)])
def test_repeat_relu_network_matches_a_numpy_ibp(repeats, net, depth):
    torch.manual_seed(0)
    model = repeats.build("Boxed", net=net).eval() if net == "indexed" else _deep_box(depth)
    lower, upper = random_box(7, 4, torch.Generator().manual_seed(6))
    low, high = model(lower, upper)
    f = model.f
    in_order = [f.linear, *(f.depth if net == "deep" else f.repeat), f.linear_1]
    assert len(in_order) == depth + 2
    layers = [(layer.weight.detach().double().numpy(), layer.bias.detach().double().numpy()) for layer in in_order]
    expected_low, expected_high = numpy_ibp(layers, lower.double().numpy(), upper.double().numpy())
    np.testing.assert_allclose(low.detach().numpy(), expected_low, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(high.detach().numpy(), expected_high, rtol=1e-5, atol=1e-5)


def _deep_box(depth: int) -> torch.nn.Module:
    spec = paperspec.loads(REPEATS.replace("depth: int = 3", f"depth: int = {depth}"), "<repeats>")
    return spec.build("Boxed", net="deep").eval()


def test_repeat_bounds_equal_the_network_written_out(repeats):
    """A body class of two layers, a residual and a value from outside the loop: the same bounds
    as the same layers written one after another, with the same weights."""
    torch.manual_seed(0)
    looped = repeats.build("Boxed", net="residual").eval()
    written = repeats.build("Boxed", net="written").eval()
    looped_state, written_state = looped.state_dict(), written.state_dict()
    assert [v.shape for v in looped_state.values()] == [v.shape for v in written_state.values()]
    written.load_state_dict(dict(zip(written_state, looped_state.values())))
    lower, upper = random_box(5, 4, torch.Generator().manual_seed(7))
    torch.testing.assert_close(looped.f(lower), written.f(lower))
    for looped_end, written_end in zip(looped(lower, upper), written(lower, upper)):
        torch.testing.assert_close(looped_end, written_end)


# Carried values that stay points (the matrix M, used as a weight) and one that turns into an
# interval in the second iteration (c, from the interval g that the first iteration makes), next
# to a repeat with no interval input at all (P, computed as in forward).
MIXED_REPEATS = """
block Mixed() {
  in x: f32[B, 4]
  param W: [4, 4] init = normal(0.5)
  P = W
  repeat 2 { P = P @ W }
  h = x @ P
  M = W
  c = W[0]
  g = W[1]
  repeat 2 {
    c = c + g
    g = mean(tanh(h), dim = 0)
    h = relu(h @ M)
    M = M * 0.5
  }
  out h + c
}

model Boxed() {
  in lower: f32[B, 4]
  in upper: f32[B, 4]
  f = Mixed()
  low, high = interval_bounds(f, lower, upper)
  out low
  out high
}
"""


def test_repeat_carries_points_and_intervals_apart():
    torch.manual_seed(0)
    model = paperspec.loads(MIXED_REPEATS, "<mixed>").build("Boxed").eval()
    low, high, outputs = bounds_and_samples(model, torch.Generator().manual_seed(8))
    assert (outputs >= low - 1e-5).all() and (outputs <= high + 1e-5).all()
    x = torch.randn(3, 4)
    torch.testing.assert_close(model(x, x), (model.f(x), model.f(x)))


def test_point_repeat_is_computed_as_in_forward():
    """x @ (W W W) is one affine map: its bounds are the exact ones of a single layer."""
    text = MIXED_REPEATS.replace("out h + c", "out x @ P")
    torch.manual_seed(0)
    model = paperspec.loads(text, "<point>").build("Boxed").eval()
    lower, upper = random_box(5, 4, torch.Generator().manual_seed(9))
    low, high = model(lower, upper)
    weight = model.f.W.detach().double()
    product = (weight @ weight @ weight).numpy()
    expected = numpy_ibp([(product.T, np.zeros(4))], lower.double().numpy(), upper.double().numpy())
    np.testing.assert_allclose(low.detach().numpy(), expected[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(high.detach().numpy(), expected[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "body, message, culprit",
    [
        ("h = softmax(linear(h, 4))", "no interval rule for `softmax`", "softmax"),
        ("h = relu(linear(h, 4)); h = (h @ transpose(h)) @ h", "no interval rule for `matmul` of two intervals", "h @ t"),
        ("h = relu(linear(h, 4)); h = dropout(h)", "no interval rule for `dropout`", "dropout"),
    ],
)
def test_op_without_rule_in_a_repeat_body_is_an_error_at_its_line(body, message, culprit):
    text = f"""block Net() {{
  in x: f32[B, 4]
  h = linear(x, 4)
  repeat 2 {{ {body} }}
  out h
}}
model M() {{
  in x: f32[B, 4]
  low, high = interval_bounds(Net(), x - 0.1, x + 0.1)
  out low
}}
"""
    with pytest.raises(paperspec.SpecError) as raised:
        paperspec.loads(text, "<unsupported>").graph("M")
    error = raised.value
    assert message in error.message
    line = text.splitlines()[3]
    assert (error.span.line, error.span.column) == (4, line.index(culprit) + 1)
    assert "in `Net`, bounded by `interval_bounds`" in error.format()
