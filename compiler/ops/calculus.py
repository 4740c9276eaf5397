"""Derivatives of a graph's values with respect to its inputs, for physics-informed losses."""

from __future__ import annotations

from paperspec.compiler.ops.base import ShapeError, register
from paperspec.compiler.ops.shapes import require_float

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
