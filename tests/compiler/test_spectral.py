"""rfft, irfft and the FNO Fourier layers: against hand-written DFT matrices, and ONNX against PyTorch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from onnx.reference import ReferenceEvaluator
from spec_helpers import model_spec as shared_model_spec
from spec_helpers import spec_error

import paperspec
from paperspec.compiler.backends.onnx import export_spec
from paperspec.runtime.inputs import example_inputs
from paperspec.runtime.onnx import size_sets, verify

SPEC = """
model Fourier1d(channels: int = 3, out: int = 4, modes: int = 5) {
  in x: DTYPE[B, channels, L]
  out y = spectral_conv1d(x, out, modes)
}
model Fourier2d(modes1: int = 2, modes2: int = 3) {
  in x: DTYPE[B, 3, H, W]
  out y = spectral_conv2d(x, 4, modes1, modes2)
}
model RoundTrip(norm: str = "backward") {
  in x: DTYPE[B, C, L]
  s = rfft(x, norm = norm)
  out s
  out back = irfft(s, L, norm = norm)
  out across = irfft(rfft(x, dim = 1, norm = norm), C, dim = 1, norm = norm)
}
model Resize() {
  in z: DTYPE[B, K, 2]
  out shorter = irfft(z, 5)
  out longer = irfft(z, 2 * K + 3)
}
"""


SPECS = {dtype: paperspec.loads(SPEC.replace("DTYPE", dtype), f"<spectral {dtype}>") for dtype in ("f32", "f64")}
TORCH_DTYPES = {"f32": torch.float32, "f64": torch.float64}


@pytest.fixture(scope="module")
def spec() -> paperspec.Spec:
    return SPECS["f64"]


# ---- an independent reference: DFT matrices written out ----


def dft_matrix(n: int) -> np.ndarray:
    """F[k, j] = exp(-2 pi i k j / n)."""
    k, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return np.exp(-2j * math.pi * k * j / n)


def reference_rfft(x: np.ndarray) -> np.ndarray:
    """The non-negative frequencies of the DFT of x along its last dim."""
    n = x.shape[-1]
    return x @ dft_matrix(n)[: n // 2 + 1].T


def reference_irfft(spectrum: np.ndarray, n: int) -> np.ndarray:
    """The real signal of length n whose non-negative frequencies are `spectrum` (cut or padded to
    n // 2 + 1): every frequency but 0 and n / 2 stands for itself and its mirror image."""
    half = n // 2 + 1
    spectrum = spectrum[..., :half]
    spectrum = np.concatenate([spectrum, np.zeros(spectrum.shape[:-1] + (half - spectrum.shape[-1],))], axis=-1)
    weights = np.full(half, 2.0)
    weights[0] = 1.0
    if n % 2 == 0:
        weights[-1] = 1.0
    waves = np.conj(dft_matrix(n)[:half])  # exp(+2 pi i k j / n)
    return ((spectrum * weights) @ waves).real / n


def as_complex(weight: torch.Tensor) -> np.ndarray:
    array = weight.detach().numpy()
    return array[..., 0] + 1j * array[..., 1]


def reference_spectral_conv1d(x: np.ndarray, weight: np.ndarray, modes: int) -> np.ndarray:
    low = reference_rfft(x)[..., :modes]
    return reference_irfft(np.einsum("bik,iok->bok", low, weight), x.shape[-1])


def reference_spectral_conv2d(x: np.ndarray, weight1: np.ndarray, weight2: np.ndarray, modes1: int, modes2: int) -> np.ndarray:
    """Li et al.'s layer: the corner blocks of the 2-D spectrum (lowest and highest rows, lowest
    columns) times their weights; inverse along H, then the real inverse along W."""
    height, width = x.shape[-2:]
    spectrum = np.einsum("hy,biyw->bihw", dft_matrix(height), reference_rfft(x))
    mixed = np.zeros((x.shape[0], weight1.shape[1], height, width // 2 + 1), dtype=complex)
    mixed[:, :, :modes1, :modes2] = np.einsum("bihw,iohw->bohw", spectrum[:, :, :modes1, :modes2], weight1)
    mixed[:, :, -modes1:, :modes2] = np.einsum("bihw,iohw->bohw", spectrum[:, :, -modes1:, :modes2], weight2)
    rows = np.einsum("hy,boyw->bohw", np.conj(dft_matrix(height)), mixed) / height
    return reference_irfft(rows, width)


def randomize(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in module.parameters():
            tensor.copy_(torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype))
    return module.eval()


# ---- PyTorch against the reference ----


@pytest.mark.parametrize("length", [10, 11, 8])
def test_spectral_conv1d_matches_an_explicit_dft(spec, length):
    module = randomize(spec.build("Fourier1d").double())
    x = torch.randn(2, 3, length, dtype=torch.float64)
    expected = reference_spectral_conv1d(x.numpy(), as_complex(module.y.weight), 5)
    np.testing.assert_allclose(module(x).detach().numpy(), expected, atol=1e-10)


@pytest.mark.parametrize("height, width", [(6, 7), (5, 4), (4, 10)])
def test_spectral_conv2d_matches_an_explicit_dft(spec, height, width):
    module = randomize(spec.build("Fourier2d").double())
    x = torch.randn(2, 3, height, width, dtype=torch.float64)
    weights = as_complex(module.y.weight1), as_complex(module.y.weight2)
    expected = reference_spectral_conv2d(x.numpy(), *weights, 2, 3)
    np.testing.assert_allclose(module(x).detach().numpy(), expected, atol=1e-10)


@pytest.mark.parametrize("norm, scale", [("backward", lambda n: 1.0), ("ortho", lambda n: n**-0.5), ("forward", lambda n: 1.0 / n)])
@pytest.mark.parametrize("channels, length", [(4, 9), (5, 12)])
def test_rfft_matches_the_dft_and_irfft_inverts_it(spec, norm, scale, channels, length):
    x = torch.randn(2, channels, length, dtype=torch.float64)
    s, back, across = spec.build("RoundTrip", norm=norm)(x)
    assert s.shape == (2, channels, length // 2 + 1, 2)
    np.testing.assert_allclose(s[..., 0].numpy() + 1j * s[..., 1].numpy(), reference_rfft(x.numpy()) * scale(length), atol=1e-10)
    torch.testing.assert_close(back, x, rtol=0, atol=1e-12)
    torch.testing.assert_close(across, x, rtol=0, atol=1e-12)


def test_irfft_cuts_or_pads_the_spectrum_to_n(spec):
    z = torch.randn(2, 4, 2, dtype=torch.float64)  # imaginary parts at 0 (and n / 2) are dropped, as by irfft
    shorter, longer = spec.build("Resize")(z)
    spectrum = z[..., 0].numpy() + 1j * z[..., 1].numpy()
    np.testing.assert_allclose(shorter.numpy(), reference_irfft(spectrum, 5), atol=1e-12)
    np.testing.assert_allclose(longer.numpy(), reference_irfft(spectrum, 11), atol=1e-12)


def test_parameters_have_predictable_keys_and_shapes(spec):
    one = spec.build("Fourier1d", channels=2, out=6, modes=3)
    assert {key: tuple(value.shape) for key, value in one.state_dict().items()} == {"y.weight": (2, 6, 3, 2)}
    two = spec.build("Fourier2d", modes1=3, modes2=4)
    assert {key: tuple(value.shape) for key, value in two.state_dict().items()} == {"y.weight1": (3, 4, 3, 4, 2), "y.weight2": (3, 4, 3, 4, 2)}
    assert spec.parameter_count("Fourier2d", modes1=3, modes2=4) == 2 * 3 * 4 * 3 * 4 * 2
    # the reference FNO's initialisation: uniform in [0, 1 / (C_in C_out)) for real and imaginary parts
    assert 0 <= two.y.weight1.min().item() and two.y.weight1.max().item() < 1 / 12


def test_fourier_layers_trace_as_one_graph_for_any_grid(spec):
    torch._dynamo.reset()
    module = randomize(spec.build("Fourier2d").double())
    compiled = torch.compile(module, fullgraph=True, dynamic=True, backend="eager")
    for height, width in ((6, 7), (8, 10)):
        x = torch.randn(2, 3, height, width, dtype=torch.float64)
        torch.testing.assert_close(compiled(x), module(x))


# ---- ONNX against PyTorch ----

ONNX_CASES = [
    ("Fourier1d", {}, {"B": 2, "L": 10}),
    ("Fourier2d", {}, {"B": 2, "H": 6, "W": 7}),
    ("RoundTrip", {"norm": "ortho"}, {"B": 2, "C": 4, "L": 9}),
    ("RoundTrip", {"norm": "forward"}, {"B": 2, "C": 5, "L": 8}),
    ("Resize", {}, {"B": 2, "K": 4}),
]


@pytest.mark.parametrize("dtype", ["f32", "f64"])  # f32 uses DFT's inverses, f64 avoids them
@pytest.mark.parametrize("opset", [21, 18])  # 18 and 19 have no one-sided inverse
@pytest.mark.parametrize("model, params, sizes", ONNX_CASES, ids=[f"{m}-{'-'.join(p.values()) or 'default'}" for m, p, _ in ONNX_CASES])
def test_onnx_matches_pytorch_at_two_grid_sizes(model, params, sizes, opset, dtype):
    spec = SPECS[dtype]
    module = randomize(spec.build(model, **params).to(TORCH_DTYPES[dtype]))
    proto = export_spec(spec, model, params, module.state_dict(), opset=opset)
    report = verify(spec, model, params, sizes, module=module, onnx_model=proto)
    assert len({tuple(check.sizes.values()) for check in report.checks}) == 2
    graph = spec.graph(model, **params)
    evaluator = ReferenceEvaluator(proto)
    for run_sizes in size_sets(graph, sizes):
        inputs = example_inputs(graph, run_sizes, seed=1)
        expected = module(*inputs.values())
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = evaluator.run(None, {name: value.numpy() for name, value in inputs.items()})
        for value, want in zip(got, expected, strict=True):
            np.testing.assert_allclose(value, want.detach().numpy(), atol=1e-9 if dtype == "f64" else 1e-5)


def test_onnx_initializers_are_the_complex_weights():
    module = SPECS["f32"].build("Fourier2d")
    proto = export_spec(SPECS["f32"], "Fourier2d", state=module.state_dict())
    assert {tensor.name for tensor in proto.graph.initializer} == {"y.weight1", "y.weight2"}
    assert {node.op_type for node in proto.graph.node} >= {"DFT", "Einsum"}
    assert [d.dim_param for d in proto.graph.output[0].type.tensor_type.shape.dim] == ["B", "", "H", "W"]


# ---- errors ----


def model_spec(body: str) -> paperspec.Spec:
    return shared_model_spec(body, "<spectral>")


# (body, message, hint, the text that the error's span starts at)
MODES_ERRORS = [
    ("in x: f32[B, 2, 8]; out spectral_conv1d(x, 2, 6)", "modes = 6 needs at least 10 points, got 8", "at most 5 modes", "6)"),
    ("in x: f32[B, 2, 8, 8]; out spectral_conv2d(x, 2, 5, 2)", "modes1 = 5 needs at least 10 points, got 8", "at most 4 modes", "5, 2)"),
    ("in x: f32[B, 2, H, 6]; out spectral_conv2d(x, 2, 2, 5)", "modes2 = 5 needs at least 8 points, got 6", "at most 4 modes", "5)"),
]


@pytest.mark.parametrize("body, message, hint, where", MODES_ERRORS)
def test_more_modes_than_a_concrete_grid_allows_is_an_error_at_the_argument(body, message, hint, where):
    with pytest.raises(paperspec.SpecError) as caught:
        model_spec(body).graph()
    error = caught.value
    assert "more modes than the grid allows" in error.message and message in error.message
    assert hint in error.hint
    line = body.split("; ")[1]
    assert (error.span.path, error.span.line, error.span.column) == ("<spectral>", 3, line.index(where) + 1)


@pytest.mark.parametrize(
    "body, small, large, message",
    [
        ("in x: f32[B, 2, L]; out spectral_conv1d(x, 2, 6)", (1, 2, 9), (1, 2, 10), "spectral_conv1d: more modes than the grid allows: modes = 6 along the last dim needs at least 10 points, got 9"),
        ("in x: f32[B, 2, H, W]; out spectral_conv2d(x, 2, 3, 2)", (1, 2, 5, 8), (1, 2, 6, 2), "spectral_conv2d: more modes than the grid allows: modes1 = 3 along dim -2 needs at least 6 points, got 5"),
    ],
)
def test_more_modes_than_a_symbolic_grid_allows_is_a_value_error_naming_the_op(body, small, large, message):
    module = model_spec(body).build()
    with pytest.raises(ValueError, match=message):
        module(torch.randn(*small))
    assert module(torch.randn(*large)).shape == large  # the smallest grid the modes fit


SHAPE_ERRORS = [
    ("in x: i64[B, 8]; out rfft(x)", "`rfft` needs an f32 or f64 tensor"),
    ("in x: f16[B, 8]; out rfft(x)", "`rfft` needs an f32 or f64 tensor"),
    ('in x: f32[B, 8]; out rfft(x, norm = "none")', "`norm` must be one of backward, ortho, forward"),
    ("in x: f32[B, 8]; out rfft(x, dim = 2)", "dim 2 is out of range"),
    ("in x: f32[B, 8, 3]; out irfft(x, 8)", "`irfft` needs a complex tensor: (real, imag) in a trailing dim of 2"),
    ("in x: f32[B, 8, 2]; out irfft(x, 0)", "`n` of irfft must be positive"),
    ("in x: f32[B, C, L]; out spectral_conv1d(x, 2, 3)", "`spectral_conv1d` needs a known channel count"),
    ("in x: f32[B, 2, L]; out spectral_conv1d(x, 2, 0)", "`modes` of spectral_conv1d must be positive"),
    ("in x: f32[B, 2, L, 3]; out spectral_conv1d(x, 2, 3)", "`spectral_conv1d` needs a tensor of rank 3"),
    ("in x: f32[B, 2, H, W]; out spectral_conv2d(x, 0, 2, 2)", "`channels` of spectral_conv2d must be positive"),
]


@pytest.mark.parametrize("body, message", SHAPE_ERRORS)
def test_shape_rule_errors(body, message):
    error = spec_error(body)
    assert message in error.message
    assert error.span is not None and error.span.line == 3
