"""The optimizer registry against torch's own optimizers and a hand-written Lion loop."""

from __future__ import annotations

import copy as copy_module
import subprocess
import sys

import pytest
import torch
from torch import nn

from paperspec.runtime import optim
from paperspec.runtime.optim import all_optimizers, build_optimizer, get_optimizer, validate

STEPS = 10


def toy_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Tanh(), nn.Linear(8, 2))
    with torch.no_grad():
        for param in model.parameters():
            # Nonzero everywhere, so weight decay visibly moves norm weights and biases too.
            param.uniform_(-1, 1)
    return model


def toy_loss(model: nn.Module) -> torch.Tensor:
    inputs = torch.linspace(-1, 1, 24).reshape(6, 4)
    return (model(inputs) - 0.5).pow(2).mean()


def train(model: nn.Module, optimizer: torch.optim.Optimizer) -> list:
    def closure():
        optimizer.zero_grad()
        loss = toy_loss(model)
        loss.backward()
        return loss

    for _ in range(STEPS):
        closure()
        optimizer.step(closure) if getattr(optimizer, "needs_closure", False) else optimizer.step()
    return [p.detach().clone() for p in model.parameters()]


def split_by_rank(model: nn.Module, **no_decay) -> list:
    """The nanoGPT grouping, written independently of runtime.optim."""
    params = list(model.parameters())
    return [
        {"params": [p for p in params if p.dim() >= 2]},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0, **no_decay},
    ]


REFERENCE_CASES = [
    ("sgd", {"lr": 0.1}, lambda m: torch.optim.SGD(m.parameters(), lr=0.1)),
    (
        "sgd",
        {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01, "decay_all": True},
        lambda m: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    ),
    (
        "sgd",
        {"lr": 0.1, "momentum": 0.5, "weight_decay": 0.05},
        lambda m: torch.optim.SGD(split_by_rank(m), lr=0.1, momentum=0.5, weight_decay=0.05),
    ),
    ("adam", {}, lambda m: torch.optim.Adam(m.parameters())),
    (
        "adam",
        {"lr": 1e-2, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "weight_decay": 0.01, "decay_all": True},
        lambda m: torch.optim.Adam(m.parameters(), lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.01),
    ),
    (
        "adamw",
        {"lr": 1e-2, "decay_all": True},
        lambda m: torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.01),
    ),
    (
        "adamw",
        {"lr": 1e-2, "beta2": 0.95, "weight_decay": 0.1},
        lambda m: torch.optim.AdamW(split_by_rank(m), lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1),
    ),
]


@pytest.mark.parametrize("name, args, reference", REFERENCE_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(REFERENCE_CASES)])
def test_matches_torch_optimizer(name, args, reference):
    ours, theirs = toy_model(), toy_model()
    got = train(ours, build_optimizer(name, args, list(ours.named_parameters())))
    expected = train(theirs, reference(theirs))
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-7, rtol=0)


def lion_reference(model: nn.Module, lr: float, beta1: float, beta2: float, weight_decay: float) -> list:
    params = list(model.parameters())
    momenta = [torch.zeros_like(p) for p in params]
    for _ in range(STEPS):
        grads = torch.autograd.grad(toy_loss(model), params)
        with torch.no_grad():
            for p, m, g in zip(params, momenta, grads, strict=True):
                update = torch.sign(beta1 * m + (1 - beta1) * g)
                p -= lr * (update + weight_decay * p)  # the paper's form of decoupled decay
                m.copy_(beta2 * m + (1 - beta2) * g)
    return [p.detach().clone() for p in params]


