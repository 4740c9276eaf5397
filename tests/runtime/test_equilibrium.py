"""Equilibrium propagation: the relaxation against closed-form minima, the EP update against
backprop through an unrolled relaxation (the two agree as beta -> 0), and the op in specs."""

import pytest
import torch

import paperspec
from paperspec.runtime.onnx import export
from paperspec.runtime.relaxation import relax
from paperspec.runtime.updates import get_update_rule


def quadratic(centre):
    """E(s) = |s - centre|^2 / 2, whose minimum is the centre."""
    return lambda s, x: 0.5 * ((s - centre) ** 2).sum(-1)


def test_the_free_phase_settles_at_the_energy_minimum():
    centre = torch.tensor([[0.2, 0.7, 0.4]])
    settled = relax(quadratic(centre), torch.zeros(1, 3), None, None, 0.0, steps=60, step_size=0.5)
    torch.testing.assert_close(settled, centre)


def test_the_nudged_phase_settles_between_the_minimum_and_the_target():
    """The minimum of |s - c|^2 / 2 + beta |s_out - t|^2 / 2 is (c + beta t) / (1 + beta) on the
    output units (the last ones) and c elsewhere."""
    centre, target, beta = torch.tensor([[0.2, 0.7, 0.4]]), torch.tensor([[0.9]]), 0.5
    settled = relax(quadratic(centre), torch.zeros(1, 3), None, target, beta, steps=80, step_size=0.5)
    expected = torch.tensor([[0.2, 0.7, (0.4 + beta * 0.9) / (1 + beta)]])
    torch.testing.assert_close(settled, expected)


def test_states_stay_in_the_unit_interval():
    settled = relax(quadratic(torch.tensor([[-3.0, 5.0]])), torch.full((1, 2), 0.5), None, None, 0.0, steps=30, step_size=0.5)
    assert torch.equal(settled, torch.tensor([[0.0, 1.0]]))


class Hopfield(torch.nn.Module):
    """The energy of specs/equilibrium_propagation.pspec, written by hand."""

    def __init__(self, pixels=5, hidden=4, classes=3):
        super().__init__()
        torch.manual_seed(3)
        self.hidden = hidden
        self.first = torch.nn.Linear(pixels, hidden, dtype=torch.float64)
        self.second = torch.nn.Linear(hidden, classes, dtype=torch.float64)

    def forward(self, s, x):
        h, y = s[:, : self.hidden].clamp(0, 1), s[:, self.hidden :].clamp(0, 1)
        drive = (h * self.first(x)).sum(-1) + (y * self.second(h)).sum(-1)
        return 0.5 * (s * s).sum(-1) - drive


def unrolled_cost_gradients(net, x, target, steps, step_size) -> list:
    """The cost at the free state, differentiated through every relaxation step (recurrent backprop)."""
    s = torch.zeros(x.shape[0], 7, dtype=torch.float64, requires_grad=True)
    for _ in range(steps):
        (slope,) = torch.autograd.grad(net(s, x).sum(), s, create_graph=True)
        s = (s - step_size * slope).clamp(0, 1)
    cost = 0.5 * ((s[:, -3:] - target) ** 2).sum(-1).mean()
    return torch.autograd.grad(cost, list(net.parameters()))


@pytest.mark.parametrize("symmetric", [True, False])
def test_the_update_approaches_the_gradient_of_the_cost_as_beta_shrinks(symmetric):
    net = Hopfield()
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(6, 5, generator=generator, dtype=torch.float64)
    target = torch.eye(3, dtype=torch.float64)[torch.tensor([0, 1, 2, 0, 1, 2])]
    settings = {"beta": 0.001, "steps": 150, "nudged_steps": 150, "step_size": 0.3, "symmetric": symmetric}
    rule = get_update_rule("equilibrium_propagation").build(net, settings)
    cost = rule.step(x, torch.zeros(6, 7, dtype=torch.float64), target)
    expected = unrolled_cost_gradients(net, x, target, steps=150, step_size=0.3)
    for parameter, reference in zip(net.parameters(), expected):
        torch.testing.assert_close(parameter.grad, reference, atol=2e-4, rtol=0.02)
    assert cost.item() > 0


EP_SPEC = """
model Energy(units: int = 6) {
  in s: f32[B, units]
  in x: f32[B, 4]
  out energy: f32[B] = 0.5 * sum(s * s, dim = -1) - sum(s * linear(x, units), dim = -1)
}
model Settle(units: int = 6) {
  in x: f32[B, 4]
  out state: f32[B, units] = equilibrium(Energy(units), zeros([x.shape[0], units]), x, steps = STEPS, step_size = 0.5)
}
"""


def test_the_op_in_generated_code_matches_the_relaxation():
    spec = paperspec.loads(EP_SPEC.replace("STEPS", "30"))
    torch.manual_seed(0)
    settle = spec.build("Settle")
    x = torch.rand(5, 4)
    energy = next(settle.children())
    expected = relax(energy, torch.zeros(5, 6), x, None, 0.0, 30, 0.5)
    torch.testing.assert_close(settle(x), expected)
    # The energy is quadratic in s, so the state settles at clamp(W x + b, 0, 1).
    torch.testing.assert_close(settle(x), (x @ energy.linear.weight.T + energy.linear.bias).clamp(0, 1), atol=1e-5, rtol=0)


def test_the_op_does_not_export_and_says_why():
    spec = paperspec.loads(EP_SPEC.replace("STEPS", "30"), "ep.pspec")
    with pytest.raises(paperspec.SpecError, match="autograd inside the model") as caught:
        export(spec, "Settle")
    assert caught.value.span.line == 9


@pytest.mark.parametrize(
    "body, message",
    [
        ("in x: f32[B, 4]; out equilibrium(E(), zeros([x.shape[0]]), x)", "argument 1 of `E` is f32[B], but input `s` is declared f32[B, 6]"),
        ("in x: f32[B, 4]; out equilibrium(E(), zeros([x.shape[0], 6]), x, target = zeros([x.shape[0], 7]))", "k <= 6"),
        ("in x: f32[B, 4]; out equilibrium(Wrong(), zeros([x.shape[0], 6]), x)", "one energy per example"),
    ],
)
def test_op_errors(body, message):
    blocks = """
block E() { in s: f32[B, 6]; in x: f32[B, 4]; out sum(s * s, dim = -1) }
block Wrong() { in s: f32[B, 6]; in x: f32[B, 4]; out s }
"""
    with pytest.raises(paperspec.SpecError, match=message.replace("[", r"\[")):
        paperspec.loads(blocks.replace("; ", "\n") + "model M() {\n" + body.replace("; ", "\n") + "\n}\n").graph("M")


def test_rule_settings_are_checked_at_the_update_line():
    text = EP_SPEC.replace("STEPS", "30") + """
data points = linear_teacher(dim = 4)
train ep {
  model net = Energy()
  data points
  update equilibrium_propagation(net, batch.x, zeros([batch.x.shape[0], 6]), zeros([batch.x.shape[0], 1]), beta = 0.0)
  optimizer sgd(lr = 0.1)
  steps 10
}
"""
    with pytest.raises(paperspec.SpecError, match="`beta` and `step_size` of equilibrium_propagation must be positive") as caught:
        paperspec.loads(text).procedures()
    assert caught.value.span.line == 16
