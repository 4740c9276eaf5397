"""sign, round and straight_through: forward values, surrogate gradients against analytic ones, ONNX."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx.reference import ReferenceEvaluator
from spec_helpers import model_spec as shared_model_spec
from spec_helpers import spec_error

import paperspec
from paperspec.compiler.backends.onnx import export_spec
from paperspec.runtime.onnx import verify

# Away from the kinks at +-0.1 and at the clips (0.6, 1.0, 1.6), where the slope has no single value.
POINTS = torch.tensor([-2.5, -1.5, -0.8, -0.5, -0.3, -0.05, 0.0, 0.02, 0.25, 0.5, 0.7, 0.95, 1.5, 2.5], dtype=torch.float64)


def model_spec(body: str, name: str = "<gradients>") -> paperspec.Spec:
    return shared_model_spec(body, name)


def forward_and_gradient(body: str, x: torch.Tensor) -> tuple:
    """y = M(x) and d(sum(w * y))/dx for a fixed random w, so each element's slope shows."""
    module = model_spec(f"in x: f64[N]; out y = {body}").build()
    x = x.clone().requires_grad_(True)
    y = module(x)
    w = torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=x.dtype)
    (w * y).sum().backward()
    return y.detach(), x.grad / w


QUANTISED = {
    "sign": torch.tensor([-1, -1, -1, -1, -1, -1, 0, 1, 1, 1, 1, 1, 1, 1], dtype=torch.float64),
    "binary": torch.tensor([-1, -1, -1, -1, -1, -1, 1, 1, 1, 1, 1, 1, 1, 1], dtype=torch.float64),
    # halves go to the even neighbour, as in torch.round and ONNX Round
    "round": torch.tensor([-2, -2, -1, -0, -0, -0, 0, 0, 0, 0, 1, 1, 2, 2], dtype=torch.float64),
}


def reste_slope(x: torch.Tensor, power: float, clip: float, interval: float = 0.1) -> torch.Tensor:
    """The derivative of sign(x)|x|^(1/power), written out: (1/power)|x|^(1/power - 1) up to clip,
    the secant slope interval^(1/power) / interval near 0, and 0 beyond clip."""
    magnitude = x.abs()
    curve = magnitude.clamp(min=interval) ** (1 / power - 1) / power
    slope = torch.where(magnitude <= interval, torch.full_like(x, interval ** (1 / power - 1)), curve)
    return torch.where(magnitude > clip, torch.zeros_like(x), slope)


SURROGATES = [
    ("identity", {}, lambda x: torch.ones_like(x)),
    ("clipped", {}, lambda x: (x.abs() <= 1.0).double()),
    ("clipped", {"clip": 0.6}, lambda x: (x.abs() <= 0.6).double()),
    ("power", {"power": 1.0}, lambda x: (x.abs() <= 1.0).double()),  # power 1 is the clipped estimator
    ("power", {"power": 2.0}, lambda x: reste_slope(x, 2.0, 1.0)),
    ("power", {"power": 3.0, "clip": 1.6}, lambda x: reste_slope(x, 3.0, 1.6)),
]


# ReSTE's power function is a surrogate of sign only
CASES = [(forward, *surrogate) for forward in QUANTISED for surrogate in SURROGATES if (forward, surrogate[0]) != ("round", "power")]


