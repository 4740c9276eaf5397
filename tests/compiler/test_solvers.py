"""fixed_point and odeint: against unrolled gradients, a hand-written RK4 and torchdiffeq."""

import textwrap

import numpy as np
import pytest
import torch

import paperspec
from paperspec import SpecError

SPEC = textwrap.dedent(
    """
    block Cell(d: int) {
      in z: f32[B, d]
      in x: f32[B, d]
      out tanh(linear(z, d, bias = false) * 0.5 + x)
    }
    block Field(d: int) {
      in t: f32[]
      in y: f32[B, d]
      out linear(tanh(linear(y, 16)), d) * (1.0 + t)
    }
    model DEQ(d: int = 4, backward: str = "implicit", solver: str = "anderson") {
      in x: f32[B, d]
      out z = fixed_point(Cell(d), zeros([x.shape[0], d]), x, tol = 1e-7, max_iter = 300,
                          backward = backward, solver = solver)
    }
    model ODE(d: int = 2, method: str = "rk4", steps: int = 4) {
      in y0: f32[B, d]
      in t: f32[K]
      out ys = odeint(Field(d), y0, t, method = method, steps = steps)
    }
    """
)


@pytest.fixture(scope="module")
def spec():
    return paperspec.loads(SPEC, "solvers.pspec")


@pytest.mark.parametrize("solver", ["anderson", "iterate"])
def test_fixed_point_reaches_the_equilibrium(spec, solver):
    torch.manual_seed(0)
    model = spec.build("DEQ", solver=solver)
    x = torch.randn(3, 4)
    z = model(x)
    assert torch.allclose(model.cell(z, x), z, atol=1e-5)


def test_implicit_gradients_equal_unrolled_gradients_at_convergence(spec):
    torch.manual_seed(0)
    implicit = spec.build("DEQ", backward="implicit")
    unrolled = spec.build("DEQ", backward="unrolled")
    unrolled.load_state_dict(implicit.state_dict())
    x = torch.randn(5, 4, requires_grad=True)
    grads = []
    for model in (implicit, unrolled):
        x.grad = None
        (model(x) ** 2).sum().backward()
        grads.append((model.cell.linear.weight.grad.clone(), x.grad.clone()))
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()


def test_fixed_point_state_type_is_checked():
    text = SPEC.replace("zeros([x.shape[0], d])", "zeros([x.shape[0], d + 1])")
    with pytest.raises(SpecError) as caught:
        paperspec.loads(text, "bad.pspec").graph("DEQ")
    assert "argument 1 of `Cell`" in caught.value.message or "same type" in caught.value.message


def test_non_convergence_is_reported_with_the_residual():
    text = SPEC.replace("max_iter = 300,", "max_iter = 1, strict = true,")
    model = paperspec.loads(text, "strict.pspec").build("DEQ")
    with pytest.raises(RuntimeError, match="did not converge: relative residual"):
        model(torch.randn(2, 4))


def hand_rk4(f, y0, t, steps):
    ys, y = [y0], y0
    for i in range(len(t) - 1):
        h = (t[i + 1] - t[i]) / steps
        s = t[i]
        for _ in range(steps):
            k1 = f(s, y)
            k2 = f(s + h / 2, y + h / 2 * k1)
            k3 = f(s + h / 2, y + h / 2 * k2)
            k4 = f(s + h, y + h * k3)
            y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            s = s + h
        ys.append(y)
    return torch.stack(ys)


def test_rk4_matches_a_hand_written_rk4(spec):
    torch.manual_seed(0)
    model = spec.build("ODE")
    y0, t = torch.randn(3, 2), torch.linspace(0.0, 1.0, 5)
    with torch.no_grad():
        assert torch.allclose(model(y0, t), hand_rk4(model.field, y0, t, 4), atol=1e-6)


def test_euler_converges_to_rk4_with_many_steps(spec):
    torch.manual_seed(0)
    rk4 = spec.build("ODE")
    euler = spec.build("ODE", method="euler", steps=2000)
    euler.load_state_dict(rk4.state_dict())
    y0, t = torch.randn(3, 2), torch.linspace(0.0, 1.0, 3)
    with torch.no_grad():
        assert torch.allclose(euler(y0, t), rk4(y0, t), atol=2e-3)


