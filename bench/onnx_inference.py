"""Inference latency: onnxruntime (CPU) vs eager PyTorch for each bundled model at batch 1 and 32.

Run: .venv/bin/python bench/onnx_inference.py [--seconds S] [--threads 1 2] [--no-write]
Writes the `onnx_inference` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import onnxruntime as ort
import torch
from report import ROOT, load_average, machine_lines, median, table, verdict, write_section

import paperspec
from paperspec.compiler.backends.onnx import export_spec
from paperspec.runtime.inputs import example_inputs

BATCHES = (1, 32)
SEQUENCE = 64  # T and N (tokens of a sequence or a prompt)
# A graph batch is `batch` graphs like the edge_gnn spec's data: 3 hubs and 20 leaves, each
# leaf linked to every hub in both directions.
GRAPH_NODES, GRAPH_EDGES = 23, 120
WARMUP_S = 0.3  # per runtime; PyTorch with 2 threads can need hundreds of calls to settle
BLOCK_S = 0.05


def bundled_models() -> list:
    found = []
    for path in sorted((ROOT / "specs").glob("*.pspec")):
        spec = paperspec.load(str(path))
        found.extend((f"{path.name}:{model}", spec, model) for model in spec.models())
    return found


def model_inputs(graph, batch: int) -> dict:
    """Inputs at `batch`: B = batch with sequences of SEQUENCE, or a batch of graphs (N nodes, E edges)."""
    symbols = set().union(*(spec.type.symbols() for spec in graph.inputs))
    if "B" in symbols:
        sizes = {"B": batch, "T": SEQUENCE, "N": SEQUENCE}
    else:
        sizes = {"N": GRAPH_NODES * batch, "E": GRAPH_EDGES * batch}
    inputs = example_inputs(graph, sizes, seed=0)
    if "edge_index" in inputs:  # edges between any of the nodes, not only the first two
        generator = torch.Generator().manual_seed(0)
        inputs["edge_index"] = torch.randint(0, sizes["N"], tuple(inputs["edge_index"].shape), generator=generator)
    return inputs


def session(proto, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


def interleaved(eager, onnx, seconds: float) -> tuple:
    """Median latency of each, run in alternating blocks of BLOCK_S (which one goes first swaps
    every round), so that load from other processes on the machine falls on both alike. Blocks
    rather than single calls: each runtime's worker threads spin for a while after a call and
    would take the cores from the other's; the first call of a block is not counted."""
    for function in (eager, onnx):
        warm_until = time.perf_counter() + WARMUP_S
        while time.perf_counter() < warm_until:
            function()
    times: dict = {eager: [], onnx: []}
    deadline = time.perf_counter() + seconds
    round_ = 0
    while time.perf_counter() < deadline or round_ < 4:
        for function in (eager, onnx) if round_ % 2 == 0 else (onnx, eager):
            function()
            block_end = time.perf_counter() + BLOCK_S
            while True:
                start = time.perf_counter()
                function()
                times[function].append(time.perf_counter() - start)
                if start > block_end:
                    break
        round_ += 1
    return median(times[eager]), median(times[onnx])


def measure(threads: int, seconds: float) -> list:
    torch.set_num_threads(threads)
    rows = []
    for name, spec, model in bundled_models():
        module = spec.build(model).eval()
        graph = spec.graph(model)
        onnx_session = session(export_spec(spec, model, {}, module.state_dict()), threads)
        for batch in BATCHES:
            inputs = model_inputs(graph, batch)
            feed = {key: value.numpy() for key, value in inputs.items()}
            values = tuple(inputs.values())

            def eager(module=module, values=values):
                with torch.no_grad():
                    return module(*values)

            def onnx(onnx_session=onnx_session, feed=feed):
                return onnx_session.run(None, feed)

            expected = eager()
            expected = expected if isinstance(expected, tuple) else (expected,)
            for got, want in zip(onnx(), expected, strict=True):
                np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-4)
            eager_s, onnx_s = interleaved(eager, onnx, seconds)
            rows.append({"model": name, "batch": batch, "eager": eager_s, "onnx": onnx_s})
    return rows


