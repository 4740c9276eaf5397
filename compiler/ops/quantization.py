"""Fake-quantised layers for quantisation-aware training: quant_linear, whose bit width is a buffer."""

from __future__ import annotations

from onnx import TensorProto

from paperspec.compiler.ops.base import ShapeError, register
from paperspec.compiler.ops.nn import linear_parameters
from paperspec.compiler.ops.shapes import last_dim

MAX_BITS = 8  # ONNX QuantizeLinear's int8 holds every symmetric grid up to 8 bits
SCALE_FLOOR = 1e-8  # a row of zero weights gets this scale instead of 0, so w / scale stays finite

_FAKE_QUANTIZE_HELPER = f'''
def fake_quantize(weight, bits):
    """Symmetric per-output-channel uniform quantisation of a [out, in] weight to `bits` bits
    (0: left in full precision): the levels -q..q times scale = max|row| / q, q = 2^(bits-1) - 1.
    The gradient passes straight through (max scaling never clips, so no clipped surrogate)."""
    levels = torch.clamp(2.0 ** (bits - 1) - 1, min=1.0)
    scale = weight.detach().abs().amax(dim=1, keepdim=True).clamp(min={SCALE_FLOOR}) / levels
    quantised = torch.round(weight / scale) * scale
    return torch.where(bits > 0, weight + (quantised - weight).detach(), weight)
'''

_QUANT_LINEAR_HELPER = '''
class QuantLinear(nn.Linear):
    """nn.Linear whose weight is fake-quantised in the forward pass. The bit width is a buffer, not
    a parameter: it is saved with the weights, and a procedure may set it before training."""

    def __init__(self, in_features: int, out_features: int, bias: bool, bits: int):
        super().__init__(in_features, out_features, bias=bias)
        self.register_buffer("bits", torch.tensor(float(bits)))

    def forward(self, x):
        return F.linear(x, fake_quantize(self.weight, self.bits), self.bias)
'''


def _quant_linear(call):
    x = call["x"]
    if x.dtype != "f32":
        raise ShapeError(f"`quant_linear` needs an f32 input, got {x}", "x", "its bit width and scales are f32")
    if call["features"] <= 0:
        raise ShapeError(f"`features` must be positive, got {call['features']}", "features")
    if not 0 <= call["bits"] <= MAX_BITS or call["bits"] == 1:
        raise ShapeError(
            f"`bits` must be 0 (full precision) or 2 to {MAX_BITS}, got {call['bits']}", "bits",
            "a symmetric grid needs 2 bits for -1, 0, +1; wider ones do not fit ONNX's int8 QuantizeLinear",
        )
    call.derived["in_features"] = last_dim(x, "quant_linear")
    return x.with_shape(x.shape[:-1] + (call["features"],))


def _fake_quantize_onnx(c, weight: str, bits: str) -> str:
    """QuantizeLinear -> DequantizeLinear per output channel (axis 0) into int8; the b-bit range
    holds because scale = max|row| / q puts every w / scale in [-q, q]. Bits 0 keep the weight."""
    one = c.const(1.0, "f32")
    levels = c.node("Max", [c.node("Sub", [c.node("Pow", [c.const(2.0, "f32"), c.node("Sub", [bits, one])]), one]), one])
    row_max = c.node("ReduceMax", [c.node("Abs", [weight]), c.const([1], "i64")], keepdims=0)
    scale = c.node("Div", [c.node("Max", [row_max, c.const(SCALE_FLOOR, "f32")]), levels])
    zero_point = c.node("Cast", [c.const([0] * c.values["features"], "i32")], to=TensorProto.INT8)
    quantised = c.node("QuantizeLinear", [weight, scale, zero_point], axis=0)
    dequantised = c.node("DequantizeLinear", [quantised, scale, zero_point], axis=0)
    return c.node("Where", [c.node("Greater", [bits, c.const(0.0, "f32")]), dequantised, weight])


def _quant_linear_onnx(c):
    weight = _fake_quantize_onnx(c, c.weight("weight"), c.weight("bits"))
    y = c.node("MatMul", [c["x"], c.node("Transpose", [weight], perm=[1, 0])])
    return c.node("Add", [y, c.weight("bias")]) if c.values["bias"] else y


register(
    "quant_linear",
    "x: tensor, features: int, bits: int = 8, bias: bool = true",
    _quant_linear,
    lambda c: f"{c.module}({c['x']})",
    "linear layer whose weight is fake-quantised (symmetric, per output channel, straight-through "
    "gradient) to `bits` bits, 0 meaning full precision; the width is a buffer (`bits`) that "
    "`mixed_precision` sets per layer; exports to QuantizeLinear/DequantizeLinear",
    category="layer",
    torch_module=lambda c: f"QuantLinear({c.derived['in_features']}, {c['features']}, bias={c['bias']}, bits={c['bits']})",
    torch_helpers=(("fake_quantize", _FAKE_QUANTIZE_HELPER), ("QuantLinear", _QUANT_LINEAR_HELPER)),
    parameters=linear_parameters,  # nn.Linear's, so a linear layer's weights load into it
    buffers=lambda c: {"bits": ()},
    onnx=_quant_linear_onnx,
)
