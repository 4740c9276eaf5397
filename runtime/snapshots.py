"""Snapshot models at run time: frozen copies of a trained model, refreshed every N steps."""

from __future__ import annotations

import torch


def start_snapshots(snapshots: dict, models: dict) -> None:
    """Each snapshot starts as its model's initial weights and never trains."""
    for name, (source, _) in snapshots.items():
        models[name].load_state_dict(models[source].state_dict())
        models[name].requires_grad_(False)


@torch.no_grad()
def refresh_snapshots(snapshots: dict, models: dict, step: int) -> None:
    """Copies the model into each snapshot whose interval ends at `step`."""
    for name, (source, every) in snapshots.items():
        if step % every == 0:
            models[name].load_state_dict(models[source].state_dict())
