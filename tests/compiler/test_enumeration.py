"""binary_states against itertools.product, its ONNX constant, its errors, and the exact RBM
log-likelihood of specs/rbm_cd.pspec against a brute-force sum over every (v, h)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from onnx import numpy_helper
from spec_helpers import model_spec, spec_error

import paperspec
from paperspec.compiler.backends.onnx import export_spec
from paperspec.runtime.onnx import verify

RBM_SPEC = Path(__file__).resolve().parents[2] / "specs" / "rbm_cd.pspec"


def product_states(n: int) -> np.ndarray:
    return np.array(list(itertools.product([0.0, 1.0], repeat=n)), dtype=np.float32)


@pytest.mark.parametrize("n", [1, 2, 5, 9])
def test_binary_states_lists_every_state_in_counting_order(n):
    spec = model_spec(f"in x: f32[B, 2]; out binary_states({n})")
    got = spec.build()(torch.zeros(3, 2))
    assert got.dtype == torch.float32 and tuple(got.shape) == (2**n, n)
    np.testing.assert_array_equal(got.numpy(), product_states(n))


def test_binary_states_exports_as_a_constant():
    spec = model_spec("in x: f32[B, 3]; out x @ transpose(binary_states(3)); out binary_states(4)")
    proto = export_spec(spec)
    constants = [numpy_helper.to_array(node.attribute[0].t) for node in proto.graph.node if node.op_type == "Constant"]
    assert any(c.shape == (16, 4) and np.array_equal(c, product_states(4)) for c in constants)
    report = verify(spec)
    assert report.ok and len(report.checks) == 4


@pytest.mark.parametrize("n, message", [(0, "got 0"), (21, "between 1 and 20, got 21")])
def test_binary_states_needs_a_small_positive_n(n, message):
    error = spec_error(f"in x: f32[B, 2]; out binary_states({n})")
    assert "`binary_states` enumerates 2^n states" in str(error) and message in str(error)
    assert (error.span.line, error.span.column) == (3, 19)
    assert "enumerate the smaller layer" in error.format()


def test_binary_states_takes_a_compile_time_integer():
    error = spec_error("in x: f32[B, 2]; out binary_states(x)")
    assert "`n`" in str(error) and "integer" in str(error)


# ---- the exact log-likelihood of the RBM in specs/rbm_cd.pspec ----


def brute_force_log_likelihood(W, visible_bias, hidden_bias, data) -> np.ndarray:
    """log p(v) = log sum_h exp(-E(v, h)) - log sum_{v', h} exp(-E(v', h)), over every state, in f64."""
    visible, hidden = product_states(W.shape[0]).astype(np.float64), product_states(W.shape[1]).astype(np.float64)

    def neg_energy(v):  # [len(v), 2^hidden]
        return v @ W @ hidden.T + (v @ visible_bias)[:, None] + (hidden @ hidden_bias)[None, :]

    def logsumexp(a, axis=None):
        top = a.max(axis=axis, keepdims=True)
        return np.squeeze(top + np.log(np.exp(a - top).sum(axis=axis, keepdims=True)), axis=axis)

    return logsumexp(neg_energy(data.astype(np.float64)), axis=1) - logsumexp(neg_energy(visible))


@pytest.mark.parametrize("visible, hidden", [(4, 3), (3, 5)])
def test_rbm_output_is_the_exact_log_likelihood(visible, hidden):
    spec = paperspec.load(str(RBM_SPEC))
    rbm = spec.build("RBM", visible=visible, hidden=hidden)
    generator = torch.Generator().manual_seed(visible)
    with torch.no_grad():
        for parameter in rbm.parameters():
            parameter.copy_(1.5 * torch.randn(parameter.shape, generator=generator))
    data = product_states(visible)  # every visible state: the probabilities must sum to 1
    with torch.no_grad():
        got = rbm(torch.from_numpy(data)).numpy()
    weights = {name: p.detach().numpy().astype(np.float64) for name, p in rbm.named_parameters()}
    want = brute_force_log_likelihood(weights["W"], weights["visible_bias"], weights["hidden_bias"], data)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    assert np.exp(want).sum() == pytest.approx(1.0)


def test_untrained_rbm_is_near_uniform_over_its_images():
    rbm = paperspec.load(str(RBM_SPEC)).build("RBM")
    with torch.no_grad():
        got = rbm(torch.from_numpy(product_states(16)[::997]))
    np.testing.assert_allclose(got.numpy(), -16 * np.log(2), atol=0.2)
