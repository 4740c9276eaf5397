"""Elaboration: compile-time values, repeat, instances, ties, params, imports and dims, checked on built modules."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import paperspec
from paperspec.compiler.diagnostics import UsageError
from paperspec.compiler.ir import walk

REPO = Path(__file__).resolve().parents[2]


def load(text: str) -> paperspec.Spec:
    return paperspec.loads(textwrap.dedent(text).lstrip("\n"), path="t.pspec")


def output_types(spec: paperspec.Spec, model: str | None = None, **params) -> dict:
    graph = spec.graph(model, **params)
    return {name: str(graph.type_of(ref)) for name, ref, _ in graph.outputs}


def seeded(module: nn.Module, seed: int = 0) -> nn.Module:
    """Fills every parameter with reproducible random values (spec initialisers may be zeros)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return module.eval()


# ---- compile-time arithmetic and conditionals ----

ARITHMETIC = """
model M(d: int = 6, wide: bool = true, layers: int = 3) {
  in x: f32[B, d]
  h = d * 4 // 3 + 1
  k = h if wide else d
  n = max(layers, 2) - min(1, layers)
  f = h / 2
  if layers > 2 and not (d % 2 == 1) {
    y = linear(x, k)
  } else if layers == 2 {
    y = linear(x, 2 * k)
  } else {
    y = linear(x, 1)
  }
  out y
  out z = linear(x, n)
  out w = linear(x, int(f) - 2 ** 1)
  out s = linear(x, x.shape[-1] * x.rank + len([1, 2, 3]))
  out c = linear(x, (d - 1) % 4 + (3 if f > 4.4 else 0))
}
"""


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, {"y": 9, "z": 2, "w": 2, "s": 15, "c": 4}),
        ({"wide": False}, {"y": 6}),
        ({"layers": 2}, {"y": 18, "z": 1}),
        ({"layers": 1}, {"y": 1, "z": 1}),
        ({"d": 7}, {"y": 1, "z": 2, "w": 3, "s": 17, "c": 5}),
        ({"d": 9}, {"y": 1, "w": 4, "s": 21, "c": 3}),
    ],
)
def test_compile_time_arithmetic_and_conditionals(params, expected):
    types = output_types(load(ARITHMETIC), **params)
    for name, features in expected.items():
        assert types[name] == f"f32[B, {features}]", name


def test_conditionals_pick_one_branch_only():
    spec = load(
        """
        model M(norm: bool = true) {
          in x: f32[B, 4]
          if norm { x = layernorm(x) } else { x = linear(x, 4) }
          out x
        }
        """
    )
    assert [type(m) for m in spec.build().children()] == [nn.LayerNorm]
    assert [type(m) for m in spec.build(norm=False).children()] == [nn.Linear]


def test_constant_arithmetic_reaches_generated_code():
    spec = load(
        """
        model M(d: int = 4, scale: float = 0.5) {
          in x: f32[B, d]
          out x * (scale * 2 + 1) - d // 3
        }
        """
    )
    x = torch.randn(3, 4)
    torch.testing.assert_close(spec.build()(x), x * 2.0 - 1, rtol=0, atol=1e-6)


# ---- repeat ----


def test_repeat_index_makes_iterations_differ():
    spec = load(
        """
        model M(n: int = 3) {
          in x: f32[B, 4]
          repeat n as i { x = x * (i + 1) + i }
          out x
        }
        """
    )
    x = torch.randn(2, 4)
    # ((x * 1 + 0) * 2 + 1) * 3 + 2
    torch.testing.assert_close(spec.build()(x), 6 * x + 5, rtol=0, atol=1e-5)
    torch.testing.assert_close(spec.build(n=1)(x), x, rtol=0, atol=0)
    torch.testing.assert_close(spec.build(n=0)(x), x, rtol=0, atol=0)


def test_repeat_index_with_layers_matches_hand_written_loop():
    spec = load(
        """
        model M(d: int = 4, n: int = 3) {
          in x: f32[B, d]
          repeat n as i { x = x + linear(x, d) * (i + 1) }
          out x
        }
        """
    )
    module = seeded(spec.build())
    layers = module.n
    assert isinstance(layers, nn.ModuleList) and len(layers) == 3
    x = torch.randn(5, 4)
    expected = x
    for i in range(3):
        expected = expected + F.linear(expected, layers[i].weight, layers[i].bias) * (i + 1)
    torch.testing.assert_close(module(x), expected, rtol=1e-6, atol=1e-6)


