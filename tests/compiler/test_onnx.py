"""ONNX export: every op and every spec model against PyTorch in onnxruntime and onnx's reference evaluator."""

from __future__ import annotations

import glob
import os

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

import paperspec
from paperspec.compiler.backends.onnx import export_spec
from paperspec.compiler.ir import walk
from paperspec.compiler.ops import base as op_registry
from paperspec.runtime.cli import main
from paperspec.runtime.inputs import example_inputs
from paperspec.runtime.onnx import (
    InputError,
    OnnxSession,
    VerificationError,
    export,
    save_weights,
    size_sets,
    verify,
)

SPECS = os.path.join(os.path.dirname(__file__), "..", "..", "specs")
SIZES = {"B": 2, "T": 5, "S": 3, "D": 6, "L": 9, "H": 7, "W": 6}

X = "in x: f32[B, T, 8]"
XY = "in x: f32[B, T, 8]; in y: f32[B, T, 8]"
QKV = "in q: f32[B, T, 8]; in k: f32[B, S, 8]; in v: f32[B, S, 4]"
SEQ = "in x: f32[B, 4, L]"
IMG = "in x: f32[B, 3, H, W]"
INTS = "in i: i64[B, T]; in j: i64[B, T]"

# (id, body of `model M()`): every op of nn.py, tensor.py, elementwise.py and conv.py at least once.
OP_CASES = [
    ("linear", f"{X}; out y = linear(x, 4)"),
    ("linear_no_bias", f"{X}; out y = linear(x, 4, bias = false)"),
    ("embedding", "in tokens: i64[B, T]; out e = embedding(tokens, 10, 6)"),
    ("position_embedding", "in x: f32[B, T, 6]; out y = x + position_embedding(T, 16, 6)"),
    ("layernorm", f"{X}; out y = layernorm(x)"),
    ("layernorm_plain", f"{X}; out y = layernorm(x, eps = 0.001, affine = false)"),
    ("rmsnorm", f"{X}; out y = rmsnorm(x)"),
    ("rmsnorm_plain", f"{X}; out y = rmsnorm(x, eps = 0.0001, affine = false)"),
    ("batchnorm_features", "in x: f32[B, 4]; out y = batchnorm(x)"),
    ("batchnorm_sequence", f"{SEQ}; out y = batchnorm(x, eps = 0.001)"),
    ("batchnorm_image", f"{IMG}; out y = batchnorm(x, affine = false)"),
    ("dropout", f"{X}; out y = dropout(x, 0.5)"),
    ("mlp", f"{X}; out y = mlp(x, hidden = 16)"),
    ("mlp_options", f"{X}; out y = mlp(x, hidden = 16, out = 4, act = silu, bias = false, dropout = 0.2)"),
    ("attention", f"{QKV}; out attention(q, k, v, heads = 2)"),
    ("attention_causal", "in q: f32[B, T, 8]; in k: f32[B, T, 8]; in v: f32[B, T, 8]; out attention(q, k, v, heads = 4, causal = true)"),
    ("attention_scale", f"{QKV}; out attention(q, k, v, scale = 0.5)"),
    ("attention_symbolic_width", "in q: f32[B, T, D]; in k: f32[B, T, D]; in v: f32[B, T, D]; out attention(q, k, v, causal = true)"),
    ("attention_rank_2", "in q: f32[T, 8]; in k: f32[T, 8]; in v: f32[T, 8]; out attention(q, k, v, heads = 2)"),
    ("attention_leading_dims", "in q: f32[B, S, T, 8]; in k: f32[B, S, T, 8]; in v: f32[B, S, T, 8]; out attention(q, k, v, heads = 2, causal = true)"),
    ("relu", f"{X}; out relu(x)"),
    ("gelu", f"{X}; out gelu(x)"),
    ("gelu_tanh", f'{X}; out gelu(x, approximate = "tanh")'),
    ("silu", f"{X}; out silu(x)"),
    ("tanh", f"{X}; out tanh(x)"),
    ("sigmoid", f"{X}; out sigmoid(x)"),
    ("softplus", f"{X}; out softplus(x)"),
    ("softplus_beta", f"{X}; out softplus(x, beta = 2.0)"),
    ("softmax", f"{X}; out softmax(x, dim = 1)"),
    ("log_softmax", f"{X}; out log_softmax(x, 0)"),
    ("math", f"{X}; out exp(x) + log(abs(x) + 0.5) + sqrt(abs(x)) + sin(x) * cos(x)"),
    ("arithmetic", f"{XY}; out (x + y) * (x - 2.0) / (abs(y) + 1) + 3 * y ** 2 - -x"),
    ("pow_tensor", f"{XY}; out (abs(x) + 0.1) ** y"),
    ("floordiv_mod_float", f"{XY}; out x // (abs(y) + 0.5) + x % (abs(y) + 0.5)"),
    ("floordiv_mod_int", f"{INTS}; out (i - 1) // 2 + (i - 1) % 3 + j // (j + 1)"),
    ("int_division", f"{INTS}; out i / (j + 1) + i * 1.5"),
    ("comparisons", f"{INTS}; out (i == j) * 1 + (i != j) * 2 + (i < j) * 4 + (i <= j) * 8 + (i > 0) * 16 + (i >= j) * 32"),
    ("comparisons_float", f"{XY}; out where(x < y, x, y) + where(x >= 0.5, 1.0, 0)"),
    ("where_bool_input", "in c: bool[B, T]; in x: f32[B, T, 8]; out where(c[:, :, none], x, 0.0)"),
    ("clamp", f"{X}; out clamp(x, min = -0.5, max = 0.5) + clamp(x, min = 0.0) + clamp(x, max = 0.1)"),
    ("clamp_integers", "in i: i64[B, T]; out clamp(i, min = 1, max = 6)"),
    ("matmul", "in x: f32[B, T, 8]; in w: f32[8, 4]; out x @ w"),
    ("matmul_vectors", "in v: f32[8]; in m: f32[B, 8, 4]; out v @ m"),
    ("matmul_broadcast", "in a: f32[B, 1, T, 8]; in b: f32[2, 8, 5]; out a @ b"),
    ("einsum", 'in a: f32[B, T, 8]; in b: f32[B, 8, S]; out einsum("bij, bjk -> bik", a, b)'),
    ("reshape", f"{X}; out reshape(x, [B, T, 2, -1])"),
    ("reshape_merge", f"{X}; out reshape(x, [-1, 8])"),
    ("reshape_two_symbols", f"{X}; out reshape(x, [B, T, 8, 1])"),
    ("flatten", "in x: f32[B, 3, H, W]; out flatten(x, 1, 2)"),
    ("transpose_permute", f"{X}; out transpose(permute(x, [2, 0, 1]), 0, 2)"),
    ("squeeze_unsqueeze", "in x: f32[B, 1, 8]; out unsqueeze(squeeze(x, 1), -1)"),
    ("cast", f'{X}; out cast(cast(x * 4, "i64"), "f64") + cast(x > 0, "f64")'),
    ("concat_stack", "in x: f32[B, T, 4]; in y: f32[B, S, 4]; out concat([x, y, x], dim = 1); out stack([x, x], dim = -1)"),
    ("split_equal", f"{X}; a, b = split(x, 2); out a; out b"),
    ("split_sizes", f"{X}; a, b, c = split(x, [2, 5, 1]); out a; out b; out c"),
    ("split_symbolic", f"{X}; a, b = split(reshape(x, [B, 2 * T, 4]), 2, dim = 1); out a; out b"),
    ("reductions", f"{X}; out sum(x) + mean(x) + max(x) + min(x); out sum(x, dim = [0, 2], keepdim = true); out max(x, dim = 1)"),
    ("reductions_integer", f"{X}; out sum(x > 0, dim = 1); out mean(x, dim = -1, keepdim = true); out min(x, dim = [0, 2])"),
    ("zeros_ones", f'{X}; out zeros([B, 3]); out ones([T, 2 * T], dtype = "bool"); out x + ones([8])'),
    ("arange", f'{X}; out arange(T); out arange(T + 1, dtype = "f32")'),
    ("index", f"{X}; out x[:, -1]; out x[.., 0]; out x[:, none]; out x[::2, 1:T - 1, 1:7:3]"),
    ("index_symbolic", f"{X}; out x[0, T - 2, 2:]; out x[:, :-1]"),
    ("conv", f"{SEQ}; h = conv1d(x, 6, 3, stride = 2, padding = 1, dilation = 2, groups = 2); out max_pool1d(relu(h), 2)"),
    ("conv2d", f"{IMG}; h = conv2d(x, 4, [3, 2], padding = [1, 0]); out avg_pool2d(h, 3, stride = 2, padding = 1); out max_pool2d(h, [3, 2])"),
    ("avg_pool1d", f"{SEQ}; out avg_pool1d(x, 4, stride = 1, padding = 2)"),
]

