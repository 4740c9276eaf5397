"""Optimal-transport ops: minibatch OT couplings for flow matching (Tong et al. 2023; Pooladian et
al. 2023; with conditions, Cheng and Schwing 2025) and the sliced Wasserstein distance.

Both work on point sets [N, ...] whose rows are samples. `ot_pairing` chooses a pairing with a
combinatorial solver (scipy's linear_sum_assignment) and `sliced_wasserstein` compares two sets
by sorting; neither is part of an inference graph, so neither exports to ONNX."""

from __future__ import annotations

from paperspec.compiler.ops.base import ShapeError, register
from paperspec.compiler.ops.losses import SCALAR
from paperspec.compiler.ops.shapes import require_float
from paperspec.compiler.types import INT_DTYPES

_CONDITION_GROUPS_HELPER = '''
def condition_groups(condition, size: int):
    """Row indices per condition value (all rows when there is no condition)."""
    if condition is None:
        return [torch.arange(size)]
    condition = condition.cpu()
    return [(condition == value).nonzero().flatten() for value in condition.unique()]
'''

_OT_PAIRING_HELPER = '''
def ot_pairing(x0, x1, condition):
    """x0's rows reordered so that row j goes with x1[j], choosing the pairing of least total
    squared distance (exact: scipy's linear_sum_assignment). With a condition, row i of x0 and of
    x1 both carry condition[i] and only rows of equal condition pair. The choice is a constant;
    gradients flow to the chosen rows of x0."""
    from scipy.optimize import linear_sum_assignment

    source, target = x0.detach().flatten(1).cpu().double(), x1.detach().flatten(1).cpu().double()
    order = torch.empty(x0.shape[0], dtype=torch.long)
    for rows in condition_groups(condition, x0.shape[0]):
        cost = torch.cdist(target[rows], source[rows]).square()
        targets, sources = linear_sum_assignment(cost.numpy())
        order[rows[targets]] = rows[sources]
    return x0[order.to(x0.device)]
'''

_SLICED_WASSERSTEIN_HELPER = '''
def sliced_wasserstein(a, b, condition, projections: int, p: float, seed: int):
    """(mean over random unit directions of W_p^p between the projected sets) ** (1 / p); the
    directions are fixed by `seed`. 1-D W_p between equal-sized sets pairs the sorted values.
    With a condition, row i of a and of b carries condition[i] and each condition's rows are
    compared apart, the W_p^p weighted by their counts."""
    generator = torch.Generator().manual_seed(seed)
    directions = torch.randn(a.flatten(1).shape[1], projections, generator=generator, dtype=torch.float64)
    directions = (directions / directions.norm(dim=0)).to(a.device, a.dtype)
    a_projected, b_projected = a.flatten(1) @ directions, b.flatten(1) @ directions
    total = 0.0
    for rows in condition_groups(condition, a.shape[0]):
        rows = rows.to(a.device)
        gap = a_projected[rows].sort(dim=0).values - b_projected[rows].sort(dim=0).values
        total = total + gap.abs().pow(p).sum() / projections
    return (total / a.shape[0]) ** (1 / p)
'''


def _point_sets(call, op: str, first: str, second: str) -> None:
    """Two float sets [N, ...] of the same shape, and an optional integer condition [N]."""
    a, b = call[first], call[second]
    require_float(a, op, first)
    require_float(b, op, second)
    if a.rank < 2:
        raise ShapeError(f"`{op}` needs points as rows, [N, ...], got {first} {a}", first)
    if a.shape != b.shape:
        raise ShapeError(f"`{op}` needs two sets of the same shape: {first} {a} vs {second} {b}", second)
    condition = call["condition"]
    if condition is None:
        return
    if condition.dtype not in INT_DTYPES or condition.shape != a.shape[:1]:
        raise ShapeError(
            f"`{op}` needs an integer condition with one value per row, [{a.shape[0]}], got {condition}",
            "condition",
            "a class label per point, such as batch.y",
        )


def _ot_pairing(call):
    _point_sets(call, "ot_pairing", "x0", "x1")
    return call["x0"]


register(
    "ot_pairing",
    "x0: tensor, x1: tensor, condition: tensor? = none",
    _ot_pairing,
    lambda c: f"ot_pairing({c['x0']}, {c['x1']}, {c['condition']})",
    "x0 [N, ...] reordered so that row j pairs with x1[j] at least total squared distance "
    "(minibatch optimal transport, Tong et al. 2023); with condition [N], only rows of equal "
    "condition pair (C2OT, Cheng and Schwing 2025). The pairing carries no gradient",
    category="transport",
    torch_helpers=(("condition_groups", _CONDITION_GROUPS_HELPER), ("ot_pairing", _OT_PAIRING_HELPER)),
    not_exportable="it pairs a training batch with a combinatorial solver (scipy), which is no part of an inference graph",
)


def _sliced_wasserstein(call):
    _point_sets(call, "sliced_wasserstein", "a", "b")
    if call["projections"] < 1:
        raise ShapeError(f"projections must be >= 1, got {call['projections']}", "projections")
    if call["p"] < 1:
        raise ShapeError(f"p must be >= 1 for a distance, got {call['p']}", "p")
    return SCALAR


def _sliced_wasserstein_torch(c) -> str:
    values = c.values
    return (
        f"sliced_wasserstein({c['a']}, {c['b']}, {c['condition']}, "
        f"{values['projections']}, {float(values['p'])}, {values['seed']})"
    )


register(
    "sliced_wasserstein",
    "a: tensor, b: tensor, condition: tensor? = none, projections: int = 128, p: float = 2.0, seed: int = 0",
    _sliced_wasserstein,
    _sliced_wasserstein_torch,
    "sliced p-Wasserstein distance between two equal-sized point sets [N, ...]: W_p of their "
    "projections onto `projections` random unit directions (fixed by seed), averaged as W_p^p; "
    "with condition [N], between the rows of each condition value, weighted by their counts",
    category="metric",
    torch_helpers=(("condition_groups", _CONDITION_GROUPS_HELPER), ("sliced_wasserstein", _SLICED_WASSERSTEIN_HELPER)),
    not_exportable="an evaluation metric that sorts whole point sets, no part of an inference graph",
)
