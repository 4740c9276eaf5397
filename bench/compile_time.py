"""Compile-time benchmark: .pspec text to an instantiated nn.Module, per stage, cold and warm, and for deep `repeat`s.

Run: .venv/bin/python bench/compile_time.py [--runs N] [--cold-runs N] [--no-write]
Writes the `compile_time` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from pathlib import Path

from report import ROOT, load_average, machine_lines, median, ms, table, verdict, write_section

SPECS_DIR = ROOT / "specs"
STAGES = ("parse", "elaborate", "codegen", "exec", "instantiate")
TARGET_PER_SPEC_S = 0.200
TARGET_DEEP_S = 2.0
LAYER_COUNTS = (10, 100, 300, 1000)
# The marginal cost of a layer between 300 and 1000 layers may exceed that between 100 and 300
# by this factor before growth counts as worse than linear (timer noise on small differences).
LINEAR_TOLERANCE = 1.5
WIDTH = 16

DEEP_SPEC_HEAD = f'''spec deep "Generated: a deep residual stack for the compile-time benchmark"

block Layer(d: int) {{
  in  x: f32[B, d]
  out x + linear(relu(layernorm(x)), d)
}}

model Deep(d: int = {WIDTH}, layers: int = 10) {{
  in  x: f32[B, d]
'''

# Two shapes of deep model: the usual one (one block class, an nn.ModuleList and a loop), and
# a body that reads the iteration index, so every iteration is its own graph and class (the
# worst case for elaboration and code generation, which then grow with the layer count).
DEEP_VARIANTS = {
    "repeat of a block": "repeat layers { x = Layer(d)(x) }",
    "index-dependent body": "repeat layers as i { x = x + linear(relu(layernorm(x)), d) * (i + 1) }",
}


def deep_spec(variant: str) -> str:
    return DEEP_SPEC_HEAD + f"  {DEEP_VARIANTS[variant]}\n  out linear(x, d)\n}}\n"


def staged_compile(path: str | None = None, text: str | None = None, model: str | None = None, **params):
    """What `paperspec.load(path).build(model, **params)` does, with each stage timed. Returns (times, module)."""
    from paperspec.compiler import api
    from paperspec.compiler.backends import torch as torch_backend
    from paperspec.compiler.elaborate import Compiler

    times = {}
    start = time.perf_counter()
    compiler = Compiler()
    unit = compiler.load(path) if text is None else compiler.load_text(text, "<bench>.pspec")
    spec = api.Spec(unit, compiler)
    times["parse"] = time.perf_counter() - start

    start = time.perf_counter()
    model = spec.default_model(model)
    graph = spec.graph(model, **params)
    times["elaborate"] = time.perf_counter() - start

    start = time.perf_counter()
    source = torch_backend.generate(graph, spec.path)
    times["codegen"] = time.perf_counter() - start

    start = time.perf_counter()
    namespace = api._execute(source, f"<paperspec {spec.path}:{graph.name}>")
    times["exec"] = time.perf_counter() - start

    start = time.perf_counter()
    module = namespace[graph.name]()
    times["instantiate"] = time.perf_counter() - start
    times["total"] = sum(times[stage] for stage in STAGES)
    return times, module


def timed(function, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return samples


def median_stages(samples: list[dict]) -> dict:
    return {key: median([s[key] for s in samples]) for key in samples[0]}


# ---- cold: the first call in a fresh process ----

def cold_child(path: str, model: str) -> None:
    """Runs in a fresh interpreter: times the imports and the first compile, then a warm one; prints JSON."""
    times = {}
    start = time.perf_counter()
    import paperspec

    times["import paperspec"] = time.perf_counter() - start
    start = time.perf_counter()
    import torch  # noqa: F401 - timed apart: every PyTorch program pays it, and generated code needs it

    times["import torch"] = time.perf_counter() - start
    from paperspec.compiler import parser

    start = time.perf_counter()
    parser._lark()
    times["build Lark parser"] = time.perf_counter() - start
    first, _ = staged_compile(path, model=model)
    first["parse"] += times["build Lark parser"]
    first["total"] += times["build Lark parser"]
    start = time.perf_counter()
    paperspec.load(path).build(model)
    times["second call"] = time.perf_counter() - start
    print(json.dumps({"times": times, "first": first}))


def measure_cold(path: Path, model: str, runs: int) -> dict:
    samples = []
    for _ in range(runs):
        result = subprocess.run(
            [sys.executable, __file__, "--cold-child", str(path), model],
            capture_output=True, text=True, check=True, cwd=ROOT,
        )
        data = json.loads(result.stdout.strip().splitlines()[-1])
        samples.append({**data["times"], **{f"first {k}": v for k, v in data["first"].items()}})
    return median_stages(samples)


# ---- warm: a fresh paperspec.load in a process that has compiled before ----

def spec_models(path: Path) -> list[str]:
    import paperspec

    return paperspec.load(str(path)).models()


def measure_warm(path: Path, model: str, runs: int) -> dict:
    import paperspec

    def end_to_end():
        paperspec.load(str(path)).build(model)

    end_to_end()
    staged = []
    for _ in range(runs):
        gc.collect()
        staged.append(staged_compile(str(path), model=model)[0])
    result = median_stages(staged)
    result["end to end"] = median(timed(end_to_end, runs))
    return result


def measure_specs(runs: int, cold_runs: int) -> list[dict]:
    rows = []
    for path in sorted(SPECS_DIR.glob("*.pspec")):
        relative = path.relative_to(ROOT)
        try:
            models = spec_models(path)
        except Exception as error:  # a spec being rewritten by someone else must not stop the report
            rows.append({"spec": str(relative), "model": "-", "error": f"{type(error).__name__}: {error}"})
            continue
        for model in models:
            row = {"spec": str(relative), "model": model}
            try:
                row["warm"] = measure_warm(path, model, runs)
                row["cold"] = measure_cold(path, model, cold_runs)
            except Exception as error:  # reported in the table, see above
                row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            rows.append(row)
    return rows


# ---- deep repeats ----

def measure_deep(variant: str, runs: int) -> list[dict]:
    import torch

    from paperspec.compiler.parser import _lark

    _lark()
    base = deep_spec(variant)
    results = []
    for layers in LAYER_COUNTS:
        text = base.replace("layers: int = 10", f"layers: int = {layers}")
        samples, module = [], None
        for _ in range(runs):
            gc.collect()
            times, module = staged_compile(text=text)
            samples.append(times)
        output = module(torch.randn(2, WIDTH))  # the compiled deep model must also run
        assert output.shape == (2, WIDTH), output.shape
        results.append({"layers": layers, **median_stages(samples)})
    return results


def linear_fit(xs, ys) -> tuple[float, float, float]:
    """Least-squares intercept, slope and R² of ys against xs."""
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx
    intercept = mean_y - slope * mean_x
    ss_total = sum((y - mean_y) ** 2 for y in ys)
    ss_residual = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    return intercept, slope, 1 - ss_residual / ss_total if ss_total else 1.0


def growth(results: list[dict], key: str = "total") -> dict:
    """Marginal cost per layer on the lower and upper segments of the layer counts, and their ratio."""
    by_layers = {r["layers"]: r[key] for r in results}
    lower = (by_layers[300] - by_layers[100]) / 200
    upper = (by_layers[1000] - by_layers[300]) / 700
    return {"lower": lower, "upper": upper, "ratio": upper / lower if lower > 0 else float("inf")}


# ---- report ----

def spec_section(rows: list[dict], runs: int, cold_runs: int) -> tuple[str, bool]:
    headers = ["spec : model", "warm end-to-end (ms)"] + [f"{s} (ms)" for s in STAGES] + [
        "cold first call (ms)", "target < 200 ms"]
    body, all_met = [], True
    for row in rows:
        name = f"`{row['spec']}` : {row['model']}"
        if "error" in row:
            body.append([name, f"error: {row['error']}"] + [""] * (len(headers) - 2))
            all_met = False
            continue
        warm, cold = row["warm"], row["cold"]
        met = warm["end to end"] < TARGET_PER_SPEC_S and cold["first total"] < TARGET_PER_SPEC_S
        all_met &= met
        body.append([name, ms(warm["end to end"])] + [ms(warm[s]) for s in STAGES] + [
            ms(cold["first total"]), verdict(met)])
    cold_headers = ["spec : model", "import paperspec", "import torch", "build Lark parser", "parse (incl. Lark)"] + [
        s for s in STAGES[1:]] + ["first call total", "second call (warm)"]
    cold_rows = []
    for row in rows:
        if "error" in row:
            continue
        cold = row["cold"]
        cold_rows.append([f"`{row['spec']}` : {row['model']}", ms(cold["import paperspec"]), ms(cold["import torch"]),
                          ms(cold["build Lark parser"]), ms(cold["first parse"])] + [
            ms(cold[f"first {s}"]) for s in STAGES[1:]] + [ms(cold["first total"]), ms(cold["second call"])])
    text = f"""### Every bundled spec (default parameters)