# Lowerings that depend on the opset: Gelu (20) and RMSNormalization (23) are composed below them.
OPSET_CASES = [("gelu", 18), ("gelu_tanh", 19), ("rmsnorm", 18), ("rmsnorm", 23), ("rmsnorm_plain", 23), ("attention_causal", 18)]


def model_spec(name: str, body: str) -> paperspec.Spec:
    return paperspec.loads(f"model M() {{\n{body.replace('; ', chr(10))}\n}}\n", f"<{name}>")


def randomize(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights and running statistics, so that a weight exported wrongly shows in the outputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict(keep_vars=True).items():
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=generator))
    return module.eval()


def check_reference_evaluator(spec, proto: onnx.ModelProto, module, model: str | None = None, params: dict | None = None) -> float:
    """onnx's reference evaluator agrees with PyTorch at both verification sizes; returns the max abs error."""
    graph = spec.graph(model, **(params or {}))
    evaluator = ReferenceEvaluator(proto)
    worst = 0.0
    for sizes in size_sets(graph, SIZES):
        inputs = example_inputs(graph, sizes, seed=1)
        with torch.no_grad():
            expected = module(*inputs.values())
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = evaluator.run(None, {name: value.numpy() for name, value in inputs.items()})
        for value, want in zip(got, expected, strict=True):
            want = want.numpy()
            assert value.shape == want.shape and value.dtype == want.dtype
            np.testing.assert_allclose(value, want, rtol=1e-4, atol=1e-4)
            if value.size:
                worst = max(worst, float(np.abs(value.astype(np.float64) - want.astype(np.float64)).max()))
    return worst


