"""Layer ops that own weights (linear, embeddings, norms, convolutions, mlp) and attention."""

from __future__ import annotations

import math

from paperspec.compiler.ops.base import ShapeError, register
from paperspec.compiler.ops.shapes import last_dim, require_float, require_rank
from paperspec.compiler.types import INT_DTYPES, TensorType

ACTIVATION_MODULES = {
    "relu": "nn.ReLU()",
    "gelu": "nn.GELU()",
    "silu": "nn.SiLU()",
    "tanh": "nn.Tanh()",
    "sigmoid": "nn.Sigmoid()",
    "softplus": "nn.Softplus()",
}


def _positive(call, *names) -> None:
    for name in names:
        if call[name] <= 0:
            raise ShapeError(f"`{name}` must be positive, got {call[name]}", name)


# ---- linear ----


def _linear(call):
    x = call["x"]
    require_float(x, "linear")
    _positive(call, "features")
    call.derived["in_features"] = last_dim(x, "linear")
    return x.with_shape(x.shape[:-1] + (call["features"],))


def _linear_onnx(c):
    y = c.node("MatMul", [c["x"], c.node("Transpose", [c.weight("weight")], perm=[1, 0])])
    return c.node("Add", [y, c.weight("bias")]) if c.values["bias"] else y


def linear_parameters(call):
    params = {"weight": (call["features"], call.derived["in_features"])}
    if call["bias"]:
        params["bias"] = (call["features"],)
    return params


register(
    "linear",
    "x: tensor, features: int, bias: bool = true",
    _linear,
    lambda c: f"{c.module}({c['x']})",
    "affine map of the last dim: x @ W.T + b (nn.Linear)",
    category="layer",
    torch_module=lambda c: f"nn.Linear({c.derived['in_features']}, {c['features']}, bias={c['bias']})",
    parameters=linear_parameters,
    onnx=_linear_onnx,
)

# ---- embeddings ----


def _embedding(call):
    tokens = call["tokens"]
    if tokens.dtype not in INT_DTYPES:
        raise ShapeError(f"`embedding` needs integer token ids, got {tokens}", "tokens")
    _positive(call, "vocab", "dim")
    _check_std(call)
    return TensorType("f32", tokens.shape + (call["dim"],))


_NORMAL_EMBEDDING = '''
def normal_embedding(count: int, dim: int, std: float) -> nn.Embedding:
    """nn.Embedding with weights drawn from N(0, std^2) instead of N(0, 1)."""
    table = nn.Embedding(count, dim)
    nn.init.normal_(table.weight, std=std)
    return table
'''


def _embedding_module(count: int, dim: int, std) -> str:
    return f"nn.Embedding({count}, {dim})" if std is None else f"normal_embedding({count}, {dim}, {std!r})"


def _check_std(call) -> None:
    if call["std"] is not None and not call["std"] > 0:
        raise ShapeError(f"std must be positive, got {call['std']}", "std")


register(
    "embedding",
    "tokens: tensor, vocab: int, dim: int, std: float? = none",
    _embedding,
    lambda c: f"{c.module}({c['tokens']})",
    "lookup table of `vocab` learned vectors of size `dim` (nn.Embedding); initialised from N(0, 1), or N(0, std^2) with `std`",
    category="layer",
    torch_module=lambda c: _embedding_module(c["vocab"], c["dim"], c["std"]),
    torch_helpers=(("normal_embedding", _NORMAL_EMBEDDING),),
    parameters=lambda c: {"weight": (c["vocab"], c["dim"])},
    onnx=lambda c: c.node("Gather", [c.weight("weight"), c["tokens"]], axis=0),
)


def _position_embedding(call):
    length, max_length = call["length"], call["max_length"]
    _positive(call, "max_length", "dim")
    _check_std(call)
    if isinstance(length, int) and length > max_length:
        raise ShapeError(f"length {length} exceeds max_length {max_length}", "length")
    return TensorType("f32", (length, call["dim"]))


