"""Weight-space models: interpolation, weight matching (recovering a hidden permutation, against brute
force) and the loss barrier a procedure measures with them, against hand-written references."""

import itertools
import textwrap

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import paperspec
from paperspec.compiler.weightspace import permutation_axes
from paperspec.runtime.train import Trainer
from paperspec.runtime.weightspace import interpolate_states, match_permutations, permute_state

MLP = """
model MLP(width: int = 12) {
  in x: f32[B, 5]
  h = relu(linear(x, width))
  h = gelu(layernorm(linear(h, width)))
  out logits: f32[B, 3] = linear(h, 3)
}
"""


def mlp(width: int = 12, seed: int = 0):
    spec = paperspec.loads(MLP)
    torch.manual_seed(seed)
    return spec.build("MLP", width=width), permutation_axes(spec.graph("MLP", width=width), "MLP", None)


def permuted_by_hand(state: dict, first: torch.Tensor, second: torch.Tensor) -> dict:
    """The same network with hidden units reordered: layer 1's units by `first`, layer 2's by `second`."""
    out = dict(state)
    out["linear.weight"] = state["linear.weight"][first]
    out["linear.bias"] = state["linear.bias"][first]
    out["linear_1.weight"] = state["linear_1.weight"][second][:, first]
    out["linear_1.bias"] = state["linear_1.bias"][second]
    out["layernorm.weight"] = state["layernorm.weight"][second]
    out["layernorm.bias"] = state["layernorm.bias"][second]
    out["logits.weight"] = state["logits.weight"][:, second]
    return out


def test_the_permutation_groups_come_from_the_graph():
    _, axes = mlp()
    assert axes == {
        "linear.weight": ("linear", None),
        "linear.bias": ("linear",),
        "linear_1.weight": ("linear_1", "linear"),
        "linear_1.bias": ("linear_1",),
        "layernorm.weight": ("linear_1",),
        "layernorm.bias": ("linear_1",),
        "logits.weight": (None, "linear_1"),
    }


def test_a_permuted_copy_computes_the_same_function_and_is_matched_back_exactly():
    model, axes = mlp()
    original = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(7, 5)
    before = model(x)
    generator = torch.Generator().manual_seed(1)
    first, second = torch.randperm(12, generator=generator), torch.randperm(12, generator=generator)
    shuffled = permuted_by_hand(original, first, second)
    assert not torch.equal(shuffled["linear.weight"], original["linear.weight"])
    model.load_state_dict(shuffled)
    assert torch.allclose(model(x), before, atol=1e-6)  # a permutation does not change the function

    permutations = match_permutations(original, shuffled, axes)
    assert torch.equal(first[permutations["linear"]], torch.arange(12))  # the inverse of the shuffle
    assert torch.equal(second[permutations["linear_1"]], torch.arange(12))
    aligned = permute_state(shuffled, axes, permutations)
    assert all(torch.equal(aligned[k], original[k]) for k in original)


def test_permute_state_matches_the_hand_written_permutation():
    model, axes = mlp()
    state = model.state_dict()
    first, second = torch.randperm(12), torch.randperm(12)
    expected = permuted_by_hand(state, first, second)
    permuted = permute_state(state, axes, {"linear": first, "linear_1": second})
    assert all(torch.equal(permuted[k], expected[k]) for k in state)


def test_one_hidden_layer_is_matched_to_the_best_permutation_found_by_brute_force():
    spec = paperspec.loads("model Net(width: int = 5) {\n  in x: f32[B, 3]\n  out linear(tanh(linear(x, width)), 2)\n}\n")
    axes = permutation_axes(spec.graph("Net"), "Net", None)
    torch.manual_seed(0)
    a, b = spec.build("Net").state_dict(), spec.build("Net").state_dict()

    def similarity(order: tuple) -> float:
        permuted = permute_state(b, axes, {"linear": torch.tensor(order)})
        return sum(float((a[k].double() * permuted[k].double()).sum()) for k in axes)

    best = max(itertools.permutations(range(5)), key=similarity)
    found = match_permutations(a, b, axes)["linear"]
    assert tuple(found.tolist()) == best


def test_interpolation_gives_the_endpoints_at_0_and_1_and_the_mean_between():
    a, _ = mlp(seed=0)
    b, _ = mlp(seed=1)
    state_a, state_b = a.state_dict(), b.state_dict()
    assert all(torch.equal(interpolate_states(state_a, state_b, 0.0)[k], state_a[k]) for k in state_a)
    assert all(torch.equal(interpolate_states(state_a, state_b, 1.0)[k], state_b[k]) for k in state_a)
    middle = interpolate_states(state_a, state_b, 0.25)
    assert all(torch.allclose(middle[k], 0.75 * state_a[k] + 0.25 * state_b[k]) for k in state_a)


def test_integer_buffers_are_kept_from_the_first_model():
    a = {"w": torch.ones(2), "count": torch.tensor(3)}
    b = {"w": torch.zeros(2), "count": torch.tensor(7)}
    assert interpolate_states(a, b, 0.5)["count"].item() == 3