@pytest.mark.parametrize("case", OP_CASES, ids=[case[0] for case in OP_CASES])
def test_op_matches_pytorch(case):
    spec = model_spec(*case)
    module = randomize(spec.build())
    proto = export_spec(spec, state=module.state_dict())
    report = verify(spec, sizes=SIZES, module=module, onnx_model=proto)
    assert len(report.checks) == 2 * len(spec.graph().outputs)
    check_reference_evaluator(spec, proto, module)


def test_every_model_op_has_a_lowering_and_a_case():
    families = {f"paperspec.compiler.ops.{family}" for family in ("nn", "tensor", "elementwise", "conv")}
    ops = {name: op for name, op in op_registry.all_ops().items() if op.infer.__module__ in families}
    assert [name for name, op in ops.items() if op.onnx is None and not op.not_exportable] == []
    covered = {node.op for name, body in OP_CASES for graph in walk(model_spec(name, body).graph()) for node in graph.nodes()}
    assert {name for name, op in ops.items() if op.onnx is not None} - covered == set()


@pytest.mark.parametrize("name, opset", OPSET_CASES, ids=[f"{name}-opset{opset}" for name, opset in OPSET_CASES])
def test_opset_dependent_lowerings(name, opset):
    spec = model_spec(name, dict(OP_CASES)[name])
    module = randomize(spec.build())
    proto = export_spec(spec, state=module.state_dict(), opset=opset)
    assert proto.opset_import[0].version == opset
    verify(spec, sizes=SIZES, module=module, onnx_model=proto)
    check_reference_evaluator(spec, proto, module)