Warm: median of {runs} runs of a fresh `paperspec.load(path).build(model)` in a process that has
compiled before (the Lark parser is already built; it is cached per process). The stage columns
are medians of {runs} separate staged runs of the same pipeline: parse (Lark + AST + imports),
elaborate (graph IR, shape inference and the passes), codegen (Python source), exec (compiling and
running that source) and instantiate (constructing the nn.Module, weight init included).
Cold: median of {cold_runs} fresh interpreters, the first compile there, with `torch` already
imported (its import is shown apart below: every PyTorch program pays it once, and the generated
module needs it). The target applies to both.

{table(headers, body)}

Cold runs in detail (ms, medians of {cold_runs} fresh processes):

{table(cold_headers, cold_rows)}
"""
    return text, all_met


def deep_section(deep: dict, runs: int) -> tuple[str, bool]:
    parts, all_met = [], True
    for variant, results in deep.items():
        headers = ["layers"] + [f"{s} (ms)" for s in STAGES] + ["total (ms)", "per layer (ms)"]
        rows = [[r["layers"]] + [ms(r[s]) for s in STAGES] + [ms(r["total"]), f"{r['total'] / r['layers'] * 1e3:.3f}"]
                for r in results]
        intercept, slope, r2 = linear_fit([r["layers"] for r in results], [r["total"] for r in results])
        total_growth = growth(results)
        stage_growth = {s: growth(results, s) for s in STAGES}
        at_max = results[-1]["total"]
        linear = total_growth["ratio"] <= LINEAR_TOLERANCE
        met = at_max < TARGET_DEEP_S and linear
        all_met &= met
        stage_text = ", ".join(
            f"{s} {g['upper'] * 1e6:.0f} µs/layer (×{g['ratio']:.2f})" for s, g in stage_growth.items()
            if max(r[s] for r in results) > 0.005
        )
        parts.append(f"""#### {variant}: `{DEEP_VARIANTS[variant]}`