def test_repeat_without_index_gives_one_layer_per_iteration():
    spec = load(
        """
        block Layer(d: int) {
          in x: f32[B, d]
          out x + linear(relu(x), d)
        }
        model M(d: int = 4, layers: int = 3) {
          in x: f32[B, d]
          repeat layers { x = Layer(d)(x) }
          out x
        }
        """
    )
    module = seeded(spec.build())
    assert len(module.layers) == 3
    assert len({id(layer.linear.weight) for layer in module.layers}) == 3
    x = torch.randn(2, 4)
    expected = x
    for layer in module.layers:
        expected = expected + F.linear(F.relu(expected), layer.linear.weight, layer.linear.bias)
    torch.testing.assert_close(module(x), expected, rtol=1e-6, atol=1e-6)


# ---- block instances and weight sharing ----

SHARED = """
block Attn(d: int) {
  in x: f32[B, T, d]
  out linear(x, d)
}
model M(d: int = 4) {
  in x: f32[B, T, d]
  attn = Attn(d)
  y = attn(x)
  out attn(y) + attn(x)
}
"""


def test_instance_applied_twice_shares_weights():
    spec = load(SHARED)
    module = seeded(spec.build())
    assert [name for name, _ in module.named_children()] == ["attn"]
    assert list(module.state_dict()) == ["attn.linear.weight", "attn.linear.bias"]
    assert spec.source().count("class Attn") == 1
    x = torch.randn(2, 3, 4)
    weight, bias = module.attn.linear.weight, module.attn.linear.bias
    y = F.linear(x, weight, bias)
    torch.testing.assert_close(module(x), F.linear(y, weight, bias) + y, rtol=1e-6, atol=1e-6)


def test_separate_instances_have_separate_weights():
    spec = load(
        """
        block Attn(d: int) {
          in x: f32[B, T, d]
          out linear(x, d)
        }
        model M(d: int = 4) {
          in x: f32[B, T, d]
          out Attn(d)(x) + Attn(d)(x)
        }
        """
    )
    module = spec.build()
    assert [name for name, _ in module.named_children()] == ["attn", "attn_1"]
    assert module.attn.linear.weight is not module.attn_1.linear.weight
    # one class serves both: same block, same arguments, same input pattern
    assert spec.source().count("class Attn") == 1


def test_instance_made_outside_repeat_is_shared_by_every_iteration():
    spec = load(
        """
        block Attn(d: int) {
          in x: f32[B, T, d]
          out linear(x, d)
        }
        model M(d: int = 4, n: int = 3) {
          in x: f32[B, T, d]
          shared = Attn(d)
          repeat n { x = shared(x) }
          out x
        }
        """
    )
    module = seeded(spec.build())
    assert list(module.state_dict()) == ["shared.linear.weight", "shared.linear.bias"]
    x = torch.randn(2, 3, 4)
    expected = x
    for _ in range(3):
        expected = module.shared.linear(expected)
    torch.testing.assert_close(module(x), expected, rtol=1e-6, atol=1e-6)


# ---- ties ----


def test_tie_makes_parameters_one_tensor():
    spec = load(
        """
        model M(vocab: int = 10, d: int = 4) {
          in tokens: i64[B, T]
          wte = embedding(tokens, vocab, d)
          head = linear(wte, vocab, bias = false)
          tie head.weight = wte.weight
          out head
        }
        """
    )
    module = seeded(spec.build())
    assert module.head.weight is module.wte.weight
    assert spec.parameter_count() == 10 * 4
    assert sum(p.numel() for p in module.parameters()) == 10 * 4
    tokens = torch.tensor([[1, 2, 3], [4, 5, 9]])
    embedded = module.wte.weight[tokens]
    torch.testing.assert_close(module(tokens), embedded @ module.wte.weight.T, rtol=1e-6, atol=1e-6)
    with torch.no_grad():
        module.wte.weight.fill_(0.25)
    assert torch.all(module.head.weight == 0.25)