def spec_models() -> list:
    return [(path, model) for path in sorted(glob.glob(os.path.join(SPECS, "*.pspec"))) for model in paperspec.load(path).models()]


def export_blockers(graph) -> list:
    """The calls in a model that say they cannot be exported (odeint with dopri5, ...)."""
    return [
        node for current in walk(graph) for node in current.nodes()
        if (opdef := op_registry.get_op(node.op)) is not None and opdef.export_blocker(node.call)
    ]


@pytest.mark.parametrize("path, model", spec_models(), ids=lambda value: os.path.basename(value) if value.endswith(".pspec") else value)
def test_spec_models_export_and_match(path, model):
    spec = paperspec.load(path)
    torch.manual_seed(0)
    module = spec.build(model).eval()  # default init: N(0, 1) weights would blow activations up to ~1e3
    blockers = export_blockers(spec.graph(model))
    if blockers:
        with pytest.raises(paperspec.SpecError, match="cannot be exported to ONNX: ") as caught:
            export_spec(spec, model, state=module.state_dict())
        assert caught.value.span in {node.span for node in blockers}
        return
    proto = export_spec(spec, model, state=module.state_dict())
    onnx.checker.check_model(proto, full_check=True)
    report = verify(spec, model, sizes=SIZES, module=module, onnx_model=proto)
    assert {tuple(check.sizes.values()) for check in report.checks}.__len__() == 2
    check_reference_evaluator(spec, proto, module, model)


BLOCKS = """
block Pos(d: int) {
  in x: f32[B, T, d]
  out x + position_embedding(T, 16, d)
}
block Twice(d: int) {
  in x: f32[B, T, d]
  repeat 2 { x = Pos(d)(x) + arange(T, dtype = "f32")[:, none] }
  out reshape(x, [B * T, d])
}
model M() {
  in a: f32[B, N, 8]
  in b: f32[N, 3, 8]
  out p = Twice(8)(a)
  out q = Pos(8)(b)
}
"""


def test_blocks_read_their_own_symbolic_sizes_from_their_inputs():
    spec = paperspec.loads(BLOCKS, "<blocks>")
    module = randomize(spec.build())
    proto = export_spec(spec, state=module.state_dict())
    verify(spec, sizes={"B": 2, "N": 5}, module=module, onnx_model=proto)
    check_reference_evaluator(spec, proto, module)
    assert {"p.repeat.0.position_embedding/Gather", "p.repeat.1.position_embedding/Gather"} <= {n.name for n in proto.graph.node}


def test_initializers_are_state_dict_keys_and_ties_are_exported_once():
    spec = paperspec.load(os.path.join(SPECS, "transformer.pspec"))
    module = spec.build("GPT", layers=2, d=32, heads=2)
    proto = export_spec(spec, "GPT", {"layers": 2, "d": 32, "heads": 2}, module.state_dict())
    names = [tensor.name for tensor in proto.graph.initializer]
    assert len(names) == len(set(names))
    assert set(names) == {key for key in module.state_dict() if key != "lm_head.weight"}
    assert "layers.1.attn.qkv.weight" in names
    weight = next(t for t in proto.graph.initializer if t.name == "layers.1.attn.qkv.weight")
    np.testing.assert_array_equal(numpy_helper.to_array(weight), module.state_dict()["layers.1.attn.qkv.weight"].numpy())
    node_names = {node.name for node in proto.graph.node}
    assert {"layers.0.attn.qkv/MatMul", "layers.1.attn.qkv/MatMul", "lm_head/MatMul"} <= node_names


def test_inputs_outputs_and_metadata():
    spec = paperspec.load(os.path.join(SPECS, "transformer.pspec"))
    proto = export_spec(spec, "GPT", {"layers": 1})
    (tokens,), (logits,) = proto.graph.input, proto.graph.output
    assert tokens.name == "tokens" and [d.dim_param for d in tokens.type.tensor_type.shape.dim] == ["B", "T"]
    assert logits.name == "logits"
    assert [d.dim_param or d.dim_value for d in logits.type.tensor_type.shape.dim] == ["B", "T", 64]
    metadata = {prop.key: prop.value for prop in proto.metadata_props}
    assert metadata["paperspec.spec"] == "gpt" and metadata["paperspec.model"] == "GPT"
    assert metadata["paperspec.source_hash"] == spec.source_hash
    assert '"layers": 1' in metadata["paperspec.params"]
    assert "dropout off" in metadata["paperspec.semantics"] and "running stats" in metadata["paperspec.semantics"]
    assert metadata["paperspec.version"] == paperspec.__version__


