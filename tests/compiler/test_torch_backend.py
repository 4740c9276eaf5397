"""The PyTorch backend: generated modules against torch's own layers and hand-written loops."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import paperspec
from paperspec.compiler.dims import substitute
from paperspec.runtime.inputs import example_inputs, symbol_sizes

SPECS = Path(__file__).resolve().parents[2] / "specs"
SPEC_FILES = sorted(SPECS.glob("*.pspec"))
TINY_GPT = {"vocab": 16, "d": 16, "layers": 2, "heads": 2, "ctx": 8}


def encoder_spec(tmp_path: Path) -> paperspec.Spec:
    text = f"""
    import "{SPECS / 'transformer.pspec'}"

    model Encoder(d: int = 32, heads: int = 4, ff: int = 64, dropout: float = 0.0) {{
      in  x: f32[B, T, d]
      out y = EncoderLayer(d, heads, ff, dropout)(x)
    }}
    """
    return paperspec.loads(textwrap.dedent(text), str(tmp_path / "encoder.pspec"))


def copy_encoder_weights(ours: torch.nn.Module, reference: torch.nn.TransformerEncoderLayer) -> None:
    pairs = {
        "attn.qkv.weight": reference.self_attn.in_proj_weight,
        "attn.qkv.bias": reference.self_attn.in_proj_bias,
        "attn.proj.weight": reference.self_attn.out_proj.weight,
        "attn.proj.bias": reference.self_attn.out_proj.bias,
        "mlp.fc.weight": reference.linear1.weight,
        "mlp.fc.bias": reference.linear1.bias,
        "mlp.proj.weight": reference.linear2.weight,
        "mlp.proj.bias": reference.linear2.bias,
        "ln1.weight": reference.norm1.weight,
        "ln1.bias": reference.norm1.bias,
        "ln2.weight": reference.norm2.weight,
        "ln2.bias": reference.norm2.bias,
    }
    state = {f"y.{key}": value.detach().clone() for key, value in pairs.items()}
    assert set(state) == set(ours.state_dict())
    ours.load_state_dict(state)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_encoder_layer_matches_torch_transformer_encoder_layer(tmp_path, mode):
    torch.manual_seed(0)
    d, heads, ff = 32, 4, 64
    ours = encoder_spec(tmp_path).build("Encoder", d=d, heads=heads, ff=ff)
    reference = torch.nn.TransformerEncoderLayer(
        d, heads, ff, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
    )
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.normal_(0.0, 0.2)
    copy_encoder_weights(ours, reference)
    ours.train(mode == "train")
    reference.train(mode == "train")
    x = torch.randn(3, 7, d)
    torch.testing.assert_close(ours(x), reference(x), rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # torch's fused inference path in eval mode
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-5, atol=1e-5)


# ---- every spec compiles to a standalone file ----

STANDALONE_RUNNER = """
import importlib.util
import sys

import torch

