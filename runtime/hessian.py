"""Curvature of a loss in one parameter tensor: Hessian-vector products and the top eigenvalue."""

from __future__ import annotations

import torch


def hessian_vector_product(gradient: torch.Tensor, parameter: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """H v for the Hessian of the loss in `parameter`, from the loss's gradient built with
    `create_graph=True`: the gradient of g . v (double backward), keeping the graph for more."""
    (product,) = torch.autograd.grad(gradient, parameter, grad_outputs=vector, retain_graph=True)
    return product


def top_eigenvalue(gradient: torch.Tensor, parameter: torch.Tensor, iterations: int = 50, tol: float = 1e-4,
                   generator: torch.Generator | None = None) -> float:
    """The Hessian's eigenvalue of largest magnitude by power iteration (as HAWQ does): v <- H v / |H v|
    from a random unit v, the Rayleigh quotient v . H v as the estimate; stops after `iterations`
    or when the estimate moves by less than `tol` relative to it. A gradient that does not depend
    on the parameter (a loss linear in it, or one that does not use it) has a zero Hessian."""
    if not gradient.requires_grad:
        return 0.0
    vector = torch.randn(parameter.shape, generator=generator).to(parameter)
    vector = vector / vector.norm()
    estimate = 0.0
    for _ in range(iterations):
        product = hessian_vector_product(gradient, parameter, vector)
        previous, estimate = estimate, float((product * vector).sum())
        norm = product.norm()
        if norm == 0:
            return 0.0
        vector = product / norm
        if abs(estimate - previous) <= tol * abs(estimate):
            break
    return estimate
