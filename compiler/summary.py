"""Model summary: a table of submodules with their types, output shapes and parameter counts."""

from __future__ import annotations

from dataclasses import dataclass

from paperspec.compiler.ir import BlockGraph, ModuleSpec, count_parameters, parameter_shapes


@dataclass(frozen=True)
class Row:
    path: str
    depth: int
    kind: str
    output: str
    parameters: int


def summarize(graph: BlockGraph) -> list:
    """Rows for the model and every submodule, depth-first in definition order."""
    rows = [Row(graph.name, 0, "model", _outputs(graph), count_parameters(graph))]
    _module_rows(graph, "", 1, rows)
    return rows


def _module_rows(graph: BlockGraph, prefix: str, depth: int, rows: list) -> None:
    outputs = _module_outputs(graph)
    for name, spec in graph.modules.items():
        path = prefix + name
        rows.append(Row(path, depth, _kind(spec), outputs.get(name, ""), _count(spec)))
        if spec.kind == "block":
            _module_rows(spec.graph, path + ".", depth + 1, rows)
        elif spec.kind == "repeat" and spec.items:
            item = spec.items[0]
            alike = all(_kind(i) == _kind(item) for i in spec.items)
            label = f"{path}.0" if not alike else f"{path}.0..{len(spec.items) - 1}"
            rows.append(Row(label, depth + 1, _kind(item) + ("" if alike else " (first)"), "", _count(item)))
            if item.kind == "block" and alike:
                _module_rows(item.graph, f"{path}.*.", depth + 2, rows)


def _kind(spec: ModuleSpec) -> str:
    if spec.kind == "op":
        return spec.node.op
    if spec.kind == "block":
        return spec.graph.name
    if spec.kind == "param":
        return "param"
    return f"repeat x{len(spec.items)}"


def _count(spec: ModuleSpec) -> int:
    total = 0
    for shape in parameter_shapes(spec).values():
        size = 1
        for dim in shape:
            size *= dim
        total += size
    return total


def _outputs(graph: BlockGraph) -> str:
    return ", ".join(str(graph.type_of(ref)) for _, ref, _ in graph.outputs)


def _module_outputs(graph: BlockGraph) -> dict:
    """Output types of the first use of each submodule."""
    found: dict[str, str] = {}
    for node in graph.nodes():
        if node.module and node.module not in found:
            found[node.module] = ", ".join(str(t) for t in node.types)
    return found


def format_table(rows: list) -> str:
    headers = ("module", "type", "output", "params")
    cells = [("  " * r.depth + r.path, r.kind, r.output, f"{r.parameters:,}") for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for cell in cells:
        lines.append("  ".join([cell[0].ljust(widths[0]), cell[1].ljust(widths[1]), cell[2].ljust(widths[2]), cell[3].rjust(widths[3])]).rstrip())
    return "\n".join(lines)