def results_table(rows: list) -> str:
    return table(
        ["model", "batch", "eager PyTorch (ms)", "onnxruntime (ms)", "onnxruntime / eager"],
        [[f"`{r['model']}`", r["batch"], f"{r['eager'] * 1e3:.3f}", f"{r['onnx'] * 1e3:.3f}", f"{r['onnx'] / r['eager']:.2f}"] for r in rows],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per model, batch size and thread count")
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="thread counts, e.g. 1 2; the first is the primary")
    parser.add_argument("--no-write", action="store_true", help="print the section instead of writing BENCHMARKS.md")
    args = parser.parse_args()
    started = time.perf_counter()
    machine = machine_lines({"onnxruntime": ort.__version__, "threads": ", ".join(map(str, args.threads)) + " (torch and onnxruntime alike)"})
    results = {threads: measure(threads, args.seconds) for threads in args.threads}
    primary = args.threads[0]
    slower = [r for r in results[primary] if r["onnx"] > r["eager"]]
    parts = [
        "## ONNX inference latency (`bench/onnx_inference.py`)",
        "",
        *machine,
        f"- load average (1 min) at end: {load_average():.2f}; script wall time: {time.perf_counter() - started:.0f} s",
        "",
        table(
            ["target", "met"],
            [[f"onnxruntime no slower than eager PyTorch, every model and batch, {primary} thread", verdict(not slower)]],
        ),
        "",
        "The bundled models with default parameters and their initial weights, exported directly",
        f"(opset 21). Sequences and prompts have {SEQUENCE} tokens (`T`, `N`); a graph batch is `batch`",
        f"graphs of {GRAPH_NODES} nodes and {GRAPH_EDGES} edges. Eager: `torch.no_grad()`, eval mode.",
        "onnxruntime: CPU provider, default graph optimizations (all), sequential execution.",
        "`torch.set_num_threads` and onnxruntime's `intra_op_num_threads` are equal. The two run in",
        f"alternating blocks of {BLOCK_S * 1e3:.0f} ms (order swapped every round) for {args.seconds:g} s after {WARMUP_S:g} s of",
        "warm-up calls each, the first call of a block not counted; the medians are shown. Outputs are",
        "checked to agree first.",
    ]
    for threads in args.threads:
        parts += ["", f"### {threads} thread{'s' if threads > 1 else ''}", "", results_table(results[threads])]
    if slower:
        parts += ["", "Slower in onnxruntime at 1 thread: " + ", ".join(f"`{r['model']}` batch {r['batch']}" for r in slower) + "."]
    parts += ["", NOTES]
    body = "\n".join(parts)
    print(body)
    if not args.no_write:
        print(f"\nwrote {write_section('onnx_inference', body)}")


NOTES = """### What was changed in the exporter for this, before and after

Two lowerings were slow in onnxruntime and were changed:

- **Causal attention** (GPT): the masked scores were `-inf` (via `Where`), and onnxruntime's
  `Softmax` runs ~8× slower when `exp` underflows into denormal floats (a [32, 4, 64, 64]
  Softmax: 0.20 ms unmasked, 1.6 ms causally masked); the `Where` over every head cost half as
  much again. Now a [T, T] 0/-inf mask is added, every entry is raised to at least its row's
  max - 80 (`ReduceMax`, `Max`), so `exp` stays a normal float and no probability changes at
  f32 precision, then `Softmax`. Attention alone (q, k, v of [32, 64, 128], 4 heads): 3.0 →
  1.7 ms (PyTorch's fused SDPA: 1.05 ms; onnxruntime's own opset-23 `Attention` kernel: 2.2 ms).
- **scatter** (edge_gnn): `ScatterElements` at an index expanded to [E, features] became
  `ScatterND` of whole rows at [E, 1] indices, ~15× faster in onnxruntime (0.50 → 0.03 ms for
  3,840 rows of 32 into 736).

One-off measurement of the two versions, same session, three-way interleaved, 1 thread
(ms, ratio to eager in brackets; 2026-11-27, same machine):

| model | batch | eager | onnxruntime before | onnxruntime after |
| :-- | --: | --: | --: | --: |
| `edge_gnn.pspec:NodeGNN` | 1 | 0.256 | 0.099 (0.39) | 0.058 (0.23) |
| `edge_gnn.pspec:NodeGNN` | 32 | 2.228 | 2.186 (0.98) | 1.015 (0.46) |
| `edge_gnn.pspec:EdgeGNN` | 1 | 0.202 | 0.084 (0.42) | 0.049 (0.24) |
| `edge_gnn.pspec:EdgeGNN` | 32 | 1.671 | 2.149 (1.29) | 0.992 (0.59) |
| `transformer.pspec:GPT` | 1 | 1.729 | 1.101 (0.64) | 0.913 (0.53) |
| `transformer.pspec:GPT` | 32 | 27.319 | 33.413 (1.22) | 27.517 (1.01) |

What is left at batch 32 (GPT, ICLAttention: within a few percent of eager) is attention
bookkeeping that PyTorch does with views: the q/k/v `Split` and four per-head `Transpose`s
(~0.6 ms per GPT layer), the causal mask and its clamp, and PyTorch's causal flash kernel
skipping the masked half. Tried and not kept: rewriting Split + three Transposes into one
Transpose (4% on ICLAttention, <1% on GPT, for a cross-op pattern match), linear as
Reshape + `Gemm` with the bias (slower than MatMul + Add for 3-D inputs), the opset-23
`Attention` op (slower). Graph optimizations are at onnxruntime's default, the highest level.
Only 1 thread is reported by default (`--threads 1 2` adds 2): on this shared 2-core machine,
with other jobs running, eager PyTorch at 2 threads gave medians of 10-200 ms for calls that
take 0.1-2 ms at 1 thread (its OpenMP pool contending for the cores), which compares nothing.
"""


if __name__ == "__main__":
    main()