def _position_embedding_onnx(c):
    positions = c.node("Range", [c.const(0, "i64"), c.scalar_dim(c.values["length"]), c.const(1, "i64")])
    return c.node("Gather", [c.weight("weight"), positions], axis=0)


register(
    "position_embedding",
    "length: dim, max_length: int, dim: int, std: float? = none",
    _position_embedding,
    lambda c: f"{c.module}(torch.arange({c['length']}, device={c.module}.weight.device))",
    "learned absolute positions 0..length-1, giving [length, dim]; initialised from N(0, 1), or N(0, std^2) with `std`",
    category="layer",
    torch_module=lambda c: _embedding_module(c["max_length"], c["dim"], c["std"]),
    torch_helpers=(("normal_embedding", _NORMAL_EMBEDDING),),
    parameters=lambda c: {"weight": (c["max_length"], c["dim"])},
    onnx=_position_embedding_onnx,
)

# ---- normalisation and dropout ----


def _norm(name: str):
    def infer(call):
        x = call["x"]
        require_float(x, name)
        call.derived["features"] = last_dim(x, name)
        return x

    return infer


def _affine_params(call):
    if not call["affine"]:
        return {}
    d = call.derived["features"]
    return {"weight": (d,), "bias": (d,)}


# torch.finfo(dtype).eps: nn.RMSNorm's eps when none is given
_FLOAT_EPS = {"f16": 2.0**-10, "bf16": 2.0**-7, "f32": 2.0**-23, "f64": 2.0**-52}


def _ones(c, size: int) -> str:
    return c.const([1.0] * size, c.values["x"].dtype)


def _layernorm_onnx(c):
    affine, features = c.values["affine"], c.derived["features"]
    inputs = [c["x"], c.weight("weight") if affine else _ones(c, features)] + ([c.weight("bias")] if affine else [])
    return c.node("LayerNormalization", inputs, axis=-1, epsilon=c.values["eps"])


def _rmsnorm_onnx(c):
    x, dtype = c["x"], c.values["x"].dtype
    eps = c.values["eps"] if c.values["eps"] is not None else _FLOAT_EPS[dtype]
    scale = c.weight("weight") if c.values["affine"] else _ones(c, c.derived["features"])
    if c.opset >= 23:
        return c.node("RMSNormalization", [x, scale], axis=-1, epsilon=eps)
    mean_square = c.node("ReduceMean", [c.node("Mul", [x, x]), c.const([-1], "i64")], keepdims=1)
    rms = c.node("Sqrt", [c.node("Add", [mean_square, c.const(eps, dtype)])])
    return c.node("Mul", [c.node("Div", [x, rms]), scale])


register(
    "layernorm",
    "x: tensor, eps: float = 1e-05, affine: bool = true",
    _norm("layernorm"),
    lambda c: f"{c.module}({c['x']})",
    "layer normalisation over the last dim (nn.LayerNorm)",
    category="layer",
    torch_module=lambda c: f"nn.LayerNorm({c.derived['features']}, eps={c['eps']}, elementwise_affine={c['affine']})",
    parameters=_affine_params,
    onnx=_layernorm_onnx,
)

register(
    "rmsnorm",
    "x: tensor, eps: float? = none, affine: bool = true",
    _norm("rmsnorm"),
    lambda c: f"{c.module}({c['x']})",
    "root-mean-square normalisation over the last dim (nn.RMSNorm)",
    category="layer",
    torch_module=lambda c: f"nn.RMSNorm({c.derived['features']}, eps={c['eps']}, elementwise_affine={c['affine']})",
    parameters=lambda c: {"weight": (c.derived["features"],)} if c["affine"] else {},
    onnx=_rmsnorm_onnx,
)


