"""Weight-space models in procedures: what they accept, and the errors, at the line that declares them."""

import pytest

import paperspec
from paperspec.compiler.weightspace import WeightSpaceModel

MODELS = """
model MLP(width: int = 8) {
  in x: f32[B, 4]
  out linear(relu(linear(x, width)), 2)
}
model Residual(width: int = 8) {
  in x: f32[B, 4]
  h = relu(linear(x, width))
  out linear(h + relu(linear(h, width)), 2)
}
model Scaled(width: int = 8) {
  in x: f32[B, 4]
  out linear(relu(linear(x, width)) * 2.0, 2)
}
model Linear(width: int = 8) {
  in x: f32[B, 4]
  out linear(x, 2)
}
block Hidden(width: int) {
  in x: f32[B, 4]
  out relu(linear(x, width))
}
model Nested(width: int = 8) {
  in x: f32[B, 4]
  out linear(Hidden(width)(x), 2)
}
data d = linear_teacher(dim = 4, seed = 0)
"""


def trained(name: str, model: str) -> str:
    return (
        f"train {name} {{\n  model net = {model}\n  data d\n  loss mse(net(batch.x)[:, 0], batch.y)\n"
        "  optimizer adam()\n  steps 10\n  checkpoint every 5\n}\n"
    )


def spec_with(merge_body: str, a: str = "MLP()", b: str = "MLP()") -> paperspec.Spec:
    merge = "train merge after a, b {\n" + merge_body + "\n  eval on d { loss_a = mse(a.net(batch.x)[:, 0], batch.y) }\n}\n"
    return paperspec.loads(MODELS + trained("a", a) + trained("b", b) + merge, "<merge>")


MERGE_LINE = MODELS.count("\n") + 2 * 8 + 2  # the first line of the merge body


def test_weight_space_models_are_recorded_with_their_sources_and_arguments():
    spec = spec_with("  model aligned = weight_matching(b.net, to = a.net, max_iter = 5)\n  model mid = interpolate(a.net, aligned, 0.5)")
    procedure = spec.procedure("merge")
    aligned, mid = procedure.weight_space["aligned"], procedure.weight_space["mid"]
    assert isinstance(aligned, WeightSpaceModel)
    assert (aligned.function, aligned.sources, aligned.args) == ("weight_matching", {"model": "b_net", "to": "a_net"}, {"max_iter": 5, "seed": 0})
    assert aligned.axes == {"linear.weight": ("linear", None), "linear.bias": ("linear",), "linear_1.weight": (None, "linear")}
    assert (mid.function, mid.sources, mid.args, mid.axes) == ("interpolate", {"a": "a_net", "b": "aligned"}, {"t": 0.5}, None)
    assert procedure.models == [] and procedure.evaluations  # still an evaluation-only procedure


ERRORS = [
    ("  model m = weight_matching(b.net, to = a.net)", "Residual()", "the output of `linear` is used more than once"),
    ("  model m = weight_matching(b.net, to = a.net)", "Scaled()", "the output of `linear` goes to `mul`"),
    ("  model m = weight_matching(b.net, to = a.net)", "Nested()", "its submodule `hidden` is a block"),
    ("  model m = weight_matching(b.net, to = a.net)", "Linear()", "`b.net` has no hidden layer to permute"),
    ("  model m = weight_matching(b.net, to = a.net, max_iter = 0)", "MLP()", "`max_iter` of weight_matching must be at least 1"),
    ("  model m = weight_matching(b.net, to = a.net, iters = 3)", "MLP()", "`weight_matching` has no argument `iters`"),
    ("  model m = interpolate(a.net, b.net, \"half\")", "MLP()", "argument `t` of `interpolate` must be a number"),
    ("  model m = interpolate(a.net, b.net)", "MLP()", "missing argument `t` of `interpolate`"),
    ("  model m = interpolate(a.net, 0.5, 0.5)", "MLP()", "argument `b` of `interpolate` must be a block instance"),
    ("  model m = interpolate(a.net, MLP(), 0.5)", "MLP()", "argument `b` of `interpolate` must be a trained model of a procedure named in `after`"),
    ("  model m = interpolate(a[5].net, b.net, 0.5)", "MLP()", "`interpolate` reads final weights; `a` is a checkpoint of `a.net`"),
    ("  model m = interpolate(a.net, b.net, 0.5)\n  model m = interpolate(a.net, b.net, 0.25)", "MLP()", "`m` is already defined in `merge`"),
]


@pytest.mark.parametrize("body, model, message", ERRORS)
def test_bad_weight_space_models_are_errors_at_their_line(body, model, message):
    with pytest.raises(paperspec.SpecError) as error:
        spec_with(body, a=model, b=model).procedures()
    assert message in error.value.message
    assert error.value.span.line in (MERGE_LINE, MERGE_LINE + 1)


def test_models_of_two_architectures_cannot_be_combined():
    with pytest.raises(paperspec.SpecError) as error:
        spec_with("  model m = interpolate(a.net, b.net, 0.5)", b="MLP(width = 4)").procedures()
    assert "`interpolate` needs models of one architecture: `a` is MLP(width = 8) and `b` is MLP(width = 4)" in error.value.message


def test_a_model_the_procedure_trains_is_refused():
    body = (
        "  model net = MLP()\n  model m = interpolate(net, a.net, 0.5)\n  data d\n  loss mse(net(batch.x)[:, 0], batch.y)\n"
        "  optimizer adam()\n  steps 3"
    )
    with pytest.raises(paperspec.SpecError) as error:
        spec_with(body).procedures()
    assert "argument `a` of `interpolate` must be a trained model of a procedure named in `after`" in error.value.message
    assert error.value.span.line == MERGE_LINE + 1
