"""Ops that call a block repeatedly: fixed points (deep equilibrium models) and ODE solves."""

from __future__ import annotations

from paperspec.compiler.ops.base import ShapeError, register
from paperspec.compiler.ops.shapes import require_float
from paperspec.compiler.ops.tensor import INT64_MAX
from paperspec.compiler.types import TensorType

_FIXED_POINT_HELPER = '''
def _anderson(step, z0, tol: float, max_iter: int, memory: int = 5):
    """Anderson acceleration for z = step(z); returns (z, relative residual, iterations)."""
    shape, flat = z0.shape, z0.reshape(z0.shape[0], -1)
    xs, fs = [flat], [step(z0).reshape(flat.shape)]
    residual = float("inf")
    for k in range(1, max_iter + 1):
        m = min(len(xs), memory)
        g = torch.stack([fs[-i] - xs[-i] for i in range(1, m + 1)], dim=1)
        gram = g @ g.transpose(1, 2) + 1e-6 * torch.eye(m, dtype=g.dtype, device=g.device)
        alpha = torch.linalg.solve(gram, torch.ones(g.shape[0], m, 1, dtype=g.dtype, device=g.device))
        alpha = alpha / alpha.sum(dim=1, keepdim=True)
        candidates = torch.stack([fs[-i] for i in range(1, m + 1)], dim=1)
        x = (alpha * candidates).sum(dim=1)
        f = step(x.reshape(shape)).reshape(flat.shape)
        residual = ((f - x).norm() / (f.norm() + 1e-9)).item()
        xs.append(x)
        fs.append(f)
        if residual < tol:
            return f.reshape(shape), residual, k
    return fs[-1].reshape(shape), residual, max_iter


def _iterate(step, z0, tol: float, max_iter: int):
    """Plain fixed-point iteration z <- step(z); returns (z, relative residual, iterations)."""
    z, residual = z0, float("inf")
    for k in range(1, max_iter + 1):
        following = step(z)
        residual = ((following - z).norm() / (following.norm() + 1e-9)).item()
        z = following
        if residual < tol:
            return z, residual, k
    return z, residual, max_iter


def fixed_point(f, z0, x, solver: str, tol: float, max_iter: int, backward: str, strict: bool):
    """z* = f(z*, x). `implicit`: one differentiable step at z*, and a backward hook solving
    g = (df/dz)^T g + grad by the same iteration (O(1) memory in depth). `unrolled`: gradients
    through every iteration."""
    step = (lambda z: f(z, x)) if x is not None else f
    solve = _anderson if solver == "anderson" else _iterate
    if backward == "unrolled":
        z, residual, _ = _iterate(step, z0, tol, max_iter)
    else:
        with torch.no_grad():
            z, residual, _ = solve(step, z0, tol, max_iter)
        z = step(z.detach())
    if strict and residual > tol:
        raise RuntimeError(f"fixed_point did not converge: relative residual {residual:.3g} > tol {tol} after {max_iter} iterations")
    if backward == "implicit" and torch.is_grad_enabled() and z.requires_grad:
        anchor = z.detach().requires_grad_()
        image = step(anchor)

        def solve_backward(grad):
            adjoint = lambda g: torch.autograd.grad(image, anchor, g, retain_graph=True)[0] + grad
            result, _, _ = _iterate(adjoint, grad, tol, max_iter)
            return result

        z.register_hook(solve_backward)
    return z
'''

_ODE_HELPER = '''
def odeint(f, y0, t, method: str, steps: int, adjoint: bool, rtol: float, atol: float):
    """Solves dy/dt = f(t, y) from y0 at times t; returns [len(t), *y0.shape]."""
    if method == "dopri5" or adjoint:
        try:
            import torchdiffeq
        except ImportError:
            raise RuntimeError("odeint with method = dopri5 or adjoint = true needs torchdiffeq: pip install torchdiffeq") from None
        solve = torchdiffeq.odeint_adjoint if adjoint else torchdiffeq.odeint
        if method == "dopri5":
            return solve(f, y0, t, method="dopri5", rtol=rtol, atol=atol)
        step_size = float((t[1:] - t[:-1]).min()) / steps
        return solve(f, y0, t, method=method, options={"step_size": step_size})
    ys, y = [y0], y0
    for i in range(len(t) - 1):
        h = (t[i + 1] - t[i]) / steps
        time = t[i]
        for _ in range(steps):
            if method == "euler":
                y = y + h * f(time, y)
            else:
                k1 = f(time, y)
                k2 = f(time + h / 2, y + h / 2 * k1)
                k3 = f(time + h / 2, y + h / 2 * k2)
                k4 = f(time + h, y + h * k3)
                y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            time = time + h
        ys.append(y)
    return torch.stack(ys)
'''


