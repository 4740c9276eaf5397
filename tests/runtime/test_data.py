"""Data generators: declared fields match batches, streams are seeded, statistics match the tasks."""

from __future__ import annotations

import functools
import itertools
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from paperspec.runtime.data import Field, all_generators, get_generator

SYNTHETIC_CASES = [
    ("sparse_parity", {"n": 12, "k": 3}),
    ("parity", {"length": 10}),
    ("modular_counting", {"length": 10, "modulus": 5}),
    ("regular_language", {"length": 10, "dfa": "mod3"}),
    ("regular_language", {"length": 10, "dfa": "random", "seed": 4}),
    ("dyck", {"length": 12, "depth": 3, "pairs": 2}),
    ("pcfg", {"length": 48, "depth": 3}),
    ("modular_arithmetic", {"modulus": 11}),
    ("linear_regression_icl", {"dim": 3, "points": 7, "covariance": "anisotropic"}),
    ("linear_map", {"inputs": 5, "outputs": 3}),
    ("gaussian_mixture", {"dim": 3, "components": 4}),
    ("two_moons", {}),
    ("eight_gaussians", {}),
    ("gaussians_to_moons", {}),
    ("linear_teacher", {"dim": 5, "noise": 0.1}),
    ("trajectories", {"system": "oscillator", "points": 6, "noise": 0.1}),
]
TORCH_DTYPES = {"f32": torch.float32, "i64": torch.int64, "bool": torch.bool}


def make_sampler(name: str, **args):
    definition = get_generator(name)
    return definition.sampler(definition.bind(**args))


def draw(name: str, batch_size: int = 256, stream_seed: int = 0, **args) -> dict:
    batch = make_sampler(name, **args).sample(batch_size, torch.Generator().manual_seed(stream_seed))
    return {key: value.numpy() for key, value in batch.items()}


def check_batch(name: str, args: dict, batch: dict, batch_size: int) -> None:
    definition = get_generator(name)
    bound = definition.bind(**args)
    fields, symbols = definition.fields(bound), definition.symbols(bound)
    assert set(batch) == set(fields)
    for key, field in fields.items():
        shape = tuple(symbols[d] if isinstance(d, str) else d for d in field.shape)
        assert batch[key].dtype == TORCH_DTYPES[field.dtype], key
        assert tuple(batch[key].shape) == (batch_size, *shape), key
        assert batch[key].device.type == "cpu"


# Registry and common contract.


def test_registry_lists_every_generator_with_doc_and_signature():
    expected = {name for name, _ in SYNTHETIC_CASES} | {"npz", "csv", "safetensors"}
    generators = all_generators()
    assert expected <= set(generators)
    for name, definition in generators.items():
        assert definition.name == name and len(definition.doc) > 40
        assert definition.describe().startswith(f"{name}(")


@pytest.mark.parametrize(("name", "args"), SYNTHETIC_CASES)
def test_fields_match_sampled_batches(name, args):
    batch = make_sampler(name, **args).sample(7, torch.Generator().manual_seed(0))
    check_batch(name, args, batch, 7)


@pytest.mark.parametrize(("name", "args"), SYNTHETIC_CASES)
def test_same_stream_seed_same_batches_other_seed_other_batches(name, args):
    first, again, other = (draw(name, 32, stream_seed, **args) for stream_seed in (3, 3, 4))
    assert all(np.array_equal(first[key], again[key]) for key in first)
    assert any(not np.array_equal(first[key], other[key]) for key in first)


def test_symbolic_dims_let_a_longer_test_split_share_fields():
    definition = get_generator("parity")
    train, test = definition.bind(length=8), definition.bind(length=32)
    assert definition.fields(train) == definition.fields(test) == {
        "x": Field("i64", ("T",)),
        "y": Field("i64", ("T",)),
    }
    assert definition.symbols(test) == {"T": 32}
    icl = get_generator("linear_regression_icl")
    assert icl.fields(icl.bind(dim=4, points=10)) == icl.fields(icl.bind(dim=4, points=40))


