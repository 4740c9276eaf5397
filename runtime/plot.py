"""`paperspec plot RUN`: loss and metric curves of a run, from its metrics.jsonl, as a PNG."""

from __future__ import annotations

import json
from pathlib import Path


def read_metrics(run_dir: Path) -> list:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} has no metrics.jsonl: is it a run folder (runs/<spec>/<procedure>/<time>)?")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_run(run_dir: Path, output: Path | None = None) -> Path:
    """One panel per metric against the step; returns the PNG's path (default RUN/metrics.png)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError("plotting needs matplotlib: pip install 'paperspec[plot]'") from None
    records = read_metrics(run_dir)
    names = [k for k in records[0] if k != "step"] if records else []
    if not names:
        raise ValueError(f"{run_dir} has no evaluations to plot")
    figure, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2), squeeze=False)
    steps = [r["step"] for r in records]
    for axis, name in zip(axes[0], names):
        axis.plot(steps, [r.get(name) for r in records], marker="o", markersize=3)
        axis.set_title(name)
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
    figure.suptitle(str(Path(run_dir)), fontsize=8)
    figure.tight_layout()
    output = Path(output) if output else Path(run_dir) / "metrics.png"
    figure.savefig(output, dpi=120)
    plt.close(figure)
    return output
