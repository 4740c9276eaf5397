"""Linear-scan benchmark: the generated chunked `linear_scan` against a step-by-step loop, forward + backward on CPU.

Run: .venv/bin/python bench/linear_scan.py [--pairs N] [--threads T] [--no-write]
Writes the `linear_scan` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import gc
import time

import torch
from report import load_average, machine_lines, median, ms, table, verdict, write_section

import paperspec

LENGTHS = (256, 1024, 4096)
BATCH, WIDTH = 8, 64
TARGET_LENGTH, TARGET_SPEEDUP = 1024, 5.0

SPEC = f"""
model Scan() {{
  in a: f32[B, T, {WIDTH}]
  in u: f32[B, T, {WIDTH}]
  out h = linear_scan(a, u)
}}
"""


def step_by_step(a: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The recurrence as one would first write it: one multiply-add per time step."""
    h, states = torch.zeros_like(u[:, 0]), []
    for a_t, u_t in zip(a.unbind(1), u.unbind(1), strict=True):
        h = a_t * h + u_t
        states.append(h)
    return torch.stack(states, 1)


def make_inputs(length: int) -> tuple:
    """Gates in [-1, 1] (the negative-eigenvalue range), inputs, and the gradient that reaches the output."""
    generator = torch.Generator().manual_seed(length)
    a = torch.rand(BATCH, length, WIDTH, generator=generator) * 2 - 1
    u = torch.randn(BATCH, length, WIDTH, generator=generator)
    return a, u, torch.randn(BATCH, length, WIDTH, generator=generator)


def forward_backward(function, a: torch.Tensor, u: torch.Tensor, upstream: torch.Tensor) -> float:
    """Seconds for the forward pass and the backward pass of a dense gradient to a and u."""
    a, u = a.detach().requires_grad_(), u.detach().requires_grad_()
    start = time.perf_counter()
    function(a, u).backward(upstream)
    return time.perf_counter() - start


def measure(length: int, chunked, pairs: int) -> dict:
    """Interleaved pairs (loop, chunked) after a warm-up of each; the order within a pair alternates."""
    a, u, upstream = make_inputs(length)
    with torch.no_grad():
        error = (chunked(a, u) - step_by_step(a, u)).abs().max().item()
    functions = {"loop": step_by_step, "chunked": chunked}
    times: dict = {name: [] for name in functions}
    for function in functions.values():
        forward_backward(function, a, u, upstream)
    gc.disable()
    try:
        for index in range(pairs):
            order = list(functions) if index % 2 == 0 else list(reversed(functions))
            for name in order:
                times[name].append(forward_backward(functions[name], a, u, upstream))
    finally:
        gc.enable()
    ratios = [slow / fast for slow, fast in zip(times["loop"], times["chunked"], strict=True)]
    return {"loop": median(times["loop"]), "chunked": median(times["chunked"]), "paired": median(ratios), "error": error}


def section(results: dict, threads: int, pairs: int, started: float, load: float) -> str:
    rows = [
        [f"{length:,}", ms(r["loop"]), ms(r["chunked"]), f"{r['loop'] / r['chunked']:.1f}×", f"{r['paired']:.1f}×", f"{r['error']:.1e}"]
        for length, r in results.items()
    ]
    target = results[TARGET_LENGTH]
    met = target["loop"] / target["chunked"] >= TARGET_SPEEDUP
    return "\n".join([
        "## Linear scan (`bench/linear_scan.py`)",
        "",
        *machine_lines({"torch threads": threads, "load average (1 min) at start": f"{load:.2f}"}),
        f"- load average (1 min) at end: {load_average():.2f}; script wall time: {time.perf_counter() - started:.0f} s",
        "",
        f"`linear_scan(a, u)` (h_t = a_t * h_(t-1) + u_t) as the PyTorch backend generates it, against a "
        f"step-by-step loop (`h = a_t * h + u_t` per step, `unbind` and `stack`), on f32 [{BATCH}, T, {WIDTH}] "
        "tensors with gates uniform in [-1, 1]. Each time is a forward pass and the backward pass of a dense "
        f"random gradient of the output to a and u; medians of {pairs} interleaved pairs after one warm-up "
        "call of each, the order within a pair alternating, garbage collection paused. The generated scan runs "
        "chunks of 32 steps side by side, so it takes about 2 * 32 + T / 32 vectorised steps (the chunk "
        "ends are solved the same way when T / 32 > 32), and its backward pass is the adjoint scan, "
        "run backwards in time the same way; the loop takes T steps each way. On this CPU both are bound by "
        "per-op overhead and memory traffic rather than arithmetic. `max \\|diff\\|` is the largest forward difference between "
        "the two.",
        "",
        table([f"target: ≥ {TARGET_SPEEDUP:g}× faster than the loop at T = {TARGET_LENGTH:,}", "met"], [[
            f"{target['loop'] / target['chunked']:.1f}× (ratio of medians)", verdict(met)]]),
        "",
        table(["T", "loop (ms)", "chunked (ms)", "speed-up (ratio of medians)", "median of paired ratios", "max \\|diff\\|"], rows),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=21)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    parser.add_argument("--no-write", action="store_true", help="print the section instead of writing BENCHMARKS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started, load = time.perf_counter(), load_average()
    module = paperspec.loads(SPEC, "<linear_scan>").build("Scan")
    results = {length: measure(length, module, args.pairs) for length in LENGTHS}
    text = section(results, args.threads, args.pairs, started, load)
    print(text if args.no_write else f"wrote {write_section('linear_scan', text)}")


if __name__ == "__main__":
    main()