def _fixed_point_inputs(call) -> dict:
    inputs = [call["z0"]] if call["x"] is None else [call["z0"], call["x"]]
    return {"f": inputs}


def _fixed_point(call):
    z0 = call["z0"]
    require_float(z0, "fixed_point", "z0")
    if z0.rank == 0:
        raise ShapeError(f"`fixed_point` needs a batched state [B, ...], got {z0}", "z0")
    outputs = call.derived["f_outputs"]
    if outputs != [z0]:
        shown = ", ".join(str(t) for t in outputs)
        raise ShapeError(f"`fixed_point` needs f to map the state to the same type: f returns {shown} for state {z0}", "f")
    if call["solver"] not in ("anderson", "iterate"):
        raise ShapeError(f"`solver` must be 'anderson' or 'iterate', got {call['solver']!r}", "solver")
    if call["backward"] not in ("implicit", "unrolled"):
        raise ShapeError(f"`backward` must be 'implicit' or 'unrolled', got {call['backward']!r}", "backward")
    if call["tol"] <= 0 or call["max_iter"] < 1:
        raise ShapeError("`tol` must be positive and `max_iter` at least 1", "tol")
    return z0


def _apply_fixed_point_block(c, z: str, builder=None) -> str:
    inputs = [z] if c.values["x"] is None else [z, c["x"]]
    return c.block("f", inputs, builder)[0]


def _declare_scalars(graph, count: int) -> None:
    """Gives the first `count` inputs of a subgraph the scalar shape onnxruntime requires of a
    Loop body's iteration number and condition."""
    from onnx import helper

    for value in graph.input[:count]:
        value.CopyFrom(helper.make_tensor_value_info(value.name, value.type.tensor_type.elem_type, []))


def _fixed_point_onnx(c) -> str:
    """A Loop of plain iterations z <- f(z, x) while the relative residual ||f(z) - z|| / ||f(z)||
    (over the whole batch) is at least tol, at most max_iter times: the generated `_iterate` step
    for step. An Anderson model exports as this iteration, which reaches its equilibrium to within
    tol. With backward = implicit, f is applied once more after the solve, as the module does."""
    state, dtype = c.values["z0"], c.values["z0"].dtype
    names = [c.builder.unique(f"{c.scope}/body/{name}") for name in ("iteration", "unconverged", "z")]
    body = c.builder.child()

    def node(op_type: str, *inputs: str, **attributes) -> str:
        return body.node(op_type, list(inputs), f"{c.scope}/body", **attributes)[0]

    z = names[2]
    following = _apply_fixed_point_block(c, z, body)
    change = node("ReduceL2", node("Sub", following, z), keepdims=0)
    size = node("Add", node("ReduceL2", following, keepdims=0), body.constant(1e-9, dtype))
    residual = node("Div", change, size)
    unconverged = node("Not", node("Less", residual, body.constant(c.values["tol"], dtype)))
    flag = TensorType("bool", ())
    graph, _ = c.subgraph(body, names, [TensorType("i64", ()), flag, state], [unconverged, following], [flag, state])
    _declare_scalars(graph, 2)
    solved = c.node("Loop", [c.const(c.values["max_iter"], "i64"), c.const(True, "bool"), c["z0"]], body=graph)
    return _apply_fixed_point_block(c, solved) if c.values["backward"] == "implicit" else solved


register(
    "fixed_point",
    "f: block, z0: tensor, x: tensor? = none, solver: str = 'anderson', tol: float = 0.0001, "
    "max_iter: int = 50, backward: str = 'implicit', strict: bool = false",
    _fixed_point,
    lambda c: (
        f"fixed_point({c['f']}, {c['z0']}, {c['x']}, solver={c['solver']}, tol={c['tol']}, "
        f"max_iter={c['max_iter']}, backward={c['backward']}, strict={c['strict']})"
    ),
    "equilibrium z* = f(z*[, x]) of a block, by Anderson or plain iteration; implicit (O(1) memory) or unrolled gradients",
    category="solver",
    torch_helpers=(("fixed_point", _FIXED_POINT_HELPER),),
    block_inputs=_fixed_point_inputs,
    onnx=_fixed_point_onnx,
)


