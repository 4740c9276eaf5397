"""Bit widths of `mixed_precision` models, set before they train (at their warm-started weights): HAWQ's
Hessian-aware allocation (Dong et al. 2019) or the same width everywhere."""

from __future__ import annotations

import json

import torch

from paperspec.runtime.data import get_generator
from paperspec.runtime.hessian import top_eigenvalue

HESSIAN_SEED = 2_654_435  # the batches and start vectors of the power iteration, apart from training's streams


class MixedPrecisionError(ValueError):
    """The quantised model does not fit the construct; the trainer names the procedure."""


def quantised_layers(model: torch.nn.Module) -> list:
    """(path, module) of each layer with a `bits` buffer and a `weight`: the quant_linear layers."""
    return [(path, m) for path, m in model.named_modules() if isinstance(getattr(m, "bits", None), torch.Tensor) and hasattr(m, "weight")]


def allocate_bits(sensitivities: list, sizes: list, average_bits: float, choices: tuple) -> list:
    """HAWQ's rule: more bits for more sensitive layers. Every layer starts at the smallest choice;
    then, from the most sensitive layer to the least, each is raised to the largest choice the
    budget still allows, the budget being a parameter-weighted mean of at most `average_bits`
    (the model's size in bits, as uniform `average_bits` would have it)."""
    choices = sorted(choices)
    bits = [choices[0]] * len(sizes)
    spare = average_bits * sum(sizes) - choices[0] * sum(sizes)
    for layer in sorted(range(len(sizes)), key=lambda i: -sensitivities[i]):
        affordable = [b for b in choices if (b - choices[0]) * sizes[layer] <= spare + 1e-9]
        bits[layer] = affordable[-1]
        spare -= (bits[layer] - choices[0]) * sizes[layer]
    return bits


def prepare_mixed_precision(trainer) -> None:
    """Sets the layers' widths of each mixed-precision model; writes `<model>_bits.json` (layers,
    sizes, eigenvalues, widths) into the run folder."""
    for name, spec in trainer.procedure.mixed_precision.items():
        model = trainer.models[name]
        try:
            record = _prepare(trainer, model, spec)
        except MixedPrecisionError as error:
            from paperspec.runtime.train import TrainingError

            raise TrainingError(f"`model {name} = mixed_precision(...)` in `{trainer.procedure.name}`: {error}") from None
        if trainer.run_dir is not None:
            (trainer.run_dir / f"{name}_bits.json").write_text(json.dumps(record, indent=2) + "\n")


def _prepare(trainer, model: torch.nn.Module, spec) -> dict:
    layers = quantised_layers(model)
    if not layers:
        raise MixedPrecisionError("the model has no quant_linear layer whose bits could be set")
    sizes = [layer.weight.numel() for _, layer in layers]
    eigenvalues = None
    if spec.allocation == "uniform":
        bits = [int(spec.average_bits)] * len(layers)
    else:
        eigenvalues = layer_eigenvalues(trainer, layers, spec)
        bits = allocate_bits([e / n for e, n in zip(eigenvalues, sizes)], sizes, spec.average_bits, spec.choices)
    for (_, layer), width in zip(layers, bits):
        layer.bits.fill_(width)
    return {
        "layers": [path for path, _ in layers],
        "sizes": sizes,
        "eigenvalues": eigenvalues,
        "bits": bits,
        "average_bits": sum(b * n for b, n in zip(bits, sizes)) / sum(sizes),
    }


def layer_eigenvalues(trainer, layers: list, spec) -> list:
    """The top Hessian eigenvalue of the first phase's loss in each layer's weight, at the model's
    weights in full precision (every width 0 meanwhile), on `spec.batches` batches of its data."""
    phase = trainer.procedure.phases[0]
    if phase.update is not None:
        raise MixedPrecisionError("a Hessian-aware allocation needs a loss, and the first phase trains by an update rule")
    generator = torch.Generator().manual_seed(HESSIAN_SEED + trainer.procedure.seed)
    sampler = get_generator(phase.data.generator).sampler(phase.data.args)
    fields = [field.name for field in phase.loss.inputs]
    widths = [layer.bits.clone() for _, layer in layers]
    for _, layer in layers:
        layer.bits.zero_()
    trainer.module.eval()
    try:
        batches = [sampler.sample(phase.batch, generator) for _ in range(spec.batches)]
        loss = sum(trainer.module(phase.loss.name, *(b[f].to(trainer.device) for f in fields))["loss"] for b in batches) / len(batches)
        weights = [layer.weight for _, layer in layers]
        gradients = torch.autograd.grad(loss, weights, create_graph=True, materialize_grads=True)
        return [top_eigenvalue(g, w, spec.iterations, generator=generator) for g, w in zip(gradients, weights)]
    finally:
        for (_, layer), width in zip(layers, widths):
            layer.bits.copy_(width)
        trainer.module.train()
