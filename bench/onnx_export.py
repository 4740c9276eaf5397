"""ONNX export time of each bundled model: direct emission from the IR vs torch.onnx.export(dynamo=True).

Run: .venv/bin/python bench/onnx_export.py [--repeats N] [--no-write]
Writes the `onnx_export` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import time

import torch
from report import ROOT, machine_lines, median, table, write_section

import paperspec
from paperspec.compiler.backends.onnx import export_spec, model_metadata
from paperspec.runtime.onnx_torch import export_via_torch

TARGET_RATIO = 20.0
TARGET_GPT_MS = 100.0


def models() -> list:
    out = []
    for path in sorted((ROOT / "specs").glob("*.pspec")):
        spec = paperspec.load(str(path))
        out.extend((path.name, spec, name) for name in spec.models())
    return out


def time_direct(spec, model: str, state: dict) -> float:
    start = time.perf_counter()
    export_spec(spec, model, {}, state)
    return time.perf_counter() - start


def time_torch(spec, model: str, module) -> float:
    metadata = model_metadata(spec, model, {}, spec.graph(model))
    start = time.perf_counter()
    export_via_torch(spec, model, {}, module, 21, metadata)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows, gpt_ok, ratios_ok = [], True, True
    for file, spec, model in models():
        module = spec.build(model).eval()
        state = module.state_dict()
        time_direct(spec, model, state)  # warm: graph built and cached like in a real export
        direct, via = [], []
        for _ in range(args.repeats):
            direct.append(time_direct(spec, model, state))
            via.append(time_torch(spec, model, module))
        d, t = median(direct) * 1e3, median(via) * 1e3
        rows.append([f"{file}:{model}", f"{d:.1f}", f"{t:.0f}", f"{t / d:.0f}x"])
        ratios_ok &= t / d >= TARGET_RATIO
        if model == "GPT":
            gpt_ok = d < TARGET_GPT_MS
    body = "\n".join(
        [
            "## ONNX export time (bench/onnx_export.py)",
            "",
            *machine_lines({"threads": "1"}),
            "",
            f"Median of {args.repeats} exports per model, default parameters, weights already built.",
            "",
            table(["model", "direct (ms)", "torch.onnx.export dynamo (ms)", "speed-up"], rows),
            "",
            f"Targets: direct >= {TARGET_RATIO:.0f}x faster: {'met' if ratios_ok else 'NOT met'}; "
            f"GPT direct < {TARGET_GPT_MS:.0f} ms: {'met' if gpt_ok else 'NOT met'}.",
        ]
    )
    print(body)
    if not args.no_write:
        write_section("onnx_export", body)


if __name__ == "__main__":
    main()