def test_tie_into_child_block():
    spec = load(
        """
        block Proj(d: int) {
          in x: f32[B, d]
          out linear(x, d, bias = false)
        }
        model M(d: int = 4) {
          in x: f32[B, d]
          a = Proj(d)(x)
          b = Proj(d)(a)
          tie b.linear.weight = a.linear.weight
          out b
        }
        """
    )
    module = spec.build()
    assert module.b.linear.weight is module.a.linear.weight
    assert spec.parameter_count() == 16


# ---- explicit parameters ----


def test_param_declarations_and_initialisers():
    spec = load(
        """
        model M(d: int = 64) {
          in x: f32[B, d]
          param W: [d, d] init = normal(0.02)
          param Z: [d]
          param O: [d] init = ones
          param C: [2, d] init = constant(0.5)
          param U: [d, d] init = uniform(-0.1, 0.1)
          param H: f64[3]
          out ((x @ W + Z) * O + C[0] + (x @ U)) + cast(H[0], "f32")
        }
        """
    )
    torch.manual_seed(0)
    module = spec.build()
    assert module.W.shape == (64, 64) and module.W.dtype == torch.float32
    assert 0.015 < module.W.std().item() < 0.025
    assert abs(module.W.mean().item()) < 0.005
    assert torch.all(module.Z == 0)
    assert torch.all(module.O == 1)
    assert torch.all(module.C == 0.5) and module.C.shape == (2, 64)
    assert module.U.abs().max().item() <= 0.1 and module.U.std().item() > 0.03
    assert module.H.dtype == torch.float64
    assert list(module.state_dict()) == ["W", "Z", "O", "C", "U", "H"]
    assert all(isinstance(p, nn.Parameter) for p in (module.W, module.Z, module.O, module.C, module.U, module.H))


def test_explicit_parameters_match_hand_written_torch():
    spec = load(
        """
        model M(d: int = 3, h: int = 5) {
          in x: f32[B, d]
          param W1: [d, h] init = normal(0.5)
          param b1: [h]
          param W2: [h, d] init = normal(0.5)
          y = gelu(x @ W1 + b1)
          out layernorm(y @ W2 + x)
        }
        """
    )
    module = seeded(spec.build())
    x = torch.randn(7, 3)
    hidden = F.gelu(x @ module.W1 + module.b1)
    norm = module.layernorm
    expected = F.layer_norm(hidden @ module.W2 + x, (3,), norm.weight, norm.bias, eps=1e-5)
    torch.testing.assert_close(module(x), expected, rtol=1e-6, atol=1e-6)


def test_attention_block_matches_hand_written_multi_head_attention():
    spec = load(
        """
        block SelfAttention(d: int, heads: int) {
          in x: f32[B, T, d]
          q, k, v = split(linear(x, 3 * d, bias = false), 3, dim = -1)
          out proj = linear(attention(q, k, v, heads = heads, causal = true), d)
        }
        model M(d: int = 8, heads: int = 2) {
          in x: f32[B, T, d]
          out SelfAttention(d, heads)(x)
        }
        """
    )
    module = seeded(spec.build())
    block = module.self_attention
    x = torch.randn(2, 5, 8)
    q, k, v = F.linear(x, block.linear.weight).chunk(3, dim=-1)

    def heads(t):  # [B, T, d] -> [B, heads, T, d / heads]
        return t.reshape(2, 5, 2, 4).transpose(1, 2)

    scores = heads(q) @ heads(k).transpose(-1, -2) / math.sqrt(4)
    scores = scores.masked_fill(torch.ones(5, 5, dtype=torch.bool).triu(1), float("-inf"))
    mixed = (scores.softmax(-1) @ heads(v)).transpose(1, 2).reshape(2, 5, 8)
    expected = F.linear(mixed, block.proj.weight, block.proj.bias)
    torch.testing.assert_close(module(x), expected, rtol=1e-5, atol=1e-6)


# ---- imports ----


