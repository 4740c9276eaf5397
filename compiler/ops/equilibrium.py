"""`equilibrium`: the state where an energy-based network settles (equilibrium propagation)."""

from __future__ import annotations

import inspect

from paperspec.compiler.ops.base import ShapeError, register
from paperspec.compiler.ops.shapes import require_float
from paperspec.runtime.relaxation import relax


def _equilibrium(call):
    s0, target = call["s0"], call["target"]
    require_float(s0, "equilibrium", "s0")
    if s0.rank != 2:
        raise ShapeError(f"`equilibrium` needs a state [B, units], got {s0}", "s0")
    energy = call.derived["energy_outputs"]
    if len(energy) != 1 or energy[0].rank != 1 or energy[0].dtype != s0.dtype:
        shown = ", ".join(str(t) for t in energy)
        raise ShapeError(f"`equilibrium` needs energy(s, x) to return one energy per example, {s0.dtype}[B]; it returns {shown}", "energy")
    if target is not None and (target.rank != 2 or target.dtype != s0.dtype or not _fits(target.shape[1], s0.shape[1])):
        raise ShapeError(f"`target` is compared with the state's last units: it must be {s0.dtype}[B, k] with k <= {s0.shape[1]}, got {target}", "target")
    if call["steps"] < 0 or call["step_size"] <= 0:
        raise ShapeError("`steps` must be >= 0 and `step_size` positive", "steps")
    return s0


def _fits(width, units) -> bool:
    return not (isinstance(width, int) and isinstance(units, int)) or width <= units


register(
    "equilibrium",
    "energy: block, s0: tensor, x: tensor, target: tensor? = none, beta: float = 0.0, steps: int = 20, step_size: float = 0.5",
    _equilibrium,
    lambda c: (
        f"relax({c['energy']}, {c['s0']}, {c['x']}, {c['target']}, beta={c['beta']}, "
        f"steps={c['steps']}, step_size={c['step_size']})"
    ),
    "the state s in [0, 1] where energy(s, x) [+ beta/2 ||s[:, -k:] - target||^2] settles, by projected gradient descent from s0; no gradient flows through it",
    category="solver",
    torch_helpers=(("relax", inspect.getsource(relax)),),
    block_inputs=lambda call: {"energy": [call["s0"], call["x"]]},
    not_exportable="the relaxation differentiates the energy with respect to the state at every step (autograd inside the model)",
)
