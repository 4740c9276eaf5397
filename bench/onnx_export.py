"""ONNX export time of each bundled model: direct emission from the IR vs torch.onnx.export(dynamo=True).

Run: .venv/bin/python bench/onnx_export.py [--runs N] [--no-write]
Writes the `onnx_export` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import gc
import time

import torch
from report import ROOT, load_average, machine_lines, median, table, verdict, write_section

import paperspec
from paperspec.runtime.onnx import export

TARGET_SPEED_UP = 20.0
TARGET_GPT_S = 0.100


def bundled_models() -> list:
    found = []
    for path in sorted((ROOT / "specs").glob("*.pspec")):
        spec = paperspec.load(str(path))
        found.extend((path, model) for model in spec.models())
    return found


def timed(function, runs: int) -> float:
    """Median seconds of `runs` calls after one untimed call."""
    function()
    samples = []
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return median(samples)


def measure(path, model: str, runs: int) -> dict:
    spec = paperspec.load(str(path))
    module = spec.build(model).eval()
    nodes = {via: len(export(spec, model, weights=module, via=via).graph.node) for via in ("direct", "torch")}
    return {
        "model": f"`{path.name}` : {model}",
        "name": model,
        # both start from the built module, as `paperspec export` does
        "direct": timed(lambda: export(spec, model, weights=module), runs),
        "from text": timed(lambda: export(paperspec.load(str(path)), model, weights=module), runs),
        "torch": timed(lambda: export(spec, model, weights=module, via="torch"), runs),
        "nodes": nodes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed exports per model and path")
    parser.add_argument("--no-write", action="store_true", help="print the section instead of writing BENCHMARKS.md")
    args = parser.parse_args()
    started = time.perf_counter()
    torch.set_num_threads(1)
    machine = machine_lines({"torch threads": 1})
    rows = [measure(path, model, args.runs) for path, model in bundled_models()]
    speed_up_met = all(r["torch"] / r["direct"] >= TARGET_SPEED_UP for r in rows)
    gpt = [r for r in rows if r["name"] == "GPT"]
    gpt_met = bool(gpt) and all(r["direct"] < TARGET_GPT_S for r in gpt)
    results = table(
        ["spec : model", "direct (ms)", "direct from spec text (ms)", "torch.onnx.export dynamo (ms)", "speed-up", "nodes direct / torch"],
        [
            [r["model"], f"{r['direct'] * 1e3:.1f}", f"{r['from text'] * 1e3:.1f}", f"{r['torch'] * 1e3:.0f}",
             f"{r['torch'] / r['direct']:.0f}×", f"{r['nodes']['direct']} / {r['nodes']['torch']}"]
            for r in rows
        ],
    )
    body = "\n".join([
        "## ONNX export time (`bench/onnx_export.py`)",
        "",
        *machine,
        f"- load average (1 min) at end: {load_average():.2f}; script wall time: {time.perf_counter() - started:.0f} s",
        "",
        table(
            ["target", "met"],
            [[f"direct export ≥ {TARGET_SPEED_UP:.0f}× faster than torch.onnx.export(dynamo=True), every bundled model", verdict(speed_up_met)],
             [f"direct export of the GPT spec < {TARGET_GPT_S * 1e3:.0f} ms", verdict(gpt_met)]],
        ),
        "",
        f"Medians of {args.runs} exports per model and path (after one untimed export), default",
        "parameters, opset 21, from the built nn.Module (`export(spec, model, weights=module,",
        "via=...)`, what `paperspec export` does). Direct: the IR to a checked ModelProto",
        "(`check_model(full_check=True)` included); the model's graph is elaborated once per loaded",
        "spec, so the \"from spec text\" column adds a fresh `paperspec.load` and elaboration.",
        "torch: `torch.onnx.export(module, dynamo=True, dynamic_shapes=...)` with one `Dim` per",
        "symbolic dim (torch.export tracing, decomposition, onnxscript translation and its optimizer).",
        "",
        results,
    ])
    print(body)
    if not args.no_write:
        print(f"\nwrote {write_section('onnx_export', body)}")


if __name__ == "__main__":
    main()