def test_imports_of_other_spec_files(tmp_path):
    (tmp_path / "layers.pspec").write_text(
        textwrap.dedent(
            """
            block Proj(d: int, out_features: int) {
              in x: f32[.., d]
              out linear(x, out_features)
            }
            """
        )
    )
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "act.pspec").write_text("block Act() {\n  in x: f32[.., D]\n  out relu(x)\n}\n")
    (tmp_path / "main.pspec").write_text(
        textwrap.dedent(
            """
            import "layers.pspec"
            import "nested/act.pspec" as act
            model M(d: int = 4) {
              in x: f32[B, d]
              h = Proj(d, 8)(x)
              out y = act.Act()(Proj(8, 2)(h))
            }
            """
        )
    )
    spec = paperspec.load(str(tmp_path / "main.pspec"))
    assert output_types(spec) == {"y": "f32[B, 2]"}
    module = seeded(spec.build())
    x = torch.randn(3, 4)
    expected = F.relu(module.proj(module.h(x)))
    torch.testing.assert_close(module(x), expected, rtol=1e-6, atol=1e-6)


def test_a_model_an_imported_file_defines_can_be_built_by_name(tmp_path):
    (tmp_path / "base.pspec").write_text("model Base(d: int = 4) {\n  in x: f32[B, d]\n  out linear(x, 2)\n}\n")
    (tmp_path / "recipe.pspec").write_text('import "base.pspec"\n')
    spec = paperspec.load(str(tmp_path / "recipe.pspec"))
    assert spec.models() == []  # its own models
    assert spec.build("Base", d=3)(torch.randn(5, 3)).shape == (5, 2)
    with pytest.raises(UsageError) as error:
        spec.graph("Bose")
    assert "Base" in error.value.hint


SHARED_AT_TWO_SIZES = """
block Flat() {
  in h: f32[B, K, 4]
  out reshape(h, [h.shape[0], K * 4])
}
model M() {
  in x: f32[B, 6, 4]
  f = Flat()
  out concat([f(x[:, :2, :]), f(x[:, 2:, :])], 1)
}
"""


def test_a_shared_instance_applied_at_two_sizes_is_compiled_for_both():
    # One module serves K = 2 and K = 4: it is compiled from Flat's declaration with symbolic
    # K, not from its first use (whose K * 4 = 8 would break the second call).
    spec = paperspec.loads(SHARED_AT_TWO_SIZES)
    x = torch.randn(3, 6, 4)
    torch.testing.assert_close(spec.build("M")(x), x.reshape(3, 24))
    assert "4 * K" in spec.source("M")


def test_a_procedures_model_called_at_two_sizes_trains_and_evaluates(tmp_path):
    from paperspec.runtime.train import Trainer

    text = """
    model Score(d: int = 4) {
      in x: f32[B, K, d]
      out y: f32[B, K] = linear(x, 1)[.., 0]
    }
    data pts = linear_teacher(dim = 4)
    train fit {
      model net = Score()
      data pts
      batch 8
      loss mse(net(stack([batch.x, batch.x], dim = 1))[:, 0], batch.y)
      optimizer sgd(lr = 0.1)
      steps 3
      eval { e = mean(net(stack([batch.x, batch.x, batch.x], dim = 1))) }
    }
    """
    path = tmp_path / "two_sizes.pspec"
    path.write_text(textwrap.dedent(text))
    result = Trainer(paperspec.load(str(path)), out_root=str(tmp_path / "runs"), progress=False).run()
    assert result.steps == 3 and math.isfinite(result.metrics["e"])


def test_a_block_that_cannot_be_symbolic_is_an_error_at_its_second_size():
    text = SHARED_AT_TWO_SIZES.replace("reshape(h, [h.shape[0], K * 4])", "linear(reshape(h, [h.shape[0], K * 4]), 2)")
    with pytest.raises(paperspec.SpecError) as error:
        paperspec.loads(text).graph("M")
    assert "weights do not fit" in error.value.message
    assert error.value.span.line == 9


def test_import_cycle_is_reported(tmp_path):
    (tmp_path / "a.pspec").write_text('import "b.pspec"\nmodel A() {\n  in x: f32[B]\n  out x\n}\n')
    (tmp_path / "b.pspec").write_text('import "a.pspec"\nblock Bb() {\n  in x: f32[B]\n  out x\n}\n')
    with pytest.raises(paperspec.SpecError) as info:
        paperspec.load(str(tmp_path / "a.pspec"))
    assert "import cycle" in info.value.message