spec = importlib.util.spec_from_file_location("generated", sys.argv[1])
generated = importlib.util.module_from_spec(spec)
spec.loader.exec_module(generated)
model = getattr(generated, sys.argv[2])()
inputs = torch.load(sys.argv[3], weights_only=True)
outputs = model(*inputs)
outputs = outputs if isinstance(outputs, tuple) else (outputs,)
sum(o.float().square().mean() for o in outputs if o.is_floating_point()).backward()
grads = [p.grad for p in model.parameters()]
assert all(g is not None and torch.isfinite(g).all() for g in grads), "missing or non-finite gradients"
assert not any(name.split(".")[0] == "paperspec" for name in sys.modules), "paperspec was imported"
print(";".join(str(tuple(o.shape)) for o in outputs))
"""


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.name)
def test_spec_compiles_to_standalone_torch_file(tmp_path, path):
    spec = paperspec.load(str(path))
    for model in spec.check():
        source = spec.source(model)
        assert not re.search(r"^\s*(import|from)\s+paperspec", source, re.MULTILINE)
        graph = spec.graph(model)
        sizes = symbol_sizes(graph, {"B": 3, "T": 5, "N": 6})
        inputs = example_inputs(graph, sizes, seed=1)
        expected = [tuple(int(substitute(d, sizes)) for d in graph.type_of(ref).shape) for _, ref, _ in graph.outputs]
        (tmp_path / "model.py").write_text(source)
        torch.save(tuple(inputs.values()), tmp_path / "inputs.pt")
        (tmp_path / "runner.py").write_text(STANDALONE_RUNNER)
        result = subprocess.run(
            [sys.executable, "-I", "runner.py", "model.py", graph.name, "inputs.pt"],
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == ";".join(str(shape) for shape in expected)


# ---- state_dict keys, ties and parameter counts ----


def tiny_gpt(**params) -> torch.nn.Module:
    return paperspec.load(str(SPECS / "transformer.pspec")).build("GPT", **{**TINY_GPT, **params})


def test_gpt_state_dict_keys_are_predictable():
    model = tiny_gpt()
    layer = [
        "ln1.weight", "ln1.bias", "attn.qkv.weight", "attn.proj.weight",
        "ln2.weight", "ln2.bias", "mlp.fc.weight", "mlp.proj.weight",
    ]
    expected = (
        ["wte.weight", "wpe.weight"]
        + [f"layers.{i}.{key}" for i in range(2) for key in layer]
        + ["ln_f.weight", "ln_f.bias", "lm_head.weight"]
    )
    assert list(model.state_dict()) == expected


def test_tied_weights_are_one_tensor_and_counted_once():
    spec = paperspec.load(str(SPECS / "transformer.pspec"))
    model = spec.build("GPT", **TINY_GPT)
    assert model.lm_head.weight is model.wte.weight
    assert spec.parameter_count("GPT", **TINY_GPT) == sum(p.numel() for p in model.parameters())


# ---- torch.compile ----


def test_tiny_gpt_compiles_with_fullgraph_and_matches_eager():
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = tiny_gpt(d=8, layers=1, heads=2).eval()
    tokens = torch.randint(0, 16, (2, 5))
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(tokens), model(tokens), rtol=1e-5, atol=1e-5)


def test_tiny_gpt_traces_as_one_graph_for_any_sequence_length():
    torch._dynamo.reset()
    model = tiny_gpt(d=8, layers=1, heads=2).eval()
    compiled = torch.compile(model, fullgraph=True, dynamic=True, backend="eager")
    with torch.no_grad():
        for length in (3, 8):
            tokens = torch.randint(0, 16, (2, length))
            torch.testing.assert_close(compiled(tokens), model(tokens))
    # Under fullgraph dynamo cannot raise user exceptions at all; without it the check still fires.
    torch._dynamo.reset()
    with pytest.raises(ValueError, match="T <= 8, got T = 9"):
        torch.compile(model, dynamic=True, backend="eager")(torch.randint(0, 16, (2, 9)))


# ---- run-time input checks ----

MLP_SIZE = {"inputs": 12, "width": 8, "depth": 2, "classes": 3}


@pytest.mark.parametrize(
    ("spec_file", "params", "value", "needles"),
    [
        ("transformer.pspec", TINY_GPT, torch.zeros(2, 5), ["`tokens`", "i64[B, T <= 8]", "float32"]),
        ("transformer.pspec", TINY_GPT, torch.zeros(5, dtype=torch.long), ["`tokens`", "i64[B, T <= 8]", "rank"]),
        ("transformer.pspec", TINY_GPT, torch.zeros(2, 9, dtype=torch.long), ["`tokens`", "T <= 8", "T = 9"]),
        ("transformer.pspec", TINY_GPT, [[0, 1]], ["`tokens`", "i64[B, T <= 8]", "list"]),
        ("mlp.pspec", MLP_SIZE, torch.zeros(2, 11), ["`x`", "f32[B, 12]", "dim 1 is 11"]),
        ("mlp.pspec", MLP_SIZE, torch.zeros(2, 12, dtype=torch.float64), ["`x`", "f32[B, 12]", "float64"]),
    ],
    ids=["dtype", "rank", "bound", "not-a-tensor", "size", "float64"],
)
def test_wrong_inputs_raise_value_error_naming_the_input(spec_file, params, value, needles):
    model = paperspec.load(str(SPECS / spec_file)).build(**params)
    with pytest.raises(ValueError) as caught:
        model(value)
    for needle in needles:
        assert needle in str(caught.value)


# ---- repeat ----


def model_forward(source: str) -> str:
    """The forward method of the last class in a generated file."""
    return source.rsplit("def forward", 1)[1]


def repeat_spec(body: str, count: int = 3) -> paperspec.Spec:
    text = f"""
    model R(d: int = 6, n: int = {count}) {{
      in  x: f32[B, d]
      {body}
      out x
    }}
    """
    return paperspec.loads(textwrap.dedent(text), "repeat.pspec")


def test_repeat_with_several_layers_makes_a_body_class():
    spec = repeat_spec("repeat n { h = linear(x, 2 * d); x = x + linear(tanh(layernorm(h)), d) }")
    source = spec.source()
    assert "class RN(nn.Module)" in source
    assert re.search(r"for \w+ in self\.n:", source)
    torch.manual_seed(0)
    model = spec.build()
    x = torch.randn(4, 6)
    expected = x
    for body in model.n:
        h = F.linear(expected, body.h.weight, body.h.bias)
        h = F.layer_norm(h, (12,), body.layernorm.weight, body.layernorm.bias)
        expected = expected + F.linear(torch.tanh(h), body.linear.weight, body.linear.bias)
    assert len(model.n) == 3
    torch.testing.assert_close(model(x), expected)


def test_repeat_using_its_index_unrolls():
    spec = repeat_spec("repeat n as i { x = x + linear(x, d) * (i + 1) }")
    source = spec.source()
    assert "for " not in model_forward(source)
    assert "self.n[2]" in source
    torch.manual_seed(0)
    model = spec.build()
    x = torch.randn(4, 6)
    expected = x
    for i, layer in enumerate(model.n):
        expected = expected + F.linear(expected, layer.weight, layer.bias) * (i + 1)
    torch.testing.assert_close(model(x), expected)


def test_repeat_using_its_index_for_sizes_unrolls_distinct_classes():
    spec = repeat_spec("repeat n as i { h = linear(x, d * (i + 1)); x = x + linear(relu(h), d) }", count=2)
    source = spec.source()
    assert "for " not in model_forward(source)
    torch.manual_seed(0)
    model = spec.build()
    assert [body.h.out_features for body in model.n] == [6, 12]
    x = torch.randn(4, 6)
    expected = x
    for body in model.n:
        h = F.linear(expected, body.h.weight, body.h.bias)
        expected = expected + F.linear(torch.relu(h), body.linear.weight, body.linear.bias)
    torch.testing.assert_close(model(x), expected)


def test_repeat_without_layers_is_a_plain_loop():
    spec = repeat_spec("repeat n { x = x + 0.5 * tanh(x) }")
    source = spec.source()
    assert "for _ in range(3):" in source
    model = spec.build()
    assert list(model.state_dict()) == []
    x = torch.randn(4, 6)
    expected = x
    for _ in range(3):
        expected = expected + 0.5 * torch.tanh(expected)
    torch.testing.assert_close(model(x), expected)