def test_bind_rejects_unknown_missing_and_invalid_arguments():
    with pytest.raises(ValueError, match="has no argument `m`"):
        get_generator("sparse_parity").bind(n=4, k=2, m=1)
    with pytest.raises(ValueError, match="missing argument `k`"):
        get_generator("sparse_parity").bind(n=4)
    problems = [
        ("sparse_parity", {"n": 4, "k": 5}, "1 <= k <= n"),
        ("dyck", {"length": 7, "depth": 2}, "even length"),
        ("regular_language", {"length": 4, "dfa": "tomita9"}, "unknown dfa"),
        ("modular_arithmetic", {"modulus": 12, "op": "div"}, "prime modulus"),
        ("modular_arithmetic", {"train_fraction": 1.0}, "split of .* empty"),
        ("linear_regression_icl", {"dim": 2, "points": 4, "covariance": "skewed"}, "covariance"),
        ("linear_map", {"inputs": 3, "outputs": 2, "decay": 1.5}, "decay"),
        ("linear_map", {"inputs": 0, "outputs": 2}, "inputs >= 1"),
        ("gaussian_mixture", {"components": 2, "weights": (1.0, 2.0, 3.0)}, "list of 2 numbers"),
        ("pcfg", {"length": 8, "seed": -1}, "seed must be >= 0"),
    ]
    for name, args, message in problems:
        with pytest.raises(ValueError, match=message):
            get_generator(name).bind(**args)