def sgd_steps(module: torch.nn.Module, inputs: list, steps: int = 3) -> torch.nn.Module:
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    module.train()
    for _ in range(steps):
        optimizer.zero_grad()
        output = module(*inputs)
        output.float().square().mean().backward()
        optimizer.step()
    return module.eval()


def test_trained_weights_round_trip_through_safetensors(tmp_path):
    spec = paperspec.load(os.path.join(SPECS, "transformer.pspec"))
    params = {"layers": 2, "d": 32, "heads": 2}
    module = spec.build("GPT", **params)
    before = {key: value.clone() for key, value in module.state_dict().items()}
    graph = spec.graph("GPT", **params)
    trained = sgd_steps(module, list(example_inputs(graph, {"B": 4, "T": 8}).values()))
    assert not torch.equal(before["layers.0.attn.qkv.weight"], trained.state_dict()["layers.0.attn.qkv.weight"])
    path = str(tmp_path / "gpt.safetensors")
    save_weights(trained, path)
    proto = export(spec, "GPT", params, weights=path)
    exported = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    for key, value in exported.items():
        np.testing.assert_array_equal(value, trained.state_dict()[key].numpy())
    verify(spec, "GPT", params, SIZES, module=trained, onnx_model=proto)


def test_trained_batchnorm_exports_running_stats_and_no_dropout():
    spec = model_spec("net", "in x: f32[B, 6]; h = relu(batchnorm(linear(x, 8))); out y = linear(dropout(h, 0.5), 3)")
    graph = spec.graph()
    module = sgd_steps(spec.build(), list(example_inputs(graph, {"B": 16}).values()))
    assert int(module.state_dict()["batchnorm.num_batches_tracked"]) == 3
    proto = export(spec, weights=module)
    verify(spec, sizes={"B": 5}, module=module, onnx_model=proto)
    check_reference_evaluator(spec, proto, module)


def test_verify_fails_on_wrong_weights():
    spec = model_spec("linear", f"{X}; out y = linear(x, 4)")
    module = randomize(spec.build())
    proto = export_spec(spec, state=randomize(spec.build(), seed=1).state_dict())
    with pytest.raises(VerificationError, match="FAIL"):
        verify(spec, module=module, onnx_model=proto)


def test_not_exportable_op_is_a_spec_error_at_the_op():
    spec = model_spec("noise", f"{X}; out x + randn([B, T, 8])")
    with pytest.raises(paperspec.SpecError, match="`randn` cannot be exported to ONNX: .*generator") as caught:
        export_spec(spec)
    assert caught.value.span is not None and caught.value.span.line == 3


def test_op_without_lowering_is_a_spec_error(monkeypatch):
    import dataclasses

    relu = op_registry.get_op("relu")
    monkeypatch.setitem(op_registry._REGISTRY, "relu", dataclasses.replace(relu, onnx=None))
    spec = model_spec("relu", f"{X}; out relu(x)")
    with pytest.raises(paperspec.SpecError, match="`relu` has no ONNX lowering"):
        export_spec(spec)


@pytest.fixture(scope="module")
def gpt_session():
    spec = paperspec.load(os.path.join(SPECS, "transformer.pspec"))
    return OnnxSession(export_spec(spec, "GPT", {"layers": 1, "ctx": 16}))


@pytest.mark.parametrize(
    "inputs, message",
    [
        ({"tokens": np.zeros((2, 5), np.float32)}, "dtype is float32, expected int64"),
        ({"tokens": np.zeros((2, 5, 1), np.int64)}, "rank is 3, expected 2"),
        ({"tokens": np.zeros((2, 17), np.int64)}, "needs T <= 16, got T = 17"),
        ({}, "missing input `tokens`: i64\\[B, T <= 16\\]"),
        ({"tokens": np.zeros((2, 5), np.int64), "x": np.zeros(1)}, "has no input `x`"),
    ],
    ids=["dtype", "rank", "bound", "missing", "unknown"],
)
def test_session_rejects_bad_inputs(gpt_session, inputs, message):
    with pytest.raises(InputError, match=message):
        gpt_session.run(inputs)