def test_imported_file_is_loaded_once(tmp_path):
    (tmp_path / "lib.pspec").write_text("block Id() {\n  in x: f32[B]\n  out x\n}\n")
    (tmp_path / "mid.pspec").write_text('import "lib.pspec"\nblock Mid() {\n  in x: f32[B]\n  out Id()(x)\n}\n')
    (tmp_path / "top.pspec").write_text(
        'import "lib.pspec"\nimport "mid.pspec"\nmodel M() {\n  in x: f32[B]\n  out Mid()(Id()(x))\n}\n'
    )
    spec = paperspec.load(str(tmp_path / "top.pspec"))
    assert len(spec.compiler.units) == 3
    x = torch.randn(4)
    torch.testing.assert_close(spec.build()(x), x)


# ---- leading dims and symbolic dims through blocks ----


def test_leading_dims_in_block_input():
    spec = load(
        """
        block Proj(d: int) {
          in x: f32[.., d]
          out linear(x, 2 * d)
        }
        model M(d: int = 3) {
          in a: f32[N, d]
          in b: f32[B, T, H, d]
          out pa = Proj(d)(a)
          out pb = Proj(d)(b)
        }
        """
    )
    assert output_types(spec) == {"pa": "f32[N, 6]", "pb": "f32[B, T, H, 6]"}
    module = seeded(spec.build())
    a, b = torch.randn(5, 3), torch.randn(2, 3, 4, 3)
    out_a, out_b = module(a, b)
    torch.testing.assert_close(out_a, module.pa.linear(a))
    assert out_b.shape == (2, 3, 4, 6)


def test_symbolic_dims_flow_through_blocks():
    spec = load(
        """
        block Double(d: int) {
          in x: f32[B, T, d]
          out concat([x, x], dim = 1)
        }
        block Flat(d: int) {
          in x: f32[B, T, d]
          out reshape(x, [B, T * d])
        }
        model M(d: int = 2) {
          in x: f32[B, T, d]
          in y: f32[N, S, d]
          twice = Double(d)(Double(d)(x))
          out flat: f32[B, 8 * T] = Flat(d)(twice)
          out other: f32[N, 2 * S, d] = Double(d)(y)
        }
        """
    )
    assert output_types(spec) == {"flat": "f32[B, 8 * T]", "other": "f32[N, 2 * S, 2]"}
    graph = spec.graph()
    # a block is elaborated once per concrete sizes and pattern of equal dims, not per symbol name
    assert sum(1 for g in walk(graph) if g.block == "Double") == 1
    x, y = torch.randn(2, 3, 2), torch.randn(4, 1, 2)
    flat, other = spec.build()(x, y)
    torch.testing.assert_close(flat, torch.cat([x, x, x, x], dim=1).reshape(2, 24))
    torch.testing.assert_close(other, torch.cat([y, y], dim=1))


def test_concrete_sizes_specialise_a_block():
    spec = load(
        """
        block Proj(d: int) {
          in x: f32[B, k]
          out linear(x, d)
        }
        model M() {
          in a: f32[B, 3]
          in b: f32[B, 5]
          out Proj(2)(a) + Proj(2)(b)
        }
        """
    )
    module = spec.build()
    assert module.proj.linear.in_features == 3
    assert module.proj_1.linear.in_features == 5
    assert type(module.proj) is not type(module.proj_1)


def test_input_constraint_is_checked_at_run_time():
    spec = load(
        """
        model M(ctx: int = 4) {
          in x: f32[B, T <= ctx]
          out x * 2
        }
        """
    )
    module = spec.build()
    torch.testing.assert_close(module(torch.ones(2, 4)), torch.full((2, 4), 2.0))
    with pytest.raises(ValueError, match="T <= 4"):
        module(torch.ones(2, 5))
    spec.build(ctx=5)(torch.ones(2, 5))


# ---- module naming ----


