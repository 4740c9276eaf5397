"""quant_linear: fake-quantised forward against a hand-written numpy quantiser, the straight-through
gradient, its bit-width buffer, ONNX QuantizeLinear/DequantizeLinear export, and its errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from spec_helpers import model_spec, spec_error

from paperspec.compiler.backends.onnx import export_spec
from paperspec.runtime.onnx import verify

LAYER = "in x: f32[B, 6]; out y = quant_linear(x, 4, bits = bits)"


def numpy_fake_quantize(weight: np.ndarray, bits: int) -> np.ndarray:
    """Each row on the grid -q..q times max|row| / q, q = 2^(bits-1) - 1; bits 0 leave it as is."""
    if bits == 0:
        return weight
    levels = 2 ** (bits - 1) - 1
    scale = np.abs(weight).max(axis=1, keepdims=True) / levels
    return np.round(weight / scale) * scale  # numpy rounds halves to even, as torch and ONNX do


def layer(bits: int, set_bits: int | None = None) -> torch.nn.Module:
    module = model_spec(LAYER, "<quantization>", params=f"bits: int = {bits}").build()
    if set_bits is not None:
        module.y.bits.fill_(set_bits)
    return module


@pytest.mark.parametrize("bits", [0, 2, 3, 4, 8])
def test_forward_uses_the_quantised_weight(bits: int) -> None:
    module = layer(bits)
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(1))
    weight = module.y.weight.detach().numpy()
    expected = x.numpy() @ numpy_fake_quantize(weight, bits).T + module.y.bias.detach().numpy()
    np.testing.assert_allclose(module(x).detach().numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bits", [2, 3])
def test_a_row_takes_at_most_two_to_the_bits_minus_one_levels(bits: int) -> None:
    module = layer(bits)
    identity = torch.eye(6)
    quantised = (module(identity) - module.y.bias).detach().T  # row i of the layer's weight
    for row in quantised:
        assert len(torch.unique(row)) <= 2**bits - 1


def test_the_gradient_passes_straight_through() -> None:
    """d loss / d W is the gradient of a plain linear layer at the quantised weight (the STE)."""
    module = layer(3)
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(5, 6, generator=generator, requires_grad=True)
    direction = torch.randn(5, 4, generator=generator)
    (module(x) * direction).sum().backward()
    quantised = torch.tensor(numpy_fake_quantize(module.y.weight.detach().numpy(), 3))
    torch.testing.assert_close(module.y.weight.grad, direction.T @ x.detach())
    torch.testing.assert_close(x.grad, direction @ quantised)


def test_the_width_is_a_buffer_saved_with_the_weights() -> None:
    module = layer(4)
    state = module.state_dict()
    assert float(state["y.bits"]) == 4.0
    assert "y.bits" not in dict(module.named_parameters())


@pytest.mark.parametrize("bits, set_bits", [(3, None), (8, 2), (4, 0), (2, 5)])
def test_onnx_matches_pytorch_through_quantize_dequantize(bits: int, set_bits: int | None) -> None:
    spec = model_spec(LAYER, "<quantization>", params=f"bits: int = {bits}")
    module = layer(bits, set_bits)
    proto = export_spec(spec, state=module.state_dict())
    kinds = {node.op_type for node in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= kinds
    verify(spec, sizes={"B": 3}, module=module, onnx_model=proto, tolerance=1e-5)


@pytest.mark.parametrize(
    "body, message",
    [
        ("in x: f32[B, 6]; out quant_linear(x, 4, bits = 1)", "`bits` must be 0 (full precision) or 2 to 8, got 1"),
        ("in x: f32[B, 6]; out quant_linear(x, 4, bits = 9)", "`bits` must be 0 (full precision) or 2 to 8, got 9"),
        ("in x: f64[B, 6]; out quant_linear(x, 4)", "`quant_linear` needs an f32 input"),
        ("in x: f32[B, 6]; out quant_linear(x, 0)", "`features` must be positive, got 0"),
    ],
)
def test_bad_arguments_are_spec_errors(body: str, message: str) -> None:
    error = spec_error(body, "<quantization>")
    assert message in error.message
    assert error.span.line == 3