def _odeint(call):
    y0, t = call["y0"], call["t"]
    require_float(y0, "odeint", "y0")
    require_float(t, "odeint", "t")
    if t.rank != 1:
        raise ShapeError(f"`odeint` needs a 1-D tensor of times, got {t}", "t")
    outputs = call.derived["f_outputs"]
    if outputs != [y0]:
        shown = ", ".join(str(o) for o in outputs)
        raise ShapeError(f"`odeint` needs f(t, y) to return dy/dt of y's type: f returns {shown} for y {y0}", "f")
    if call["method"] not in ("euler", "rk4", "dopri5"):
        raise ShapeError(f"`method` must be euler, rk4 or dopri5, got {call['method']!r}", "method")
    if call["steps"] < 1:
        raise ShapeError("`steps` (sub-steps per interval) must be at least 1", "steps")
    return y0.with_shape((t.shape[0],) + y0.shape)


def _odeint_export_blocker(call) -> str | None:
    exported = "only euler and rk4 with adjoint = false export, as a Scan over the intervals"
    if call["method"] == "dopri5":
        return f"dopri5 chooses its step sizes while it solves; {exported}"
    if call["adjoint"]:
        return f"adjoint = true solves in torchdiffeq on its own grid of steps; {exported}"
    return None


class _StepEmitter:
    """Emits Euler or RK4 sub-steps into a Scan body, mirroring the generated `odeint` helper's
    arithmetic so that the two agree to rounding."""

    def __init__(self, c, body, time_dtype: str, state_dtype: str):
        self.c, self.body = c, body
        self.time_dtype, self.state_dtype = time_dtype, state_dtype

    def node(self, op_type: str, *inputs: str, **attributes) -> str:
        return self.body.node(op_type, list(inputs), f"{self.c.scope}/body", **attributes)[0]

    def scalar(self, value: float, dtype: str) -> str:
        return self.body.constant(value, dtype)

    def in_state_dtype(self, time_value: str) -> str:
        from paperspec.compiler.backends.onnx_builder import ONNX_DTYPES

        if self.time_dtype == self.state_dtype:
            return time_value
        return self.node("Cast", time_value, to=ONNX_DTYPES[self.state_dtype])

    def field(self, time: str, y: str) -> str:
        return self.c.block("f", [time, y], self.body)[0]

    def advance(self, y: str, dy: str, scale: str) -> str:
        """y + scale * dy, with `scale` a time-typed scalar."""
        return self.node("Add", y, self.node("Mul", self.in_state_dtype(scale), dy))

    def euler(self, time: str, y: str, h: str) -> str:
        return self.advance(y, self.field(time, y), h)

    def rk4(self, time: str, y: str, h: str) -> str:
        half = self.node("Div", h, self.scalar(2.0, self.time_dtype))
        middle = self.node("Add", time, half)
        k1 = self.field(time, y)
        k2 = self.field(middle, self.advance(y, k1, half))
        k3 = self.field(middle, self.advance(y, k2, half))
        k4 = self.field(self.node("Add", time, h), self.advance(y, k3, h))
        two = self.scalar(2.0, self.state_dtype)
        weighted = self.node("Add", self.node("Add", k1, self.node("Mul", two, k2)), self.node("Mul", two, k3))
        return self.advance(y, self.node("Add", weighted, k4), self.node("Div", h, self.scalar(6.0, self.time_dtype)))


def _odeint_onnx(c) -> str:
    """A Scan over the intervals (t_i, t_(i+1)) that carries y and stacks it after each one; the
    body unrolls `steps` Euler or RK4 sub-steps, each stage an inline copy of the field block
    (its weights stay initializers of the outer graph). y0 goes in front of the stacked states,
    so the export runs at any number of times K."""
    time_dtype, state_dtype = c.values["t"].dtype, c.values["y0"].dtype
    starts = c.node("Slice", [c["t"], c.const([0], "i64"), c.const([-1], "i64")])
    ends = c.node("Slice", [c["t"], c.const([1], "i64"), c.const([INT64_MAX], "i64")])
    names = [c.builder.unique(f"{c.scope}/body/{name}") for name in ("y", "t_start", "t_end")]
    body = c.builder.child()
    emit = _StepEmitter(c, body, time_dtype, state_dtype)
    y, time, end = names
    h = emit.node("Div", emit.node("Sub", end, time), emit.scalar(float(c.values["steps"]), time_dtype))
    step = emit.euler if c.values["method"] == "euler" else emit.rk4
    for _ in range(c.values["steps"]):
        y = step(time, y, h)
        time = emit.node("Add", time, h)
    scalar = TensorType(time_dtype, ())
    graph, _ = c.subgraph(body, names, [c.values["y0"], scalar, scalar], [y, y], [c.values["y0"]] * 2)
    _, states = c.node("Scan", [c["y0"], starts, ends], outputs=2, body=graph, num_scan_inputs=2)
    first = c.node("Unsqueeze", [c["y0"], c.const([0], "i64")])
    return c.node("Concat", [first, states], axis=0)