def test_lion_matches_hand_written_update():
    settings = {"lr": 1e-2, "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.5}
    ours, theirs = toy_model(), toy_model()
    optimizer = build_optimizer("lion", {**settings, "decay_all": True}, list(ours.named_parameters()))
    assert isinstance(optimizer, optim.Lion) and isinstance(optimizer, torch.optim.Optimizer)
    got = train(ours, optimizer)
    # 1e-6: the reference folds decay into the update, so results differ by an ulp or two.
    for a, b in zip(got, lion_reference(theirs, **settings), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def sam_reference(model: nn.Module, lr: float, rho: float, momentum: float) -> list:
    """SAM written out: gradient at w, ascend to w + rho g/||g||, gradient there, SGD step at w."""
    params = list(model.parameters())
    velocity = [torch.zeros_like(p) for p in params]
    for _ in range(STEPS):
        grads = torch.autograd.grad(toy_loss(model), params)
        norm = torch.sqrt(sum((g * g).sum() for g in grads))
        with torch.no_grad():
            moves = [rho * g / norm for g in grads]
            for p, e in zip(params, moves, strict=True):
                p += e
        sharp = torch.autograd.grad(toy_loss(model), params)
        with torch.no_grad():
            for p, e, g, v in zip(params, moves, sharp, velocity, strict=True):
                p -= e
                v.mul_(momentum).add_(g)
                p -= lr * v
    return [p.detach().clone() for p in params]


def test_sam_matches_a_hand_written_two_pass_step():
    settings = {"lr": 0.05, "rho": 0.1, "momentum": 0.9}
    ours, theirs = toy_model(), toy_model()
    optimizer = build_optimizer("sam", {**settings, "decay_all": True}, list(ours.named_parameters()))
    assert optimizer.needs_closure

    train(ours, optimizer)
    for a, b in zip(ours.parameters(), sam_reference(theirs, **settings), strict=True):
        torch.testing.assert_close(a.detach(), b, atol=1e-6, rtol=0)
    # It is not plain SGD with momentum: the gradient comes from the perturbed point.
    baseline = toy_model()
    plain = train(baseline, torch.optim.SGD(baseline.parameters(), lr=0.05, momentum=0.9))
    assert any(not torch.allclose(a, b) for a, b in zip(ours.parameters(), plain, strict=True))


def test_sam_without_a_closure_is_a_clear_error():
    optimizer = build_optimizer("sam", {"lr": 0.1}, list(toy_model().named_parameters()))
    with pytest.raises(RuntimeError, match="closure"):
        optimizer.step()


DECAY_SETTINGS = {
    "sgd": {"lr": 0.1, "weight_decay": 0.5},
    "adam": {"lr": 0.1, "weight_decay": 0.5},
    "adamw": {"lr": 0.1, "weight_decay": 0.5},
    "lion": {"lr": 0.1, "weight_decay": 0.5},
    "sam": {"lr": 0.1, "weight_decay": 0.5},
}


@pytest.mark.parametrize("name", sorted(DECAY_SETTINGS))
@pytest.mark.parametrize("decay_all", [False, True])
def test_weight_decay_groups(name, decay_all):
    """With zero gradients only weight decay moves a parameter."""
    model = toy_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = build_optimizer(name, {**DECAY_SETTINGS[name], "decay_all": decay_all}, list(model.named_parameters()))
    def zero_gradients():
        for param in model.parameters():
            param.grad = torch.zeros_like(param)

    zero_gradients()
    optimizer.step(zero_gradients) if getattr(optimizer, "needs_closure", False) else optimizer.step()
    for param_name, param in model.named_parameters():
        moved = not torch.equal(param, before[param_name])
        assert moved == (decay_all or param.dim() >= 2), param_name


def test_frozen_parameters_are_skipped():
    model = toy_model()
    model[0].requires_grad_(False)
    optimizer = build_optimizer("adamw", {}, list(model.named_parameters()))
    included = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert included == {id(p) for p in model[1:].parameters()}


def test_tied_parameters_appear_once():
    embedding, head = nn.Embedding(10, 4), nn.Linear(4, 10, bias=False)
    head.weight = embedding.weight
    model = nn.ModuleDict({"embedding": embedding, "head": head})
    named = list(model.named_parameters(remove_duplicate=False))
    assert len(named) == 2
    optimizer = build_optimizer("sgd", {"lr": 0.1}, named)
    assert [p for group in optimizer.param_groups for p in group["params"]] == [embedding.weight]


def test_all_frozen_is_a_clear_error():
    model = toy_model().requires_grad_(False)
    with pytest.raises(ValueError, match="optimizer `sgd`: no trainable parameters"):
        build_optimizer("sgd", {"lr": 0.1}, list(model.named_parameters()))


BAD_ARGS = [
    ("sgd", {"lr": -0.1}, "optimizer `sgd`: `lr` must be >= 0, got -0.1"),
    ("sgd", {"lr": 0.1, "momentum": 1.0}, "optimizer `sgd`: `momentum` must be in [0, 1)"),
    ("sgd", {"lr": 0.1, "nesterov": True}, "optimizer `sgd`: `nesterov = true` needs `momentum` > 0"),
    ("sgd", {}, "optimizer `sgd` needs argument `lr`"),
    ("adam", {"beta1": 1.0}, "optimizer `adam`: `beta1` must be in [0, 1), got 1.0"),
    ("adam", {"eps": -1e-8}, "optimizer `adam`: `eps` must be >= 0"),
    ("adamw", {"beta2": -0.5}, "optimizer `adamw`: `beta2` must be in [0, 1), got -0.5"),
    ("adamw", {"weight_decay": -0.1}, "optimizer `adamw`: `weight_decay` must be >= 0"),
    ("adamw", {"lr": "fast"}, "optimizer `adamw`: `lr` must be a finite number"),
    ("adamw", {"lr": float("nan")}, "optimizer `adamw`: `lr` must be a finite number"),
    ("lion", {"beta2": 1.5}, "optimizer `lion`: `beta2` must be in [0, 1)"),
    ("lion", {"momentum": 0.9}, "optimizer `lion` has no argument `momentum`"),
    ("adamx", {}, "unknown optimizer `adamx`"),
    ("sam", {"lr": 0.1, "rho": 0.0}, "optimizer `sam`: `rho` (the neighbourhood radius) must be > 0"),
]


@pytest.mark.parametrize("name, args, message", BAD_ARGS)
def test_validate_names_optimizer_and_argument(name, args, message):
    assert message in validate(name, args)
    with pytest.raises(ValueError, match="optimizer"):
        build_optimizer(name, args, list(toy_model().named_parameters()))


@pytest.mark.parametrize("name", ["adam", "adamw", "lion"])
def test_defaults_are_valid(name):
    assert validate(name, {}) is None


def test_signatures_read_by_the_compiler():
    assert set(all_optimizers()) >= {"sgd", "adam", "adamw", "lion"}
    for definition in all_optimizers().values():
        names = [arg.name for arg in definition.signature]
        assert ("weight_decay" in names) == ("decay_all" in names), definition.name
    assert get_optimizer("adamw").describe().startswith("adamw(lr: float = 0.001, beta1: float = 0.9")
    assert get_optimizer("nope") is None


def test_lion_state_survives_a_checkpoint():
    model, copy = toy_model(), toy_model()
    optimizer = build_optimizer("lion", {"lr": 1e-2}, list(model.named_parameters()))
    train(model, optimizer)
    copy.load_state_dict(model.state_dict())
    restored = build_optimizer("lion", {"lr": 1e-2}, list(copy.named_parameters()))
    # A deep copy, as saving and loading would make: load_state_dict keeps matching tensors shared.
    restored.load_state_dict(copy_module.deepcopy(optimizer.state_dict()))
    for a, b in zip(train(model, optimizer), train(copy, restored), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_import_does_not_import_torch():
    """The compiler reads signatures and validates arguments without paying for torch."""
    code = "import sys; import paperspec.runtime.optim as m; m.validate('adamw', {}); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
