"""Linear recurrences over time: the diagonal scan of linear RNNs and DeltaNet's delta rule."""

from __future__ import annotations

from paperspec.compiler.ops.base import ShapeError, register
from paperspec.compiler.ops.shapes import require_float
from paperspec.compiler.types import TensorType

# ---- PyTorch helpers ----

# Two passes over chunks of C steps replace T sequential steps by about 2C + T / C small ones:
# every chunk runs its steps at once from a zero state to find where it ends, the chunk ends
# form a recurrence of length T / C that the same function solves, and every chunk reruns from
# its true start. Only products of gates and multiply-adds occur, no division or logarithm, so
# gates that are zero or negative (the [-1, 1] range) are exact.
_STEPS_HELPER = '''
def _scan_steps(inputs, gates, x, order, out):
    """x = inputs[t] + gates[t] * x for t in order, each x written to out[..., t, :]; returns out."""
    if torch.compiler.is_compiling():  # torch.compile refuses strided out= tensors
        states = list(inputs)
        for t in order:
            x = states[t] = torch.addcmul(inputs[t], gates[t], x)
        return torch.stack(states, -2)
    outs = out.unbind(-2)
    for t in order:
        x = torch.addcmul(inputs[t], gates[t], x, out=outs[t])
    return out
'''

_CHUNKS_HELPER = '''
def _linear_scan_chunks(a, u, h, chunk: int, adjoint: bool):
    """h_t = a_t * h_(t-1) + u_t along dim -2, from h before the first step; or, as the adjoint,
    h_t = u_t + a_(t+1) * h_(t+1) backwards from zero after the last step (the gradient of the first)."""
    length = a.shape[-2]
    if length <= chunk:
        gates = list(a.unbind(-2))
        if adjoint:
            gates, h = gates[1:] + [torch.zeros_like(gates[0])], torch.zeros_like(h)
        order = range(length - 1, -1, -1) if adjoint else range(length)
        return _scan_steps(u.unbind(-2), gates, h, order, torch.empty_like(u))
    count = -(-length // chunk)
    pad = count * chunk - length
    if pad:  # identity steps (a = 1, u = 0) fill the last chunk; F.pad copies even when it adds nothing
        a, u = F.pad(a, (0, 0, 0, pad), value=1.0), F.pad(u, (0, 0, 0, pad))
    a, u = a.unflatten(-2, (count, chunk)), u.unflatten(-2, (count, chunk))
    inputs, gates = u.unbind(-2), list(a.unbind(-2))
    if adjoint:  # step t is gated by a_(t+1): the chunk's next gate, or the next chunk's first
        following = F.pad(gates[0][..., 1:, :], (0, 0, 0, 1))
        gates = gates[1:] + [following]
        decay, order = torch.prod(a[..., 1:, :], -2) * following, range(chunk - 1, -1, -1)
    else:
        decay, order = torch.prod(a, -2), range(chunk)
    x = torch.zeros_like(inputs[0])
    for t in order:  # where every chunk ends from a zero start, all chunks at once
        x = torch.addcmul(inputs[t], gates[t], x)
    # A chunk ends at x + decay * (where the chunk before it ended): a scan over chunks. In the
    # adjoint the chunk before is the next one, and the gate between them sits at that chunk.
    if adjoint:
        ends = _linear_scan_chunks(F.pad(decay[..., :-1, :], (0, 0, 1, 0)), x, h, chunk, True)
        starts = F.pad(ends[..., 1:, :], (0, 0, 0, 1))
    else:
        ends = _linear_scan_chunks(decay, x, h, chunk, False)
        starts = torch.cat([h.unsqueeze(-2), ends[..., :-1, :]], -2)
    out = _scan_steps(inputs, gates, starts, order, torch.empty_like(u))
    return out.flatten(-3, -2)[..., :length, :]
'''

# The gradient of a linear scan is its adjoint, a scan backwards in time: dL/dh_t collects the
# output's gradient and a_(t+1) dL/dh_(t+1). The adjoint's gradient is a forward scan again,
# and both run through this Function, so second derivatives (grad inside a loss) work.
_FUNCTION_HELPER = '''
class _LinearScan(torch.autograd.Function):
    """The chunked scan (or its adjoint) with a backward pass that is the other one."""

    @staticmethod
    def forward(ctx, a, u, h0, chunk: int, adjoint: bool):
        h = _linear_scan_chunks(a, u, h0, chunk, adjoint)
        ctx.save_for_backward(a, h0, h)
        ctx.chunk, ctx.adjoint = chunk, adjoint
        return h

    @staticmethod
    def backward(ctx, grad):
        a, h0, h = ctx.saved_tensors
        if ctx.adjoint:  # a_t gates h_(t-1) = u_(t-1) + a_t h_t; a_0 gates nothing
            g = _LinearScan.apply(a, grad, torch.zeros_like(h0), ctx.chunk, False)
            grad_a = torch.cat([torch.zeros_like(h[..., :1, :]), g[..., :-1, :] * h[..., 1:, :]], -2)
            return grad_a, g, None, None, None
        g = _LinearScan.apply(a, grad, h0, ctx.chunk, True)
        return _times_previous(g, h, h0), g, a[..., 0, :] * g[..., 0, :], None, None
'''