def test_importing_data_and_asking_fields_does_not_import_torch(tmp_path):
    np.savez(tmp_path / "set.npz", x=np.zeros((4, 3)), y=np.zeros(4, dtype=np.int32))
    from safetensors.numpy import save_file

    save_file({"x": np.zeros((4, 2), dtype=np.float32)}, str(tmp_path / "set.safetensors"))
    script = textwrap.dedent(
        f"""
        import sys
        from paperspec.runtime.data import all_generators, get_generator
        cases = {SYNTHETIC_CASES!r} + [
            ("npz", {{"path": {str(tmp_path / "set.npz")!r}}}),
            ("safetensors", {{"path": {str(tmp_path / "set.safetensors")!r}}}),
        ]
        all_generators()
        for name, args in cases:
            definition = get_generator(name)
            definition.fields(definition.bind(**args))
        assert "torch" not in sys.modules, "torch was imported"
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


# Boolean and sequence tasks.


def test_sparse_parity_labels_are_the_subset_product_and_balanced():
    sampler = make_sampler("sparse_parity", n=20, k=3, seed=5)
    batch = sampler.sample(4000, torch.Generator().manual_seed(0))
    x, y = batch["x"].numpy(), batch["y"].numpy()
    assert set(np.unique(x)) == {-1.0, 1.0}
    assert np.array_equal(y, (x[:, sampler.subset].prod(axis=1) == -1).astype(int))
    assert abs(y.mean() - 0.5) < 0.04


def test_sparse_parity_subset_is_fixed_by_the_task_seed():
    subsets = [tuple(make_sampler("sparse_parity", n=30, k=4, seed=seed).subset) for seed in (1, 1, 2)]
    assert subsets[0] == subsets[1] != subsets[2]
    assert len(set(subsets[0])) == 4 and all(0 <= i < 30 for i in subsets[0])


def test_train_and_test_streams_share_the_task_but_not_the_samples():
    train, test = (make_sampler("sparse_parity", n=16, k=3, seed=9) for _ in range(2))
    assert np.array_equal(train.subset, test.subset)
    a = train.sample(64, torch.Generator().manual_seed(0))["x"]
    b = test.sample(64, torch.Generator().manual_seed(1))["x"]
    assert not torch.equal(a, b)


def running_count(bits: np.ndarray, modulus: int) -> np.ndarray:
    labels = np.zeros_like(bits)
    for row in range(bits.shape[0]):
        count = 0
        for t in range(bits.shape[1]):
            count = (count + bits[row, t]) % modulus
            labels[row, t] = count
    return labels


@pytest.mark.parametrize(("name", "args", "modulus"), [("parity", {}, 2), ("modular_counting", {"modulus": 5}, 5)])
def test_running_counts_match_a_recount(name, args, modulus):
    batch = draw(name, 200, length=24, **args)
    assert set(np.unique(batch["x"])) == {0, 1}
    assert np.array_equal(batch["y"], running_count(batch["x"], modulus))
    assert abs(batch["y"][:, -1].mean() - (modulus - 1) / 2) < 0.3


def accepts(dfa: str, word: str) -> bool:
    """An independent reading of the documented languages."""
    if dfa == "parity":
        return word.count("1") % 2 == 0
    if dfa == "mod3":
        return int(word, 2) % 3 == 0
    return re.fullmatch("(01)*", word) is not None


@pytest.mark.parametrize("dfa", ["parity", "mod3", "ab_star"])
def test_regular_language_labels_match_the_language(dfa):
    batch = draw("regular_language", 300, length=14, dfa=dfa)
    for word, labels in zip(batch["x"], batch["y"], strict=True):
        text = "".join(map(str, word))
        assert list(labels) == [accepts(dfa, text[: t + 1]) for t in range(len(text))]
    assert 0.1 < batch["y"].mean() < 0.9  # neither label dominates, even for (01)*


def test_random_dfa_is_fixed_by_seed_and_labels_follow_it():
    sampler = make_sampler("regular_language", length=12, dfa="random", seed=2)
    same = make_sampler("regular_language", length=12, dfa="random", seed=2)
    other = make_sampler("regular_language", length=12, dfa="random", seed=3)
    assert np.array_equal(sampler.dfa.transitions, same.dfa.transitions)
    assert not np.array_equal(sampler.dfa.transitions, other.dfa.transitions)
    assert 0 < sampler.dfa.accepting.sum() < len(sampler.dfa.accepting)
    batch = sampler.sample(50, torch.Generator().manual_seed(0))
    for word, labels in zip(batch["x"].tolist(), batch["y"].tolist(), strict=True):
        state = 0
        for symbol, label in zip(word, labels, strict=True):
            state = int(sampler.dfa.transitions[state][symbol])
            assert label == int(sampler.dfa.accepting[state])


@pytest.mark.parametrize(("depth", "pairs"), [(1, 1), (3, 2), (5, 2)])
def test_dyck_words_are_balanced_and_depth_bounded(depth, pairs):
    batch = draw("dyck", 300, length=20, depth=depth, pairs=pairs)["tokens"]
    deepest = 0
    for word in batch.tolist():
        stack = []
        for token in word:
            assert 0 <= token < 2 * pairs
            if token < pairs:
                stack.append(token)
            else:
                assert stack and stack.pop() == token - pairs
            deepest = max(deepest, len(stack))
        assert not stack
    assert deepest == depth
    assert len(np.unique(batch)) == 2 * pairs


def derives(grammar, tokens: tuple) -> bool:
    """CYK-style recognizer for the layered grammar, written from its documented tables."""

    @functools.cache
    def can(level: int, symbol: int, start: int, end: int) -> bool:
        if level == grammar.depth:
            return end == start + 1 and tokens[start] == symbol + 1
        for rule in grammar.tables[level][symbol][: grammar.rule_counts[level][symbol]]:
            if spans(level + 1, tuple(int(c) for c in rule if c >= 0), start, end):
                return True
        return False

    def spans(level: int, children: tuple, start: int, end: int) -> bool:
        if len(children) == 1:
            return can(level, children[0], start, end)
        return any(
            can(level, children[0], start, middle) and spans(level, children[1:], middle, end)
            for middle in range(start + 1, end)
        )

    return can(0, 0, 0, len(tokens))


def test_pcfg_rows_have_exact_length_and_derivable_documents():
    sampler = make_sampler("pcfg", length=120, depth=3, seed=1)
    batch = sampler.sample(16, torch.Generator().manual_seed(0))["tokens"].numpy()
    assert batch.shape == (16, 120) and batch.min() >= 0 and batch.max() < 64
    assert (batch[:, 0] == 0).all()
    for row in batch.tolist():
        starts = [i for i, token in enumerate(row) if token == 0]
        assert len(starts) >= 2
        for start, end in itertools.pairwise(starts):  # the last document may be cut off
            tokens = tuple(row[start + 1 : end])
            assert 2**3 <= len(tokens) <= 3**3
            assert derives(sampler.grammar, tokens)


def test_pcfg_grammar_is_fixed_by_seed():
    tables = [make_sampler("pcfg", length=8, depth=4, seed=seed).grammar.tables for seed in (0, 0, 1)]
    assert all(np.array_equal(a, b) for a, b in zip(tables[0], tables[1], strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(tables[0], tables[2], strict=True))


# Modular arithmetic.

OPS = {
    "add": lambda a, b, p: (a + b) % p,
    "sub": lambda a, b, p: (a - b) % p,
    "mul": lambda a, b, p: (a * b) % p,
    "div": lambda a, b, p: next(c for c in range(p) if (c * b) % p == a),
}


def split_rows(split: str, **args) -> dict:
    sampler = make_sampler("modular_arithmetic", split=split, **args)
    everything = sampler.all()
    assert sampler.size == len(everything["y"])
    return {tuple(x): int(y) for x, y in zip(everything["x"].tolist(), everything["y"].tolist(), strict=True)}


@pytest.mark.parametrize("op", list(OPS))
def test_modular_arithmetic_splits_partition_the_table(op):
    p = 13
    train = split_rows("train", modulus=p, op=op, train_fraction=0.3, seed=4)
    test = split_rows("test", modulus=p, op=op, train_fraction=0.3, seed=4)
    total = p * (p - 1) if op == "div" else p * p
    assert len(train) == round(0.3 * total) and len(train) + len(test) == total
    assert not set(train) & set(test)
    assert all(y == OPS[op](a, b, p) for (a, b), y in {**train, **test}.items())


def test_modular_arithmetic_split_follows_seed():
    assert set(split_rows("train", modulus=11, seed=0)) != set(split_rows("train", modulus=11, seed=1))
    assert split_rows("train", modulus=11, seed=2) == split_rows("train", modulus=11, seed=2)


def test_modular_arithmetic_corrupts_only_that_fraction_of_train_labels():
    p = 23
    train = split_rows("train", modulus=p, corrupt=0.2, seed=3)
    test = split_rows("test", modulus=p, corrupt=0.2, seed=3)
    wrong = sum(y != (a + b) % p for (a, b), y in train.items())
    assert wrong == round(0.2 * len(train))
    assert all(y == (a + b) % p for (a, b), y in test.items())
    assert all(0 <= y < p for y in train.values())


def test_finite_batches_are_distinct_examples_of_the_split():
    train = split_rows("train", modulus=11)
    batch = make_sampler("modular_arithmetic", modulus=11).sample(40, torch.Generator().manual_seed(0))
    pairs = [tuple(x) for x in batch["x"].tolist()]
    assert len(set(pairs)) == 40 and all(train[x] == y for x, y in zip(pairs, batch["y"].tolist(), strict=True))


# Regression tasks.


def test_icl_regression_query_follows_least_squares_from_the_context():
    dim, points = 4, 12
    batch = draw("linear_regression_icl", 64, dim=dim, points=points)
    tokens, xs, ys = batch["tokens"], batch["xs"], batch["ys"]
    assert np.array_equal(tokens[:, :, :dim], xs)
    assert np.array_equal(tokens[:, :-1, dim], ys[:, :-1]) and (tokens[:, -1, dim] == 0).all()
    assert np.array_equal(batch["target"], ys[:, -1])
    for x, y in zip(xs.astype(np.float64), ys.astype(np.float64), strict=True):
        w, *_ = np.linalg.lstsq(x[:-1], y[:-1], rcond=None)
        assert abs(x[-1] @ w - y[-1]) < 1e-4


def test_icl_ridge_field_is_the_posterior_mean_and_beats_other_ridges():
    dim, points, noise = 4, 6, 0.5
    batch = draw("linear_regression_icl", 3000, dim=dim, points=points, noise=noise)
    xs, ys = batch["xs"].astype(np.float64), batch["ys"].astype(np.float64)

    def ridge(lam: float) -> np.ndarray:
        return np.array([x[-1] @ np.linalg.solve(x[:-1].T @ x[:-1] + lam * np.eye(dim), x[:-1].T @ y[:-1]) for x, y in zip(xs, ys, strict=True)])

    best = noise**2 * dim  # prior precision dim, noise precision 1 / noise^2
    assert np.allclose(batch["ridge"], ridge(best), atol=1e-4)
    risk = {lam: ((ridge(lam) - ys[:, -1]) ** 2).mean() for lam in (best / 8, best, best * 8)}
    assert risk[best] < risk[best / 8] and risk[best] < risk[best * 8]


def test_icl_ridge_without_noise_interpolates_the_context():
    batch = draw("linear_regression_icl", 32, dim=3, points=8)
    assert np.allclose(batch["ridge"], batch["target"], atol=1e-4)


def test_icl_regression_targets_have_unit_signal_variance_plus_noise():
    batch = draw("linear_regression_icl", 4000, dim=8, points=3, noise=0.5)
    # E[y^2] = E[w^T Sigma w] + noise^2 = trace(Sigma) / dim + 0.25 = 1.25.
    assert abs((batch["ys"] ** 2).mean() - 1.25) < 0.08


def test_icl_anisotropic_covariance_has_the_documented_spectrum():
    dim = 5
    sampler = make_sampler("linear_regression_icl", dim=dim, points=9, covariance="anisotropic", seed=1)
    harmonic = 1 / np.arange(1, dim + 1)
    documented = np.sort(dim * harmonic / harmonic.sum())
    assert np.allclose(np.linalg.eigvalsh(sampler.covariance), documented)
    xs = sampler.sample(4000, torch.Generator().manual_seed(0))["xs"].numpy().reshape(-1, dim)
    assert np.allclose(np.cov(xs.T), sampler.covariance, atol=0.05)
    isotropic = draw("linear_regression_icl", 2000, dim=dim, points=9)["xs"].reshape(-1, dim)
    assert np.allclose(np.cov(isotropic.T), np.eye(dim), atol=0.05)


def test_linear_map_has_the_graded_spectrum_and_unit_output_power():
    sampler = make_sampler("linear_map", inputs=6, outputs=4, decay=0.5, seed=2)
    singular = np.linalg.svd(sampler.teacher, compute_uv=False)
    assert np.allclose(singular[1:] / singular[:-1], 0.5)
    assert np.isclose(np.sum(singular**2), 4)  # E ||W x||^2 / outputs = 1
    batch = draw("linear_map", 4000, inputs=6, outputs=4, decay=0.5, seed=2)
    assert np.allclose(batch["y"], batch["x"] @ sampler.teacher.T, atol=1e-5)
    assert abs((batch["y"] ** 2).mean() - 1) < 0.08
    other = make_sampler("linear_map", inputs=6, outputs=4, decay=0.5, seed=3)
    assert not np.allclose(other.teacher, sampler.teacher)


def test_linear_teacher_is_exact_without_noise_and_fixed_by_seed():
    sampler = make_sampler("linear_teacher", dim=6, seed=3)
    batch = sampler.sample(100, torch.Generator().manual_seed(0))
    assert np.allclose(batch["x"].numpy() @ sampler.teacher, batch["y"].numpy(), atol=1e-5)
    assert np.array_equal(sampler.teacher, make_sampler("linear_teacher", dim=6, seed=3).teacher)
    noisy = make_sampler("linear_teacher", dim=6, noise=0.3, seed=3)
    batch = noisy.sample(5000, torch.Generator().manual_seed(0))
    residual = batch["y"].numpy() - batch["x"].numpy() @ noisy.teacher
    assert abs(residual.std() - 0.3) < 0.02


# Point clouds.


def test_gaussian_mixture_recovers_weights_and_unit_components():
    sampler = make_sampler("gaussian_mixture", dim=3, components=3, weights=(1.0, 2.0, 3.0), seed=2)
    batch = sampler.sample(20000, torch.Generator().manual_seed(0))
    component, x = batch["component"].numpy(), batch["x"].numpy()
    assert np.allclose(np.bincount(component, minlength=3) / len(component), [1 / 6, 2 / 6, 3 / 6], atol=0.015)
    offsets = x - sampler.means[component]
    assert np.allclose(offsets.mean(axis=0), 0, atol=0.03) and np.allclose(offsets.var(axis=0), 1, atol=0.05)
    assert np.array_equal(sampler.means, make_sampler("gaussian_mixture", dim=3, seed=2).means)


def test_two_moons_lie_on_their_half_circles():
    batch = draw("two_moons", 20000, noise=0.0)
    x, y = batch["x"], batch["y"]
    upper, lower = x[y == 0], x[y == 1]
    assert abs(y.mean() - 0.5) < 0.02
    assert np.allclose(np.linalg.norm(upper, axis=1), 1, atol=1e-5) and (upper[:, 1] >= 0).all()
    assert np.allclose(np.linalg.norm(lower - [1, 0.5], axis=1), 1, atol=1e-5) and (lower[:, 1] <= 0.5).all()
    assert np.allclose(upper.mean(axis=0), [0, 2 / np.pi], atol=0.02)
    assert np.allclose(lower.mean(axis=0), [1, 0.5 - 2 / np.pi], atol=0.02)
    noisy = draw("two_moons", 20000, noise=0.1)["x"]
    assert np.allclose(noisy.mean(axis=0), [0.5, 0.25], atol=0.02)


def test_eight_gaussians_sit_on_the_circle_at_multiples_of_45_degrees():
    x = draw("eight_gaussians", 16000, radius=3.0, std=0.02)["x"]
    assert np.allclose(x.mean(axis=0), 0, atol=0.06)
    assert np.allclose(np.linalg.norm(x, axis=1), 3.0, atol=0.1)
    sector = np.round(np.arctan2(x[:, 1], x[:, 0]) / (np.pi / 4)).astype(int) % 8
    centers = 3.0 * np.stack([np.cos(sector * np.pi / 4), np.sin(sector * np.pi / 4)], axis=1)
    assert np.allclose((x - centers).std(axis=0), 0.02, atol=0.002)
    assert np.allclose(np.bincount(sector, minlength=8) / len(x), 1 / 8, atol=0.015)


# Files.


@pytest.fixture
def npz_file(tmp_path):
    path = tmp_path / "set.npz"
    index = np.arange(50)
    np.savez(path, x=np.stack([index, -index, 2 * index], axis=1).astype(np.float64), y=index.astype(np.int32), other=np.zeros(7))
    return str(path)


def test_npz_fields_come_from_headers_and_batches_from_rows(npz_file, monkeypatch):
    definition = get_generator("npz")
    args = definition.bind(path=npz_file, fields=("x", "y"))
    with monkeypatch.context() as patch:
        patch.setattr(np, "load", lambda *a, **k: pytest.fail("fields() read the arrays"))
        fields = definition.fields(args)
    assert fields == {"x": Field("f32", (3,)), "y": Field("i64", ())}
    sampler = definition.sampler(args)
    batch = sampler.sample(20, torch.Generator().manual_seed(0))
    check_batch("npz", {"path": npz_file, "fields": ("x", "y")}, batch, 20)
    assert sampler.size == 50
    assert torch.equal(batch["x"][:, 0], batch["y"].float()) and torch.equal(batch["x"][:, 2], 2 * batch["y"].float())


def test_npz_errors_name_the_problem(npz_file, tmp_path):
    definition = get_generator("npz")
    with pytest.raises(ValueError, match="no such file"):
        definition.fields(definition.bind(path=str(tmp_path / "missing.npz")))
    with pytest.raises(ValueError, match="has no array 'z'; it has: x, y, other"):
        definition.fields(definition.bind(path=npz_file, fields=("x", "z")))
    with pytest.raises(ValueError, match="share their first"):
        definition.fields(definition.bind(path=npz_file))
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="not an .npz archive"):
        definition.fields(definition.bind(path=str(tmp_path / "text.npz")))


def test_safetensors_fields_and_batches(tmp_path):
    from safetensors.torch import save_file

    path = str(tmp_path / "set.safetensors")
    index = torch.arange(30)
    save_file({"x": torch.stack([index, index], dim=1).to(torch.bfloat16), "y": index.to(torch.int32)}, path)
    definition = get_generator("safetensors")
    args = definition.bind(path=path)
    assert definition.fields(args) == {"x": Field("f32", (2,)), "y": Field("i64", ())}
    batch = definition.sampler(args).sample(10, torch.Generator().manual_seed(0))
    check_batch("safetensors", {"path": path}, batch, 10)
    assert torch.equal(batch["x"][:, 1], batch["y"].float())
    with pytest.raises(ValueError, match="has no array 'z'"):
        definition.fields(definition.bind(path=path, fields="z"))
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 4)
    with pytest.raises(ValueError, match="not a safetensors file"):
        definition.fields(definition.bind(path=str(tmp_path / "bad.safetensors")))


def test_csv_features_and_target(tmp_path):
    path = tmp_path / "table.csv"
    rows = [f"{i},{i * 0.5},{i % 3}" for i in range(20)]
    path.write_text("a, b, label\n" + "\n".join(rows) + "\n")
    definition = get_generator("csv")
    args = definition.bind(path=str(path), target="label")
    assert definition.fields(args) == {"x": Field("f32", (2,)), "y": Field("i64", ())}
    batch = definition.sampler(args).sample(8, torch.Generator().manual_seed(0))
    check_batch("csv", {"path": str(path), "target": "label"}, batch, 8)
    assert torch.equal(batch["x"][:, 0].long() % 3, batch["y"]) and torch.equal(batch["x"][:, 1], batch["x"][:, 0] / 2)
    assert definition.fields(definition.bind(path=str(path))) == {"x": Field("f32", (3,))}
    with pytest.raises(ValueError, match="no column 'c'; it has: a, b, label"):
        definition.fields(definition.bind(path=str(path), target="c"))
    with pytest.raises(ValueError, match="not integral"):
        definition.sampler(definition.bind(path=str(path), target="b"))
    with pytest.raises(ValueError, match="target_dtype"):
        definition.bind(path=str(path), target="b", target_dtype="f64")
