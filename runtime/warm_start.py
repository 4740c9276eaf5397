"""Warm-started models at run time: copy the values a trained model has under the same names."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file


def warm_start_models(trainer) -> None:
    """Loads each warm-started model of the trainer's procedure from its source's final weights."""
    from paperspec.runtime.train import TrainingError

    for name, (procedure, model) in trainer.procedure.warm_starts.items():
        folder = trainer.final_checkpoint(procedure, f"starts `{name}` from the trained `{procedure}.{model}`")
        problem = copy_matching(trainer.models[name], Path(folder) / f"{model}.safetensors")
        if problem:
            raise TrainingError(f"`{trainer.procedure.name}` cannot start `{name}` from `{procedure}.{model}`: {problem}")


@torch.no_grad()
def copy_matching(target: torch.nn.Module, path: Path) -> str | None:
    """Copies the tensors of the file at `path` into the same-named ones of `target`; says why not
    when a shape differs or no name is shared (nothing is copied then)."""
    source = load_file(path)
    state = target.state_dict()
    shared = sorted(set(source) & set(state))
    if not shared:
        return f"they share no parameter name (it has {', '.join(sorted(source)[:6])}, ...)"
    mismatched = [f"`{key}` {list(source[key].shape)} vs {list(state[key].shape)}" for key in shared if source[key].shape != state[key].shape]
    if mismatched:
        return "shapes differ: " + "; ".join(mismatched)
    for key in shared:
        state[key].copy_(source[key])
    return None