_PREVIOUS_HELPER = '''
def _times_previous(g, h, h0):
    """g_t * h_(t-1) with h_(-1) = h0: the gradient of a scan's gates."""
    if torch.is_grad_enabled() or torch.compiler.is_compiling():  # differentiable, for second derivatives
        return g * torch.cat([h0.unsqueeze(-2), h[..., :-1, :]], -2)
    product = torch.empty_like(g)  # written in place: one pass over memory instead of two
    torch.mul(g[..., 1:, :], h[..., :-1, :], out=product[..., 1:, :])
    torch.mul(g[..., 0, :], h0, out=product[..., 0, :])
    return product
'''

_LINEAR_SCAN_HELPER = '''
def linear_scan(a, u, h0=None, negative: bool = False, chunk: int = 32):
    """h_t = a_t * h_(t-1) + u_t over dim -2 of [..., T, d], h_(-1) = h0 (zeros when None); all h_t.
    With `negative`, gates a in [0, 1] become 2a - 1 in [-1, 1]."""
    if negative:
        a = 2 * a - 1
    if h0 is None:
        h0 = u.new_zeros(u.shape[:-2] + u.shape[-1:])
    return _LinearScan.apply(a, u, h0, chunk, False)
'''

_DELTA_RULE_HELPER = '''
def delta_rule(q, k, v, beta, negative: bool = False, normalize: bool = True):
    """DeltaNet over dim -2: S_t = S_(t-1) (I - b_t k_t k_t^T) + b_t v_t k_t^T from S = 0, o_t = S_t q_t.
    q, k: [..., T, dk], v: [..., T, dv], beta: [..., T]; `negative`: b = 2 beta; `normalize`: unit q, k."""
    if normalize:
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    if negative:
        beta = 2 * beta
    state = v.new_zeros(v.shape[:-2] + (v.shape[-1], k.shape[-1]))
    outs = []
    for q_t, k_t, v_t, b_t in zip(q.unbind(-2), k.unbind(-2), v.unbind(-2), beta.unbind(-1)):
        # S (I - b k k^T) + b v k^T = S + b (v - S k) k^T: a rank-one correction towards v along k
        error = v_t - (state @ k_t.unsqueeze(-1)).squeeze(-1)
        state = state + (b_t.unsqueeze(-1) * error).unsqueeze(-1) * k_t.unsqueeze(-2)
        outs.append((state @ q_t.unsqueeze(-1)).squeeze(-1))
    return torch.stack(outs, -2)
'''

# ---- shape rules ----


def _sequences(call, op: str, names: tuple) -> None:
    """Every named argument is a floating-point [..., T, d] tensor of the first one's dtype."""
    dtype = call[names[0]].dtype
    for name in names:
        tensor = call[name]
        require_float(tensor, op, name)
        if tensor.rank < 2:
            raise ShapeError(f"`{op}` needs [..., T, d] sequences (time along dim -2), got {name}: {tensor}", name)
        if tensor.dtype != dtype:
            raise ShapeError(f"`{op}` needs one dtype: {names[0]} is {call[names[0]]} but {name} is {tensor}", name)


def _linear_scan(call) -> TensorType:
    a, u, h0 = call["a"], call["u"], call["h0"]
    _sequences(call, "linear_scan", ("a", "u"))
    if a.shape != u.shape:
        raise ShapeError(f"`linear_scan` needs gates and inputs of one shape: a {a} vs u {u}", "u", "a and u are both [..., T, d]")
    state = u.with_shape(u.shape[:-2] + u.shape[-1:])
    if h0 is not None and h0 != state:
        raise ShapeError(f"`linear_scan` needs h0 of type {state} (the state before the first step), got {h0}", "h0", "h0 is [..., d]: u without its time dim")
    if call["chunk"] < 2:
        raise ShapeError(f"`chunk` of linear_scan must be at least 2, got {call['chunk']}", "chunk")
    return u