def test_module_naming_rules():
    spec = load(
        """
        block Layer(d: int) {
          in x: f32[B, d]
          out linear(x, d)
        }
        block MultiHead(d: int) {
          in x: f32[B, d]
          out linear(x, d)
        }
        model M(d: int = 4, n: int = 2) {
          in x: f32[B, d]
          h = linear(x, d)
          a = linear(linear(h, d), d)
          b = layernorm(h) + layernorm(a)
          y = Layer(d)(b)
          z = Layer(d)(y) + MultiHead(d)(y)
          repeat n { z = linear(z, d) }
          repeat 2 { z = relu(linear(z, d)) }
          out logits = linear(z, d)
        }
        """
    )
    names = [name for name, _ in spec.build().named_children()]
    assert names == [
        "h",  # bound name
        "linear", "a",  # inner call has no binding: op name; the outer one is bound
        "layernorm", "layernorm_1",  # the same op twice: _1 suffix
        "y",  # block applied and bound
        "layer", "multi_head",  # unbound block applications: snake_case of the block name
        "n",  # repeat with a named count
        "repeat",  # repeat with a literal count
        "logits",  # named output
    ]


def test_module_names_avoid_python_keywords_and_module_attributes():
    spec = load(
        """
        block Double(d: int) {
          in x: f32[B, d]
          out 2 * linear(x, d)
        }
        model M() {
          in x: f32[B, 4]
          lambda = linear(x, 4)
          training = linear(lambda, 4)
          eval = layernorm(training)
          out Double(4)(eval)
        }
        """
    )
    module = seeded(spec.build())
    names = [name for name, _ in module.named_children()]
    assert names == ["lambda_", "training_", "eval_", "double_"]
    x = torch.randn(2, 4)
    expected = 2 * module.double_.linear(module.eval_(module.training_(module.lambda_(x))))
    torch.testing.assert_close(module(x), expected)
    module.train()  # would fail if `training` were a submodule
    assert module.training


def test_reserved_names_cover_every_nn_module_attribute():
    from paperspec.compiler.backends.pysource import RESERVED

    assert {name for name in dir(nn.Module()) if not name.startswith("_")} <= RESERVED


# ---- building with overrides ----


def test_build_honours_overrides(tmp_path):
    path = tmp_path / "gpt.pspec"
    path.write_text(
        textwrap.dedent(
            """
            spec tiny "a tiny GPT"
            block Layer(d: int, heads: int) {
              in x: f32[B, T, d]
              q, k, v = split(linear(x, 3 * d), 3)
              x = x + linear(attention(q, k, v, heads = heads, causal = true), d)
              out x + mlp(layernorm(x), hidden = 4 * d)
            }
            model GPT(vocab: int = 16, d: int = 32, layers: int = 2, heads: int = 4, ctx: int = 8) {
              in tokens: i64[B, T <= ctx]
              x = embedding(tokens, vocab, d) + position_embedding(T, ctx, d)
              repeat layers { x = Layer(d, heads)(x) }
              out logits: f32[B, T, vocab] = linear(layernorm(x), vocab)
            }
            """
        )
    )
    spec = paperspec.load(str(path))
    default = spec.build("GPT")
    wide = spec.build("GPT", d=64, layers=3)
    assert default.embedding.weight.shape == (16, 32)
    assert wide.embedding.weight.shape == (16, 64)
    assert len(default.layers) == 2 and len(wide.layers) == 3
    assert wide.paperspec_model["params"] == {"d": 64, "layers": 3}
    assert wide.paperspec_model["model"] == "GPT"
    assert sum(p.numel() for p in wide.parameters()) == spec.parameter_count("GPT", d=64, layers=3)
    tokens = torch.randint(0, 16, (2, 5))
    assert wide(tokens).shape == (2, 5, 16)


def test_build_spec_library_gpt_with_smaller_width():
    spec = paperspec.load(str(REPO / "specs" / "transformer.pspec"))
    module = spec.build("GPT", d=64, layers=1)
    norms = [m for m in module.modules() if isinstance(m, nn.LayerNorm)]
    assert norms and all(m.normalized_shape == (64,) for m in norms)
    assert sum(p.numel() for p in module.parameters()) == spec.parameter_count("GPT", d=64, layers=1)
    assert spec.parameter_count("GPT", d=64, layers=1) < spec.parameter_count("GPT")
    assert module(torch.randint(0, 64, (2, 6))).shape == (2, 6, 64)