def test_dopri5_and_adjoint_agree_with_torchdiffeq(spec):
    torchdiffeq = pytest.importorskip("torchdiffeq")
    torch.manual_seed(0)
    model = spec.build("ODE", method="dopri5")
    y0, t = torch.randn(3, 2), torch.linspace(0.0, 1.0, 4)
    ours = model(y0, t)
    reference = torchdiffeq.odeint(model.field, y0, t, method="dopri5", rtol=1e-6, atol=1e-8)
    assert torch.allclose(ours, reference, atol=1e-6)
    adjoint_text = SPEC.replace("steps = steps)", "steps = steps, adjoint = true)")
    adjoint = paperspec.loads(adjoint_text, "adjoint.pspec").build("ODE", method="dopri5")
    adjoint.load_state_dict(model.state_dict())
    direct_grads = torch.autograd.grad(model(y0, t).square().sum(), list(model.parameters()))
    adjoint_grads = torch.autograd.grad(adjoint(y0, t).square().sum(), list(adjoint.parameters()))
    for a, b in zip(direct_grads, adjoint_grads):
        assert torch.allclose(a, b, atol=1e-4)


def test_odeint_needs_f_to_return_dy_of_ys_type():
    text = SPEC.replace("out linear(tanh(linear(y, 16)), d) * (1.0 + t)", "out linear(y, d + 1)")
    with pytest.raises(SpecError) as caught:
        paperspec.loads(text, "bad_ode.pspec").graph("ODE")
    assert "dy/dt of y's type" in caught.value.message
    assert caught.value.span.line == 20


SCAN_SPEC = textwrap.dedent(
    """
    block Elman(d: int) {
      in h: f32[B, d]
      in x: f32[B, 3]
      h = tanh(linear(x, d) + linear(h, d, bias = false))
      out h
      out y = linear(h, 1)
    }
    model RNN(d: int = 8) {
      in x: f32[B, T, 3]
      ys, last = scan(Elman(d), zeros([x.shape[0], d]), x)
      out ys
      out last
    }
    """
)


def test_scan_matches_a_step_by_step_loop():
    torch.manual_seed(0)
    model = paperspec.loads(SCAN_SPEC, "scan.pspec").build("RNN")
    x = torch.randn(2, 5, 3, requires_grad=True)
    ys, last = model(x)
    cell = model.elman
    h, expected = torch.zeros(2, 8), []
    for t in range(5):
        h = torch.tanh(cell.linear(x[:, t]) + cell.linear_1(h))
        expected.append(cell.y(h))
    assert torch.allclose(ys, torch.stack(expected, 1), atol=1e-6)
    assert torch.allclose(last, h, atol=1e-6)
    (grad_ours,) = torch.autograd.grad(ys.sum(), x)
    (grad_loop,) = torch.autograd.grad(torch.stack(expected, 1).sum(), x)
    assert torch.allclose(grad_ours, grad_loop, atol=1e-6)


def test_scan_body_must_keep_the_state_type():
    text = SCAN_SPEC.replace("  out h\n", "  out h2 = linear(h, d + 1)\n")
    with pytest.raises(SpecError) as caught:
        paperspec.loads(text, "bad_scan.pspec").graph("RNN")
    assert "next state of h's type" in caught.value.message
    assert caught.value.span.line == 11


SCAN_EXPORT_SPEC = SCAN_SPEC + textwrap.dedent(
    """
    block Accumulate(d: int) {
      in h: f32[B, d]
      in x: f32[B, d]
      out h + x * sigmoid(linear(h, d))
    }
    model Cumulative(d: int = 4) {
      in x: f32[T, B, d]
      ys, last = scan(Accumulate(d), zeros([x.shape[1], d]), x, dim = 0)
      out ys
      out last
    }
    """
)


@pytest.mark.parametrize("model", ["RNN", "Cumulative"])
def test_scan_exports_as_an_onnx_scan_and_matches_at_two_lengths(model):
    from paperspec.compiler.backends.onnx import export_spec
    from paperspec.runtime.onnx import verify

    spec = paperspec.loads(SCAN_EXPORT_SPEC, "scan.pspec")
    module = spec.build(model)
    proto = export_spec(spec, model, {}, module.state_dict())
    assert [node.op_type for node in proto.graph.node].count("Scan") == 1
    report = verify(spec, model, {}, {"B": 2, "T": 5}, module=module, onnx_model=proto)
    assert len({check.sizes["T"] for check in report.checks}) == 2
    # The block's weights stay initializers named by the state_dict, read from inside the body.
    assert {init.name for init in proto.graph.initializer} == set(module.state_dict())


