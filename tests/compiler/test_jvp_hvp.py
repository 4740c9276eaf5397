"""jvp and hvp inside losses, against analytic derivatives and torch's forward-mode AD."""

import textwrap

import pytest
import torch
from torch.func import hessian, jvp

import paperspec
from paperspec import SpecError
from paperspec.compiler.ops.base import get_op

# f(a, b) = sin(a) b^3, with its gradient and Hessian written out by hand.
KNOWN = textwrap.dedent(
    """
    model Known() {
      in x: f32[B, 2]
      in v: f32[B, 2]
      y = sin(x[:, 0]) * x[:, 1] ** 3
      out along_list = jvp(y, x, [2.0, -1.0])
      out along_tensor = jvp(y, x, v)
      out curvature = hvp(y, x, v)
      out second_a = hvp(y, x, [1.0, 0.0])[:, 0]
    }
    """
)


def analytic(x: torch.Tensor) -> tuple:
    a, b = x[:, 0], x[:, 1]
    gradient = torch.stack([torch.cos(a) * b**3, 3 * torch.sin(a) * b**2], dim=1)
    mixed = 3 * torch.cos(a) * b**2
    hessian_rows = torch.stack(
        [torch.stack([-torch.sin(a) * b**3, mixed], 1), torch.stack([mixed, 6 * torch.sin(a) * b], 1)], 1
    )
    return gradient, hessian_rows


def test_jvp_and_hvp_match_analytic_derivatives():
    model = paperspec.loads(KNOWN, "known.pspec").build("Known")
    x, v = torch.randn(6, 2), torch.randn(6, 2)
    along_list, along_tensor, curvature, second_a = model(x, v)
    gradient, hessian_rows = analytic(x)
    assert torch.allclose(along_list, gradient @ torch.tensor([2.0, -1.0]), atol=1e-5)
    assert torch.allclose(along_tensor, (gradient * v).sum(1), atol=1e-5)
    assert torch.allclose(curvature, torch.einsum("bij,bj->bi", hessian_rows, v), atol=1e-4)
    assert torch.allclose(second_a, hessian_rows[:, 0, 0], atol=1e-5)


def test_jvp_of_a_vector_output_is_the_jacobian_times_v():
    text = textwrap.dedent(
        """
        model Field() {
          in x: f32[B, 2]
          y = stack([x[:, 0] * x[:, 1], x[:, 0] ** 2, exp(x[:, 1])], dim = 1)
          out jvp(y, x, [0.5, 3.0])
        }
        """
    )
    model = paperspec.loads(text, "field.pspec").build("Field")
    x = torch.randn(5, 2)
    a, b = x[:, 0], x[:, 1]
    expected = torch.stack([0.5 * b + 3.0 * a, 0.5 * 2 * a, 3.0 * torch.exp(b)], dim=1)
    assert torch.allclose(model(x), expected, atol=1e-5)


MLP = textwrap.dedent(
    """
    model U() {
      in z: f32[B, 3]
      u = linear(tanh(linear(tanh(linear(z, 16)), 16)), 1)
      out along = jvp(u, z, [1.0, -2.0, 0.5])
      out curvature = hvp(u, z, [0.3, 1.0, -1.0])
    }
    """
)


def test_jvp_and_hvp_of_a_network_match_forward_mode_and_the_full_hessian():
    torch.manual_seed(0)
    model = paperspec.loads(MLP, "mlp.pspec").build("U")
    z = torch.randn(4, 3)
    along, curvature = model(z)

    def u(point):
        return model.u(torch.tanh(model.linear_1(torch.tanh(model.linear(point)))))

    direction = torch.tensor([1.0, -2.0, 0.5]).expand_as(z)
    _, forward_mode = jvp(u, (z,), (direction,))
    assert torch.allclose(along, forward_mode, atol=1e-5)
    v = torch.tensor([0.3, 1.0, -1.0])
    full = torch.stack([hessian(lambda p: u(p[None])[0, 0])(row) for row in z])
    assert torch.allclose(curvature, full @ v, atol=1e-5)


def test_derivatives_stay_differentiable_for_training():
    torch.manual_seed(0)
    model = paperspec.loads(MLP, "mlp.pspec").build("U")
    along, curvature = model(torch.randn(8, 3))
    ((along**2).mean() + (curvature**2).mean()).backward()
    for name in ("linear", "linear_1", "u"):
        assert getattr(model, name).weight.grad.abs().sum() > 0, name


def test_a_pinn_loss_with_jvp_and_hvp_trains(tmp_path):
    from paperspec.runtime.train import Trainer

    text = textwrap.dedent(
        """
        model U() {
          in z: f32[B, 2]
          out u: f32[B, 1] = linear(tanh(linear(z, 16)), 1)
        }
        data points = convection_diffusion_points(c = 1.0, nu = 0.1)
        train fit {
          model net = U()
          data points
          batch 32
          u = net(batch.interior)
          residual = jvp(u, batch.interior, [1.0, 1.0]) - 0.1 * hvp(u, batch.interior, [1.0, 0.0])[:, 0:1]
          loss mean(residual ** 2) + mse(net(batch.initial), batch.u0)
          optimizer adam(lr = 1e-2)
          steps 40
        }
        """
    )
    path = tmp_path / "fit.pspec"
    path.write_text(text)
    result = Trainer(paperspec.load(str(path)), "fit", out_root=str(tmp_path), progress=False).run()
    assert result.run_dir.exists()


def source_with(call: str) -> str:
    return f"model M() {{\n  in x: f32[B, 2]\n  in w: f32[B, 3]\n  y = x[:, 0] * x[:, 1]\n  out {call}\n}}\n"


@pytest.mark.parametrize(
    ("call", "column", "message"),
    [
        ("jvp(y, x, [1.0, 2.0, 3.0])", 17, "one number of v per coordinate of x .* 3 numbers"),
        ("hvp(y, x, w)", 17, "broadcasts to x"),
        ('jvp(y, x, "up")', 17, "a tensor or a list of numbers"),
        ("hvp(y, x * 2, [1.0, 0.0])", 14, "must be an input"),
        ("jvp(y, x, [true, false])", 17, "a tensor or a list of numbers"),
    ],
)
def test_bad_directions_are_spec_errors_at_the_argument(call, column, message):
    with pytest.raises(SpecError, match=message) as caught:
        paperspec.loads(source_with(call), "bad.pspec").graph("M")
    assert (caught.value.span.line, caught.value.span.column) == (5, column)


def test_jvp_and_hvp_are_not_exportable():
    from paperspec.runtime.onnx import export_spec

    for op in ("jvp", "hvp"):
        assert "training loss" in get_op(op).not_exportable
    spec = paperspec.loads(source_with("jvp(y, x, [1.0, 0.0])"), "loss.pspec")
    with pytest.raises(SpecError, match="`jvp` cannot be exported to ONNX") as caught:
        export_spec(spec)
    assert caught.value.span.line == 5
