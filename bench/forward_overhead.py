"""Run-time overhead benchmark: the compiled GPT against the same model written by hand, forward + backward on CPU.

Run: .venv/bin/python bench/forward_overhead.py [--seconds S] [--threads 1,2] [--no-write]
Writes the `forward_overhead` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import gc
import random
import time

import torch
import torch.nn.functional as F
from report import ROOT, load_average, machine_lines, median, table, verdict, write_section
from torch import nn

import paperspec

SPEC = ROOT / "specs" / "transformer.pspec"
TARGET_OVERHEAD = 0.03
WARMUP = 10
# (name, GPT parameters, batch, sequence length, counts against the target)
CONFIGS = [
    ("mid-size", dict(vocab=64, d=128, layers=4, heads=4, ctx=256), 8, 128, True),
    ("tiny (Python-bound)", dict(vocab=64, d=32, layers=2, heads=2, ctx=64), 1, 16, False),
]


# ---- the hand-written reference: nanoGPT's structure, the ops the spec names ----

class HandAttention(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)

    def forward(self, x):
        batch, length, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q = q.view(batch, length, self.heads, d // self.heads).transpose(1, 2)
        k = k.view(batch, length, self.heads, d // self.heads).transpose(1, 2)
        v = v.view(batch, length, self.heads, d // self.heads).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).contiguous().view(batch, length, d))


class HandMLP(nn.Module):
    def __init__(self, d: int, hidden: int, dropout: float):
        super().__init__()
        self.fc = nn.Linear(d, hidden, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(hidden, d, bias=False)

    def forward(self, x):
        return self.proj(self.dropout(F.gelu(self.fc(x))))


class HandBlock(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = HandAttention(d, heads)
        self.attn_dropout = nn.Dropout(dropout)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = HandMLP(d, 4 * d, 0.0)
        self.mlp_dropout = nn.Dropout(dropout)

    def forward(self, x):
        x = x + self.attn_dropout(self.attn(self.ln1(x)))
        return x + self.mlp_dropout(self.mlp(self.ln2(x)))


class HandGPT(nn.Module):
    def __init__(self, vocab: int, d: int, layers: int, heads: int, ctx: int, dropout: float = 0.0):
        super().__init__()
        self.ctx = ctx
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(ctx, d)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([HandBlock(d, heads, dropout) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.wte.weight

    def forward(self, tokens):
        length = tokens.shape[1]
        assert length <= self.ctx, f"sequence length {length} exceeds ctx {self.ctx}"
        x = self.dropout(self.wte(tokens) + self.wpe(torch.arange(length, device=tokens.device)))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def copy_weights(compiled: nn.Module, hand: nn.Module) -> None:
    """Loads the compiled model's state_dict into the hand-written one, entry by entry in order."""
    source, target = compiled.state_dict(), hand.state_dict()
    shapes_fit = len(source) == len(target) and all(
        value.shape == target[key].shape for (_, value), key in zip(source.items(), target, strict=True)
    )
    if not shapes_fit:
        raise SystemExit(
            "the compiled GPT no longer has the hand-written model's structure; update bench/forward_overhead.py\n"
            f"compiled: {[(k, tuple(v.shape)) for k, v in source.items()]}\n"
            f"hand-written: {[(k, tuple(v.shape)) for k, v in target.items()]}"
        )
    hand.load_state_dict({key: value for value, key in zip(source.values(), target, strict=True)})


def build_pair(params: dict, batch: int, length: int):
    torch.manual_seed(0)
    compiled = paperspec.load(str(SPEC)).build("GPT", **params)
    hand = HandGPT(**params)
    copy_weights(compiled, hand)
    tokens = torch.randint(0, params["vocab"], (batch, length))
    targets = torch.randint(0, params["vocab"], (batch, length))
    check_equal(compiled, hand, tokens, targets)
    return compiled, hand, tokens, targets


def check_equal(compiled: nn.Module, hand: nn.Module, tokens, targets) -> None:
    """Same outputs (1e-5) and the same gradients before anything is timed."""
    losses = []
    for model in (compiled, hand):
        model.zero_grad(set_to_none=True)
        logits = model(tokens)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        loss.backward()
        losses.append((logits.detach(), [p.grad for p in model.parameters()]))
    (logits_a, grads_a), (logits_b, grads_b) = losses
    torch.testing.assert_close(logits_a, logits_b, rtol=1e-5, atol=1e-5)
    assert len(grads_a) == len(grads_b)
    for grad_a, grad_b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(grad_a, grad_b, rtol=1e-4, atol=1e-5)


def training_step(model, tokens, targets) -> None:
    model.zero_grad(set_to_none=True)
    logits = model(tokens)
    F.cross_entropy(logits.flatten(0, 1), targets.flatten()).backward()


def inference_step(model, tokens, targets) -> None:
    with torch.inference_mode():
        model(tokens)


def interleaved(step, compiled, hand, tokens, targets, seconds: float) -> dict:
    """Alternates compiled/hand steps (in random order per pair) for about `seconds`.

    Returns wall-clock and process CPU-time samples per model: on a shared machine CPU time leaves out
    the time another process held the core, so it backs up the wall-clock numbers.
    """
    for _ in range(WARMUP):
        step(compiled, tokens, targets)
        step(hand, tokens, targets)
    order = random.Random(0)
    samples = {name: {"wall": [], "cpu": []} for name in ("compiled", "hand")}
    gc.collect()
    gc.disable()  # a collection landing in one side's step would be charged to it
    try:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(samples["hand"]["wall"]) < 20:
            pair = [("compiled", compiled), ("hand", hand)]
            order.shuffle(pair)
            for name, model in pair:
                wall, cpu = time.perf_counter(), time.process_time()
                step(model, tokens, targets)
                samples[name]["cpu"].append(time.process_time() - cpu)
                samples[name]["wall"].append(time.perf_counter() - wall)
    finally:
        gc.enable()
    return samples


