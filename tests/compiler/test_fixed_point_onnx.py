"""fixed_point exported as an ONNX Loop: against the PyTorch module and a hand-written iteration."""

import textwrap

import numpy as np
import onnx
import pytest
import torch

import paperspec
from paperspec.compiler.backends.onnx import export_spec
from paperspec.runtime.onnx import OnnxSession, verify

SPEC = textwrap.dedent(
    """
    block Cell(d: int) {
      in z: f32[B, d]
      in x: f32[B, d]
      out tanh(linear(z, d, bias = false) + x)
    }
    block Map(d: int) {
      in z: f32[B, d]
      out 0.5 * tanh(linear(z, d))
    }
    model DEQ(d: int = 4, solver: str = "iterate", backward: str = "implicit", max_iter: int = 200) {
      in x: f32[B, d]
      out z = fixed_point(Cell(d), zeros([x.shape[0], d]), x, solver = solver, tol = 1e-6,
                          max_iter = max_iter, backward = backward)
    }
    model Autonomous(d: int = 4) {
      in z0: f32[B, d]
      out z = fixed_point(Map(d), z0, solver = "iterate", tol = 1e-6, max_iter = 100)
    }
    """
)


@pytest.fixture(scope="module")
def spec():
    return paperspec.loads(SPEC, "fixed_point.pspec")


def exported(spec, model: str, **params):
    torch.manual_seed(0)
    module = spec.build(model, **params).eval()
    proto = export_spec(spec, model, params, state=module.state_dict())
    onnx.checker.check_model(proto, full_check=True)
    return module, proto


def hand_iteration(module, x: np.ndarray, tol: float, max_iter: int) -> np.ndarray:
    """z <- cell(z, x) from zeros until the relative change over the batch is below tol."""
    weight = module.cell.linear.weight.detach().numpy().astype(np.float64)
    z = np.zeros_like(x, dtype=np.float64)
    for _ in range(max_iter):
        following = np.tanh(z @ weight.T + x)
        residual = np.linalg.norm(following - z) / (np.linalg.norm(following) + 1e-9)
        z = following
        if residual < tol:
            break
    return z


@pytest.mark.parametrize("backward", ["implicit", "unrolled"])
def test_plain_iteration_exports_as_a_loop_matching_pytorch(spec, backward):
    module, proto = exported(spec, "DEQ", backward=backward)
    assert [node.op_type for node in proto.graph.node].count("Loop") == 1
    report = verify(spec, "DEQ", {"backward": backward}, sizes={"B": 3}, module=module, onnx_model=proto)
    assert max(check.max_rel for check in report.checks) < 1e-6


def test_the_loop_stops_at_the_tolerance_like_a_hand_written_iteration(spec):
    module, proto = exported(spec, "DEQ")
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    (got,) = OnnxSession(proto).run({"x": x}).values()
    z = hand_iteration(module, x, tol=1e-6, max_iter=200)
    assert np.abs(got - z).max() < 1e-5


def test_max_iter_bounds_the_loop(spec):
    """One iteration, then the implicit model's extra application: f(f(0, x), x)."""
    module, proto = exported(spec, "DEQ", max_iter=1)
    x = np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)
    (got,) = OnnxSession(proto).run({"x": x}).values()
    weight = module.cell.linear.weight.detach().numpy()
    once = np.tanh(x)
    assert np.allclose(got, np.tanh(once @ weight.T + x), atol=1e-6)
    verify(spec, "DEQ", {"max_iter": 1}, sizes={"B": 2}, module=module, onnx_model=proto)


def test_anderson_models_export_the_same_equilibrium(spec):
    module, proto = exported(spec, "DEQ", solver="anderson")
    verify(spec, "DEQ", {"solver": "anderson"}, sizes={"B": 4}, module=module, onnx_model=proto)


def test_a_block_without_injected_input_exports(spec):
    module, proto = exported(spec, "Autonomous")
    verify(spec, "Autonomous", sizes={"B": 3}, module=module, onnx_model=proto)