PROCEDURES = """
data d = linear_teacher(dim = 5, noise = 0.0, seed = 0)
data test = npz(path = "test.npz")
train a {
  model net = MLP(width = 8)
  data d
  seed 0
  loss mse(net(batch.x)[:, 0], batch.y)
  optimizer adam(lr = 1e-2)
  steps 20
}
train b {
  model net = MLP(width = 8)
  data d
  seed 1
  loss mse(net(batch.x)[:, 0], batch.y)
  optimizer adam(lr = 1e-2)
  steps 20
}
train merge after a, b {
  model aligned = weight_matching(b.net, to = a.net)
  model naive = interpolate(a.net, b.net, 0.5)
  model rebasin = interpolate(a.net, aligned, 0.5)
  loss_a = mse(a.net(batch.x)[:, 0], batch.y)
  loss_b = mse(b.net(batch.x)[:, 0], batch.y)
  eval on test {
    naive_excess = mse(naive(batch.x)[:, 0], batch.y) - 0.5 * (loss_a + loss_b)
    rebasin_excess = mse(rebasin(batch.x)[:, 0], batch.y) - 0.5 * (loss_a + loss_b)
    aligned_b = mse(aligned(batch.x)[:, 0], batch.y) - loss_b
  }
}
"""


def test_a_procedure_measures_the_barrier_of_the_trained_models(tmp_path):
    """The merge procedure's metrics against losses computed by hand from the two trained models'
    saved weights: their average, and B permuted by an independent weight matching."""
    x, y = torch.randn(40, 5), torch.randn(40)
    np.savez(tmp_path / "test.npz", x=x.numpy(), y=y.numpy())
    path = tmp_path / "merge.pspec"
    path.write_text(textwrap.dedent(MLP) + textwrap.dedent(PROCEDURES))
    spec = paperspec.load(str(path))
    runs = {}
    for name in ("a", "b"):
        runs[name] = Trainer(spec, name, out_root=str(tmp_path / "runs"), progress=False).run().run_dir
    merge = Trainer(spec, "merge", out_root=str(tmp_path / "runs"), progress=False, teacher_runs=runs).run()

    a, b = (load_file(runs[name] / "checkpoints" / "step_0000020" / "net.safetensors") for name in ("a", "b"))
    net = paperspec.loads(MLP).build("MLP", width=8)

    def loss(state: dict) -> float:
        net.load_state_dict(state)
        with torch.no_grad():
            return float(((net(x)[:, 0] - y) ** 2).mean())

    average = {k: (a[k] + b[k]) / 2 for k in a}
    assert merge.metrics["naive_excess"] == pytest.approx(loss(average) - (loss(a) + loss(b)) / 2, abs=1e-5)
    axes = permutation_axes(paperspec.loads(MLP).graph("MLP", width=8), "MLP", None)
    aligned = permute_state(b, axes, match_permutations(a, b, axes))
    rebasin = {k: (a[k] + aligned[k]) / 2 for k in a}
    assert merge.metrics["rebasin_excess"] == pytest.approx(loss(rebasin) - (loss(a) + loss(b)) / 2, abs=1e-5)
    assert abs(merge.metrics["aligned_b"]) < 1e-5
    # The merged models are saved with the evaluation, so they can be exported.
    saved = merge.run_dir / "checkpoints" / "step_0000000"
    for key, value in load_file(saved / "naive.safetensors").items():
        torch.testing.assert_close(value, average[key])
    for key, value in load_file(saved / "aligned.safetensors").items():
        torch.testing.assert_close(value, aligned[key])


def test_models_read_only_by_weight_space_functions_are_loaded(tmp_path):
    """Neither trained model is applied by a metric: both must still be loaded to compute `mid`."""
    body = PROCEDURES.split("train merge")[0] + textwrap.dedent("""
        train merge after a, b {
          model mid = interpolate(a.net, b.net, 1.0)
          eval on test { mid_loss = mse(mid(batch.x)[:, 0], batch.y) }
        }
        """)
    path = tmp_path / "only.pspec"
    path.write_text(textwrap.dedent(MLP) + textwrap.dedent(body))
    spec = paperspec.load(str(path))
    np.savez(tmp_path / "test.npz", x=np.ones((4, 5), np.float32), y=np.zeros(4, np.float32))
    runs = {name: Trainer(spec, name, out_root=str(tmp_path / "runs"), progress=False).run().run_dir for name in ("a", "b")}
    trainer = Trainer(spec, "merge", out_root=str(tmp_path / "runs"), progress=False, teacher_runs=runs)
    trainer.run()
    b = load_file(runs["b"] / "checkpoints" / "step_0000020" / "net.safetensors")
    held = trainer.module.mid.state_dict()
    assert all(torch.equal(held[k], b[k]) for k in b)
    assert not any(p.requires_grad for p in trainer.module.mid.parameters())
