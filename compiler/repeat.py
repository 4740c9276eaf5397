"""Elaboration of `repeat N [as i] { ... }`: a body graph per distinct iteration, carried names checked."""

from __future__ import annotations

import dataclasses

from paperspec.compiler import ast
from paperspec.compiler.diagnostics import SpecError
from paperspec.compiler.ir import BlockGraph, InputSpec, ModuleSpec, RepeatInfo, ValueRef
from paperspec.compiler.values import TensorValue, describe


def assigned_names(statements) -> list:
    """Names bound anywhere in a statement list, in order of first binding."""
    names: list = []
    for stmt in statements:
        if isinstance(stmt, ast.Assign):
            names.extend(t for t in stmt.targets if t not in names)
        elif isinstance(stmt, ast.Repeat):
            names.extend(n for n in assigned_names(stmt.body) if n not in names)
        elif isinstance(stmt, ast.If):
            names.extend(n for n in assigned_names(stmt.then + stmt.otherwise) if n not in names)
        elif isinstance(stmt, ast.ParamDecl) and stmt.name not in names:
            names.append(stmt.name)
    return names


def uses_name(node, name: str) -> bool:
    """Whether an AST subtree mentions `name`."""
    if isinstance(node, ast.Name):
        return node.id == name
    if isinstance(node, (list, tuple)):
        return any(uses_name(item, name) for item in node)
    if dataclasses.is_dataclass(node):
        return any(uses_name(getattr(node, f.name), name) for f in dataclasses.fields(node) if f.name != "span")
    return False


def elaborate_repeat(outer, stmt: ast.Repeat) -> None:
    from paperspec.compiler.elaborate import BlockElaborator, Scope, camel_case

    count = outer.eval(stmt.count)
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise SpecError(f"`repeat` needs a non-negative integer known at compile time, got {describe(count)}", stmt.count.span)
    carried = []
    for name in assigned_names(stmt.body):
        found, value = outer.scope.lookup(name)
        if not found or name == stmt.index:
            continue
        if not isinstance(value, TensorValue):
            raise SpecError(f"`{name}` is {describe(value)}; a repeat body may only rebind tensors", _binding_span(stmt.body, name))
        carried.append(name)
    if count == 0:
        return
    hint = stmt.count.id if isinstance(stmt.count, ast.Name) else "repeat"
    by_index = stmt.index is not None and uses_name(stmt.body, stmt.index)
    bodies, free_names, outer_modules = [], [], set()
    for i in range(count) if by_index else [0]:
        body = BlockGraph("", outer.graph.block, "repeat", dict(outer.graph.args), stmt.span)
        free: list = []

        def capture(name, value, body=body, free=free):
            node = body.add_node("input", {"name": name}, [value.type], stmt.span, names=[name])
            body.inputs.append(InputSpec(name, value.type, "", (), node.id))
            free.append(name)
            return TensorValue(ValueRef(node.id), value.type)

        scope = Scope({stmt.index: i} if stmt.index else {}, parent=outer.scope, capture=capture)
        for name in carried:
            _, value = outer.scope.lookup(name)
            scope.values[name] = capture(name, value)
        free.clear()
        inner = BlockElaborator(outer.compiler, outer.unit, body, scope, None, None, [], parent=outer)
        inner.run(stmt.body)
        for name in carried:
            before, after = outer.scope.lookup(name)[1], scope.values[name]
            if before.type != after.type:
                raise SpecError(
                    f"the repeat body changes `{name}` from {before.type} to {after.type}; every iteration must keep its type",
                    _binding_span(stmt.body, name) or stmt.span,
                )
            inner.name_value(after, name)
            body.outputs.append((name, after.ref, stmt.span))
        bodies.append(body)
        free_names.extend(n for n in free if n not in free_names)
        outer_modules |= inner.outer_modules
    if not by_index:
        bodies = bodies * count
    _attach(outer, stmt, hint, count, carried, free_names, bodies, outer_modules, camel_case)


def _attach(outer, stmt, hint, count, carried, free_names, bodies, outer_modules, camel_case) -> None:
    first = bodies[0]
    own = list(first.modules.values())
    if not own:
        mode = "none"
    elif len(own) == 1 and own[0].kind in ("op", "block") and not first.ties:
        mode = "single"
    else:
        mode = "body"
    if mode == "body" and outer_modules:
        raise SpecError(
            "a repeat body with several layers cannot also apply an instance defined outside it", stmt.span,
            "move the shared instance's layers into a block, or define them inside the repeat",
        )
    module = None
    if mode != "none":
        module = outer.graph.allocate_module_name(hint)
        items = []
        for i, body in enumerate(bodies):
            if mode == "single":
                item = dataclasses.replace(next(iter(body.modules.values())), name=str(i))
            else:
                if not body.name:
                    body.name = outer.compiler.class_name(outer.graph.name + camel_case(module))
                item = ModuleSpec(str(i), "block", stmt.span, graph=body)
            items.append(item)
        outer.graph.modules[module] = ModuleSpec(module, "repeat", stmt.span, items=items)
    info = RepeatInfo(count, stmt.index, tuple(carried), tuple(free_names), bodies, mode)
    carried_refs = tuple(outer.scope.lookup(n)[1].ref for n in carried)
    free_refs = tuple(outer.scope.lookup(n)[1].ref for n in free_names)
    types = [outer.scope.lookup(n)[1].type for n in carried]
    node = outer.graph.add_node(
        "repeat", {"carried": carried_refs, "free": free_refs}, types, stmt.span, module=module, names=list(carried),
        derived={"repeat": info},
    )
    outer.graph.repeats[node.id] = info
    for i, name in enumerate(carried):
        outer.scope.set(name, TensorValue(ValueRef(node.id, i), types[i]))


def _binding_span(statements, name: str):
    for stmt in statements:
        if isinstance(stmt, ast.Assign) and name in stmt.targets:
            return stmt.span
        if isinstance(stmt, (ast.Repeat,)):
            found = _binding_span(stmt.body, name)
            if found:
                return found
        if isinstance(stmt, ast.If):
            found = _binding_span(stmt.then + stmt.otherwise, name)
            if found:
                return found
    return None
