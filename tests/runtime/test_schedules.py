"""The schedule registry against torch's schedulers and closed-form values."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from paperspec.runtime.schedules import all_schedules, get_schedule, make_scheduler, validate

BASE_LR = 0.2


def sgd(groups: int = 1) -> torch.optim.Optimizer:
    params = [{"params": [torch.nn.Parameter(torch.zeros(1))]} for _ in range(groups)]
    return torch.optim.SGD(params, lr=BASE_LR)


def lrs(scheduler, optimizer: torch.optim.Optimizer, steps: int) -> list:
    """The first group's lr at each step 0..steps, stepping as a training loop does."""
    seen = []
    for _ in range(steps + 1):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen


@pytest.mark.parametrize("total, min_factor", [(10, 0.0), (37, 0.1)])
def test_cosine_matches_torch(total, min_factor):
    ours, theirs = sgd(), sgd()
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(theirs, T_max=total, eta_min=BASE_LR * min_factor)
    expected = lrs(scheduler, theirs, total)
    got = lrs(make_scheduler(ours, "cosine", {"min_factor": min_factor}, total), ours, total)
    assert got == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("every, gamma", [(3, 0.1), (7, 0.5)])
def test_step_matches_torch(every, gamma):
    ours, theirs = sgd(), sgd()
    expected = lrs(torch.optim.lr_scheduler.StepLR(theirs, step_size=every, gamma=gamma), theirs, 20)
    got = lrs(make_scheduler(ours, "step", {"every": every, "gamma": gamma}, 20), ours, 20)
    assert got == pytest.approx(expected, abs=1e-12)


# (schedule, args, phase steps, {step: factor}), values worked out by hand.
CLOSED_FORM = [
    ("constant", {}, 10, {0: 1.0, 9: 1.0, 10: 1.0}),
    (
        "warmup_cosine",
        {"warmup": 10, "min_factor": 0.1},
        100,
        {0: 0.1, 4: 0.5, 9: 1.0, 10: 1.0, 55: 0.55, 99: 0.1 + 0.45 * (1 + math.cos(math.pi * 89 / 90)), 100: 0.1},
    ),
    ("warmup_cosine", {"warmup": 0}, 10, {0: 1.0, 5: 0.5, 10: 0.0}),
    ("warmup_cosine", {"warmup": 4}, 4, {0: 0.25, 3: 1.0, 4: 1.0}),
    ("linear_warmup", {"warmup": 4}, 50, {0: 0.25, 1: 0.5, 3: 1.0, 4: 1.0, 49: 1.0}),
    (
        "warmup_constant_cooldown",
        {"warmup": 10, "cooldown": 20},
        100,
        {0: 0.1, 9: 1.0, 10: 1.0, 79: 1.0, 80: 1.0, 90: 0.5, 99: 0.05, 100: 0.0},
    ),
    ("warmup_constant_cooldown", {"cooldown": 4}, 8, {0: 1.0, 3: 1.0, 4: 1.0, 5: 0.75, 7: 0.25, 8: 0.0}),
    ("warmup_constant_cooldown", {"warmup": 2, "cooldown": 0}, 8, {0: 0.5, 1: 1.0, 8: 1.0}),
    ("step", {"every": 5, "gamma": 0.5}, 20, {0: 1.0, 4: 1.0, 5: 0.5, 10: 0.25, 19: 0.125}),
]


@pytest.mark.parametrize("name, args, total, expected", CLOSED_FORM, ids=[f"{c[0]}-{i}" for i, c in enumerate(CLOSED_FORM)])
def test_closed_form_values(name, args, total, expected):
    definition = get_schedule(name)
    bound = {arg.name: args.get(arg.name, arg.default) for arg in definition.signature}
    got = {step: definition.factor(step, total, bound) for step in expected}
    assert got == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("name, args, total, expected", CLOSED_FORM[1:3])
def test_make_scheduler_drives_every_group(name, args, total, expected):
    optimizer = sgd(groups=2)
    scheduler = make_scheduler(optimizer, name, args, total)
    seen = {}
    for step in range(total + 1):
        seen[step] = [group["lr"] for group in optimizer.param_groups]
        optimizer.step()
        scheduler.step()
    for step, factor in expected.items():
        assert seen[step] == pytest.approx([BASE_LR * factor] * 2, abs=1e-12), step


@pytest.mark.parametrize("name", sorted(all_schedules()))
def test_factors_stay_in_unit_interval(name):
    args = {"every": 3, "warmup": 5, "cooldown": 7}
    definition = get_schedule(name)
    bound = {a.name: args.get(a.name, a.default) for a in definition.signature}
    factors = [definition.factor(step, 30, bound) for step in range(31)]
    assert all(0.0 <= f <= 1.0 for f in factors), factors


BAD_ARGS = [
    ("warmup_cosine", {"warmup": 200}, 100, "schedule `warmup_cosine`: `warmup` (200) is longer than the phase's 100 steps"),
    ("warmup_cosine", {"warmup": 10, "min_factor": 1.5}, 100, "`min_factor` must be in [0, 1], got 1.5"),
    ("warmup_cosine", {}, 100, "schedule `warmup_cosine` needs argument `warmup`"),
    ("linear_warmup", {"warmup": -1}, 100, "schedule `linear_warmup`: `warmup` must be >= 0"),
    ("linear_warmup", {"warmup": 101}, 100, "`warmup` (101) is longer than the phase's 100 steps"),
    ("warmup_constant_cooldown", {"cooldown": 150}, 100, "`cooldown` (150) is longer than the phase's 100 steps"),
    ("warmup_constant_cooldown", {"warmup": 60, "cooldown": 50}, 100, "`warmup` (60) and `cooldown` (50) overlap"),
    ("step", {"every": 10, "gamma": -0.5}, 100, "schedule `step`: `gamma` must be > 0, got -0.5"),
    ("step", {"every": 0}, 100, "schedule `step`: `every` must be >= 1"),
    ("step", {"every": 2.5}, 100, "schedule `step`: `every` must be an integer"),
    ("cosine", {"min_factor": -0.1}, 100, "schedule `cosine`: `min_factor` must be in [0, 1]"),
    ("cosine", {"warmup": 5}, 100, "schedule `cosine` has no argument `warmup`"),
    ("cosine", {}, 0, "schedule `cosine`: the phase needs at least 1 step"),
    ("exponential", {}, 100, "unknown schedule `exponential`"),
]


@pytest.mark.parametrize("name, args, total, message", BAD_ARGS)
def test_validate_names_schedule_and_argument(name, args, total, message):
    assert message in validate(name, args, total)
    with pytest.raises(ValueError, match="schedule"):
        make_scheduler(sgd(), name, args, total)


@pytest.mark.parametrize(
    "name, args", [("constant", {}), ("cosine", {}), ("warmup_cosine", {"warmup": 100}), ("warmup_constant_cooldown", {"warmup": 50, "cooldown": 50})]
)
def test_valid_arguments(name, args):
    assert validate(name, args, 100) is None


def test_signatures_read_by_the_compiler():
    assert set(all_schedules()) >= {"constant", "step", "cosine", "warmup_cosine", "linear_warmup", "warmup_constant_cooldown"}
    assert get_schedule("warmup_constant_cooldown").describe() == "warmup_constant_cooldown(warmup: int = 0, cooldown: int)"
    assert get_schedule("nope") is None


def test_import_does_not_import_torch():
    """The compiler reads signatures and validates arguments without paying for torch."""
    code = "import sys; import paperspec.runtime.schedules as m; m.validate('cosine', {}, 10); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
