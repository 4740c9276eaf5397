"""Relaxation of an energy-based network's state: shared by the `equilibrium` op (the generated
PyTorch embeds this function's source) and the `equilibrium_propagation` update rule."""


def relax(energy, s, x, target, beta: float, steps: int, step_size: float):
    """`steps` of projected gradient descent of the state s (kept in [0, 1]) on
    sum(energy(s, x)) + beta * 0.5 * ||s[:, -C:] - target||^2, C = target's width: the free phase
    without a target, the nudged phase with one. Returns the state, cut off from the graph."""
    import torch

    s = s.detach()
    with torch.enable_grad():
        for _ in range(steps):
            s = s.requires_grad_()
            total = energy(s, x).sum()
            if target is not None and beta != 0.0:
                total = total + beta * 0.5 * ((s[:, -target.shape[-1]:] - target) ** 2).sum()
            (slope,) = torch.autograd.grad(total, s)
            s = (s - step_size * slope).clamp(0.0, 1.0).detach()
    return s