def _delta_rule(call) -> TensorType:
    q, k, v, beta = call["q"], call["k"], call["v"], call["beta"]
    _sequences(call, "delta_rule", ("q", "k", "v"))
    if k.shape != q.shape:
        raise ShapeError(f"`delta_rule` needs queries and keys of one shape: q {q} vs k {k}", "k", "q and k are both [..., T, dk]")
    if v.shape[:-1] != q.shape[:-1]:
        raise ShapeError(f"`delta_rule` needs values on the keys' steps: k {k} vs v {v}", "v", "v is [..., T, dv] with the same [..., T] as k")
    steps = q.with_shape(q.shape[:-1])
    if beta != steps:
        raise ShapeError(f"`delta_rule` needs one write strength per step, beta: {steps}, got {beta}", "beta", "beta is [..., T]: k without its last dim")
    return v


# ---- ONNX: a Scan over time whose body is one step ----


class _ScanBody:
    """The nodes of a Scan body; names come from the model's builder, so none shadows an outer value."""

    def __init__(self, c, dtype: str):
        # onnx is imported only when exporting: loading and compiling specs does not need it
        from onnx import helper

        from paperspec.compiler.backends.onnx_builder import ONNX_DTYPES

        self.c, self.helper, self.dtype, self.nodes = c, helper, ONNX_DTYPES[dtype], []

    def name(self, base: str) -> str:
        return self.c.builder.unique(f"{self.c.scope}/step/{base}")

    def node(self, op_type: str, inputs: list, **attributes) -> str:
        name = self.name(op_type)
        self.nodes.append(self.helper.make_node(op_type, inputs, [f"{name}_output_0"], name=name, **attributes))
        return f"{name}_output_0"

    def graph(self, inputs: list, outputs: list):
        def info(value: str):
            return self.helper.make_tensor_value_info(value, self.dtype, None)

        return self.helper.make_graph(self.nodes, self.name("body"), [info(v) for v in inputs], [info(v) for v in outputs])


# Scan steps along axis 0 here, although scan_input_axes could name dim -2: runtimes such as
# onnx's reference evaluator implement only axis 0.
def _time_first(c, tensor: str, rank: int, axis: int = -2) -> str:
    axis %= rank
    if axis == 0:
        return tensor
    return c.node("Transpose", [tensor], perm=[axis] + [i for i in range(rank) if i != axis])


def _time_back(c, tensor: str, rank: int) -> str:
    """Scan's stacked outputs [T, ..., d] back to [..., T, d]."""
    if rank == 2:
        return tensor
    return c.node("Transpose", [tensor], perm=list(range(1, rank - 1)) + [0, rank - 1])


def _without_time(c, tensor: str, rank: int) -> str:
    """The shape of a [..., T, d] tensor without T, as an int64 vector."""
    if rank == 2:
        return c.node("Shape", [tensor], start=-1)
    return c.node("Concat", [c.node("Shape", [tensor], end=-2), c.node("Shape", [tensor], start=-1)], axis=0)


def _linear_scan_onnx(c) -> str:
    u_type = c.values["u"]
    a = c["a"]
    if c.values["negative"]:
        a = c.node("Sub", [c.node("Mul", [a, c.const(2.0, u_type.dtype)]), c.const(1.0, u_type.dtype)])
    h0 = c["h0"] if c.values["h0"] is not None else c.fill(_without_time(c, c["u"], u_type.rank), 0.0, u_type.dtype)
    body = _ScanBody(c, u_type.dtype)
    h, a_t, u_t = body.name("h"), body.name("a"), body.name("u")
    following = body.node("Add", [body.node("Mul", [a_t, h]), u_t])
    body_graph = body.graph([h, a_t, u_t], [following, body.node("Identity", [following])])
    rank = u_type.rank
    _, out = c.node("Scan", [h0, _time_first(c, a, rank), _time_first(c, c["u"], rank)], outputs=2, body=body_graph, num_scan_inputs=2)
    return _time_back(c, out, rank)


def _unit(c, x: str, dtype: str) -> str:
    """x / max(|x|, 1e-12) over the last dim, as F.normalize computes it."""
    norm = c.node("Sqrt", [c.node("ReduceSumSquare", [x, c.const([-1], "i64")], keepdims=1)])
    return c.node("Div", [x, c.node("Max", [norm, c.const(1e-12, dtype)])])


def _delta_rule_step(c, body: _ScanBody, state: str, q_t: str, k_t: str, v_t: str, b_t: str) -> tuple:
    """One step on [..., dv, dk] states: S + b (v - S k) k^T, and its output S q."""
    last, before_last = c.const([-1], "i64"), c.const([-2], "i64")
    column = body.node("Unsqueeze", [k_t, last])
    error = body.node("Sub", [body.node("Unsqueeze", [v_t, last]), body.node("MatMul", [state, column])])
    strength = body.node("Unsqueeze", [b_t, c.const([-2, -1], "i64")])
    row = body.node("Unsqueeze", [k_t, before_last])
    following = body.node("Add", [state, body.node("Mul", [body.node("Mul", [error, strength]), row])])
    out = body.node("Squeeze", [body.node("MatMul", [following, body.node("Unsqueeze", [q_t, last])]), last])
    return following, out


