"""Training-loop overhead: the Trainer running a spec's procedure against a hand-written PyTorch loop.

Run: .venv/bin/python bench/train_overhead.py [--repeats N] [--no-write]
Writes the `train_overhead` section of BENCHMARKS.md.

Both loops train the same MLP (40 -> 256 -> 256 -> 2) on the same sparse-parity stream with
AdamW, batch 64. The per-step cost is the slope between a short and a long run, so fixed
costs (building the module, the final evaluation and checkpoint) do not count against either.
Times are this process's CPU time (torch on one thread), so other jobs sharing the machine
slow both loops less than they would wall-clock time.
"""

from __future__ import annotations

import argparse
import tempfile
import textwrap
import time

import torch
import torch.nn.functional as F
from report import machine_lines, median, table, write_section
from torch import nn

import paperspec
from paperspec.runtime.data import get_generator
from paperspec.runtime.train import Trainer

TARGET_OVERHEAD = 0.05
SHORT, LONG = 100, 500
SPEC = textwrap.dedent(
    """
    model MLP(inputs: int = 40, width: int = 256, classes: int = 2) {
      in x: f32[B, inputs]
      h = relu(linear(x, width))
      h = relu(linear(h, width))
      out linear(h, classes)
    }
    data parity = sparse_parity(n = 40, k = 3, seed = 0)
    train fit {
      model net = MLP()
      data parity
      batch 64
      loss cross_entropy(net(batch.x), batch.y)
      optimizer adamw(lr = 1e-3, weight_decay = 0.01)
      steps STEPS
    }
    """
)


def trainer_seconds(steps: int, folder: str) -> float:
    spec = paperspec.loads(SPEC.replace("STEPS", str(steps)), f"{folder}/bench.pspec")
    trainer = Trainer(spec, out_root=folder, progress=False)
    start = time.process_time()
    trainer.run()
    return time.process_time() - start


def hand_seconds(steps: int) -> float:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(40, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 2))
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}], lr=1e-3)
    sampler = get_generator("sparse_parity").sampler({"n": 40, "k": 3, "seed": 0})
    generator = torch.Generator().manual_seed(0)
    start = time.process_time()
    for _ in range(steps):
        batch = sampler.sample(64, generator)
        loss = F.cross_entropy(model(batch["x"]), batch["y"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()
    return time.process_time() - start


def measure(repeats: int) -> dict:
    slopes = {"trainer": [], "hand": []}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(repeats):
            # Interleaved so that changes in machine load hit both loops alike.
            slopes["hand"].append((hand_seconds(LONG) - hand_seconds(SHORT)) / (LONG - SHORT))
            slopes["trainer"].append((trainer_seconds(LONG, folder) - trainer_seconds(SHORT, folder)) / (LONG - SHORT))
    return {name: median(values) for name, values in slopes.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    per_step = measure(args.repeats)
    overhead = per_step["trainer"] / per_step["hand"] - 1
    rows = [
        ["hand-written loop", f"{per_step['hand'] * 1e3:.3f}", f"{1 / per_step['hand']:.0f}"],
        ["paperspec Trainer", f"{per_step['trainer'] * 1e3:.3f}", f"{1 / per_step['trainer']:.0f}"],
    ]
    met = "met" if overhead <= TARGET_OVERHEAD else "NOT met"
    body = "\n".join(
        [
            "## Training-loop overhead (bench/train_overhead.py)",
            "",
            *machine_lines({"threads": "1"}),
            "",
            f"MLP 40-256-256-2 on sparse parity, AdamW, batch 64; per-step CPU time (one thread) = slope between {SHORT} and {LONG} steps, median of {args.repeats} interleaved repeats.",
            "",
            table(["loop", "ms per step", "steps/s"], rows),
            "",
            f"Overhead of the Trainer: {overhead * 100:+.1f}%, {(per_step['trainer'] - per_step['hand']) * 1e6:.0f} µs per step "
            f"(target <= {TARGET_OVERHEAD * 100:.0f}%: {met}).",
        ]
    )
    print(body)
    if not args.no_write:
        write_section("train_overhead", body)


if __name__ == "__main__":
    main()
