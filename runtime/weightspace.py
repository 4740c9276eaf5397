"""Weight-space functions: models whose weights are computed from trained models (interpolation, weight matching)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from paperspec.compiler.ops.base import parse_signature

State = dict  # a model's state_dict: key -> tensor
PermutationAxes = dict  # state key -> the permutation group of each axis (None: not permuted)


@dataclass(frozen=True)
class WeightSpaceFunction:
    name: str
    signature: tuple  # of compiler.ops.base.Arg; arguments of kind `block` are models
    compute: Callable[[dict, dict, PermutationAxes | None], State]  # (model states, other arguments, axes)
    doc: str
    permutes: bool = False  # needs the permutation groups of its models' hidden units
    check: Callable[[dict], str | None] | None = None

    def describe(self) -> str:
        return f"{self.name}({', '.join(str(a) for a in self.signature)})"


_REGISTRY: dict[str, WeightSpaceFunction] = {}


def register_weight_space_function(name: str, signature: str, compute, doc: str, permutes: bool = False, check=None) -> WeightSpaceFunction:
    """Adds a function usable as `model m = name(...)`; `compute` imports torch itself."""
    assert name not in _REGISTRY, f"weight-space function {name} registered twice"
    definition = WeightSpaceFunction(name, parse_signature(signature), compute, doc, permutes, check)
    _REGISTRY[name] = definition
    return definition


def get_weight_space_function(name: str) -> WeightSpaceFunction | None:
    return _REGISTRY.get(name)


def all_weight_space_functions() -> dict:
    return dict(_REGISTRY)


# ---- interpolation ----


def interpolate_states(a: State, b: State, t: float) -> State:
    """(1 - t) a + t b for every floating-point tensor; integer buffers (counters) are a's."""
    import torch

    return {key: torch.lerp(a[key], b[key], t) if a[key].is_floating_point() else a[key].clone() for key in a}


register_weight_space_function(
    "interpolate",
    "a: block, b: block, t: float",
    lambda states, args, axes: interpolate_states(states["a"], states["b"], args["t"]),
    "the model with weights (1 - t) a + t b (linear mode connectivity)",
)

# ---- weight matching ----


def permute_state(state: State, axes: PermutationAxes, permutations: dict, skip: tuple | None = None) -> State:
    """`state` with each permuted axis reordered (new unit i = old unit permutations[group][i]);
    `skip` = (key, axis) leaves that one axis as it is."""
    out = dict(state)
    for key, groups in axes.items():
        tensor = state[key]
        for axis, group in enumerate(groups):
            if group is not None and (key, axis) != skip:
                tensor = tensor.index_select(axis, permutations[group])
        out[key] = tensor
    return out


def group_sizes(state: State, axes: PermutationAxes) -> dict:
    return {group: state[key].shape[axis] for key, groups in axes.items() for axis, group in enumerate(groups) if group is not None}


def match_permutations(reference: State, other: State, axes: PermutationAxes, max_iter: int = 100, seed: int = 0) -> dict:
    """Weight matching (Ainsworth et al. 2023, Algorithm 1): permutations of `other`'s hidden units
    that maximise sum_l <W_l^reference, P_l W_l^other P_(l-1)^T> over all its weights, by
    coordinate descent: each group in turn, in a random order per sweep, is a linear assignment
    problem with the others fixed, until a sweep changes none of them."""
    import numpy as np
    import torch
    from scipy.optimize import linear_sum_assignment

    sizes = group_sizes(other, axes)
    permutations = {group: torch.arange(size) for group, size in sizes.items()}
    order = np.random.default_rng(seed)
    for _ in range(max_iter):
        improved = False
        for group in order.permutation(sorted(sizes)):
            cost = _similarity(reference, other, axes, permutations, str(group)).numpy()
            _, columns = linear_sum_assignment(cost, maximize=True)
            current = permutations[str(group)].numpy()
            rows = np.arange(len(columns))
            # Ties between equally good assignments must not count as progress, or the sweep cycles.
            if cost[rows, columns].sum() > cost[rows, current].sum() + 1e-12:
                permutations[str(group)] = torch.as_tensor(columns)
                improved = True
        if not improved:
            break
    return permutations


def _similarity(reference: State, other: State, axes: PermutationAxes, permutations: dict, group: str):
    """C[i, j] = sum over the weights indexed by `group` of <reference unit i, other unit j>,
    with every other group's permutation already applied to `other`."""
    import torch

    size = group_sizes(other, axes)[group]
    cost = torch.zeros(size, size, dtype=torch.float64)
    for key, groups in axes.items():
        for axis, owner in enumerate(groups):
            if owner != group:
                continue
            permuted = permute_state({key: other[key]}, {key: groups}, permutations, skip=(key, axis))[key]
            a = reference[key].movedim(axis, 0).reshape(size, -1).double()
            b = permuted.movedim(axis, 0).reshape(size, -1).double()
            cost += a @ b.T
    return cost


def weight_matching(states: dict, args: dict, axes: PermutationAxes) -> State:
    permutations = match_permutations(states["to"], states["model"], axes, args["max_iter"], args["seed"])
    return permute_state(states["model"], axes, permutations)


def _check_weight_matching(args: dict) -> str | None:
    if args["max_iter"] < 1:
        return f"`max_iter` of weight_matching must be at least 1, got {args['max_iter']}"
    return None


register_weight_space_function(
    "weight_matching",
    "model: block, to: block, max_iter: int = 100, seed: int = 0",
    weight_matching,
    "`model` with its hidden units permuted to match `to` (Git Re-Basin weight matching): the same function, aligned weights",
    permutes=True,
    check=_check_weight_matching,
)


def compute_weight_space_models(module, weight_space: dict) -> None:
    """Fills each weight-space model of a procedure's module from the (already loaded) models it
    reads, in declaration order, so one may read another; they are frozen."""
    import torch

    with torch.no_grad():
        for name, model in weight_space.items():
            states = {argument: getattr(module, source).state_dict() for argument, source in model.sources.items()}
            target = getattr(module, name)
            target.load_state_dict(get_weight_space_function(model.function).compute(states, model.args, model.axes))
            target.requires_grad_(False)
            target.eval()