@pytest.mark.parametrize("forward, backward, options, slope", CASES, ids=[f"{f}-{b}-{'-'.join(map(str, o.values())) or 'default'}" for f, b, o, _ in CASES])
def test_straight_through_gives_the_quantiser_and_the_surrogate_slope(forward, backward, options, slope):
    settings = "".join(f", {name} = {value}" for name, value in options.items())
    y, gradient = forward_and_gradient(f'straight_through(x, forward = "{forward}", backward = "{backward}"{settings})', POINTS)
    assert torch.equal(y, QUANTISED[forward])  # exactly, not up to rounding
    torch.testing.assert_close(gradient, slope(POINTS), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("op", ["sign", "round"])
def test_plain_quantisers_have_zero_gradient(op):
    y, gradient = forward_and_gradient(f"{op}(x)", POINTS)
    assert torch.equal(y, QUANTISED[op])
    assert torch.equal(gradient, torch.zeros_like(POINTS))


BINARY_NET = """
model BinaryNet(width: int = 16) {
  in x: f32[B, 4]
  param w: [4, width] init = normal(0.5)
  h = x @ straight_through(w, forward = "binary")                # binary weights, plain STE (BinaryConnect)
  h = straight_through(batchnorm(h), backward = "clipped")       # binary activations, hardtanh STE (BNN)
  h = straight_through(linear(h, width), backward = "power", power = 2.0, clip = 1.5)   # ReSTE
  out logits = linear(h, 2)
}
"""


def test_a_binarised_network_builds_and_backpropagates_through_every_estimator():
    torch.manual_seed(0)
    module = paperspec.loads(BINARY_NET, "<binary>").build()
    x = torch.randn(8, 4)
    torch.nn.functional.cross_entropy(module(x), torch.randint(0, 2, (8,))).backward()
    for name, parameter in module.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, f"no gradient reached {name}"


def test_without_an_estimator_no_gradient_reaches_below_a_quantiser():
    module = paperspec.loads(BINARY_NET.replace('straight_through(w, forward = "binary")', "sign(w)"), "<sign>").build()
    module(torch.randn(8, 4)).square().sum().backward()
    assert torch.equal(module.w.grad, torch.zeros_like(module.w))


def test_estimators_compile_as_one_graph_with_the_same_gradients():
    torch._dynamo.reset()
    torch.manual_seed(0)
    module = paperspec.loads(BINARY_NET, "<binary>").build().eval()
    x = torch.randn(8, 4)
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    gradients = []
    for run in (module, compiled):
        module.zero_grad()
        run(x).square().sum().backward()
        gradients.append([parameter.grad.clone() for parameter in module.parameters()])
    for eager, traced in zip(*gradients, strict=True):
        torch.testing.assert_close(traced, eager)


def test_generated_code_reads_like_pytorch():
    source = paperspec.loads(BINARY_NET, "<binary>").source()
    assert "h = straight_through(self.linear(h), forward='sign', backward='power', power=2.0, clip=1.5)" in source
    assert "autograd.Function" not in source  # a detach trick, which torch.compile traces


# ---- ONNX: the forward quantiser ----


def test_onnx_runs_the_forward_quantisers():
    spec = model_spec(
        "in x: f32[B, T]; "
        'out a = straight_through(x, forward = "binary", backward = "clipped"); '
        'out b = straight_through(x * 2, forward = "round", backward = "identity"); '
        'out c = straight_through(x, backward = "power", power = 3.0); '
        "out d = sign(x) + round(x * 3)"
    )
    module = spec.build().eval()
    proto = export_spec(spec, state=module.state_dict())
    assert {node.op_type for node in proto.graph.node} >= {"Sign", "Round", "Where"}
    report = verify(spec, sizes={"B": 3, "T": 5}, module=module, onnx_model=proto, tolerance=0.0)
    assert len(report.checks) == 8 and report.max_abs() == 0.0
    x = np.array([[-1.5, -0.5, 0.0, 0.5, 2.5]], dtype=np.float32)
    got = ReferenceEvaluator(proto).run(None, {"x": x})
    expected = module(torch.from_numpy(x))
    for value, want in zip(got, expected, strict=True):
        np.testing.assert_array_equal(value, want.numpy())


# ---- errors ----

SHAPE_ERRORS = [
    ("in x: i64[N]; out sign(x)", "`sign` needs a floating-point tensor"),
    ("in x: i64[N]; out straight_through(x)", "`straight_through` needs a floating-point tensor"),
    ('in x: f32[N]; out straight_through(x, forward = "floor")', "`forward` must be one of sign, binary, round"),
    ('in x: f32[N]; out straight_through(x, backward = "tanh")', "`backward` must be one of identity, clipped, power"),
    ('in x: f32[N]; out straight_through(x, backward = "clipped", clip = 0.0)', "`clip` must be positive"),
    ('in x: f32[N]; out straight_through(x, forward = "round", backward = "power")', "a surrogate of sign, not of round"),
    ('in x: f32[N]; out straight_through(x, backward = "power", power = 0.5)', "`power` must be at least 1"),
    ('in x: f32[N]; out straight_through(x, backward = "power", clip = 0.1)', "needs clip > 0.1"),
]


@pytest.mark.parametrize("body, message", SHAPE_ERRORS)
def test_shape_rule_errors(body, message):
    error = spec_error(body)
    assert message in error.message
    assert error.span is not None and error.span.line == 3
