"""Ops that draw samples by calling a score block: (annealed) Langevin dynamics."""

from __future__ import annotations

from paperspec.compiler.ops.base import ShapeError, register
from paperspec.compiler.ops.shapes import require_float
from paperspec.compiler.types import TensorType

# The step at level i is step_size * (sigma_i / sigma_L)^2, so that the signal-to-noise ratio of
# an update stays the same at every level (Song & Ermon 2019, section 4.3); with one level it is
# plain Langevin dynamics with step size `step_size`.
_LANGEVIN_HELPER = '''
def langevin(score, x, sigmas, steps: int, step_size: float, seed):
    """Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1): for each noise level sigma of
    `sigmas` in order, `steps` updates x <- x + a / 2 * score(x, sigma) + sqrt(a) * z with
    a = step_size * (sigma / sigmas[-1]) ** 2 and z ~ N(0, I). `seed` None draws z from torch's
    global generator, an int from a private one seeded with it."""
    generator = None if seed is None else torch.Generator(device=x.device).manual_seed(seed)
    for sigma in sigmas.unbind(0):
        size = step_size * (sigma / sigmas[-1]) ** 2
        levels = sigma.expand(x.shape[0])
        for _ in range(steps):
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            x = x + size / 2 * score(x, levels) + size.sqrt() * noise
    return x
'''


def _langevin_inputs(call) -> dict:
    """The score block sees the samples and one noise level per sample."""
    x0 = call["x0"]
    if x0.rank == 0:
        raise ShapeError(f"`langevin` needs a batch of starting points [B, ...], got {x0}", "x0")
    return {"f": [x0, TensorType(x0.dtype, (x0.shape[0],))]}


def _langevin(call) -> TensorType:
    x0, sigmas = call["x0"], call["sigmas"]
    require_float(x0, "langevin", "x0")
    require_float(sigmas, "langevin", "sigmas")
    if sigmas.rank != 1 or sigmas.shape[0] == 0:
        raise ShapeError(f"`sigmas` must be a non-empty 1-D tensor of noise levels, got {sigmas}", "sigmas")
    if sigmas.dtype != x0.dtype:
        raise ShapeError(f"`langevin` needs one dtype: x0 is {x0} but sigmas is {sigmas}", "sigmas")
    outputs = call.derived["f_outputs"]
    if outputs != [x0]:
        shown = ", ".join(str(o) for o in outputs)
        raise ShapeError(f"`langevin` needs f(x, sigma) to return a score of x's type: f returns {shown} for x {x0}", "f")
    if call["steps"] < 1:
        raise ShapeError(f"`steps` (updates per noise level) must be at least 1, got {call['steps']}", "steps")
    if call["step_size"] <= 0:
        raise ShapeError(f"`step_size` must be positive, got {call['step_size']}", "step_size")
    return x0


register(
    "langevin",
    "f: block, x0: tensor, sigmas: tensor, steps: int = 100, step_size: float = 0.1, seed: int? = none",
    _langevin,
    lambda c: f"langevin({c['f']}, {c['x0']}, {c['sigmas']}, {c['steps']}, {c['step_size']}, {c['seed']})",
    "annealed Langevin dynamics (Song & Ermon 2019) from x0 with a score block f(x, sigma [B]): `steps` updates "
    "x + a/2 f(x, sigma) + sqrt(a) z per noise level of sigmas [L], a = step_size (sigma / sigmas[-1])^2; "
    "one level is plain Langevin",
    category="sampling",
    torch_helpers=(("langevin", _LANGEVIN_HELPER),),
    block_inputs=_langevin_inputs,
    stochastic=True,
    not_exportable="its noise comes from PyTorch's generator, which ONNX runtimes cannot reproduce",
)
