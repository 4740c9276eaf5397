"""Shared by the benchmark scripts: the machine they ran on, and their sections of BENCHMARKS.md."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"

HEADER = """# Benchmarks

Measured by the scripts in `bench/` (`make bench` runs them all). Each script rewrites only
its own section below, between its `<!-- bench:NAME -->` markers; the machine, the date and
the torch version are recorded in each section, so numbers from different machines are never
mixed in one table. Benchmarks are scripts, not tests: they report, and CI does not time them.
"""


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def machine_lines(extra: dict | None = None) -> list[str]:
    """Markdown bullet lines describing where and when a benchmark ran."""
    import torch

    facts = {
        "CPU": f"{cpu_model()}, {os.cpu_count()} logical cores",
        "torch": torch.__version__,
        "Python": platform.python_version(),
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "load average (1 min) at start": f"{load_average():.2f}",
    }
    facts.update(extra or {})
    return [f"- {key}: {value}" for key, value in facts.items()]


def write_section(name: str, body: str) -> Path:
    """Replaces (or appends) the section of BENCHMARKS.md owned by benchmark `name`."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    text = BENCHMARKS_MD.read_text(encoding="utf-8") if BENCHMARKS_MD.exists() else HEADER
    section = f"{start}\n{body.strip()}\n{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1]
        text = before + section + after
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    temporary = BENCHMARKS_MD.with_suffix(".md.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, BENCHMARKS_MD)
    return BENCHMARKS_MD


def table(headers: list[str], rows: list[list]) -> str:
    """A Markdown table; the first column is left-aligned, the others right-aligned."""
    align = [":--"] + ["--:"] * (len(headers) - 1)
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def median(values) -> float:
    return statistics.median(values)


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


def verdict(met: bool) -> str:
    return "**met**" if met else "**missed**"
