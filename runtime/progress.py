"""The `progress` input of losses and metrics (compiler/progress.py): s / N after s of N steps."""

from __future__ import annotations

import torch

from paperspec.compiler.progress import PROGRESS


def progress_tensor(step: int, total: int, device) -> torch.Tensor:
    """step / total as an f32 scalar; 1 for a procedure that does not train."""
    return torch.tensor(step / total if total else 1.0, dtype=torch.float32, device=device)


def add_progress(batch: dict, fields: list, step: int, total: int, device) -> dict:
    """The training batch of the `step`-th step, with `progress` when the loss reads it."""
    if PROGRESS in fields and PROGRESS not in batch:
        batch[PROGRESS] = progress_tensor(step, total, device)
    return batch


def evaluation_arguments(batch: dict, fields: list, device) -> list:
    """A metric graph's inputs from one evaluation batch; `progress`, known only when the
    evaluation runs, is left as None for `fill_progress`."""
    return [None if field == PROGRESS and field not in batch else batch[field].to(device) for field in fields]


def fill_progress(arguments: list, step: int, total: int, device) -> list:
    if all(argument is not None for argument in arguments):
        return arguments
    value = progress_tensor(step, total, device)
    return [value if argument is None else argument for argument in arguments]