def _batchnorm(call):
    x = call["x"]
    require_float(x, "batchnorm")
    require_rank(x, "batchnorm", (2, 3, 4, 5))
    channels = x.shape[1]
    if not isinstance(channels, int):
        raise ShapeError(f"`batchnorm` needs a known channel count in dim 1, got {x}", "x")
    call.derived["channels"] = channels
    call.derived["flavour"] = {2: "1d", 3: "1d", 4: "2d", 5: "3d"}[x.rank]
    return x


def _batchnorm_buffers(call):
    c = call.derived["channels"]
    return {"running_mean": (c,), "running_var": (c,), "num_batches_tracked": ()}


def _batchnorm_onnx(c):
    channels, dtype, affine = c.derived["channels"], c.values["x"].dtype, c.values["affine"]
    scale = c.weight("weight") if affine else _ones(c, channels)
    bias = c.weight("bias") if affine else c.const([0.0] * channels, dtype)
    inputs = [c["x"], scale, bias, c.weight("running_mean"), c.weight("running_var")]
    return c.node("BatchNormalization", inputs, epsilon=c.values["eps"])


register(
    "batchnorm",
    "x: tensor, eps: float = 1e-05, momentum: float = 0.1, affine: bool = true",
    _batchnorm,
    lambda c: f"{c.module}({c['x']})",
    "batch normalisation over dim 1 of [N, C, ...] (nn.BatchNorm1d/2d/3d); running stats in eval",
    category="layer",
    torch_module=lambda c: (
        f"nn.BatchNorm{c.derived['flavour']}({c.derived['channels']}, eps={c['eps']}, "
        f"momentum={c['momentum']}, affine={c['affine']})"
    ),
    parameters=lambda c: {"weight": (c.derived["channels"],), "bias": (c.derived["channels"],)} if c["affine"] else {},
    buffers=_batchnorm_buffers,
    onnx=_batchnorm_onnx,
)


def _dropout(call):
    if not 0.0 <= call["p"] < 1.0:
        raise ShapeError(f"dropout probability must be in [0, 1), got {call['p']}", "p")
    return call["x"]


register(
    "dropout",
    "x: tensor, p: float = 0.1",
    _dropout,
    lambda c: f"{c.module}({c['x']})",
    "zeroes elements with probability p while training; identity in eval",
    category="layer",
    torch_module=lambda c: f"nn.Dropout({c['p']})",
    stochastic=True,
    onnx=lambda c: c.node("Identity", [c["x"]]),
)

# ---- softmax ----


def _softmax(name: str):
    def infer(call):
        x = call["x"]
        require_float(x, name)
        if not -x.rank <= call["dim"] < x.rank:
            raise ShapeError(f"dim {call['dim']} is out of range for {x}", "dim")
        return x

    return infer


register(
    "softmax",
    "x: tensor, dim: int = -1",
    _softmax("softmax"),
    lambda c: f"F.softmax({c['x']}, dim={c['dim']})",
    "softmax along dim",
    category="activation",
    onnx=lambda c: c.node("Softmax", [c["x"]], axis=c.values["dim"]),
)
register(
    "log_softmax",
    "x: tensor, dim: int = -1",
    _softmax("log_softmax"),
    lambda c: f"F.log_softmax({c['x']}, dim={c['dim']})",
    "log of softmax along dim",
    category="activation",
    onnx=lambda c: c.node("LogSoftmax", [c["x"]], axis=c.values["dim"]),
)

# ---- attention ----

_ATTENTION_HELPER = '''
def multi_head_attention(q, k, v, heads: int, causal: bool, scale=None):
    """Scaled dot-product attention over `heads` heads; q, k, v are [..., T, d]."""
    q = q.unflatten(-1, (heads, -1)).transpose(-3, -2)
    k = k.unflatten(-1, (heads, -1)).transpose(-3, -2)
    v = v.unflatten(-1, (heads, -1)).transpose(-3, -2)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)
    return out.transpose(-3, -2).flatten(-2)
'''