{table(headers, rows)}

- Linear fit of the total: {intercept * 1e3:.1f} ms + {slope * 1e6:.0f} µs × layers (R² = {r2:.4f}).
- Marginal cost per layer: {total_growth['lower'] * 1e6:.0f} µs (100→300 layers), {total_growth['upper'] * 1e6:.0f} µs
  (300→1000 layers), ratio ×{total_growth['ratio']:.2f} (linear if ≤ ×{LINEAR_TOLERANCE}); by stage, 300→1000
  (ratio to 100→300): {stage_text}.
- 1,000 layers: {ms(at_max)} ms, target < 2 s and linear growth: {verdict(met)}.
""")
    text = f"""### Deep `repeat` (generated spec, d = {WIDTH})

A generated model `Deep` with `layers` residual layers (layernorm → linear → relu, added back),
compiled end to end (warm, medians of {runs} runs per row). The 1,000-layer module is also run
once on a [2, {WIDTH}] input to check it works. Targets: < 2 s at 1,000 layers, growth linear in
the layer count.

""" + "\n".join(parts)
    return text, all_met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="warm runs per spec")
    parser.add_argument("--cold-runs", type=int, default=3, help="fresh processes per spec")
    parser.add_argument("--deep-runs", type=int, default=5, help="runs per layer count")
    parser.add_argument("--no-write", action="store_true", help="print the section instead of writing BENCHMARKS.md")
    parser.add_argument("--cold-child", nargs=2, metavar=("SPEC", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cold_child:
        cold_child(*args.cold_child)
        return
    import torch

    started = time.perf_counter()
    machine = machine_lines({"torch threads": torch.get_num_threads()})
    rows = measure_specs(args.runs, args.cold_runs)
    deep = {variant: measure_deep(variant, args.deep_runs) for variant in DEEP_VARIANTS}
    specs_text, specs_met = spec_section(rows, args.runs, args.cold_runs)
    deep_text, deep_met = deep_section(deep, args.deep_runs)
    summary = table(
        ["target", "met"],
        [["< 200 ms per bundled spec (warm and cold first call)", verdict(specs_met)],
         ["< 2 s for 1,000 layers, growth linear in layers", verdict(deep_met)]],
    )
    section = "\n".join([
        "## Compile time (`bench/compile_time.py`)",
        "",
        *machine,
        f"- load average (1 min) at end: {load_average():.2f}; script wall time: {time.perf_counter() - started:.0f} s",
        "",
        summary,
        "",
        specs_text,
        deep_text,
    ])
    if args.no_write:
        print(section)
    else:
        print(section)
        print(f"\nwrote {write_section('compile_time', section)}")


if __name__ == "__main__":
    main()
