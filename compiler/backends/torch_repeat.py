"""PyTorch lowering of `repeat`: a loop over an nn.ModuleList, or unrolled when iterations differ."""

from __future__ import annotations

from paperspec.compiler.backends.pysource import CodeWriter, identifier
from paperspec.compiler.ir import ValueRef


def emit_repeat(emitter, node, out: CodeWriter) -> None:
    info = node.derived["repeat"]
    carried = [emitter.expressions[ref] for ref in node.args["carried"]]
    owned: list = []
    for i, (expr, name) in enumerate(zip(carried, info.carried)):
        owned.append(_own_name(emitter, expr, name, node, i, out, owned))
    carried = owned
    free = {name: emitter.expressions[ref] for name, ref in zip(info.free, node.args["free"])}
    alike = all(body is info.bodies[0] for body in info.bodies)
    module = emitter.module_access(node.module) if node.module else None
    if alike:
        _emit_loop(emitter, info, module, carried, free, out)
    else:
        for i, body in enumerate(info.bodies):
            item = f"{module}[{i}]" if module else None
            _emit_iteration(emitter, body, info, item, carried, free, out)
    for i, name in enumerate(carried):
        ref = ValueRef(node.id, i)
        emitter.expressions[ref] = name
        emitter.holder[name] = (emitter, ref)


def _own_name(emitter, expression: str, name: str, node, index: int, out: CodeWriter, taken: list) -> str:
    """Carried values live in plain variables that the loop may overwrite."""
    ref = node.args["carried"][index]
    holder = emitter.holder.get(expression)
    reusable = expression.isidentifier() and holder is not None and expression not in taken
    if reusable and emitter.last_use.get(ref, -1) <= node.id:
        return expression
    fresh = emitter.fresh_name(name, ValueRef(node.id, index), node.id)
    out.line(f"{fresh} = {expression}")
    return fresh


def _emit_loop(emitter, info, module, carried, free, out: CodeWriter) -> None:
    body = info.bodies[0]
    if info.mode == "body":
        variable = _loop_variable(emitter, module)
        out.line(f"for {variable} in {module}:")
        with out.indent():
            _call_body(emitter, body, variable, carried, free, out)
        return
    if info.mode == "single":
        variable = _loop_variable(emitter, module)
        out.line(f"for {variable} in {module}:")
    else:
        index = identifier(info.index) if info.index else "_"
        out.line(f"for {index} in range({info.count}):")
        variable = None
    with out.indent():
        _inline_body(emitter, body, variable, carried, free, out)


def _emit_iteration(emitter, body, info, item, carried, free, out: CodeWriter) -> None:
    if info.mode == "body":
        _call_body(emitter, body, item, carried, free, out)
    else:
        _inline_body(emitter, body, item, carried, free, out)


def _call_body(emitter, body, module, carried, free, out: CodeWriter) -> None:
    names = [spec.name for spec in body.inputs]
    values = carried + [free[n] for n in names[len(carried):]]
    out.line(f"{', '.join(carried)} = {module}({', '.join(values)})")


def _inline_body(emitter, body, module, carried, free, out: CodeWriter) -> None:
    from paperspec.compiler.backends.torch import FunctionEmitter

    inner = FunctionEmitter(body, out, emitter.reserved, parent=emitter)
    own = next(iter(body.modules), None)
    inner.module_access = lambda name: module if name == own and module else emitter.module_access(name)
    for spec, name in zip(body.inputs, carried):
        ref = ValueRef(spec.node)
        inner.expressions[ref] = name
        inner.holder[name] = (inner, ref)
    for spec in body.inputs[len(carried):]:
        inner.expressions[ValueRef(spec.node)] = free[spec.name]
    before = len(out.lines)
    inner.emit_nodes(out)
    results = [inner.expressions[ref] for _, ref, _ in body.outputs]
    changed = [(name, value) for name, value in zip(carried, results) if name != value]
    if changed:
        out.line(f"{', '.join(n for n, _ in changed)} = {', '.join(v for _, v in changed)}")
    if len(out.lines) == before:
        out.line("pass")


def _loop_variable(emitter, module: str) -> str:
    base = module.rsplit(".", 1)[-1]
    base = base[:-1] if base.endswith("s") and len(base) > 1 else "layer"
    return emitter.fresh_name(base, ValueRef(-1, 0), -1)
