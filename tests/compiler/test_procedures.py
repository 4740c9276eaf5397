"""Training procedures: spec-located errors, and how phases, metrics and teachers elaborate."""

import textwrap

import pytest
import torch
import torch.nn.functional as F

import paperspec
from paperspec import SpecError
from paperspec.compiler.diagnostics import UsageError
from paperspec.compiler.procedures import checkpoint_steps
from paperspec.runtime.data import get_generator

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


TEACHER_OF_FIT = """\
train s after fit {
  model s = MLP()
  data parity
  loss kl_div(s(batch.x), fit.nett(batch.x))
  optimizer sgd(lr = 0.1)
  steps 2
}
"""


def _with(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new)


LOSS = "cross_entropy(net(batch.x), batch.y)"

ERRORS = [
    # registries: optimizers, schedules, data generators
    ("unknown optimizer", _with("adamw(lr = 1e-3)", "adamx(lr = 1e-3)"), 10, 13, "unknown optimizer `adamx`", "did you mean `adam`?"),
    ("bad optimizer value", _with("adamw(lr = 1e-3)", "adamw(lr = -1.0)"), 10, 13, "`lr` must be", None),
    ("unknown optimizer argument", _with("adamw(lr = 1e-3)", "adamw(lrr = 1e-3)"), 10, 19, "`adamw` has no argument `lrr`", "did you mean `lr`?"),
    ("optimizer argument of the wrong type", _with("adamw(lr = 1e-3)", 'adamw(lr = "fast")'), 10, 19, "argument `lr` of `adamw` must be a number", None),
    ("unknown schedule", _with("  steps 10\n", "  steps 10\n  schedule cosin()\n"), 12, 12, "unknown schedule `cosin`", "did you mean `cosine`?"),
    ("warmup longer than the phase", _with("  steps 10\n", "  steps 10\n  schedule warmup_cosine(warmup = 20)\n"), 12, 12, "longer than the phase's 10 steps", None),
    ("unknown generator", _with("  data parity\n", "  data sparse_parityy(n = 8, k = 2)\n"), 8, 8, "unknown data generator `sparse_parityy`", "did you mean `sparse_parity`?"),
    ("unknown data name", _with("  data parity\n", "  data parityy\n"), 8, 8, "unknown data `parityy`", "did you mean `parity`?"),
    ("duplicate data", GOOD + "data parity = sparse_parity(n = 8, k = 3)\n", 13, 1, "data `parity` is declared twice", None),
    # losses over tensors of the wrong dtype or shape
    ("float class targets", _with("batch.y)", "batch.x)"), 9, 36, "integer class targets", "cast them"),
    ("class targets of the wrong shape", _with("batch.y)", "cast(batch.x, 'i64'))"), 9, 36,
     "targets must have the logits' shape without the class dim: logits f32[B, 2] vs target i64[B, 8]", "expected target of shape [B]"),
    ("mse of unequal shapes", _with(LOSS, "mse(net(batch.x), batch.x)"), 9, 26, "`mse` needs equal shapes: prediction f32[B, 2] vs target f32[B, 8]", None),
    ("loss not a scalar", _with(LOSS, "net(batch.x)"), 9, 8, "the loss must be a floating-point scalar, got tensor f32[B, 2]", "reduce it"),
    ("integer loss", _with(LOSS, "sum(batch.y)"), 9, 8, "the loss must be a floating-point scalar, got tensor i64[]", None),
    # data fields and the model's inputs
    ("unknown batch field", _with("batch.y)", "batch.z)"), 9, 36, "data `parity` has no field `z`", "fields: x, y"),
    ("field of the wrong dtype", _with("net(batch.x)", "net(batch.y)"), 9, 26, "argument 1 of `MLP` is i64[B]", None),
    ("field of the wrong width", _with("  data parity\n", "  data sparse_parity(n = 6, k = 2)\n"), 9, 26,
     "argument 1 of `MLP` is f32[B, 6], but input `x` is declared f32[B, 8]", "dim 1 is 6, expected 8"),
    ("field of the wrong rank", _with("net(batch.x)", "net(batch.x[:, 0])"), 9, 26, "argument 1 of `MLP` is f32[B]", "rank 1 is not 2"),
    # required settings
    ("missing loss", _with("  loss cross_entropy(net(batch.x), batch.y)\n", ""), 6, 1, "`fit` has no `loss`", "e.g. `loss"),
    ("missing data", _with("  data parity\n", ""), 6, 1, "`fit` has no `data`", "e.g. `data train_set`"),
    ("missing optimizer", _with("  optimizer adamw(lr = 1e-3)\n", ""), 6, 1, "`fit` has no `optimizer`", "e.g. `optimizer adamw"),
    ("missing steps", _with("  steps 10\n", ""), 6, 1, "`fit` has no `steps`", "e.g. `steps 1000`"),
    ("missing steps in a phase", _with("  steps 10\n", "  phase a { steps 3 }\n  phase b { batch 4 }\n"), 12, 3, "`fit` has no `steps` in phase `b`", None),
    ("steps and epochs", _with("  steps 10\n", "  steps 10\n  epochs 2\n"), 12, 3, "give `steps` or `epochs`, not both", None),
    ("zero steps", _with("steps 10", "steps 0"), 11, 9, "steps must be an integer >= 1, got int 0", None),
    ("fractional steps", _with("steps 10", "steps 2.5"), 11, 9, "steps must be an integer >= 1, got float 2.5", None),
    ("zero batch", _with("  steps 10\n", "  steps 10\n  batch 0\n"), 12, 9, "batch must be an integer >= 1", None),
    ("negative seed", _with("  steps 10\n", "  steps 10\n  seed -1\n"), 12, 8, "seed must be an integer >= 0", None),
    ("zero checkpoint interval", _with("  steps 10\n", "  steps 10\n  checkpoint every 0\n"), 12, 20, "checkpoint interval must be an integer >= 1", None),
    ("zero eval interval", _with("  steps 10\n", "  steps 10\n  eval every 0 { loss }\n"), 12, 14, "eval interval must be an integer >= 1", None),
    ("unknown model parameter", _with("  steps 10\n", "  steps 10\n  h = zeros([net.clases])\n"), 12, 14, "`MLP` has no parameter `clases`", "did you mean `classes`?"),
    ("zero eval batch", _with("  steps 10\n", "  steps 10\n  eval batch 0 { loss }\n"), 12, 14, "eval batch must be an integer >= 1", None),
    # procedures and their dependencies
    ("after an unknown procedure", _with("train fit {", "train fit after teachr {"), 6, 17, "unknown procedure `teachr` in `after`", None),
    ("dependency cycle", _with("train fit {", "train fit after fit {"), 6, 17, "procedure `fit` depends on itself through `after`", None),
    ("dependency cycle of two", _with("train fit {", "train fit after other {") + _with("train fit {", "train other after fit {"), 13, 19,
     "depends on itself through `after`", None),
    ("duplicate procedure", GOOD + GOOD, 13, 7, "procedure `fit` is defined twice", None),
    ("teacher without that model", GOOD + TEACHER_OF_FIT, 16, 27, "procedure `fit` has no model `nett`", "did you mean `net`?"),
    ("model never used", _with("  data parity\n", "  model spare = MLP()\n  data parity\n"), 8, 17, "model `spare` is never used by a loss", None),
    ("duplicate model", _with("  data parity\n", "  model net = MLP()\n  data parity\n"), 8, 3, "`net` is already defined in `fit`", None),
    ("unknown model block", _with("model net = MLP()", "model net = MLPP()"), 7, 15, "unknown name `MLPP`", "did you mean `MLP`?"),
    ("a model inside a phase", _with("  steps 10\n", "  phase a { steps 3; model z = MLP() }\n"), 11, 22, "a phase may set data, loss, optimizer", None),
    ("bad ema decay", _with("  data parity\n", "  data parity\n  model avg = ema(net, decay = 1.5)\n"), 9, 32, "`decay` of ema must be in [0, 1)", None),
    # freezing
    ("freeze naming no model", _with("  steps 10\n", "  steps 10\n  freeze nett.*\n"), 12, 3, "patterns start with a model", "did you mean `net`?"),
    ("freeze in a phase naming no model", _with("  steps 10\n", "  phase a { steps 3; freeze nett }\n"), 11, 22, "patterns start with a model of `fit`, got `nett`", "did you mean `net`?"),
    # evaluation
    ("metric not a scalar", _with("  steps 10\n", "  steps 10\n  eval { net(batch.x) }\n"), 12, 10, "metric `net` must be a floating-point scalar", "reduce it"),
    ("metric without a name", _with("  steps 10\n", "  steps 10\n  eval { 1.0 + accuracy(net(batch.x), batch.y) }\n"), 12, 10, "name this metric: `name = expression`", None),
    ("metric listed twice", _with("  steps 10\n", "  steps 10\n  eval { loss; loss }\n"), 12, 16, "metric `loss` is listed twice", "name one with"),
    ("eval on unknown data", _with("  steps 10\n", "  steps 10\n  eval on parityy { loss }\n"), 12, 11, "unknown data `parityy`", "did you mean `parity`?"),
    # claims
    ("unknown metric in a claim", GOOD + "expect fit.eval.acc > 0.5\n", 13, 8, "procedure `fit` has no eval metric `acc`", "metrics: none"),
    ("unknown procedure in a claim", GOOD + "expect fitt.train.loss < 1.0\n", 13, 8, "unknown procedure `fitt` in claim", "did you mean `fit`?"),
    ("claim path too short", GOOD + "expect fit.eval < 1\n", 13, 8, "a claim names metrics as `procedure.eval.metric`", None),
    ("unknown name in a claim", GOOD + "expect fit.train.loss < x\n", 13, 25, "unknown name `x` in claim", None),
    ("claim without a metric", GOOD + "expect 1 < 2\n", 13, 8, "a claim reads at least one metric", None),
    ("claim operator", GOOD + "expect fit.train.loss % 2 < 1\n", 13, 8, "a claim cannot use this expression", None),
    ("claim subscript", GOOD + "expect fit.train.loss[0] < 1\n", 13, 8, "a claim cannot use this expression", None),
    ("claim keyword argument", GOOD + "expect min(fit.train.loss, 1.0, key = 2) < 1\n", 13, 33, "functions in claims take no keyword arguments", None),
    ("steps_to without a metric", GOOD + "expect steps_to(1 < 2) < 5\n", 13, 8, "`steps_to` takes one comparison", None),
    ("within zero", GOOD + "expect fit.train.loss < 1.0 within 0 steps\n", 13, 36, "`within` needs a positive integer", None),
    ("within negative", GOOD + "expect fit.train.loss < 1.0 within -3 steps\n", 13, 36, "`within` needs a positive integer", None),
    ("within fractional", GOOD + "expect fit.train.loss < 1.0 within 2.5 steps\n", 13, 36, "`within` needs a positive integer", None),
    ("unknown claim function", GOOD + "expect sqrt(fit.train.loss) < 1.0\n", 13, 8, "a claim cannot call `sqrt`", "claims may use"),
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


def test_an_error_prints_as_path_line_column_with_a_caret():
    with pytest.raises(SpecError) as caught:
        procedures(_with("batch.y)", "batch.z)"))
    text = caught.value.format()
    assert text.startswith("p.pspec:9:36: error: data `parity` has no field `z`")
    assert "loss cross_entropy(net(batch.x), batch.z)" in text and "^^^^^^^" in text


PHASED = """\
data other = sparse_parity(n = 8, k = 3)
train fit {
  model net = MLP()
  data parity
  loss cross_entropy(net(batch.x), batch.y)
  optimizer adamw(lr = 1e-3)
  schedule warmup_cosine(warmup = 2)
  batch 16
  seed 5
  checkpoint every 4
  freeze net.linear
  phase a { steps 5 }
  phase b {
    steps 7; batch 8; optimizer sgd(lr = 0.1); schedule constant(); data other
    loss cross_entropy(net(batch.x), batch.y, label_smoothing = 0.3)
    unfreeze net.linear
  }
  eval { loss }
}
"""


def test_phases_inherit_train_level_settings_and_override_them():
    fit = procedures(PHASED)[0]["fit"]
    a, b = fit.phases
    assert (a.name, a.steps, a.batch, a.optimizer[0], a.optimizer[1]["lr"], a.schedule[0], a.data.name) == ("a", 5, 16, "adamw", 1e-3, "warmup_cosine", "parity")
    assert a.schedule[1]["warmup"] == 2
    assert (b.name, b.steps, b.batch, b.optimizer[0], b.optimizer[1]["lr"], b.schedule[0], b.data.name) == ("b", 7, 8, "sgd", 0.1, "constant", "other")
    assert a.freeze == [(True, ("net", "linear"))]
    assert b.freeze == [(True, ("net", "linear")), (False, ("net", "linear"))]
    assert (a.loss.name, b.loss.name) == ("loss_0", "loss_1")
    assert [i.name for i in a.loss.inputs] == ["x", "y"]
    assert (fit.steps, fit.seed, fit.checkpoint_every) == (12, 5, 4)
    assert checkpoint_steps(fit) == (4, 8, 12)
    assert fit.evaluation.every is None and fit.evaluation.data.name == "other"  # the last phase's data


def test_a_procedure_without_phases_has_one_main_phase_with_defaults():
    (fit,) = procedures(GOOD)[0].values()
    (main,) = fit.phases
    assert (main.name, main.steps, main.batch, main.schedule, main.freeze, fit.seed) == ("main", 10, 32, ("constant", {}), [], 0)
    assert fit.models == ["net"] and fit.evaluation is None and checkpoint_steps(fit) == (10,)


def test_the_bare_loss_metric_is_the_last_phases_loss():
    spec = paperspec.loads(HEAD + PHASED, "p.pspec")
    fit = spec.procedure("fit")
    assert fit.metric_names() == ["loss"]
    torch.manual_seed(0)
    module = spec.build_procedure("fit")
    assert sorted(module.state_dict()) == ["net.linear.bias", "net.linear.weight", "net.linear_1.bias", "net.linear_1.weight"]
    batch = get_generator("sparse_parity").sampler(fit.phases[1].data.args).sample(16, torch.Generator().manual_seed(0))
    x, y = batch["x"], batch["y"]
    logits = module.net(x)
    first = module("loss_0", x, y)["loss"]
    second = module("loss_1", x, y)["loss"]
    metric = module.metrics(*(batch[i.name] for i in fit.evaluation.metrics.inputs))["loss"]
    torch.testing.assert_close(first, F.cross_entropy(logits, y))
    torch.testing.assert_close(second, F.cross_entropy(logits, y, label_smoothing=0.3))
    torch.testing.assert_close(metric, second)
    assert not torch.allclose(first, second)


def test_metric_names_and_the_bare_loss():
    body = _with("  steps 10\n", "  steps 10\n  eval every 5 { accuracy(net(batch.x), batch.y); loss; top = accuracy(net(batch.x), batch.y) }\n")
    fit = procedures(body)[0]["fit"]
    assert fit.metric_names() == ["accuracy", "loss", "top"]
    assert fit.evaluation.every == 5 and fit.evaluation.data.name == "parity"


def test_metrics_read_the_procedures_bindings_on_the_evaluation_batch():
    body = """\
    data moons = two_moons()
    train fit {
      model net = MLP()
      data parity
      logits = net(batch.x)
      hard = cross_entropy(logits, batch.y)
      unused_on_eval = batch.x * 2
      loss hard
      optimizer sgd(lr = 0.1)
      steps 2
      eval on parity { acc = accuracy(logits, batch.y); hard }
    }
    """
    spec = paperspec.loads(HEAD + textwrap.dedent(body), "p.pspec")
    fit = spec.procedure("fit")
    assert fit.metric_names() == ["acc", "hard"]
    torch.manual_seed(0)
    module = spec.build_procedure("fit")
    batch = get_generator("sparse_parity").sampler(fit.evaluation.data.args).sample(32, torch.Generator().manual_seed(1))
    metrics = module.metrics(*(batch[i.name] for i in fit.evaluation.metrics.inputs))
    logits = module.net(batch["x"])
    torch.testing.assert_close(metrics["hard"], F.cross_entropy(logits, batch["y"]))
    torch.testing.assert_close(metrics["acc"], (logits.argmax(-1) == batch["y"]).float().mean())


def test_a_binding_no_metric_reads_may_use_fields_the_evaluation_data_lacks():
    body = """\
    data pairs = modular_arithmetic(modulus = 7)
    train fit {
      model net = MLP()
      data parity
      logits = net(batch.x)
      loss cross_entropy(logits, batch.y)
      optimizer sgd(lr = 0.1)
      steps 2
      eval on pairs { mean_label = mean(batch.y * 1.0) }
    }
    """
    # `logits = net(batch.x)` cannot run on pairs' batch.x (i64[2], not f32[8]); no metric needs it.
    assert procedures(body)[0]["fit"].metric_names() == ["mean_label"]
    typo = body.replace("      logits = net(batch.x)\n", "      logits = net(batch.x)\n      unused = batch.z\n")
    with pytest.raises(SpecError, match="z"):
        procedures(typo)  # bindings are all checked on the training batch


TWO_EVALS = """\
data moons = two_moons()
train fit {
  model net = MLP()
  data parity
  loss cross_entropy(net(batch.x), batch.y)
  optimizer sgd(lr = 0.1)
  steps 4
  eval every 2 on parity { fit_acc = accuracy(net(batch.x), batch.y) }
  eval every 2 on parity { loss; other = mean(batch.y * 1.0) }
}
expect fit.eval.fit_acc >= fit.eval.other
"""


def test_several_evaluations_run_together_and_their_metrics_merge():
    spec = paperspec.loads(HEAD + TWO_EVALS, "p.pspec")
    fit = spec.procedure("fit")
    assert fit.metric_names() == ["fit_acc", "loss", "other"]
    assert [e.metrics.name for e in fit.evaluations] == ["metrics", "metrics_1"]
    assert len(spec.claims()) == 1


@pytest.mark.parametrize(
    ("old", "new", "message", "line"),
    [
        ("eval every 2 on parity { loss;", "eval every 3 on parity { loss;", "runs every 3 steps and the one at line 13 every 2 steps", 14),
        ("{ loss; other = mean(batch.y * 1.0) }", "{ loss; fit_acc = mean(batch.y * 1.0) }", "metric `fit_acc` is listed twice", 14),
    ],
)
def test_evaluations_share_a_schedule_and_distinct_names(old, new, message, line):
    with pytest.raises(SpecError, match=message) as error:
        paperspec.loads(HEAD + TWO_EVALS.replace(old, new), "p.pspec").procedures()
    assert error.value.span.line == line


def test_claims_keep_their_text_and_window():
    body = GOOD.replace("  steps 10\n", "  steps 10\n  eval every 5 { accuracy(net(batch.x), batch.y) }\n")
    body += "expect fit.eval.accuracy >= 0.9 within 100 steps\nexpect fit.train.loss < 0.1 and steps_to(fit.eval.accuracy > 0.5) <= 50\n"
    _, claims = procedures(body)
    assert [(c.text, c.within) for c in claims] == [
        ("expect fit.eval.accuracy >= 0.9 within 100 steps", 100),
        ("expect fit.train.loss < 0.1 and steps_to(fit.eval.accuracy > 0.5) <= 50", None),
    ]


def test_ema_models_average_a_model_of_the_procedure():
    fit = procedures(_with("  data parity\n", "  model avg = ema(net, decay = 0.9)\n  data parity\n"))[0]["fit"]
    assert fit.models == ["net", "avg"] and fit.emas == {"avg": ("net", 0.9)}


def test_choosing_a_procedure_by_name():
    spec = paperspec.loads(HEAD + GOOD + GOOD.replace("train fit {", "train other {"), "p.pspec")
    with pytest.raises(UsageError, match="has 2 training procedures; name one"):
        spec.procedure()
    with pytest.raises(UsageError, match="has no procedure `fitt`") as caught:
        spec.procedure("fitt")
    assert "did you mean `fit`?" in caught.value.hint
    assert spec.procedure("other").name == "other"


def test_teachers_through_after_use_the_teachers_model_and_final_weights():
    body = textwrap.dedent(
        """
        train student after fit {
          model s = MLP()
          data parity
          optimizer sgd(lr = 0.1)
          loss kl_div(s(batch.x), fit.net(batch.x), temperature = 2)
          steps 3
        }
        """
    ) + GOOD.replace("model net = MLP()", "model net = MLP(classes = 2)")
    found, _ = procedures(body)
    student = found["student"]
    assert list(found) == ["fit", "student"]  # dependency order, not file order
    assert student.models == ["s"] and student.teachers == {"fit_net": ("fit", "net")}
    assert [p.teacher_steps for p in student.phases] == [{"fit_net": None}]
    teacher = student.modules.modules["fit_net"].graph
    assert (teacher.block, teacher.args) == ("MLP", found["fit"].modules.modules["net"].graph.args)


def test_an_evaluation_only_procedure_reads_a_trained_model():
    body = GOOD + "data other = sparse_parity(n = 8, k = 3)\ntrain probe after fit {\n  eval on other { accuracy(fit.net(batch.x), batch.y) }\n}\n"
    probe = procedures(body)[0]["probe"]
    assert probe.phases == [] and probe.metric_names() == ["accuracy"] and probe.evaluation.data.name == "other"
    assert probe.teachers == {"fit_net": ("fit", "net")}
    with pytest.raises(SpecError, match="needs `eval on DATA"):
        procedures(body.replace("eval on other {", "eval {"))


def test_teachers_and_their_checkpoints():
    body = _with("  steps 10\n", "  steps 10\n  checkpoint every 4\n") + textwrap.dedent(
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


def test_the_loss_does_not_compute_what_only_metrics_read():
    """A binding only a metric reads (here a random draw and a second forward pass) is checked
    on the training data but not computed at every training step."""
    spec = paperspec.loads(HEAD + textwrap.dedent(_with("  steps 10\n", """\
          steps 10
          noisy = net(batch.x + randn([batch.x.shape[0], 8]))
          eval every 5 { robust = accuracy(noisy, batch.y) }
        """)), "p.pspec")
    source = spec.procedure_source("fit")
    loss = source[source.index("def loss_0"):source.index("def metrics")]
    metrics = source[source.index("def metrics"):]
    assert "randn" not in loss and loss.count("self.net(") == 1
    assert "randn" in metrics


def test_a_procedure_reads_its_models_parameters():
    """`net.classes` is the argument the model was made with (or its default): a binding sized by
    the model does not repeat the number."""
    spec = paperspec.loads(HEAD + textwrap.dedent(_with("  loss cross_entropy(net(batch.x), batch.y)\n", """\
          wide = MLP(classes = 3)
          loss cross_entropy(net(batch.x), batch.y) + mean(zeros([net.classes + net.n + wide.classes]))
        """)), "p.pspec")
    graph = spec.procedure("fit").phases[0].loss
    shapes = [node.types[0].shape for node in graph.nodes() if node.op == "zeros"]
    assert shapes == [(13,)]


def test_a_binding_nothing_reads_is_a_warning_at_its_line():
    spec = paperspec.loads(HEAD + textwrap.dedent(_with("  loss cross_entropy(net(batch.x), batch.y)\n", """\
          logits = net(batch.x)
          scaled = 2.0 * logits
          forgotten = net(batch.x + 1.0)
          loss cross_entropy(logits, batch.y)
          eval { sharp = accuracy(scaled, batch.y) }
        """)), "p.pspec")
    warnings = spec.procedure_warnings()
    assert [(w.message, w.span.line) for w in warnings] == [("`forgotten` is bound but no loss or metric reads it", 11)]


def test_check_prints_procedure_warnings(tmp_path, capsys):
    from paperspec.runtime.cli import main

    path = tmp_path / "p.pspec"
    path.write_text(HEAD + _with("  steps 10\n", "  steps 10\n  unused = net(batch.x)\n"))
    assert main(["check", str(path)]) == 0
    assert "p.pspec:12:3: warning: `unused` is bound but no loss or metric reads it" in capsys.readouterr().err
