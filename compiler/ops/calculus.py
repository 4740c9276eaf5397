"""Derivatives of a graph's values with respect to its inputs, for physics-informed losses."""

from __future__ import annotations

from paperspec.compiler.ops.base import ShapeError, register
from paperspec.compiler.ops.shapes import broadcast, require_float
from paperspec.compiler.types import TensorType

_GRAD_HELPER = '''
def input_grad(y, x):
    """d(sum y)/dx, kept differentiable so a loss can contain it."""
    return torch.autograd.grad(y, x, torch.ones_like(y), create_graph=True)[0]
'''

_LAPLACIAN_HELPER = '''
def input_laplacian(y, x):
    """Sum over the last dim of x of the second derivatives of y, per example."""
    first = torch.autograd.grad(y, x, torch.ones_like(y), create_graph=True)[0]
    total = torch.zeros_like(first[..., 0])
    for i in range(x.shape[-1]):
        total = total + torch.autograd.grad(first[..., i], x, torch.ones_like(total), create_graph=True)[0][..., i]
    return total
'''

TRAINING_ONLY = "derivatives with respect to inputs are part of a training loss, not of an inference graph"


def _grad(call):
    y, x = call["y"], call["x"]
    require_float(y, "grad", "y")
    require_float(x, "grad", "x")
    return x


def _laplacian(call):
    y, x = call["y"], call["x"]
    require_float(y, "laplacian", "y")
    require_float(x, "laplacian", "x")
    if x.rank == 0:
        raise ShapeError(f"`laplacian` needs x with a coordinate dim, got {x}", "x")
    per_example = x.shape[:-1]
    if y.shape not in (per_example, per_example + (1,)):
        raise ShapeError(
            f"`laplacian` needs one value of y per point of x: y {y} vs x {x}",
            "y",
            f"expected y of shape [{', '.join(str(d) for d in per_example)}]",
        )
    return x.with_shape(per_example)


register(
    "grad",
    "y: tensor, x: tensor",
    _grad,
    lambda c: f"input_grad({c['y']}, {c['x']})",
    "gradient of sum(y) with respect to the input x (same shape as x); in losses only",
    category="gradient",
    torch_helpers=(("input_grad", _GRAD_HELPER),),
    input_grads=("x",),
    not_exportable=TRAINING_ONLY,
)

register(
    "laplacian",
    "y: tensor, x: tensor",
    _laplacian,
    lambda c: f"input_laplacian({c['y']}.reshape({c['x']}.shape[:-1]), {c['x']})",
    "sum of second derivatives of y over the last dim of x, per point; in losses only",
    category="gradient",
    torch_helpers=(("input_laplacian", _LAPLACIAN_HELPER),),
    input_grads=("x",),
    not_exportable=TRAINING_ONLY,
)

_JVP_HELPER = '''
def input_jvp(y, x, v):
    """J v for J = dy/dx. The vector-Jacobian product J^T w is linear in w, so differentiating
    it in w along v gives J v from two reverse passes, on a y that is already computed."""
    w = torch.zeros_like(y, requires_grad=True)
    vjp = torch.autograd.grad(y, x, w, create_graph=True)[0]
    return torch.autograd.grad(vjp, w, v.expand_as(x), create_graph=True)[0]
'''

_HVP_HELPER = '''
def input_hvp(y, x, v):
    """H v for the Hessian H of sum(y) in x: the derivative of the gradient along v (H is symmetric)."""
    first = torch.autograd.grad(y, x, torch.ones_like(y), create_graph=True)[0]
    return torch.autograd.grad(first, x, v.expand_as(x), create_graph=True)[0]
'''


def _check_direction(op: str, x, v) -> None:
    """A direction is a tensor that broadcasts to x, or one number per coordinate of x (its last dim)."""
    if isinstance(v, TensorType):
        require_float(v, op, "v")
        try:
            fits = broadcast(v.shape, x.shape, op) == x.shape
        except ShapeError:
            fits = False
        if not fits:
            raise ShapeError(f"`{op}` needs a direction v that broadcasts to x: v {v} vs x {x}", "v")
        return
    numbers = isinstance(v, tuple) and all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in v)
    if not numbers:
        raise ShapeError(f"`{op}` needs v to be a tensor or a list of numbers, got {v!r}", "v")
    if x.rank == 0 or len(v) != x.shape[-1]:
        raise ShapeError(
            f"`{op}` needs one number of v per coordinate of x (its last dim): {len(v)} numbers vs x {x}",
            "v",
        )


def _jvp(call):
    y, x, v = call["y"], call["x"], call["v"]
    require_float(y, "jvp", "y")
    require_float(x, "jvp", "x")
    _check_direction("jvp", x, v)
    return y


def _hvp(call):
    y, x, v = call["y"], call["x"], call["v"]
    require_float(y, "hvp", "y")
    require_float(x, "hvp", "x")
    _check_direction("hvp", x, v)
    return x


def _direction_source(c) -> str:
    """A list of numbers becomes a constant tensor of x's dtype on x's device."""
    if isinstance(c.values["v"], TensorType):
        return c["v"]
    return f"torch.tensor({c['v']}, dtype={c['x']}.dtype, device={c['x']}.device)"


register(
    "jvp",
    "y: tensor, x: tensor, v: any",
    _jvp,
    lambda c: f"input_jvp({c['y']}, {c['x']}, {_direction_source(c)})",
    "Jacobian-vector product (dy/dx) v: the derivative of y along the direction v (a tensor "
    "broadcasting to x, or one number per coordinate of x), shaped like y; in losses only",
    category="gradient",
    torch_helpers=(("input_jvp", _JVP_HELPER),),
    input_grads=("x",),
    not_exportable=TRAINING_ONLY,
)

register(
    "hvp",
    "y: tensor, x: tensor, v: any",
    _hvp,
    lambda c: f"input_hvp({c['y']}, {c['x']}, {_direction_source(c)})",
    "Hessian-vector product H v, H the Hessian of sum(y) in x and v a direction as in jvp; "
    "shaped like x (hvp(u, z, [1, 0])[.., 0] is d2u/dz0^2); in losses only",
    category="gradient",
    torch_helpers=(("input_hvp", _HVP_HELPER),),
    input_grads=("x",),
    not_exportable=TRAINING_ONLY,
)