def _delta_rule_onnx(c) -> str:
    dtype, rank = c.values["v"].dtype, c.values["v"].rank
    q, k, beta = c["q"], c["k"], c["beta"]
    if c.values["normalize"]:
        q, k = _unit(c, q, dtype), _unit(c, k, dtype)
    if c.values["negative"]:
        beta = c.node("Mul", [beta, c.const(2.0, dtype)])
    sizes = [c.node("Shape", [c["v"]], start=-1), c.node("Shape", [k], start=-1)]
    if rank > 2:
        sizes.insert(0, c.node("Shape", [c["v"]], end=-2))
    state0 = c.fill(c.node("Concat", sizes, axis=0), 0.0, dtype)
    body = _ScanBody(c, dtype)
    inputs = [body.name(n) for n in ("state", "q", "k", "v", "beta")]
    following, out = _delta_rule_step(c, body, *inputs)
    body_graph = body.graph(inputs, [following, out])
    scan_inputs = [state0] + [_time_first(c, x, rank) for x in (q, k, c["v"])] + [_time_first(c, beta, rank - 1, -1)]
    _, result = c.node("Scan", scan_inputs, outputs=2, body=body_graph, num_scan_inputs=4)
    return _time_back(c, result, rank)


# ---- registration ----


def _call(c, function: str, positional: tuple, defaults: dict) -> str:
    """A call of a helper that spells out only the keyword arguments the spec changed."""
    parts = [c[name] for name in positional]
    parts += [f"{name}={c[name]}" for name, default in defaults.items() if c.values[name] != default]
    return f"{function}({', '.join(parts)})"


register(
    "linear_scan",
    "a: tensor, u: tensor, h0: tensor? = none, negative: bool = false, chunk: int = 32",
    _linear_scan,
    lambda c: _call(c, "linear_scan", ("a", "u"), {"h0": None, "negative": False, "chunk": 32}),
    "diagonal linear recurrence h_t = a_t * h_(t-1) + u_t over time = dim -2 of [..., T, d] (a, u: "
    "[..., T, d]; h0: [..., d], zeros by default); gives every h_t, [..., T, d]. `negative = true` "
    "maps gates a in [0, 1] (e.g. sigmoid) to 2a - 1 in [-1, 1], the eigenvalue range that lets a "
    "linear RNN track state such as parity (Grazzi et al. 2024, 'Unlocking State-Tracking in Linear "
    "RNNs Through Negative Eigenvalues'). PyTorch: a chunked scan of about 2 * chunk + T / chunk "
    "vectorised steps (exact for zero and negative gates), its gradient a scan run backwards; "
    "ONNX: a Scan over time",
    category="recurrent",
    torch_helpers=(
        ("_scan_steps", _STEPS_HELPER),
        ("_linear_scan_chunks", _CHUNKS_HELPER),
        ("_times_previous", _PREVIOUS_HELPER),
        ("_LinearScan", _FUNCTION_HELPER),
        ("linear_scan", _LINEAR_SCAN_HELPER),
    ),
    onnx=_linear_scan_onnx,
)

register(
    "delta_rule",
    "q: tensor, k: tensor, v: tensor, beta: tensor, negative: bool = false, normalize: bool = true",
    _delta_rule,
    lambda c: _call(c, "delta_rule", ("q", "k", "v", "beta"), {"negative": False, "normalize": True}),
    "DeltaNet's delta rule over time = dim -2: S_t = S_(t-1) (I - beta_t k_t k_t^T) + beta_t v_t k_t^T "
    "from S = 0, output o_t = S_t q_t (q, k: [..., T, dk]; v: [..., T, dv]; beta: [..., T]; gives "
    "[..., T, dv]). `normalize = true` first scales q and k to unit length (as DeltaNet does), so "
    "I - beta k k^T has eigenvalues 1 and 1 - beta. With beta in [0, 1] (e.g. sigmoid) those lie in "
    "[0, 1]; `negative = true` doubles beta to [0, 2], giving [-1, 1] (Grazzi et al. 2024). "
    "PyTorch: a loop over time, vectorised over the batch; ONNX: a Scan over time",
    category="recurrent",
    torch_helpers=(("delta_rule", _DELTA_RULE_HELPER),),
    onnx=_delta_rule_onnx,
)
