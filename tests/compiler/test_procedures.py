"""Training procedures: spec-located errors, and how phases, metrics and teachers elaborate."""

import textwrap

import pytest

import paperspec
from paperspec import SpecError

HEAD = """\
model MLP(n: int = 8, classes: int = 2) {
  in x: f32[B, n]
  out linear(relu(linear(x, 16)), classes)
}
data parity = sparse_parity(n = 8, k = 2)
"""
# Line numbers below count from the first line of HEAD (line 1); procedure text starts on line 6.

GOOD = """\
train fit {
  model net = MLP()
  data parity
  loss cross_entropy(net(batch.x), batch.y)
  optimizer adamw(lr = 1e-3)
  steps 10
}
"""


def procedures(body: str):
    spec = paperspec.loads(HEAD + textwrap.dedent(body), "p.pspec")
    return spec.procedures(), spec.claims()


ERRORS = [
    ("unknown optimizer", GOOD.replace("adamw(lr = 1e-3)", "adamx(lr = 1e-3)"), 10, 13, "unknown optimizer `adamx`", "did you mean `adam`?"),
    ("bad optimizer value", GOOD.replace("adamw(lr = 1e-3)", "adamw(lr = -1.0)"), 10, 13, "`lr` must be", None),
    ("unknown schedule", GOOD.replace("  steps 10\n", "  steps 10\n  schedule cosin()\n"), 12, 12, "unknown schedule `cosin`", "did you mean `cosine`?"),
    ("unknown generator", GOOD.replace("  data parity\n", "  data sparse_parityy(n = 8, k = 2)\n"), 8, 8, "unknown data generator `sparse_parityy`", "did you mean `sparse_parity`?"),
    ("unknown data name", GOOD.replace("  data parity\n", "  data parityy\n"), 8, 8, "unknown data `parityy`", "did you mean `parity`?"),
    ("targets of the wrong shape", GOOD.replace("batch.y)", "batch.x)"), 9, 36, "integer class targets", None),
    ("loss not a scalar", GOOD.replace("loss cross_entropy(net(batch.x), batch.y)", "loss net(batch.x)"), 9, 8, "the loss must be a floating-point scalar", "reduce it"),
    ("unknown batch field", GOOD.replace("batch.y)", "batch.z)"), 9, 36, "data `parity` has no field `z`", "fields: x, y"),
    ("field the model cannot take", GOOD.replace("net(batch.x)", "net(batch.y)"), 9, 26, "argument 1 of `MLP` is i64[B]", None),
    ("missing loss", GOOD.replace("  loss cross_entropy(net(batch.x), batch.y)\n", ""), 6, 1, "`fit` has no `loss`", "e.g. `loss"),
    ("missing steps", GOOD.replace("  steps 10\n", ""), 6, 1, "`fit` has no `steps`", None),
    ("after an unknown procedure", GOOD.replace("train fit {", "train fit after teachr {"), 6, 1, "unknown procedure `teachr` in `after`", None),
    ("freeze naming no model", GOOD.replace("  steps 10\n", "  steps 10\n  freeze nett.*\n"), 12, 3, "patterns start with a model", "did you mean `net`?"),
    ("unknown metric in a claim", GOOD + "expect fit.eval.acc > 0.5\n", 13, 8, "procedure `fit` has no eval metric `acc`", None),
    ("unknown procedure in a claim", GOOD + "expect fitt.train.loss < 1.0\n", 13, 8, "unknown procedure `fitt` in claim", "did you mean `fit`?"),
    ("within not a positive int", GOOD + "expect fit.train.loss < 1.0 within 0 steps\n", 13, 36, "`within` needs a positive integer", None),
    ("unknown claim function", GOOD + "expect sqrt(fit.train.loss) < 1.0\n", 13, 8, "a claim cannot call `sqrt`", None),
    ("model never used", GOOD.replace("  data parity\n", "  model spare = MLP()\n  data parity\n"), 8, 17, "model `spare` is never used by a loss", None),
    ("duplicate procedure", GOOD + GOOD, 13, 7, "procedure `fit` is defined twice", None),
    ("dependency cycle", GOOD.replace("train fit {", "train fit after fit {"), 6, 1, "depends on itself", None),
    ("bad ema decay", GOOD.replace("  data parity\n", "  data parity\n  model avg = ema(net, decay = 1.5)\n"), 9, 32, "`decay` of ema must be in [0, 1)", None),
]


@pytest.mark.parametrize(("label", "body", "line", "column", "message", "hint"), ERRORS, ids=[e[0] for e in ERRORS])
def test_procedure_errors_point_at_the_spec(label, body, line, column, message, hint):
    with pytest.raises(SpecError) as caught:
        procedures(body)
    error = caught.value
    assert message in error.message, error.format()
    assert (error.span.line, error.span.column) == (line, column), error.format()
    if hint is not None:
        assert hint in (error.hint or ""), error.format()


def test_phases_inherit_and_override_settings():
    body = GOOD.replace("  steps 10\n", "  batch 16\n  phase a { steps 5 }\n  phase b { steps 7; batch 8; optimizer sgd(lr = 0.1) }\n")
    (fit,), _ = procedures(body)[0].values(), None
    assert [(p.name, p.steps, p.batch, p.optimizer[0]) for p in fit.phases] == [("a", 5, 16, "adamw"), ("b", 7, 8, "sgd")]
    assert fit.steps == 12


def test_metric_names_and_the_bare_loss():
    body = GOOD.replace("  steps 10\n", "  steps 10\n  eval every 5 { accuracy(net(batch.x), batch.y); loss; top = accuracy(net(batch.x), batch.y) }\n")
    fit = procedures(body)[0]["fit"]
    assert fit.metric_names() == ["accuracy", "loss", "top"]
    assert fit.evaluation.every == 5


def test_teachers_and_their_checkpoints():
    body = GOOD.replace("  steps 10\n", "  steps 10\n  checkpoint every 4\n") + textwrap.dedent(
        """
        train student after fit {
          model s = MLP()
          data parity
          optimizer sgd(lr = 0.1)
          for step in fit.checkpoints {
            phase { loss kl_div(s(batch.x), fit[step].net(batch.x)); steps 2 }
          }
        }
        """
    )
    found, _ = procedures(body)
    student = found["student"]
    assert list(found) == ["fit", "student"]
    assert student.teachers == {"fit_net": ("fit", "net")}
    assert [p.teacher_steps for p in student.phases] == [{"fit_net": 4}, {"fit_net": 8}, {"fit_net": 10}]


def test_a_checkpoint_step_that_was_never_saved():
    body = GOOD + textwrap.dedent(
        """
        train student after fit {
          model s = MLP()
          data parity
          optimizer sgd(lr = 0.1)
          loss kl_div(s(batch.x), fit[3].net(batch.x))
          steps 2
        }
        """
    )
    with pytest.raises(SpecError, match="saves no checkpoint at step 3"):
        procedures(body)