def test_session_checks_that_shared_dims_agree():
    spec = model_spec("add", f"{XY}; out x + y")
    session = OnnxSession(export_spec(spec))
    with pytest.raises(InputError, match="dim 1 is 4, but T = 3 in `x`"):
        session.run({"x": np.zeros((2, 3, 8), np.float32), "y": np.zeros((2, 4, 8), np.float32)})
    assert session.run({"x": np.ones((2, 3, 8), np.float32), "y": np.ones((2, 3, 8), np.float32)})["out"].sum() == 96


def run_cli(capsys, *argv) -> tuple:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def test_cli_export_verify_and_run(tmp_path, capsys):
    spec_path = os.path.join(SPECS, "mlp.pspec")
    spec = paperspec.load(spec_path)
    weights = tmp_path / "mlp.safetensors"
    save_weights(randomize(spec.build()), str(weights))
    output = tmp_path / "out" / "mlp.onnx"
    code, out, _ = run_cli(capsys, "export", spec_path, "--weights", weights, "--verify", "--size", "B=3", "-o", output)
    assert code == 0 and "logits at B=3" in out and "FAIL" not in out
    np.save(tmp_path / "x.npy", np.ones((2, 784), np.float32))
    code, out, _ = run_cli(capsys, "run", output, "--input", f"x={tmp_path / 'x.npy'}", "-o", tmp_path / "y.npz")
    assert code == 0 and "out logits: [2, 10] float32" in out
    assert np.load(tmp_path / "y.npz")["logits"].shape == (2, 10)
    np.save(tmp_path / "bad.npy", np.ones((2, 783), np.float32))
    code, _, err = run_cli(capsys, "run", output, "--input", f"x={tmp_path / 'bad.npy'}")
    assert code == 2 and "input `x` must be f32[B, 784]" in err and "dim 1 is 783" in err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--weights", "missing.safetensors"], "no such weights file"),
        (["--opset", "12"], "unsupported opset 12"),
        (["--weights", "{gpt}"], "do not fit model `MLP`"),
        (["--weights", "{junk}"], "cannot read weights"),
    ],
    ids=["missing-weights", "opset", "weights-of-another-model", "not-safetensors"],
)
def test_cli_export_errors(tmp_path, capsys, extra, message):
    gpt = tmp_path / "gpt.safetensors"
    save_weights(paperspec.load(os.path.join(SPECS, "transformer.pspec")).build("GPT", layers=1, d=16, heads=2), str(gpt))
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    extra = [item.format(gpt=gpt, junk=tmp_path / "junk.safetensors") for item in extra]
    code, _, err = run_cli(capsys, "export", os.path.join(SPECS, "mlp.pspec"), *extra, "-o", tmp_path / "m.onnx")
    assert code == 2 and message in err
    assert not (tmp_path / "m.onnx").exists()


def test_cli_export_of_unexportable_model_points_at_the_op(tmp_path, capsys):
    path = tmp_path / "noise.pspec"
    path.write_text("model Noise() {\n  in x: f32[B, 4]\n  out x + randn([B, 4])\n}\n")
    code, _, err = run_cli(capsys, "export", path, "-o", tmp_path / "n.onnx")
    assert code == 1 and f"{path}:3:" in err and "cannot be exported to ONNX" in err


def test_cli_run_errors(tmp_path, capsys):
    code, _, err = run_cli(capsys, "run", tmp_path / "none.onnx")
    assert code == 2 and "no such ONNX file" in err
    (tmp_path / "bad.onnx").write_bytes(b"\x00garbage")
    code, _, err = run_cli(capsys, "run", tmp_path / "bad.onnx")
    assert code == 2 and "is not an ONNX model" in err