def _attention(call):
    q, k, v = call["q"], call["k"], call["v"]
    heads = call["heads"]
    _positive(call, "heads")
    for name, t in (("q", q), ("k", k), ("v", v)):
        require_float(t, "attention", name)
        if t.rank < 2:
            raise ShapeError(f"`attention` needs [..., T, d] tensors, got {name}: {t}", name)
    if q.shape[-1] != k.shape[-1]:
        raise ShapeError(f"query and key sizes differ: q {q} vs k {k}", "k")
    if k.shape[:-1] != v.shape[:-1]:
        raise ShapeError(f"keys and values must agree on all but the last dim: k {k} vs v {v}", "v")
    if q.shape[:-2] != k.shape[:-2]:
        raise ShapeError(f"query and key batch dims differ: q {q} vs k {k}", "k")
    for name, t in (("q", q), ("v", v)):
        size = t.shape[-1]
        if isinstance(size, int) and size % heads:
            raise ShapeError(f"{name} size {size} is not divisible by heads = {heads}", "heads")
    if call["causal"] and q.shape[-2] != k.shape[-2]:
        raise ShapeError(f"causal attention needs as many queries as keys: q {q} vs k {k}", "causal")
    return q.with_shape(q.shape[:-1] + (v.shape[-1],))


def _attention_torch(c):
    scale = f", scale={c['scale']}" if c.values["scale"] is not None else ""
    return f"multi_head_attention({c['q']}, {c['k']}, {c['v']}, heads={c['heads']}, causal={c['causal']}{scale})"


def _swap(rank: int, a: int, b: int) -> list:
    perm = list(range(rank))
    perm[a], perm[b] = perm[b], perm[a]
    return perm


def _attention_scale(c) -> str:
    """1/sqrt(head size) unless given; read from the shape when the head size is symbolic."""
    q, heads = c.values["q"], c.values["heads"]
    if c.values["scale"] is not None:
        return c.const(c.values["scale"], q.dtype)
    head_size = q.shape[-1] // heads
    if isinstance(head_size, int):
        return c.const(1.0 / math.sqrt(head_size), q.dtype)
    size = c.cast(c.scalar_dim(head_size), "i64", q.dtype)
    return c.node("Reciprocal", [c.node("Sqrt", [size])])


# exp(-80) ~ 1.8e-35 is still a normal f32, and below any f32's rounding next to 1
_SOFTMAX_FLOOR = -80.0


def _causal_scores(c, scores: str, dtype: str) -> str:
    """Scores with the future masked, ready for Softmax. Masked entries are -inf, then raised
    to the row's max + _SOFTMAX_FLOOR: onnxruntime's Softmax is ~8x slower when exp underflows
    into denormals, and a raised entry adds at most exp(-80) to a row sum that is at least 1
    (Softmax subtracts the row max, which this keeps), so the probabilities are unchanged to
    f32 precision."""
    keep = c.node("Trilu", [c.fill(c.node("Shape", [scores], start=-2), True, "bool")], upper=0)
    bias = c.node("Where", [keep, c.const(0.0, dtype), c.const(-math.inf, dtype)])  # [T, T]: adding it beats a Where over every head
    masked = c.node("Add", [scores, bias])
    row_max = c.node("ReduceMax", [masked, c.const([-1], "i64")], keepdims=1)
    return c.node("Max", [masked, c.node("Add", [row_max, c.const(_SOFTMAX_FLOOR, dtype)])])


