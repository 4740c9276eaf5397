"""Steady-state PDE data: 2-D Darcy flow with random two-phase coefficients (the FNO benchmark)."""

from __future__ import annotations

import numpy as np

from paperspec.runtime.data.base import (
    Field,
    TensorSampler,
    as_tensors,
    register_generator,
    seed_problem,
    split_problem,
    task_rng,
)

HIGH, LOW = 12.0, 3.0  # the two permeabilities of Li et al. 2021's Darcy data
# The field thresholded into a: a Gaussian random field with covariance (-Laplacian + TAU^2)^(-ALPHA)
# and Neumann boundary conditions, as in Li et al. 2021 (only its sign matters, not its scale).
TAU, ALPHA = 3.0, 2.0
MAX_RESOLUTION = 64  # the solve costs O(resolution^4) per sample: about 0.02 s at 64


def gaussian_random_field(count: int, resolution: int, rng: np.random.Generator) -> np.ndarray:
    """`count` fields on the nodes of a resolution x resolution grid over the unit square: a cosine
    series (Neumann) with coefficients (pi^2 |k|^2 + TAU^2)^(-ALPHA / 2) times N(0, 1), mean zero."""
    frequencies = np.arange(resolution)
    nodes = np.linspace(0.0, 1.0, resolution)
    cosines = np.cos(np.pi * np.outer(nodes, frequencies))
    k1, k2 = np.meshgrid(frequencies, frequencies, indexing="ij")
    amplitudes = (np.pi**2 * (k1**2 + k2**2) + TAU**2) ** (-ALPHA / 2)
    amplitudes[0, 0] = 0.0
    coefficients = amplitudes * rng.standard_normal((count, resolution, resolution))
    return cosines @ coefficients @ cosines.T


def two_phase_coefficient(field: np.ndarray) -> np.ndarray:
    return np.where(field >= 0.0, HIGH, LOW)


def face_conductances(a: np.ndarray) -> tuple:
    """Harmonic means of a across the faces between neighbouring nodes: along dim 0 ([s - 1, s]) and
    along dim 1 ([s, s - 1]). The harmonic mean is the conductance of two cells in series, which
    keeps the flux right across a jump of a piecewise-constant coefficient."""
    return (
        2 * a[1:] * a[:-1] / (a[1:] + a[:-1]),
        2 * a[:, 1:] * a[:, :-1] / (a[:, 1:] + a[:, :-1]),
    )


def row_blocks(a: np.ndarray) -> tuple:
    """The 5-point matrix of -div(a grad u), times h^2, on the interior nodes with u = 0 on the
    boundary, as a block-tridiagonal matrix with one block per grid row: the diagonal blocks
    ([n, n, n]: sum_Q k_PQ on the diagonal, -k_PQ between neighbours in a row) and the couplings
    between rows i and i + 1 ([n - 1, n]; the off-diagonal blocks are -diag of them)."""
    across_rows, across_columns = face_conductances(a)
    up, down = across_rows[:-1, 1:-1], across_rows[1:, 1:-1]
    left, right = across_columns[1:-1, :-1], across_columns[1:-1, 1:]
    interior = a.shape[0] - 2
    blocks = np.zeros((interior, interior, interior))
    column = np.arange(interior)
    blocks[:, column, column] = up + down + left + right
    blocks[:, column[:-1], column[1:]] = -right[:, :-1]
    blocks[:, column[1:], column[:-1]] = -right[:, :-1]
    return blocks, down[:-1]


def solve_block_tridiagonal(blocks: np.ndarray, couplings: np.ndarray, right_side: np.ndarray) -> np.ndarray:
    """Block Gaussian elimination (the block Thomas algorithm), row of blocks by row: O(n^4) for n
    blocks of n x n, where one dense solve of the n^2 unknowns is O(n^6) and, through a threaded
    BLAS on a busy machine, much slower than these small inverses."""
    inverses, eliminated = [], []
    for row in range(len(blocks)):
        pivot, rhs = blocks[row], right_side[row]
        if row:
            coupling = couplings[row - 1]
            pivot = pivot - coupling[:, None] * inverses[-1] * coupling[None, :]
            rhs = rhs + coupling * (inverses[-1] @ eliminated[-1])
        inverses.append(np.linalg.inv(pivot))
        eliminated.append(rhs)
    solution = [inverses[-1] @ eliminated[-1]]
    for row in range(len(blocks) - 2, -1, -1):
        solution.append(inverses[row] @ (eliminated[row] + couplings[row] * solution[-1]))
    return np.stack(solution[::-1])


def solve_darcy(a: np.ndarray, forcing: float = 1.0) -> np.ndarray:
    """u on the grid of a ([s, s], nodes at i / (s - 1)) with -div(a grad u) = forcing inside and u = 0
    on the boundary, by the 5-point finite-difference scheme with harmonic face means."""
    h = 1.0 / (a.shape[0] - 1)
    blocks, couplings = row_blocks(a)
    u = np.zeros_like(a, dtype=np.float64)
    u[1:-1, 1:-1] = solve_block_tridiagonal(blocks, couplings, np.full(blocks.shape[:2], forcing * h * h))
    return u


def darcy_split(args: dict) -> dict:
    """The split's coefficients and solutions; train and test come from separate streams of `seed`."""
    rng = task_rng(args["seed"], f"darcy/{args['split']}")
    a = two_phase_coefficient(gaussian_random_field(args["samples"], args["resolution"], rng))
    return {"a": a, "u": np.stack([solve_darcy(sample) for sample in a])}


def _fields(args: dict) -> dict:
    grid = (args["resolution"], args["resolution"])
    return {"a": Field("f32", grid), "u": Field("f32", grid)}


def _sampler(args: dict) -> TensorSampler:
    return TensorSampler(as_tensors(darcy_split(args), _fields(args)))


def _validate(args: dict) -> str | None:
    if not 3 <= args["resolution"] <= MAX_RESOLUTION:
        return (
            f"darcy needs 3 <= resolution <= {MAX_RESOLUTION} (the solve costs O(resolution^4) per sample), "
            f"got {args['resolution']}"
        )
    if args["samples"] < 1:
        return f"darcy needs samples >= 1, got {args['samples']}"
    problem = split_problem(args)
    if problem:
        return problem
    return seed_problem(args)


register_generator(
    "darcy",
    "resolution: int = 16, samples: int = 256, split: str = 'train', seed: int = 0",
    _fields,
    _sampler,
    "2-D Darcy flow, the steady-state benchmark of Fourier neural operators (Li et al. 2021): "
    "-div(a grad u) = 1 on the unit square with u = 0 on the boundary, on a grid of "
    "resolution x resolution nodes (spacing 1 / (resolution - 1)). a is 12 where a Gaussian "
    "random field (covariance (-Laplacian + 9)^-2, Neumann) is >= 0 and 3 elsewhere; u solves "
    "the 5-point finite-difference scheme with harmonic means of a on the faces (block Gaussian "
    "elimination, one solve per sample). Fields: a and "
    "u, f32[resolution, resolution]. A finite dataset of `samples` examples; 'train' and "
    "'test' splits are drawn from separate streams of `seed`.",
    validate=_validate,
)