def summarize(samples: dict, clock: str) -> dict:
    compiled, hand = samples["compiled"][clock], samples["hand"][clock]
    ratios = sorted(a / b for a, b in zip(compiled, hand, strict=True))
    rng = random.Random(1)
    boot = sorted(median(rng.choices(ratios, k=len(ratios))) for _ in range(1000))
    return {
        "pairs": len(ratios),
        "compiled": median(compiled),
        "hand": median(hand),
        "overhead": median(compiled) / median(hand) - 1,
        "paired": median(ratios) - 1,
        "low": boot[25] - 1,
        "high": boot[974] - 1,
    }


def percent(result: dict) -> str:
    return f"{result['paired'] * 100:+.1f}% [{result['low'] * 100:+.1f}, {result['high'] * 100:+.1f}]"


def measure_row(label, mode, step, compiled, hand, tokens, targets, seconds: float, target: bool):
    """One table row (and whether it meets the target) from an interleaved run."""
    samples = interleaved(step, compiled, hand, tokens, targets, seconds)
    wall, cpu = summarize(samples, "wall"), summarize(samples, "cpu")
    met = wall["paired"] <= TARGET_OVERHEAD
    row = [
        label, mode, torch.get_num_threads(), wall["pairs"],
        f"{wall['hand'] * 1e3:.2f}", f"{wall['compiled'] * 1e3:.2f}",
        f"{wall['overhead'] * 100:+.1f}%", percent(wall), percent(cpu),
        verdict(met) if target else "(informative)",
    ]
    print(row, flush=True)
    return row, met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring time per row")
    parser.add_argument("--threads", default="1", help="torch thread counts, comma-separated (default 1: steadier on a shared machine)")
    parser.add_argument("--no-write", action="store_true", help="print the section instead of writing BENCHMARKS.md")
    args = parser.parse_args()
    thread_counts = sorted({int(n) for n in args.threads.split(",")})
    started = time.perf_counter()
    machine = machine_lines({"torch threads": ", ".join(map(str, thread_counts))})
    rows, target_rows = [], []
    for name, params, batch, length, counts in CONFIGS:
        compiled, hand, tokens, targets = build_pair(params, batch, length)
        label = f"{name}: " + ", ".join(f"{k}={v}" for k, v in params.items() if k != "ctx") + f"; batch {batch} × T {length}"
        seconds = args.seconds if counts else args.seconds / 4
        for threads in thread_counts if counts else thread_counts[:1]:
            torch.set_num_threads(threads)
            for mode, step in (("forward + backward", training_step), ("forward (inference)", inference_step)):
                target = counts and mode == "forward + backward"
                row, met = measure_row(label, mode, step, compiled, hand, tokens, targets, seconds, target)
                rows.append(row)
                if target:
                    target_rows.append(met)
        if counts:
            # A/A: the hand-written model against an identical copy shows how much of a difference is noise.
            twin = HandGPT(**params)
            twin.load_state_dict(hand.state_dict())
            torch.set_num_threads(thread_counts[0])
            row, _ = measure_row(f"A/A noise check: hand-written vs its copy ({name})", "forward + backward",
                                 training_step, twin, hand, tokens, targets, seconds, False)
            rows.append(row)
    headers = ["config", "step", "threads", "pairs", "hand-written (ms)", "compiled (ms)", "ratio of medians − 1",
               "overhead: paired median [95% CI]", "same, CPU time", "target ≤ 3%"]
    section = "\n".join([
        "## Forward/backward overhead (`bench/forward_overhead.py`)",
        "",
        *machine,
        f"- load average (1 min) at end: {load_average():.2f}; script wall time: {time.perf_counter() - started:.0f} s",
        "",
        "The compiled `GPT` of `specs/transformer.pspec` against `HandGPT`, written by hand in the script with the",
        "same structure and ops (token + position embeddings, pre-norm blocks with a fused q/k/v linear,",
        "`F.scaled_dot_product_attention(is_causal=True)`, GELU MLP, dropout p = 0 where the spec has it, final",
        "layernorm and a head tied to the token embedding). The hand-written model gets the compiled one's",
        "weights through `state_dict`; logits are checked equal to 1e-5 and all gradients to 1e-4 before timing.",
        "A training step is `zero_grad`, forward, cross-entropy, backward; an inference step is a forward under",
        "`torch.inference_mode()`. The two models alternate in one process (random order within each pair,",
        f"{WARMUP} warm-up steps each, garbage collection paused while timing, `torch.set_num_threads` fixed per",
        "row). Times are wall-clock medians per step. The overhead is the median over pairs of",
        "compiled / hand-written − 1, with a bootstrap 95% interval: pairing cancels drift in the machine's",
        "load, which the plain ratio of medians (shown too) does not. The CPU-time column is the same statistic",
        "over process CPU time, which leaves out time other processes held the core. Target: overhead ≤ 3%",
        "(paired, wall clock) for the mid-size training step. The A/A row times the hand-written model against",
        "an identical copy of itself (the copy in the \"compiled\" column): what it shows is measurement noise.",
        "",
        table(headers, rows),
        "",
        f"Target (≤ 3% overhead, mid-size forward + backward): {verdict(all(target_rows))}.",
    ])
    print(section)
    if not args.no_write:
        print(f"\nwrote {write_section('forward_overhead', section)}")


if __name__ == "__main__":
    main()