def _attention_onnx(c):
    rank, heads = c.values["q"].rank, c.values["heads"]
    split = c.const([0] * (rank - 1) + [heads, -1], "i64")  # Reshape's 0 keeps a dim, so T may vary

    def by_heads(name: str, perm: list) -> str:
        return c.node("Transpose", [c.node("Reshape", [c[name], split])], perm=perm)

    heads_first = _swap(rank + 1, -3, -2)  # [..., T, h, d] -> [..., h, T, d]
    q, v = by_heads("q", heads_first), by_heads("v", heads_first)
    keys = by_heads("k", heads_first[:-3] + [rank - 1, rank, rank - 2])  # -> [..., h, d, T]
    # Scaling q ([.., T, d]) costs less than scaling the scores ([.., T, T]).
    scores = c.node("MatMul", [c.node("Mul", [q, _attention_scale(c)]), keys])
    if c.values["causal"]:
        scores = _causal_scores(c, scores, c.values["q"].dtype)
    heads_out = c.node("MatMul", [c.node("Softmax", [scores], axis=-1), v])
    merged = c.node("Transpose", [heads_out], perm=_swap(rank + 1, -3, -2))
    return c.node("Reshape", [merged, c.const([0] * (rank - 1) + [-1], "i64")])


register(
    "attention",
    "q: tensor, k: tensor, v: tensor, heads: int = 1, causal: bool = false, scale: float? = none",
    _attention,
    _attention_torch,
    "multi-head scaled dot-product attention on projected q, k, v of shape [..., T, d]",
    category="layer",
    torch_helpers=(("multi_head_attention", _ATTENTION_HELPER),),
    onnx=_attention_onnx,
)

# ---- mlp ----


def _mlp(call):
    x = call["x"]
    require_float(x, "mlp")
    _positive(call, "hidden")
    if call["act"] not in ACTIVATION_MODULES:
        raise ShapeError(f"`act` of mlp must be one of {', '.join(ACTIVATION_MODULES)}, got {call['act']}", "act")
    if not 0.0 <= call["dropout"] < 1.0:
        raise ShapeError(f"dropout probability must be in [0, 1), got {call['dropout']}", "dropout")
    call.derived["in_features"] = last_dim(x, "mlp")
    call.derived["out_features"] = call["out"] or call.derived["in_features"]
    return x.with_shape(x.shape[:-1] + (call.derived["out_features"],))


def _mlp_layers(c) -> list:
    # The dropout layer is always there (identity at p = 0) so state_dict keys do not depend on p.
    return [("linear", c.derived["in_features"], c["hidden"]), ("act",), ("dropout",), ("linear", c["hidden"], c.derived["out_features"])]


def _mlp_module(c):
    parts = []
    for layer in _mlp_layers(c):
        if layer[0] == "linear":
            parts.append(f"nn.Linear({layer[1]}, {layer[2]}, bias={c['bias']})")
        elif layer[0] == "act":
            parts.append(ACTIVATION_MODULES[c["act"]])
        else:
            parts.append(f"nn.Dropout({c['dropout']})")
    return "nn.Sequential(" + ", ".join(parts) + ")"


def _mlp_onnx(c):
    x, x_type = c["x"], c.values["x"]
    for index, layer in enumerate(_mlp_layers(c.call)):
        if layer[0] == "linear":
            x = c.node("MatMul", [x, c.node("Transpose", [c.weight(f"{index}.weight")], perm=[1, 0])])
            x = c.node("Add", [x, c.weight(f"{index}.bias")]) if c.values["bias"] else x
        elif layer[0] == "act":
            x = c.activation(c.values["act"], x, x_type.with_shape(x_type.shape[:-1] + (c.values["hidden"],)))
    return x


def _mlp_params(c):
    params = {}
    for index, layer in enumerate(_mlp_layers(c)):
        if layer[0] == "linear":
            params[f"{index}.weight"] = (layer[2], layer[1])
            if c["bias"]:
                params[f"{index}.bias"] = (layer[2],)
    return params


register(
    "mlp",
    "x: tensor, hidden: int, out: int? = none, act: fn = 'gelu', bias: bool = true, dropout: float = 0.0",
    _mlp,
    lambda c: f"{c.module}({c['x']})",
    "two-layer perceptron on the last dim: linear, act, dropout, linear (nn.Sequential: keys 0.* and 3.*)",
    category="layer",
    torch_module=_mlp_module,
    parameters=_mlp_params,
    stochastic=True,
    onnx=_mlp_onnx,
)
