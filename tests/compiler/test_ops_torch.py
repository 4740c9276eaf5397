"""Every registered op, compiled from a tiny spec and run, against the same computation written in torch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import paperspec
from paperspec.compiler.dims import Sym
from paperspec.compiler.ops.base import all_ops
from paperspec.compiler.types import DTYPES
from paperspec.runtime.cli import main

# Every case runs at both sizes, so each symbolic dim takes two values.
SIZES = (
    {"B": 2, "T": 5, "S": 3, "L": 9, "H": 7, "W": 6},
    {"B": 3, "T": 8, "S": 6, "L": 12, "H": 10, "W": 9},
)


@dataclass(frozen=True)
class Case:
    id: str
    spec: str  # the body of `model M() { ... }`
    reference: Callable  # (inputs...) -> outputs, or (layers, inputs...) when the case has layers
    layers: dict = field(default_factory=dict)  # submodule name -> factory of the torch layer it must equal
    train: bool = False
    seeded: bool = False  # reseed the generator before the model and the reference (random ops)
    positive: bool = False  # float inputs drawn from [0.1, 2.1) (log, sqrt, fractional powers)
    high: int = 10  # integer inputs are drawn from [0, high)


def heads_split(t: torch.Tensor, heads: int) -> torch.Tensor:
    return t.reshape(*t.shape[:-1], heads, -1).transpose(-3, -2)


def heads_merge(t: torch.Tensor) -> torch.Tensor:
    return t.transpose(-3, -2).flatten(-2)


def reference_attention(q, k, v, heads: int, causal: bool = False, scale=None):
    out = F.scaled_dot_product_attention(heads_split(q, heads), heads_split(k, heads), heads_split(v, heads), is_causal=causal, scale=scale)
    return heads_merge(out)


X = "in x: f32[B, T, 8]"
XY = "in x: f32[B, T, 8]; in y: f32[B, T, 8]"
QKV = "in q: f32[B, T, 8]; in k: f32[B, S, 8]; in v: f32[B, S, 4]"
SEQ = "in x: f32[B, 4, L]"
IMG = "in x: f32[B, 3, H, W]"

LAYER_CASES = [
    Case("linear", f"{X}; out y = linear(x, 4)", lambda m, x: m["y"](x), {"y": lambda: nn.Linear(8, 4)}),
    Case("linear_no_bias", f"{X}; out y = linear(x, 4, bias = false)", lambda m, x: m["y"](x), {"y": lambda: nn.Linear(8, 4, bias=False)}),
    Case("embedding", "in tokens: i64[B, T]; out e = embedding(tokens, 10, 6)", lambda m, t: m["e"](t), {"e": lambda: nn.Embedding(10, 6)}),
    Case(
        "position_embedding",
        "in x: f32[B, T, 6]; out y = x + position_embedding(T, 16, 6)",
        lambda m, x: x + m["position_embedding"](torch.arange(x.shape[1])),
        {"position_embedding": lambda: nn.Embedding(16, 6)},
    ),
    Case("layernorm", f"{X}; out y = layernorm(x)", lambda m, x: m["y"](x), {"y": lambda: nn.LayerNorm(8)}),
    Case("layernorm_plain", f"{X}; out y = layernorm(x, eps = 0.001, affine = false)", lambda x: F.layer_norm(x, (8,), eps=1e-3)),
    Case("rmsnorm", f"{X}; out y = rmsnorm(x)", lambda m, x: m["y"](x), {"y": lambda: nn.RMSNorm(8)}),
    Case("rmsnorm_eps", f"{X}; out y = rmsnorm(x, eps = 0.0001, affine = false)", lambda x: F.rms_norm(x, (8,), eps=1e-4)),
    Case("batchnorm_2d_eval", "in x: f32[B, 4]; out y = batchnorm(x)", lambda m, x: m["y"](x), {"y": lambda: nn.BatchNorm1d(4)}),
    Case("batchnorm_1d_eval", f"{SEQ}; out y = batchnorm(x, eps = 0.001)", lambda m, x: m["y"](x), {"y": lambda: nn.BatchNorm1d(4, eps=1e-3)}),
    Case("batchnorm_2d_image_eval", f"{IMG}; out y = batchnorm(x)", lambda m, x: m["y"](x), {"y": lambda: nn.BatchNorm2d(3)}),
    Case(
        "batchnorm_train",
        f"{SEQ}; out y = batchnorm(x, momentum = 0.3)",
        lambda m, x: m["y"](x),
        {"y": lambda: nn.BatchNorm1d(4, momentum=0.3)},
        train=True,
    ),
    Case("batchnorm_no_affine_train", f"{IMG}; out y = batchnorm(x, affine = false)", lambda m, x: m["y"](x), {"y": lambda: nn.BatchNorm2d(3, affine=False)}, train=True),
    Case("dropout_eval", f"{X}; out y = dropout(x, 0.5)", lambda x: x),
    Case("dropout_train", f"{X}; out y = dropout(x, 0.5)", lambda x: F.dropout(x, 0.5, training=True), train=True, seeded=True),
    Case(
        "mlp",
        f"{X}; out y = mlp(x, hidden = 16)",
        lambda m, x: m["y"](x),
        {"y": lambda: nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Dropout(0.0), nn.Linear(16, 8))},
    ),
    Case(
        "mlp_options",
        f"{X}; out y = mlp(x, hidden = 16, out = 4, act = relu, bias = false, dropout = 0.2)",
        lambda m, x: m["y"](x),
        {"y": lambda: nn.Sequential(nn.Linear(8, 16, bias=False), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 4, bias=False))},
    ),
    Case("attention", f"{QKV}; out attention(q, k, v, heads = 2)", lambda q, k, v: reference_attention(q, k, v, 2)),
    Case(
        "attention_causal",
        "in q: f32[B, T, 8]; in k: f32[B, T, 8]; in v: f32[B, T, 8]; out attention(q, k, v, heads = 4, causal = true)",
        lambda q, k, v: reference_attention(q, k, v, 4, causal=True),
    ),
    Case("attention_scale", f"{QKV}; out attention(q, k, v, scale = 0.5)", lambda q, k, v: reference_attention(q, k, v, 1, scale=0.5)),
]

ACTIVATION_CASES = [
    Case("relu", f"{X}; out relu(x)", F.relu),
    Case("gelu", f"{X}; out gelu(x)", F.gelu),
    Case("gelu_tanh", f'{X}; out gelu(x, approximate = "tanh")', lambda x: F.gelu(x, approximate="tanh")),
    Case("silu", f"{X}; out silu(x)", F.silu),
    Case("tanh", f"{X}; out tanh(x)", torch.tanh),
    Case("sigmoid", f"{X}; out sigmoid(x)", torch.sigmoid),
    Case("softplus", f"{X}; out softplus(x)", F.softplus),
    Case("softplus_beta", f"{X}; out softplus(x, beta = 2.0)", lambda x: F.softplus(x, beta=2.0)),
    Case("softmax", f"{X}; out softmax(x)", lambda x: F.softmax(x, dim=-1)),
    Case("softmax_dim", f"{X}; out softmax(x, dim = 1)", lambda x: F.softmax(x, dim=1)),
    Case("log_softmax", f"{X}; out log_softmax(x, 0)", lambda x: F.log_softmax(x, dim=0)),
    Case("exp", f"{X}; out exp(x)", torch.exp),
    Case("log", f"{X}; out log(x)", torch.log, positive=True),
    Case("sqrt", f"{X}; out sqrt(x)", torch.sqrt, positive=True),
    Case("abs", f"{X}; out abs(x)", torch.abs),
    Case("sin", f"{X}; out sin(x)", torch.sin),
    Case("cos", f"{X}; out cos(x)", torch.cos),
]

ARITHMETIC_CASES = [
    Case("add", f"{XY}; out x + y", torch.add),
    Case("add_broadcast", "in x: f32[B, T, 8]; in b: f32[8]; out x + b", lambda x, b: x + b),
    Case("sub", f"{XY}; out x - y", torch.sub),
    Case("sub_number_left", f"{X}; out 2.0 - x", lambda x: 2.0 - x),
    Case("mul", f"{XY}; out x * y", torch.mul),
    Case("mul_number", f"{X}; out x * 3", lambda x: x * 3),
    Case("div", f"{XY}; out x / y", torch.div),
    Case("div_integers", "in i: i64[B, T]; in j: i64[B, T]; out i / (j + 1)", lambda i, j: i / (j + 1)),
    Case("floordiv", f"{XY}; out x // y", lambda x, y: x // y),
    Case("floordiv_integers", "in i: i64[B, T]; out i // 3", lambda i: i // 3),
    Case("mod", f"{XY}; out x % y", lambda x, y: x % y),
    Case("mod_integers", "in i: i64[B, T]; out i % 4", lambda i: i % 4),
    Case("pow", f"{X}; out x ** 2", lambda x: x**2),
    Case("pow_tensor", f"{XY}; out x ** y", torch.pow, positive=True),
    Case("neg", f"{X}; out -x", torch.neg),
    Case("int_plus_float", "in i: i64[B, T]; out i + 1.5", lambda i: i + 1.5),
    Case("eq", "in i: i64[B, T]; in j: i64[B, T]; out i == j", torch.eq, high=3),
    Case("ne", "in i: i64[B, T]; in j: i64[B, T]; out i != j", torch.ne, high=3),
    Case("lt", f"{XY}; out x < y", torch.lt),
    Case("le", "in i: i64[B, T]; in j: i64[B, T]; out i <= j", torch.le, high=3),
    Case("gt", f"{X}; out x > 0", lambda x: x > 0),
    Case("ge", f"{XY}; out x >= y", torch.ge),
    Case("where", f"{XY}; out where(x > y, x, y)", lambda x, y: torch.where(x > y, x, y)),
    Case("where_numbers", "in c: bool[B, T]; in x: f32[B, T, 8]; out where(c[:, :, none], x, 0.0)", lambda c, x: torch.where(c[:, :, None], x, 0.0)),
    Case("clamp", f"{X}; out clamp(x, min = -0.5, max = 0.5)", lambda x: torch.clamp(x, -0.5, 0.5)),
    Case("clamp_min", f"{X}; out clamp(x, min = 0.0)", lambda x: torch.clamp(x, min=0.0)),
    Case("clamp_max", f"{X}; out clamp(x, max = 0.1)", lambda x: torch.clamp(x, max=0.1)),
    Case("clamp_integers", "in i: i64[B, T]; out clamp(i, min = 2, max = 6)", lambda i: torch.clamp(i, 2, 6)),
    Case("bool_times_int", f"{X}; out (x > 0) * 2", lambda x: (x > 0) * 2),
    Case("where_two_ints", f"{X}; out where(x > 0, 1, 0)", lambda x: torch.where(x > 0, 1, 0)),
    Case("where_int_and_float", f"{X}; out where(x > 0, 1.5, 0)", lambda x: torch.where(x > 0, 1.5, 0)),
]

TENSOR_CASES = [
    Case("matmul", "in x: f32[B, T, 8]; in w: f32[8, 4]; out x @ w", torch.matmul),
    Case("matmul_call", "in x: f32[B, T, 8]; in y: f32[B, 8, S]; out matmul(x, y)", torch.matmul),
    Case("matmul_vector_matrix", "in v: f32[8]; in m: f32[8, 4]; out v @ m", lambda v, m: v @ m),
    Case("matmul_matrix_vector", "in m: f32[T, 8]; in v: f32[8]; out m @ v", lambda m, v: m @ v),
    Case("matmul_vector_vector", "in v: f32[8]; in u: f32[8]; out v @ u", lambda v, u: v @ u),
    Case("matmul_vector_batch", "in v: f32[8]; in m: f32[B, 8, 4]; out v @ m", lambda v, m: v @ m),
    Case("matmul_broadcast", "in a: f32[B, 1, T, 8]; in b: f32[2, 8, 5]; out a @ b", lambda a, b: a @ b),
    Case("einsum", 'in a: f32[B, T, 8]; in b: f32[B, 8, S]; out einsum("bij,bjk->bik", a, b)', lambda a, b: torch.einsum("bij,bjk->bik", a, b)),
    Case("einsum_reduce", f'{XY}; out einsum("bti, bti -> bt", x, y)', lambda x, y: torch.einsum("bti,bti->bt", x, y)),
    Case("einsum_single", f'{X}; out einsum("bti->ib", x)', lambda x: torch.einsum("bti->ib", x)),
    Case("reshape", f"{X}; out reshape(x, [B, T, 2, -1])", lambda x: x.reshape(x.shape[0], x.shape[1], 2, -1)),
    Case("reshape_merge", f"{X}; out reshape(x, [-1, 8])", lambda x: x.reshape(-1, 8)),
    Case("reshape_symbolic", f"{X}; out reshape(x, [B, -1])", lambda x: x.reshape(x.shape[0], -1)),
    Case("reshape_exact", "in x: f32[B, 6]; out reshape(x, [B, 3, 2])", lambda x: x.reshape(-1, 3, 2)),
    Case("flatten", f"{X}; out flatten(x)", torch.flatten),
    Case("flatten_range", "in x: f32[B, 3, H, W]; out flatten(x, 1)", lambda x: x.flatten(1)),
    Case("flatten_middle", "in x: f32[B, 3, H, W]; out flatten(x, 1, 2)", lambda x: x.flatten(1, 2)),
    Case("transpose", f"{X}; out transpose(x)", lambda x: x.transpose(-2, -1)),
    Case("transpose_dims", f"{X}; out transpose(x, 0, 2)", lambda x: x.transpose(0, 2)),
    Case("permute", f"{X}; out permute(x, [2, 0, 1])", lambda x: x.permute(2, 0, 1)),
    Case("unsqueeze", f"{X}; out unsqueeze(x, 1)", lambda x: x.unsqueeze(1)),
    Case("unsqueeze_last", f"{X}; out unsqueeze(x, -1)", lambda x: x.unsqueeze(-1)),
    Case("squeeze", "in x: f32[B, 1, 8]; out squeeze(x, 1)", lambda x: x.squeeze(1)),
    Case("cast_float_to_int", f'{X}; out cast(x * 4, "i64")', lambda x: (x * 4).to(torch.int64)),
    Case("cast_int_to_float", 'in i: i64[B, T]; out cast(i, "f64")', lambda i: i.to(torch.float64)),
    Case("cast_bool", f'{X}; out cast(x > 0, "f32")', lambda x: (x > 0).float()),
    Case("concat", f"{XY}; out concat([x, y], dim = -1)", lambda x, y: torch.cat([x, y], dim=-1)),
    Case("concat_symbolic", "in x: f32[B, T, 4]; in y: f32[B, S, 4]; out concat([x, y, x], dim = 1)", lambda x, y: torch.cat([x, y, x], dim=1)),
    Case("stack", f"{XY}; out stack([x, y])", lambda x, y: torch.stack([x, y])),
    Case("stack_last", f"{XY}; out stack([x, y, x], dim = -1)", lambda x, y: torch.stack([x, y, x], dim=-1)),
    Case("split_equal", f"{X}; a, b = split(x, 2); out a; out b", lambda x: x.chunk(2, dim=-1)),
    Case("split_sizes", f"{X}; a, b, c = split(x, [2, 5, 1]); out a; out b; out c", lambda x: x.split([2, 5, 1], dim=-1)),
    Case("split_dim", "in x: f32[B, 6, T]; a, b, c = split(x, 3, dim = 1); out a; out b; out c", lambda x: x.chunk(3, dim=1)),
    Case("sum_all", f"{X}; out sum(x)", torch.sum),
    Case("sum_dim", f"{X}; out sum(x, dim = 1)", lambda x: x.sum(dim=1)),
    Case("sum_dims_keepdim", f"{X}; out sum(x, dim = [0, 2], keepdim = true)", lambda x: x.sum(dim=(0, 2), keepdim=True)),
    Case("sum_all_keepdim", f"{X}; out sum(x, keepdim = true)", lambda x: x.sum(dim=(0, 1, 2), keepdim=True)),
    Case("sum_integers", "in i: i64[B, T]; out sum(i, dim = -1)", lambda i: i.sum(dim=-1)),
    Case("sum_int32", "in i: i32[B, T]; out sum(i)", lambda i: i.sum()),
    Case("sum_bool", f"{X}; out sum(x > 0, dim = 1)", lambda x: (x > 0).sum(dim=1)),
    Case("mean", f"{X}; out mean(x)", torch.mean),
    Case("mean_dim_keepdim", f"{X}; out mean(x, dim = -1, keepdim = true)", lambda x: x.mean(dim=-1, keepdim=True)),
    Case("max", f"{X}; out max(x)", torch.amax),
    Case("max_dim", f"{X}; out max(x, dim = 1)", lambda x: x.amax(dim=1)),
    Case("max_dims_keepdim", f"{X}; out max(x, dim = [1, 2], keepdim = true)", lambda x: x.amax(dim=(1, 2), keepdim=True)),
    Case("min", f"{X}; out min(x)", torch.amin),
    Case("min_dims", f"{X}; out min(x, dim = [0, 2])", lambda x: x.amin(dim=(0, 2))),
    Case("zeros", f"{X}; out zeros([B, 3])", lambda x: torch.zeros(x.shape[0], 3)),
    Case("zeros_int", f'{X}; out zeros([2, T], dtype = "i64")', lambda x: torch.zeros(2, x.shape[1], dtype=torch.int64)),
    Case("ones", f"{X}; out x + ones([8])", lambda x: x + torch.ones(8)),
    Case("ones_bool", f'{X}; out ones([T, 2 * T], dtype = "bool")', lambda x: torch.ones(x.shape[1], 2 * x.shape[1], dtype=torch.bool)),
    Case("arange", f"{X}; out arange(T)", lambda x: torch.arange(x.shape[1])),
    Case("arange_float", f'{X}; out arange(T + 1, dtype = "f32")', lambda x: torch.arange(x.shape[1] + 1, dtype=torch.float32)),
    Case("randn", f"{X}; out randn([B, T])", lambda x: torch.randn(x.shape[0], x.shape[1]), seeded=True),
    Case("randint", f"{X}; out randint([B, T], 7, low = 2)", lambda x: torch.randint(2, 7, (x.shape[0], x.shape[1])), seeded=True),
    Case("index_last", f"{X}; out x[:, -1]", lambda x: x[:, -1]),
    Case("index_ellipsis", f"{X}; out x[.., 0]", lambda x: x[..., 0]),
    Case("index_newaxis", f"{X}; out x[:, none]", lambda x: x[:, None]),
    Case("slice", f"{X}; out x[:, 1:3]", lambda x: x[:, 1:3]),
    Case("slice_drop_last", f"{X}; out x[:, :-1]", lambda x: x[:, :-1]),
    Case("slice_step", f"{X}; out x[::2]", lambda x: x[::2]),
    Case("slice_step_range", f"{X}; out x[.., 1:7:3]", lambda x: x[..., 1:7:3]),
    Case("index_symbolic", f"{X}; out x[0, T - 2, 2:]", lambda x: x[0, x.shape[1] - 2, 2:]),
    Case("slice_symbolic", f"{X}; out x[:, 1:T - 1]", lambda x: x[:, 1 : x.shape[1] - 1]),
]

CONV_CASES = [
    Case("conv1d", f"{SEQ}; out y = conv1d(x, 8, 3)", lambda m, x: m["y"](x), {"y": lambda: nn.Conv1d(4, 8, 3)}),
    Case(
        "conv1d_options",
        f"{SEQ}; out y = conv1d(x, 6, 3, stride = 2, padding = 1, dilation = 2, groups = 2, bias = false)",
        lambda m, x: m["y"](x),
        {"y": lambda: nn.Conv1d(4, 6, 3, stride=2, padding=1, dilation=2, groups=2, bias=False)},
    ),
    Case(
        "conv1d_declared_output",
        f"{SEQ}; out y: f32[B, 8, (L - 3) // 2 + 1] = conv1d(x, 8, 3, stride = 2)",
        lambda m, x: m["y"](x),
        {"y": lambda: nn.Conv1d(4, 8, 3, stride=2)},
    ),
    Case("conv2d", f"{IMG}; out y = conv2d(x, 6, 3)", lambda m, x: m["y"](x), {"y": lambda: nn.Conv2d(3, 6, 3)}),
    Case(
        "conv2d_options",
        f"{IMG}; out y = conv2d(x, 4, [3, 2], stride = [2, 1], padding = [1, 0], dilation = [1, 2])",
        lambda m, x: m["y"](x),
        {"y": lambda: nn.Conv2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2))},
    ),
    Case(
        "conv2d_depthwise",
        f"{IMG}; out y = conv2d(x, 6, 3, padding = 1, groups = 3, bias = false)",
        lambda m, x: m["y"](x),
        {"y": lambda: nn.Conv2d(3, 6, 3, padding=1, groups=3, bias=False)},
    ),
    Case("max_pool1d", f"{SEQ}; out max_pool1d(x, 2)", lambda x: F.max_pool1d(x, 2)),
    Case("max_pool1d_options", f"{SEQ}; out max_pool1d(x, 3, stride = 2, padding = 1)", lambda x: F.max_pool1d(x, 3, 2, 1)),
    Case("avg_pool1d", f"{SEQ}; out avg_pool1d(x, 3)", lambda x: F.avg_pool1d(x, 3)),
    Case("avg_pool1d_options", f"{SEQ}; out avg_pool1d(x, 4, stride = 1, padding = 2)", lambda x: F.avg_pool1d(x, 4, 1, 2)),
    Case("max_pool2d", f"{IMG}; out max_pool2d(x, 2)", lambda x: F.max_pool2d(x, 2)),
    Case("max_pool2d_options", f"{IMG}; out max_pool2d(x, [3, 2], stride = [2, 1], padding = [1, 0])", lambda x: F.max_pool2d(x, (3, 2), (2, 1), (1, 0))),
    Case("avg_pool2d", f"{IMG}; out avg_pool2d(x, 3, stride = 2, padding = 1)", lambda x: F.avg_pool2d(x, 3, 2, 1)),
    Case("avg_pool2d_rect", f"{IMG}; out avg_pool2d(x, [2, 3])", lambda x: F.avg_pool2d(x, (2, 3))),
    Case(
        "conv_pool_stack",
        f"{SEQ}; h = conv1d(x, 8, 3, padding = 1); out y = max_pool1d(relu(h), 2)",
        lambda m, x: F.max_pool1d(F.relu(m["h"](x)), 2),
        {"h": lambda: nn.Conv1d(4, 8, 3, padding=1)},
    ),
]



def reference_cross_entropy(logits, target, ignore_index=-100, label_smoothing=0.0):
    log_probs = F.log_softmax(logits, dim=-1)
    picked = -log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    losses = (1 - label_smoothing) * picked - label_smoothing * log_probs.mean(dim=-1)
    kept = target != ignore_index
    return losses[kept].sum() / kept.sum()


def reference_kl_div(logits, target_logits, temperature):
    model = F.log_softmax(logits / temperature, dim=-1)
    target = F.log_softmax(target_logits / temperature, dim=-1)
    return (target.exp() * (target - model)).sum(dim=-1).mean() * temperature**2


LOGITS = "in logits: f32[B, T, 5]; in target: i64[B, T]"

LOSS_CASES = [
    Case("cross_entropy", f"{LOGITS}; out cross_entropy(logits, target)", reference_cross_entropy, high=5),
    Case("cross_entropy_2d", "in logits: f32[B, 5]; in target: i64[B]; out cross_entropy(logits, target)", reference_cross_entropy, high=5),
    Case(
        "cross_entropy_options",
        f"{LOGITS}; out cross_entropy(logits, target, ignore_index = 0, label_smoothing = 0.1)",
        lambda logits, target: reference_cross_entropy(logits, target, 0, 0.1),
        high=5,
    ),
    Case("mse", f"{XY}; out mse(x, y)", lambda x, y: ((x - y) ** 2).mean()),
    Case("bce", f"{XY}; out bce(x, sigmoid(y))", lambda x, y: (F.softplus(x) - x * torch.sigmoid(y)).mean()),
    Case("kl_div", f"{XY}; out kl_div(x, y, temperature = 2.0)", lambda x, y: reference_kl_div(x, y, 2.0)),
    Case("accuracy", f"{LOGITS}; out accuracy(logits, target)", lambda logits, target: (logits.argmax(-1) == target).float().mean(), high=5),
    Case(
        "accuracy_ignore_index",
        f"{LOGITS}; out accuracy(logits, target, ignore_index = 0)",
        lambda logits, target: (logits.argmax(-1) == target)[target != 0].float().mean(),
        high=5,
    ),
    Case("accuracy_all_ignored", f"{LOGITS}; out accuracy(logits, target * 0, ignore_index = 0)", lambda logits, target: torch.tensor(0.0), high=5),
    Case("detach", f"{X}; out detach(x) * 2", lambda x: x * 2),
]

CASES = LAYER_CASES + ACTIVATION_CASES + ARITHMETIC_CASES + TENSOR_CASES + CONV_CASES + LOSS_CASES


def make_input(dtype: str, shape: tuple, case: Case, generator: torch.Generator) -> torch.Tensor:
    if dtype == "bool":
        return torch.randint(0, 2, shape, generator=generator).bool()
    if dtype in ("i32", "i64"):
        return torch.randint(0, case.high, shape, generator=generator, dtype=getattr(torch, DTYPES[dtype]))
    if case.positive:
        return torch.rand(shape, generator=generator) * 2 + 0.1
    return torch.randn(shape, generator=generator).to(getattr(torch, DTYPES[dtype]))


def randomize(layer: nn.Module, generator: torch.Generator) -> nn.Module:
    """Random weights and running statistics, so that copying them over is visible in the outputs."""
    with torch.no_grad():
        for name, tensor in layer.state_dict(keep_vars=True).items():
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=generator))
    return layer


def as_tuple(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def compile_case(case: Case):
    spec = paperspec.loads(f"model M() {{\n{case.spec}\n}}\n", f"<{case.id}>")
    return spec, spec.graph()


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_op_matches_torch(case: Case) -> None:
    spec, graph = compile_case(case)
    model = spec.build()
    generator = torch.Generator().manual_seed(0)
    layers = {name: randomize(factory(), generator) for name, factory in case.layers.items()}
    for layer in [model, *layers.values()]:
        layer.train(case.train)
    for sizes in SIZES:
        model.load_state_dict({f"{name}.{key}": value for name, layer in layers.items() for key, value in layer.state_dict().items()})
        inputs = [make_input(spec_in.type.dtype, spec_in.type.substitute(sizes).shape, case, generator) for spec_in in graph.inputs]
        torch.manual_seed(1)
        actual = as_tuple(model(*inputs))
        torch.manual_seed(1)
        expected = as_tuple(case.reference(layers, *inputs) if case.layers else case.reference(*inputs))
        static = [graph.type_of(ref).substitute(sizes) for _, ref, _ in graph.outputs]
        assert len(actual) == len(expected) == len(static)
        for got, want, inferred in zip(actual, expected, static, strict=True):
            assert inferred.shape == tuple(got.shape), f"inferred {inferred} but the module gave {tuple(got.shape)} at {sizes}"
            assert getattr(torch, DTYPES[inferred.dtype]) == got.dtype
            torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
        state = model.state_dict()
        for name, layer in layers.items():  # running statistics moved the same way
            for key, value in layer.state_dict().items():
                torch.testing.assert_close(state[f"{name}.{key}"], value, atol=1e-6, rtol=1e-5)


# (spec body, what the error says): mistakes the shape rules catch before torch would fail or differ.
ERRORS = [
    ("in x: f32[B, 4]; out randint([B], 3, low = 3)", "needs high > low"),
    ("in x: f32[B, 4]; out randint([-1], 3)", "needs non-negative dims"),
    ("in x: f32[B, C, L]; out conv1d(x, 8, 3)", "needs a known channel count in dim 1"),
    ("in x: f32[B, 4, L, 2]; out conv1d(x, 8, 3)", "needs a tensor of rank 3"),
    ("in x: i64[B, 4, L]; out conv1d(x, 8, 3)", "needs a floating-point tensor"),
    ("in x: f32[B, 4, L]; out conv1d(x, 8, 3, groups = 3)", "`groups` = 3 does not divide the 4 input channels"),
    ("in x: f32[B, 4, L]; out conv1d(x, 6, 3, groups = 4)", "does not divide the 6 output channels"),
    ("in x: f32[B, 4, 2]; out conv1d(x, 8, 3)", "too small along dim 2: the window spans 3 elements but the padded size is 2"),
    ("in x: f32[B, 4, 6]; out conv1d(x, 8, 3, dilation = 3)", "the window spans 7 elements"),
    ("in x: f32[B, 4, L]; out conv1d(x, 0, 3)", "`channels` of conv1d must be positive"),
    ("in x: f32[B, 4, L]; out conv1d(x, 8, 3, stride = 0)", "`stride` of conv1d must be positive"),
    ("in x: f32[B, 3, H, W]; out conv2d(x, 8, [3, 3, 3])", "`kernel` of conv2d must be an int or a list of 2 ints"),
    ("in x: f32[B, 3, H, W]; out conv2d(x, 8, 3, padding = [1, -1])", "`padding` of conv2d must be non-negative"),
    ("in x: f32[B, 3, 8, 2]; out conv2d(x, 8, [1, 3])", "too small along dim 3"),
    ("in x: f32[B, 3, H, W]; out max_pool2d(x, 2, padding = 2)", "must be at most half the kernel"),
    ("in x: f32[B, 4, 1]; out avg_pool1d(x, 2)", "too small along dim 2"),
    ("in x: f32[B, 4]; out max_pool1d(x, 2)", "needs a tensor of rank 3"),
    ("in x: f32[B, T, 8]; out sum(x, dim = [1, -2])", "names a dim twice"),
    ("in x: f32[B, T, 8]; out mean(x > 0)", "`mean` needs a floating-point tensor"),
    ("in x: f32[B, T, 8]; out -(x > 0)", "cannot negate a bool tensor"),
    ("in i: i64[B, T]; out clamp(i, min = 0.5)", "needs integer bounds"),
    ("in t: i64[B, T]; out embedding(t, 10, 6, std = 0.0)", "std must be positive"),
]


def test_embeddings_with_std_draw_their_weights_from_that_normal() -> None:
    text = "model M() {\n  in t: i64[B, T <= 300]\n  out embedding(t, 400, 50, std = 0.02) + position_embedding(T, 300, 50, std = 0.3)\n}\n"
    torch.manual_seed(0)
    weights = paperspec.loads(text).build().state_dict()
    assert abs(weights["embedding.weight"].std().item() - 0.02) < 0.001
    assert abs(weights["position_embedding.weight"].std().item() - 0.3) < 0.01
    torch.manual_seed(0)
    default = paperspec.loads(text.replace(", std = 0.02", "")).build().state_dict()["embedding.weight"]
    assert abs(default.std().item() - 1.0) < 0.02  # nn.Embedding's own N(0, 1)


@pytest.mark.parametrize(("body", "message"), ERRORS)
def test_shape_rule_errors(body: str, message: str) -> None:
    with pytest.raises(paperspec.SpecError) as error:
        paperspec.loads(f"model M() {{\n{body}\n}}\n").graph()
    assert message in str(error.value)
    assert error.value.span is not None and error.value.span.line == 2


# Ops whose reference needs more than one call (solvers, derivatives, recurrences, graphs,
# spectral layers) have their own test module; each must name the module that tests it.
TESTED_ELSEWHERE = {
    "grad": "test_calculus.py",
    "laplacian": "test_calculus.py",
    "jvp": "test_jvp_hvp.py",
    "hvp": "test_jvp_hvp.py",
    "fixed_point": "test_solvers.py",
    "equilibrium": "../runtime/test_equilibrium.py",
    "odeint": "test_solvers.py",
    "scan": "test_solvers.py",
    "linear_scan": "test_recurrent.py",
    "delta_rule": "test_recurrent.py",
    "gather_nodes": "test_graph_ops.py",
    "scatter": "test_graph_ops.py",
    "graph_pool": "test_graph_ops.py",
    "gnn_layer": "test_graph_ops.py",
    "edge_layer": "test_graph_ops.py",
    "rfft": "test_spectral.py",
    "irfft": "test_spectral.py",
    "spectral_conv1d": "test_spectral.py",
    "spectral_conv2d": "test_spectral.py",
    "sign": "test_gradients.py",
    "round": "test_gradients.py",
    "straight_through": "test_gradients.py",
    "stablemax": "test_stablemax.py",
    "stablemax_cross_entropy": "test_stablemax.py",
    "ece": "test_calibration.py",
    "quant_linear": "test_quantization.py",
    "interval_bounds": "test_interval.py",
    "binary_states": "test_enumeration.py",
    "ot_pairing": "test_transport.py",
    "sliced_wasserstein": "test_transport.py",
    "langevin": "test_sampling.py",
}


def test_every_op_has_a_case() -> None:
    covered = set()
    for case in CASES:
        covered |= {node.op for node in compile_case(case)[1].nodes()}
    here = Path(__file__).parent
    for op, module in TESTED_ELSEWHERE.items():
        assert f"{op}(" in (here / module).read_text(), f"{module} does not use {op}"
        covered.add(op)
    missing = sorted(set(all_ops()) - covered)
    assert not missing, f"ops without a case in this table: {missing}"


def test_conv1d_shape_is_symbolic_in_the_length() -> None:
    spec, graph = compile_case(Case("conv1d_symbolic", f"{SEQ}; out y = conv1d(x, 8, 5, stride = 3, padding = 1)", None))
    (inferred,) = [graph.type_of(ref) for _, ref, _ in graph.outputs]
    assert isinstance(inferred.shape[2], Sym) and inferred.symbols() == {"B", "L"}
    model = spec.build()
    for length in (5, 6, 7, 8, 30, 31):
        got = model(torch.randn(2, 4, length))
        assert tuple(got.shape) == inferred.substitute({"B": 2, "L": length}).shape == (2, 8, (length + 2 - 5) // 3 + 1)


def test_conv_parameter_shapes_match_torch_layers() -> None:
    spec, _ = compile_case(Case("conv_params", f"{IMG}; out y = conv2d(x, 6, [3, 1], groups = 3)", None))
    summary = spec.build().state_dict()
    reference = nn.Conv2d(3, 6, (3, 1), groups=3).state_dict()
    assert {k: v.shape for k, v in summary.items()} == {f"y.{k}": v.shape for k, v in reference.items()}
    assert spec.parameter_count() == sum(v.numel() for v in reference.values())


def test_ops_command_lists_every_op_with_its_signature(capsys) -> None:
    assert main(["ops"]) == 0
    listed = capsys.readouterr().out.splitlines()
    signatures = {line.strip() for line in listed}
    for op in all_ops().values():
        assert op.describe() in signatures, f"`paperspec ops` does not list {op.describe()}"