def test_scan_export_agrees_with_the_reference_evaluator():
    from onnx.reference import ReferenceEvaluator

    from paperspec.compiler.backends.onnx import export_spec

    spec = paperspec.loads(SCAN_EXPORT_SPEC, "scan.pspec")
    module = spec.build("RNN")
    proto = export_spec(spec, "RNN", {}, module.state_dict())
    x = torch.randn(3, 6, 3)
    ys, last = ReferenceEvaluator(proto).run(None, {"x": x.numpy()})
    expected = module(x)
    np.testing.assert_allclose(ys, expected[0].detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(last, expected[1].detach().numpy(), atol=1e-5)


ODE_EXPORT_SPEC = SPEC + textwrap.dedent(
    """
    block Autonomous(d: int) {
      in t: f64[]
      in y: f32[B, d]
      out linear(tanh(linear(y, 8)), d)
    }
    model ODE64(d: int = 2, steps: int = 2) {
      in y0: f32[B, d]
      in t: f64[K]
      out ys = odeint(Autonomous(d), y0, t, method = "rk4", steps = steps)
    }
    """
)


@pytest.mark.parametrize(("method", "steps"), [("rk4", 4), ("rk4", 1), ("euler", 3)])
def test_fixed_step_odeint_exports_as_an_onnx_scan_and_matches_at_two_sizes(method, steps):
    from onnx.reference import ReferenceEvaluator

    from paperspec.compiler.backends.onnx import export_spec
    from paperspec.runtime.onnx import verify

    spec = paperspec.loads(ODE_EXPORT_SPEC, "ode.pspec")
    params = {"method": method, "steps": steps}
    torch.manual_seed(0)
    module = spec.build("ODE", **params)
    proto = export_spec(spec, "ODE", params, module.state_dict())
    assert [node.op_type for node in proto.graph.node].count("Scan") == 1
    report = verify(spec, "ODE", params, {"B": 2, "K": 4}, module=module, onnx_model=proto)
    assert len({(check.sizes["B"], check.sizes["K"]) for check in report.checks}) == 2
    assert {init.name for init in proto.graph.initializer} == set(module.state_dict())
    # Uneven intervals: each one gets `steps` sub-steps of its own length.
    y0, t = torch.randn(3, 2), torch.tensor([0.0, 0.1, 0.5, 0.6, 1.4])
    (ys,) = ReferenceEvaluator(proto).run(None, {"y0": y0.numpy(), "t": t.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(ys, hand_rk4(module.field, y0, t, steps).numpy() if method == "rk4" else module(y0, t).numpy(), atol=1e-5)


def test_odeint_export_with_f64_times_and_f32_states():
    from paperspec.compiler.backends.onnx import export_spec
    from paperspec.runtime.onnx import verify

    spec = paperspec.loads(ODE_EXPORT_SPEC, "ode.pspec")
    module = spec.build("ODE64")
    proto = export_spec(spec, "ODE64", {}, module.state_dict())
    verify(spec, "ODE64", {}, {"B": 2, "K": 3}, module=module, onnx_model=proto)


@pytest.mark.parametrize(("params", "reason"), [({"method": "dopri5"}, "dopri5"), ({"adjoint": True}, "adjoint")])
def test_adaptive_and_adjoint_odeint_do_not_export_and_say_why_at_the_op(params, reason):
    from paperspec.compiler.backends.onnx import export_spec

    text = ODE_EXPORT_SPEC.replace('model ODE(d: int = 2, method: str = "rk4", steps: int = 4)', 'model ODE(d: int = 2, method: str = "rk4", steps: int = 4, adjoint: bool = false)')
    text = text.replace("out ys = odeint(Field(d), y0, t, method = method, steps = steps)", "out ys = odeint(Field(d), y0, t, method = method, steps = steps, adjoint = adjoint)")
    spec = paperspec.loads(text, "ode.pspec")
    with pytest.raises(SpecError, match=f"`odeint` cannot be exported to ONNX: {reason} .*only euler and rk4") as caught:
        export_spec(spec, "ODE", params)
    assert caught.value.span.line == 20


def test_a_field_may_ignore_the_time_odeint_passes_it():
    spec = paperspec.loads(ODE_EXPORT_SPEC, "ode.pspec")
    assert spec.warnings("ODE64") == []
    direct = paperspec.loads(ODE_EXPORT_SPEC + "model Direct() {\n  in y: f32[B, 2]\n  in t: f64[]\n  out Autonomous(2)(t, y)\n}\n", "direct.pspec")
    assert [w.message for w in direct.warnings("Direct")] == ["input `t` is never used"]