register(
    "odeint",
    "f: block, y0: tensor, t: tensor, method: str = 'rk4', steps: int = 1, adjoint: bool = false, "
    "rtol: float = 1e-06, atol: float = 1e-08",
    _odeint,
    lambda c: (
        f"odeint({c['f']}, {c['y0']}, {c['t']}, method={c['method']}, steps={c['steps']}, "
        f"adjoint={c['adjoint']}, rtol={c['rtol']}, atol={c['atol']})"
    ),
    "solves dy/dt = f(t, y) from y0, giving y at each time of t: [len(t), ...]; rk4/euler built in, dopri5 and adjoint via torchdiffeq",
    category="solver",
    torch_helpers=(("odeint", _ODE_HELPER),),
    block_inputs=lambda call: {"f": [TensorType(call["t"].dtype, ()), call["y0"]]},
    onnx=_odeint_onnx,
    not_exportable=_odeint_export_blocker,
)


_SCAN_HELPER = '''
def scan(f, h, x, dim: int):
    """Runs the block f(h, x_t) over the slices of x along dim; returns (stacked outputs, last h)."""
    ys = []
    for x_t in x.unbind(dim):
        out = f(h, x_t)
        h, y = out if isinstance(out, tuple) else (out, out)
        ys.append(y)
    return torch.stack(ys, dim), h
'''


def _scan_inputs(call) -> dict:
    x = call["x"]
    if x.rank == 0:
        raise ShapeError(f"`scan` needs a sequence to step over, got {x}", "x")
    axis = call["dim"] % x.rank if -x.rank <= call["dim"] < x.rank else None
    if axis is None:
        raise ShapeError(f"dim {call['dim']} is out of range for {x}", "dim")
    return {"f": [call["h0"], x.with_shape(x.shape[:axis] + x.shape[axis + 1 :])]}


def _scan(call):
    h0, x = call["h0"], call["x"]
    outputs = call.derived["f_outputs"]
    if not 1 <= len(outputs) <= 2 or outputs[0] != h0:
        shown = ", ".join(str(t) for t in outputs)
        raise ShapeError(
            f"`scan` needs f(h, x_t) to return the next state of h's type (and optionally an output): f returns {shown} for h {h0}",
            "f",
        )
    axis = call["dim"] % x.rank
    step_output = outputs[-1]
    if axis > step_output.rank:
        raise ShapeError(f"cannot stack outputs {step_output} along dim {call['dim']}", "dim")
    stacked = step_output.with_shape(step_output.shape[:axis] + (x.shape[axis],) + step_output.shape[axis:])
    call.derived["tuple_output"] = True
    return [stacked, h0]


def _scan_onnx(c) -> list:
    """An ONNX Scan whose body is the block; it steps along axis 0 (the only scan axis some
    runtimes implement), so x's scanned dim moves to the front and the outputs' back."""
    x_type, h_type = c.values["x"], c.values["h0"]
    rank, axis = x_type.rank, c.values["dim"] % x_type.rank
    x = c["x"] if axis == 0 else c.node("Transpose", [c["x"]], perm=[axis] + [i for i in range(rank) if i != axis])
    step_type = x_type.with_shape(x_type.shape[:axis] + x_type.shape[axis + 1 :])
    names = [c.builder.unique(f"{c.scope}/body/h"), c.builder.unique(f"{c.scope}/body/x_t")]
    single = len(c.derived["f_outputs"]) == 1  # f gives only the next state: the state is also the output
    body, _ = c.block_body("f", names, [h_type, step_type], extra_outputs=1 if single else 0)
    last, ys = c.node("Scan", [c["h0"], x], outputs=2, body=body, num_scan_inputs=1)
    out_rank = c.out_types[0].rank
    if axis != 0:
        ys = c.node("Transpose", [ys], perm=list(range(1, axis + 1)) + [0] + list(range(axis + 1, out_rank)))
    return [ys, last]


register(
    "scan",
    "f: block, h0: tensor, x: tensor, dim: int = 1",
    _scan,
    lambda c: f"scan({c['f']}, {c['h0']}, {c['x']}, {c['dim']})",
    "a recurrence whose step is a block f(h, x_t) -> h or (h, y), run over x along dim; gives (outputs, last state)",
    category="solver",
    torch_helpers=(("scan", _SCAN_HELPER),),
    block_inputs=_scan_inputs,
    onnx=_scan_onnx,
)
