"""Distributed training: torchrun launch, process groups (gloo on CPU, NCCL on GPU), batch shards."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def current_world() -> World:
    """This process's place in a torchrun launch (a world of one when not launched that way)."""
    return World(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0)))


def start(world: World, device: str) -> str:
    """Joins the process group; returns the device this rank trains on."""
    import torch
    import torch.distributed as dist

    cuda = device.startswith("cuda")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    if cuda:
        torch.cuda.set_device(world.local_rank)
        return f"cuda:{world.local_rank}"
    return device


def finish() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def shard(batch: dict, world: World) -> dict:
    """This rank's equal slice of a global batch that every rank drew alike, so N processes see
    exactly the examples one process would."""
    if not world.distributed:
        return batch
    out = {}
    for name, value in batch.items():
        size = value.shape[0]
        if size % world.size:
            raise ValueError(f"batch {size} does not split evenly over {world.size} processes")
        part = size // world.size
        out[name] = value[world.rank * part : (world.rank + 1) * part]
    return out


def launch(arguments: list, processes: int) -> int:
    """Runs `paperspec <arguments>` in `processes` workers through torchrun; returns its exit code."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
        "-m", "paperspec.runtime.cli", *arguments,
    ]
    return subprocess.call(command)
