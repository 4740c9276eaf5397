"""The models of specs/icl_gd.pspec and specs/dyck_transformer.pspec against hand-written references:
von Oswald et al.'s weight construction (one LSA layer = one GD step), and uniform causal attention."""

from pathlib import Path

import numpy as np
import torch

import paperspec
from paperspec.compiler.backends.onnx import export_spec
from paperspec.runtime.onnx import verify

SPECS = Path(__file__).resolve().parents[2] / "specs"
DX, POINTS, ETA = 4, 7, 0.3


def regression_prompts(batch: int = 5, seed: int = 0) -> tuple:
    """Prompts as in linear_regression_icl: rows (x_i, y_i), the last (x_q, 0); and the query's label."""
    rng = np.random.default_rng(seed)
    xs = rng.standard_normal((batch, POINTS + 1, DX))
    ys = np.einsum("bnd,bd->bn", xs, rng.standard_normal((batch, DX)))
    tokens = np.concatenate([xs, ys[..., None]], axis=-1)
    tokens[:, -1, -1] = 0.0
    return torch.tensor(tokens, dtype=torch.float32), xs, ys


def one_gd_step_prediction(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """A loop: w = 0 minus ETA times the gradient of sum_i (w.x_i - y_i)^2 / (2n), then w.x_q."""
    predictions = []
    for x, y in zip(xs, ys, strict=True):
        w = np.zeros(DX)
        gradient = sum((w @ x[i] - y[i]) * x[i] for i in range(POINTS)) / POINTS
        predictions.append((w - ETA * gradient) @ x[-1])
    return np.array(predictions)


def gd_construction(lsa: torch.nn.Module) -> None:
    """von Oswald et al.'s weights: keys and queries read x, values read y, P scales by ETA."""
    reads_x = torch.zeros(DX + 1, DX + 1)
    reads_x[:DX, :DX] = torch.eye(DX)
    reads_y = torch.zeros(DX + 1, DX + 1)
    reads_y[DX, DX] = 1.0
    with torch.no_grad():
        lsa.q.weight.copy_(reads_x)
        lsa.k.weight.copy_(reads_x)
        lsa.v.weight.copy_(reads_y)
        lsa.proj.weight.copy_(ETA * torch.eye(DX + 1))


def test_lsa_with_the_gd_construction_predicts_one_gd_step():
    spec = paperspec.load(str(SPECS / "icl_gd.pspec"))
    lsa = spec.build("LSA", dx=DX)
    gd_construction(lsa)
    tokens, xs, ys = regression_prompts()
    expected = one_gd_step_prediction(xs, ys)
    assert np.allclose(lsa(tokens)[:, 0].detach().numpy(), expected, atol=1e-5)


def test_one_step_gd_model_with_eta_predicts_one_gd_step():
    gd = paperspec.load(str(SPECS / "icl_gd.pspec")).build("OneStepGD", dx=DX)
    with torch.no_grad():
        gd.eta.fill_(ETA)
    tokens, xs, ys = regression_prompts(seed=1)
    assert np.allclose(gd(tokens)[:, 0].detach().numpy(), one_gd_step_prediction(xs, ys), atol=1e-5)


def test_one_step_gd_starts_at_the_zero_predictor():
    gd = paperspec.load(str(SPECS / "icl_gd.pspec")).build("OneStepGD", dx=DX)
    tokens, _, _ = regression_prompts()
    assert torch.equal(gd(tokens), torch.zeros(5, 1))


UNIFORM = f"""
import "{SPECS / 'dyck_transformer.pspec'}"

model Uniform(d: int = 6) {{
  in x: f32[B, T, d]
  out CausalAttention(d, 2, uniform = true)(x)
}}
"""


def test_uniform_attention_is_the_running_mean_of_the_values(tmp_path):
    path = tmp_path / "uniform.pspec"
    path.write_text(UNIFORM)
    module = paperspec.load(str(path)).build("Uniform")
    attention = module.causal_attention
    x = torch.randn(3, 9, 6)
    values = attention.v(x)
    running_mean = torch.stack([values[:, : t + 1].mean(dim=1) for t in range(9)], dim=1)
    assert torch.allclose(module(x), attention.proj(running_mean), atol=1e-6)


def test_uniform_attention_ignores_later_tokens(tmp_path):
    path = tmp_path / "uniform.pspec"
    path.write_text(UNIFORM)
    module = paperspec.load(str(path)).build("Uniform")
    x = torch.randn(2, 8, 6)
    changed = x.clone()
    changed[:, 5:] = torch.randn(2, 3, 6)
    assert torch.allclose(module(x)[:, :5], module(changed)[:, :5], atol=1e-6)


def test_dyck_transformer_with_a_uniform_layer_exports_to_onnx():
    spec = paperspec.load(str(SPECS / "dyck_transformer.pspec"))
    params = {"d": 16, "uniform_layer": 0}
    torch.manual_seed(0)
    module = spec.build("DyckTransformer", **params).eval()
    proto = export_spec(spec, "DyckTransformer", params, module.state_dict())
    report = verify(spec, "DyckTransformer", params, sizes={"B": 2, "T": 7}, module=module, onnx_model=proto)
    assert len(report.checks) == 2 and report.ok


def test_uniform_layer_has_no_query_or_key_weights():
    spec = paperspec.load(str(SPECS / "dyck_transformer.pspec"))
    standard = spec.build("DyckTransformer", d=16).state_dict()
    uniform = spec.build("DyckTransformer", d=16, uniform_layer=1).state_dict()
    first_only = [key for key in standard if key.startswith("layers.0.")]
    assert all(key in uniform for key in first_only)
    assert sum(v.numel() for v in standard.values()) - sum(v.numel() for v in uniform.values()) == 2 * 16 * 16 + 2 * 16
