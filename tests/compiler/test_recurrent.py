"""linear_scan and delta_rule against step-by-step loops (values and gradients), and ONNX against PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from onnx.reference import ReferenceEvaluator
from spec_helpers import model_spec as shared_model_spec

import paperspec
from paperspec.compiler.backends.onnx import export_spec
from paperspec.runtime.inputs import example_inputs
from paperspec.runtime.onnx import size_sets, verify

SPEC = """
model Scan(chunk: int = 32, negative: bool = false) {
  in a: DTYPE[B, H, T, 3]
  in u: DTYPE[B, H, T, 3]
  in h0: DTYPE[B, H, 3]
  out h = linear_scan(a, u, h0, negative = negative, chunk = chunk)
}
model ScanFromZero(negative: bool = false) {
  in x: DTYPE[T, 4]
  out h = linear_scan(sigmoid(x), x * 2.0, negative = negative)
}
model Delta(negative: bool = false, normalize: bool = true) {
  in q: DTYPE[B, H, T, 3]
  in k: DTYPE[B, H, T, 3]
  in v: DTYPE[B, H, T, 5]
  in beta: DTYPE[B, H, T]
  out o = delta_rule(q, k, v, beta, negative = negative, normalize = normalize)
}
"""

SPECS = {dtype: paperspec.loads(SPEC.replace("DTYPE", dtype), f"<recurrent {dtype}>") for dtype in ("f32", "f64")}
LENGTHS = [1, 4, 5, 16, 17, 37, 70]  # with chunk = 4: one chunk, exactly one, a partial one, two levels of chunks, ...


# ---- independent references: one step at a time, in float64 ----


def reference_scan(a: torch.Tensor, u: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    states = []
    for t in range(a.shape[-2]):
        h = a[..., t, :] * h + u[..., t, :]
        states.append(h)
    return torch.stack(states, -2)


def reference_delta_rule(q, k, v, beta) -> torch.Tensor:
    """S_t = S_(t-1) (I - beta_t k_t k_t^T) + beta_t v_t k_t^T as written in the paper, o_t = S_t q_t."""
    identity = torch.eye(k.shape[-1], dtype=k.dtype)
    state = torch.zeros(v.shape[:-2] + (v.shape[-1], k.shape[-1]), dtype=v.dtype)
    outs = []
    for t in range(q.shape[-2]):
        k_t, b_t = k[..., t, :, None], beta[..., t, None, None]
        state = state @ (identity - b_t * k_t @ k_t.transpose(-1, -2)) + b_t * v[..., t, :, None] @ k_t.transpose(-1, -2)
        outs.append((state @ q[..., t, :, None])[..., 0])
    return torch.stack(outs, -2)


def gates(shape: tuple, generator: torch.Generator, low: float = -1.0) -> torch.Tensor:
    """Uniform gates in [low, 1] with whole steps of exact zeros and of the extremes."""
    a = torch.rand(shape, generator=generator, dtype=torch.float64) * (1 - low) + low
    for step, value in ((2, 0.0), (3, low), (6, 1.0)):
        if step < shape[-2]:
            a[..., step, :] = value
    return a


def leaves(*tensors: torch.Tensor) -> list:
    return [t.detach().clone().requires_grad_() for t in tensors]


def assert_same_values_and_gradients(function, reference, inputs: list, atol: float = 1e-10) -> None:
    """Same outputs, and the same gradients of a random projection of them with respect to every input."""
    ours, theirs = leaves(*inputs), leaves(*inputs)
    got, want = function(*ours), reference(*theirs)
    torch.testing.assert_close(got, want, rtol=0, atol=atol)
    weights = torch.randn(want.shape, generator=torch.Generator().manual_seed(9), dtype=want.dtype)
    (got * weights).sum().backward()
    (want * weights).sum().backward()
    for name, mine, expected in zip("abcdefgh", ours, theirs, strict=False):
        torch.testing.assert_close(mine.grad, expected.grad, rtol=0, atol=atol, msg=f"gradient of input {name}")


# ---- linear_scan in PyTorch ----


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("chunk", [4, 32])
def test_linear_scan_matches_the_loop_in_values_and_gradients(length, chunk):
    generator = torch.Generator().manual_seed(length)
    shape = (2, 3, length, 3)
    a, u, h0 = gates(shape, generator), torch.randn(shape, generator=generator, dtype=torch.float64), torch.randn(2, 3, 3, dtype=torch.float64)
    module = SPECS["f64"].build("Scan", chunk=chunk)
    assert_same_values_and_gradients(module, reference_scan, [a, u, h0])


@pytest.mark.parametrize("length", [5, 37])
def test_negative_maps_gates_from_0_1_to_minus_1_1(length):
    generator = torch.Generator().manual_seed(length)
    shape = (2, 3, length, 3)
    a = gates(shape, generator, low=0.0)
    a[..., 4, :] = 0.5  # a gate of exactly zero after the map
    u, h0 = torch.randn(shape, generator=generator, dtype=torch.float64), torch.randn(2, 3, 3, dtype=torch.float64)
    module = SPECS["f64"].build("Scan", chunk=4, negative=True)
    assert_same_values_and_gradients(module, lambda a, u, h: reference_scan(2 * a - 1, u, h), [a, u, h0])


def test_linear_scan_starts_from_zeros_without_h0():
    x = torch.randn(37, 4, dtype=torch.float64)
    module = SPECS["f64"].build("ScanFromZero", negative=True)
    reference = reference_scan(2 * torch.sigmoid(x) - 1, 2 * x, torch.zeros(4, dtype=torch.float64))
    torch.testing.assert_close(module(x), reference, rtol=0, atol=1e-12)


def test_linear_scan_is_exact_where_the_gate_products_underflow():
    # |a| = 1e-3 over 1000 steps: products of gates reach 1e-3000, far below float64's range
    generator = torch.Generator().manual_seed(0)
    shape = (1, 1, 1000, 3)
    a = torch.full(shape, -1e-3, dtype=torch.float64)
    u, h0 = torch.randn(shape, generator=generator, dtype=torch.float64), torch.randn(1, 1, 3, dtype=torch.float64)
    assert_same_values_and_gradients(SPECS["f64"].build("Scan"), reference_scan, [a, u, h0], atol=1e-12)


def test_linear_scan_has_second_derivatives():
    generator = torch.Generator().manual_seed(1)
    shape = (1, 2, 11, 3)
    inputs = leaves(gates(shape, generator), torch.randn(shape, generator=generator, dtype=torch.float64), torch.randn(1, 2, 3, dtype=torch.float64))
    assert torch.autograd.gradgradcheck(SPECS["f64"].build("Scan", chunk=2), inputs)


def test_linear_scan_compiles_as_one_graph():
    torch._dynamo.reset()
    module = SPECS["f32"].build("Scan", chunk=4)
    compiled = torch.compile(module, fullgraph=True, backend="eager")
    inputs = [torch.randn(2, 3, 10, 3), torch.randn(2, 3, 10, 3), torch.randn(2, 3, 3)]
    torch.testing.assert_close(compiled(*inputs), module(*inputs))


# ---- delta_rule in PyTorch ----


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


@pytest.mark.parametrize("length", [1, 6, 23])
@pytest.mark.parametrize("negative, normalize", [(False, True), (True, True), (False, False)])
def test_delta_rule_matches_the_loop_in_values_and_gradients(length, negative, normalize):
    generator = torch.Generator().manual_seed(length)
    q, k = (torch.randn(2, 3, length, 3, generator=generator, dtype=torch.float64) for _ in range(2))
    v = torch.randn(2, 3, length, 5, generator=generator, dtype=torch.float64)
    beta = torch.rand(2, 3, length, generator=generator, dtype=torch.float64)
    beta[..., 0] = 1.0  # the largest strength: with negative = true, a reflection
    if not normalize:  # the paper's update needs |k| <= 1 to stay bounded without normalising
        k = 0.5 * unit(k)

    def reference(q, k, v, beta):
        if normalize:
            q, k = unit(q), unit(k)
        return reference_delta_rule(q, k, v, 2 * beta if negative else beta)

    module = SPECS["f64"].build("Delta", negative=negative, normalize=normalize)
    assert_same_values_and_gradients(module, reference, [q, k, v, beta])


def test_delta_rule_with_doubled_strength_reflects_the_state():
    # one key and a strength of 2 on every step: the state is reflected through the plane normal to k,
    # so its read-out along k alternates in sign: the mechanism behind parity
    k = torch.tensor([0.6, 0.8, 0.0], dtype=torch.float64).expand(1, 1, 6, 3)
    v = torch.zeros(1, 1, 6, 5, dtype=torch.float64)
    v[..., 0, 0] = 1.0
    beta = torch.ones(1, 1, 6, dtype=torch.float64)
    readout = SPECS["f64"].build("Delta", negative=True)(k, k, v, beta)[0, 0, :, 0]
    torch.testing.assert_close(readout, torch.tensor([2.0, -2.0, 2.0, -2.0, 2.0, -2.0], dtype=torch.float64))


# ---- ONNX against PyTorch ----

ONNX_CASES = [
    ("Scan", {"chunk": 4}, {"B": 2, "H": 2, "T": 7}),
    ("Scan", {"negative": True}, {"B": 1, "H": 3, "T": 5}),
    ("ScanFromZero", {"negative": True}, {"T": 9}),
    ("Delta", {}, {"B": 2, "H": 2, "T": 6}),
    ("Delta", {"negative": True, "normalize": False}, {"B": 1, "H": 2, "T": 4}),
]


@pytest.mark.parametrize("dtype", ["f32", "f64"])
@pytest.mark.parametrize("model, params, sizes", ONNX_CASES, ids=[f"{m}-{'-'.join(map(str, p.values())) or 'default'}" for m, p, _ in ONNX_CASES])
def test_onnx_matches_pytorch_at_two_lengths(model, params, sizes, dtype):
    spec = SPECS[dtype]
    module = spec.build(model, **params)
    proto = export_spec(spec, model, params, module.state_dict())
    assert "Scan" in {node.op_type for node in proto.graph.node}
    report = verify(spec, model, params, sizes, module=module, onnx_model=proto)
    assert len({check.sizes["T"] for check in report.checks}) == 2


@pytest.mark.parametrize("model, params", [("Scan", {"negative": True}), ("Delta", {"negative": True})])
def test_onnx_reference_evaluator_agrees(model, params):
    spec = SPECS["f64"]
    module = spec.build(model, **params)
    proto = export_spec(spec, model, params, module.state_dict())
    graph = spec.graph(model, **params)
    for sizes in size_sets(graph, {"B": 2, "H": 1, "T": 6}):
        inputs = example_inputs(graph, sizes, seed=2)
        (got,) = ReferenceEvaluator(proto).run(None, {name: value.numpy() for name, value in inputs.items()})
        np.testing.assert_allclose(got, module(*inputs.values()).detach().numpy(), atol=1e-12)


@pytest.mark.parametrize("model", ["DiagonalLRNN", "DeltaNet"])
def test_the_parity_models_export_at_training_and_test_lengths(model):
    spec = paperspec.load(str(Path(__file__).resolve().parents[2] / "specs" / "lrnn_parity.pspec"))
    for negative in (True, False):
        module = spec.build(model, negative=negative)
        proto = export_spec(spec, model, {"negative": negative}, module.state_dict())
        for length in (16, 64):
            verify(spec, model, {"negative": negative}, {"B": 3, "T": length}, module=module, onnx_model=proto)


# ---- errors ----


def model_spec(body: str) -> paperspec.Spec:
    return shared_model_spec(body, "<recurrent>")


SCAN = "in a: f32[B, T, 8]; in u: f32[B, T, 8]"
DELTA = "in q: f32[B, T, 4]; in k: f32[B, T, 4]; in v: f32[B, T, 6]; in beta: f32[B, T]"

# (body, message, the text that the error's span starts at)
SHAPE_ERRORS = [
    ("in a: f32[B, T, 8]; in u: f32[B, T, 4]; out linear_scan(a, u)", "gates and inputs of one shape: a f32[B, T, 8] vs u f32[B, T, 4]", "u)"),
    ("in a: f32[B, S, 8]; in u: f32[B, T, 8]; out linear_scan(a, u)", "gates and inputs of one shape", "u)"),
    (SCAN + "; in h: f32[B, T, 8]; out linear_scan(a, u, h)", "needs h0 of type f32[B, 8] (the state before the first step), got f32[B, T, 8]", "h)"),
    (SCAN + "; in h: f32[B, 4]; out linear_scan(a, u, h0 = h)", "needs h0 of type f32[B, 8]", "h0 = h"),
    ("in a: f32[8]; out linear_scan(a, a)", "`linear_scan` needs [..., T, d] sequences (time along dim -2), got a: f32[8]", "a, a)"),
    ("in a: i64[B, T, 8]; out linear_scan(a, a)", "`linear_scan` needs a floating-point tensor", "a, a)"),
    ("in a: f32[B, T, 8]; in u: f64[B, T, 8]; out linear_scan(a, u)", "needs one dtype: a is f32[B, T, 8] but u is f64[B, T, 8]", "u)"),
    (SCAN + "; out linear_scan(a, u, chunk = 1)", "`chunk` of linear_scan must be at least 2", "chunk = 1"),
    (DELTA + "; out delta_rule(q, v, v, beta)", "queries and keys of one shape: q f32[B, T, 4] vs k f32[B, T, 6]", "v, v"),
    (DELTA + "; in w: f32[B, S, 6]; out delta_rule(q, k, w, beta)", "values on the keys' steps", "w, beta"),
    (DELTA + "; out delta_rule(q, k, v, q)", "one write strength per step, beta: f32[B, T], got f32[B, T, 4]", "q)"),
    (DELTA + "; out delta_rule(q, k, v, beta[:, 0])", "one write strength per step", "beta[:, 0]"),
]


@pytest.mark.parametrize("body, message, where", SHAPE_ERRORS)
def test_shape_errors_point_at_the_argument(body, message, where):
    with pytest.raises(paperspec.SpecError) as caught:
        model_spec(body).graph()
    error = caught.value
    assert message in error.message
    line = body.split("; ")[-1]
    assert (error.span.path, error.span.line, error.span.column) == ("<recurrent>", body.count("; ") + 2, line.index(where) + 1)
