"""grad and laplacian inside losses, against analytic derivatives of known functions."""

import textwrap

import pytest
import torch

import paperspec
from paperspec import SpecError

SPEC = textwrap.dedent(
    """
    model Known() {
      in x: f32[B, 2]
      y = sin(x[:, 0]) * x[:, 1] ** 3
      out g = grad(y, x)
      out l = laplacian(y, x)
    }
    """
)


def test_grad_and_laplacian_match_analytic_derivatives():
    model = paperspec.loads(SPEC, "calculus.pspec").build("Known")
    x = torch.randn(6, 2)
    g, lap = model(x)
    a, b = x[:, 0], x[:, 1]
    expected_grad = torch.stack([torch.cos(a) * b**3, 3 * torch.sin(a) * b**2], dim=1)
    expected_laplacian = -torch.sin(a) * b**3 + 6 * torch.sin(a) * b
    assert torch.allclose(g, expected_grad, atol=1e-5)
    assert torch.allclose(lap, expected_laplacian, atol=1e-4)


def test_derivatives_stay_differentiable_for_training():
    text = textwrap.dedent(
        """
        model U() {
          in x: f32[B, 1]
          u = linear(tanh(linear(x, 8)), 1)
          out r = mean(grad(u, x) ** 2)
        }
        """
    )
    model = paperspec.loads(text, "train.pspec").build("U")
    model(torch.randn(4, 1)).backward()
    # The output bias does not change du/dx, so only the weights receive gradients.
    assert model.linear.weight.grad.abs().sum() > 0
    assert model.u.weight.grad.abs().sum() > 0


def test_grad_needs_an_input_to_differentiate_by():
    text = "model M() {\n  in x: f32[B, 2]\n  h = x * 2\n  out grad(h, h)\n}\n"
    with pytest.raises(SpecError) as caught:
        paperspec.loads(text, "bad.pspec").graph("M")
    assert (caught.value.span.line, caught.value.span.column) == (4, 15)
    assert "must be an input" in caught.value.message


def test_derivatives_are_not_exportable():
    from paperspec.compiler.ops.base import get_op

    assert "training loss" in get_op("grad").not_exportable


def test_derivatives_work_where_the_caller_turned_autograd_off(tmp_path):
    """Metrics are evaluated under no_grad; a metric with grad still differentiates."""
    from paperspec.runtime.train import Trainer

    text = textwrap.dedent(
        """
        model Id() {
          in x: f32[B, 2]
          out linear(x, 1)
        }
        data teacher = linear_teacher(dim = 2)
        train fit {
          model net = Id()
          data teacher
          loss mse(net(batch.x)[:, 0], batch.y)
          optimizer sgd(lr = 0.1)
          steps 2
          eval on teacher { slope_error = max(abs(grad(batch.x * batch.x, batch.x) - 2 * batch.x)); slope = mean(abs(grad(batch.x * batch.x, batch.x))) }
        }
        """
    )
    model = paperspec.loads(SPEC, "calculus.pspec").build("Known")
    with torch.no_grad():
        g, _ = model(torch.randn(4, 2))
    assert g.abs().sum() > 0
    spec = paperspec.loads(text, str(tmp_path / "metric.pspec"))
    metrics = Trainer(spec, "fit", out_root=str(tmp_path / "runs"), progress=False).run().metrics
    assert metrics["slope_error"] < 1e-6 and metrics["slope"] > 0.5
