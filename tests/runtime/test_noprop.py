"""specs/noprop.pspec: per-block losses that train each block alone, q's latents, and the DT sampler."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import paperspec

SPEC = str(Path(__file__).resolve().parents[2] / "specs" / "noprop.pspec")
BLOCKS, CLASSES = 3, 10  # the quick run's procedure: 3 blocks


@pytest.fixture(scope="module")
def spec():
    return paperspec.load(SPEC, quick=True)


def digits_like(batch: int = 16) -> tuple:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(batch, 64, generator=generator), torch.randint(0, CLASSES, (batch,), generator=generator)


def cosine_abar(blocks: int) -> torch.Tensor:
    """abar_t, t = 0..T, written from the schedule's definition (f64)."""
    t = torch.arange(blocks + 1, dtype=torch.float64)
    return torch.cos(math.pi / 2 * (1 - t / blocks + 0.008) / 1.008) ** 2


def gradients(module: torch.nn.Module) -> list:
    return [p.grad for p in module.parameters()]


def touched(module: torch.nn.Module) -> bool:
    return any(g is not None and g.any() for g in gradients(module))


@pytest.mark.parametrize("trained", range(BLOCKS))
def test_no_gradient_crosses_blocks(spec, trained):
    """Block t's denoising loss alone reaches block t's weights and no other block's or the head's
    (they see exact zeros at most: the mask that writes each block's guess into its row)."""
    net = spec.build("NoProp", blocks=BLOCKS, width=8)
    x, y = digits_like()
    latents, noise = torch.randn(len(y), BLOCKS + 1, CLASSES), torch.randn(len(y), BLOCKS + 1, CLASSES)
    denoised, _, _ = net(x, latents, noise)
    ((denoised[:, trained] - F.one_hot(y, CLASSES)) ** 2).sum(-1).mean().backward()
    for index, block in enumerate(net.blocks):
        if index == trained:
            assert all(g is not None and g.abs().sum() > 0 for g in gradients(block))
        else:
            assert not touched(block), f"block {index} got a gradient from block {trained}'s loss"
    assert not touched(net.head)


def test_head_loss_trains_the_head_alone(spec):
    net = spec.build("NoProp", blocks=BLOCKS, width=8)
    x, y = digits_like()
    _, head_logits, _ = net(x, torch.randn(len(y), BLOCKS + 1, CLASSES), torch.randn(len(y), BLOCKS + 1, CLASSES))
    F.cross_entropy(head_logits, y).backward()
    assert touched(net.head) and not any(touched(block) for block in net.blocks)


def test_summed_loss_trains_each_block_on_its_own_loss(spec):
    """The procedure's loss sums the blocks' weighted losses and the head's; each block's gradient
    equals that of its own loss alone, with the paper's weight (T / 2) eta (SNR(t) - SNR(t-1))
    and latents z_(t-1) = sqrt(abar) u_y + sqrt(1 - abar) eps from q, rebuilt here by hand."""
    procedure = spec.build_procedure("noprop")
    x, y = digits_like()
    torch.manual_seed(3)
    procedure.loss_0(y, x)["loss"].backward()
    summed = [[g.clone() for g in gradients(block)] for block in procedure.net.blocks]
    torch.manual_seed(3)  # the same draws: the latents' noise, then the sampler's
    # The schedule in f32 as the procedure computes it: 1 - abar_T ~ 1.5e-4 keeps only ~3 digits.
    abar = procedure.abar(torch.arange(BLOCKS + 1, dtype=torch.float32))
    target = F.one_hot(y, CLASSES).float()
    latents = abar.sqrt()[:, None] * target[:, None] + (1 - abar).sqrt()[:, None] * torch.randn(len(y), BLOCKS + 1, CLASSES)
    snr = abar / (1 - abar)
    eta = 0.1
    for index, block in enumerate(procedure.net.blocks):
        procedure.net.zero_grad(set_to_none=True)
        guess = block(x, latents[:, index])
        own = BLOCKS / 2 * eta * (snr[index + 1] - snr[index]) * ((guess - target) ** 2).sum(-1).mean()
        own.backward()
        for got, expected in zip(summed[index], gradients(block)):
            torch.testing.assert_close(got, expected)


def posterior_step(abar: torch.Tensor, t: int) -> tuple:
    """(a_t, b_t, c_t) of q(z_t | z_(t-1), y) = N(a_t u_y + b_t z_(t-1), c_t I), by conditioning the
    joint Gaussian of (z_t, z_(t-1)) given y, where z_(t-1) = sqrt(alpha) z_t + sqrt(1 - alpha) eps."""
    alpha = abar[t - 1] / abar[t]
    variance_t, variance_previous = 1 - abar[t], 1 - abar[t - 1]
    covariance = alpha.sqrt() * variance_t
    b = covariance / variance_previous
    a = abar[t].sqrt() - b * abar[t - 1].sqrt()  # the mean's u_y part once b z_(t-1) is taken out
    return a, b, variance_t - covariance * b


def test_sampler_runs_the_blocks_in_turn_by_the_dt_update(spec):
    """`logits` against a loop: z_0 = noise[:, 0], z_t = a_t u_hat_t(x, z_(t-1)) + b_t z_(t-1) +
    sqrt(c_t) noise[:, t], the head on z_T."""
    torch.manual_seed(0)
    net = spec.build("NoProp", blocks=BLOCKS, width=8)
    x, _ = digits_like()
    noise = torch.randn(len(x), BLOCKS + 1, CLASSES)
    with torch.no_grad():
        _, _, logits = net(x, torch.zeros(len(x), BLOCKS + 1, CLASSES), noise)
        abar, z = cosine_abar(BLOCKS), noise[:, 0]
        for t, block in enumerate(net.blocks, start=1):
            a, b, c = (float(value) for value in posterior_step(abar, t))
            z = a * block(x, z) + b * z + math.sqrt(c) * noise[:, t]
        torch.testing.assert_close(logits, net.head(z), rtol=1e-5, atol=1e-5)


def test_cosine_schedule_runs_from_noise_to_the_label(spec):
    schedule = spec.build("NoProp", blocks=10, width=8).abar
    abar = schedule(torch.arange(11, dtype=torch.float32)).double()
    torch.testing.assert_close(abar, cosine_abar(10), rtol=1e-5, atol=1e-6)
    assert abar[0] < 1e-12 and abs(abar[-1] - 0.99985) < 1e-4
    assert (abar[1:] > abar[:-1]).all()


def test_training_latents_follow_q(spec):
    """The latent the procedure gives block t has mean sqrt(abar_(t-1)) u_y and variance
    1 - abar_(t-1), as q says; recorded at each block's first call in the model (its training
    input; the second is the sampler's)."""
    procedure = spec.build_procedure("noprop")
    seen = {}
    for index, block in enumerate(procedure.net.blocks):
        block.register_forward_hook(lambda _, inputs, __, index=index: seen.setdefault(index, inputs[1].detach()))
    x, _ = digits_like(batch=4000)
    y = torch.zeros(4000, dtype=torch.int64)  # label 0: u_y = e_0
    torch.manual_seed(0)
    with torch.no_grad():
        procedure.loss_0(y, x)
    abar = cosine_abar(BLOCKS).float()
    for t in range(BLOCKS):
        mean, variance = seen[t].mean(0), seen[t].var(0)
        expected_mean = torch.zeros(CLASSES)
        expected_mean[0] = abar[t].sqrt()
        torch.testing.assert_close(mean, expected_mean, rtol=0, atol=0.06)
        torch.testing.assert_close(variance, torch.full((CLASSES,), 1 - abar[t].item()), rtol=0.1, atol=0.01)
