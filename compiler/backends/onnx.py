"""ONNX backend: builds a ModelProto straight from the graph IR, one scoped node group per op."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping

import onnx
from onnx import helper

from paperspec.compiler.backends.onnx_builder import ONNX_DTYPES, GraphBuilder, OnnxCall
from paperspec.compiler.backends.onnx_weights import check_state, torch_key, weight_lookup
from paperspec.compiler.backends.pysource import identifier
from paperspec.compiler.diagnostics import SpecError, UsageError
from paperspec.compiler.dims import Sym
from paperspec.compiler.ir import BlockGraph, Node, ValueRef
from paperspec.compiler.ops.base import get_op

DEFAULT_OPSET = 21
MIN_OPSET = 18  # Split(num_outputs) and reductions with axes as inputs
SEMANTICS = "inference: dropout off, batchnorm uses running stats"
# protobuf caps a serialised model at 2 GB; past this the weights go to an external data file,
# leaving 16 MB for the graph itself
EXTERNAL_DATA_BYTES = 2 * 1024**3 - 2**24


def check_opset(opset: int) -> None:
    highest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= highest:
        raise UsageError(f"unsupported opset {opset}", f"paperspec exports ONNX opsets {MIN_OPSET} to {highest}")


def export_graph(
    graph: BlockGraph, state: Mapping, opset: int = DEFAULT_OPSET, metadata: dict | None = None, source: str = "the state_dict"
) -> onnx.ModelProto:
    """The model `graph` as ONNX, with initializers from `state` (a state_dict or safetensors dict)."""
    check_opset(opset)
    check_state(graph, state, source)
    builder = GraphBuilder(opset, weight_lookup(graph, state))
    values = {ValueRef(spec.node): spec.name for spec in graph.inputs}
    outputs = _name_outputs(builder, graph, BlockLowering(builder, "", torch_key).run(graph, values))
    inputs = [value_info(spec.name, spec.type) for spec in graph.inputs]
    proto = helper.make_graph(builder.nodes, graph.block, inputs, outputs, list(builder.initializers.values()))
    model = helper.make_model(proto, opset_imports=[helper.make_opsetid("", opset)], producer_name="paperspec")
    model.producer_version = (metadata or {}).get("paperspec.version", "")
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    helper.set_model_props(model, dict(metadata or {}))
    _check(model)
    return model


def needs_external_data(model: onnx.ModelProto) -> bool:
    """Whether the initializers are too large to serialise the model in one protobuf (2 GB)."""
    return sum(len(t.raw_data) for t in model.graph.initializer) > EXTERNAL_DATA_BYTES


def _check(model: onnx.ModelProto) -> None:
    """onnx's full checker; a model past protobuf's 2 GB limit is checked from a file with its
    weights stored beside it, since it cannot be serialised in one piece."""
    if not needs_external_data(model):
        onnx.checker.check_model(model, full_check=True)
        return
    with tempfile.TemporaryDirectory() as folder:
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        path = os.path.join(folder, "model.onnx")
        onnx.save(copy, path, save_as_external_data=True, all_tensors_to_one_file=True, location="model.onnx.data")
        onnx.checker.check_model(path, full_check=True)


def _name_outputs(builder: GraphBuilder, graph: BlockGraph, results: list) -> list:
    """Identity nodes giving the output values the spec's output names; their value infos."""
    inputs = {spec.name for spec in graph.inputs}
    outputs = []
    for (name, ref, span), value in zip(graph.outputs, results, strict=True):
        if name in inputs:
            raise SpecError(f"output `{name}` has the name of an input; ONNX needs distinct names", span)
        builder.nodes.append(helper.make_node("Identity", [value], [name], name=builder.unique(f"outputs/{name}")))
        outputs.append(value_info(name, graph.type_of(ref)))
    return outputs


def value_info(name: str, tensor_type) -> onnx.ValueInfoProto:
    """A graph input or output; symbolic dims become dim_params named as in the spec."""
    shape = [d if isinstance(d, int) else str(d) for d in tensor_type.shape]
    return helper.make_tensor_value_info(name, ONNX_DTYPES[tensor_type.dtype], shape)


def symbol_sources(graph: BlockGraph, values: dict) -> dict:
    """Symbolic dim name -> (value name, axis) of the first input of `graph` that is that size."""
    sources: dict = {}
    for spec in graph.inputs:
        for axis, dim in enumerate(spec.type.shape):
            if isinstance(dim, Sym) and len(dim.terms) == 1 and dim.terms[0][1] == 1 and len(dim.terms[0][0]) == 1:
                sources.setdefault(dim.terms[0][0][0], (values[ValueRef(spec.node)], axis))
    return sources


def model_metadata(spec, model: str, params: dict, graph: BlockGraph) -> dict:
    """metadata_props: where the model comes from and what it computes."""
    from paperspec import __version__

    inputs = [{"name": s.name, "declared": s.declared, "constraints": [_plain(list(c)) for c in s.constraints]} for s in graph.inputs]
    return {
        "paperspec.version": __version__,
        "paperspec.spec": spec.name or spec.path,
        "paperspec.model": model,
        "paperspec.params": json.dumps({k: _plain(v) for k, v in graph.args.items()}, sort_keys=True),
        "paperspec.overrides": json.dumps({k: _plain(v) for k, v in params.items()}, sort_keys=True),
        "paperspec.source_hash": spec.source_hash,
        "paperspec.semantics": SEMANTICS,
        "paperspec.inputs": json.dumps(inputs),
    }


def _plain(value):
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return getattr(getattr(value, "op", None), "name", None) or str(value)


def export_spec(spec, model: str | None = None, params: dict | None = None, state: Mapping | None = None, opset: int = DEFAULT_OPSET, source: str = "the state_dict") -> onnx.ModelProto:
    """ONNX for a model of a loaded spec; without `state`, the weights of a freshly built module."""
    model = spec.default_model(model)
    params = dict(params or {})
    graph = spec.graph(model, **params)
    check_opset(opset)
    if state is None:
        state = spec.build(model, **params).state_dict()
    return export_graph(graph, state, opset, model_metadata(spec, model, params, graph), source)


class BlockLowering:
    """Lowers one block graph; `modules` maps the block's submodule names to state_dict paths."""

    def __init__(self, builder: GraphBuilder, path: str, modules: Callable[[str], str], symbols: dict | None = None):
        self.builder = builder
        self.path = path  # scope of this block's ops without a submodule, e.g. `layers.0.attn`
        self.modules = modules
        self.symbols = dict(symbols or {})  # a repeat body reads sizes as the block around it does

    def run(self, graph: BlockGraph, values: dict) -> list:
        """Emits the graph's nodes; `values` maps its input refs to ONNX names. Returns output names."""
        self.symbols.update(symbol_sources(graph, values))
        for node in graph.nodes():
            if node.op == "input":
                continue
            if node.op == "param":
                values[ValueRef(node.id)] = self.builder.weight(self.modules(node.module))
            elif node.op == "call":
                self.lower_call(node, values)
            elif node.op == "repeat":
                self.lower_repeat(node, values)
            else:
                self.lower_op(node, values)
        return [values[ref] for _, ref, _ in graph.outputs]

    def scope(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def lower_call(self, node: Node, values: dict) -> None:
        child = node.derived["graph"]
        path = self.modules(node.module)
        inputs = {ValueRef(spec.node): values[ref] for spec, ref in zip(child.inputs, node.args["inputs"], strict=True)}
        lowering = BlockLowering(self.builder, path, lambda name: f"{path}.{torch_key(name)}")
        for i, value in enumerate(lowering.run(child, inputs)):
            values[ValueRef(node.id, i)] = value

    def lower_repeat(self, node: Node, values: dict) -> None:
        """Unrolled: each iteration is lowered with its own scope (`layers.0`, `layers.1`, ...)."""
        info = node.derived["repeat"]
        carried = [values[ref] for ref in node.args["carried"]]
        free = {name: values[ref] for name, ref in zip(info.free, node.args["free"], strict=True)}
        base = self.modules(node.module) if node.module else None
        for i, body in enumerate(info.bodies):
            inputs = {ValueRef(spec.node): value for spec, value in zip(body.inputs[: len(carried)], carried, strict=True)}
            inputs.update({ValueRef(spec.node): free[spec.name] for spec in body.inputs[len(carried):]})
            carried = self.iteration(info.mode, body, f"{base}.{i}" if base else None, i).run(body, inputs)
        for i, value in enumerate(carried):
            values[ValueRef(node.id, i)] = value

    def iteration(self, mode: str, body: BlockGraph, item: str | None, index: int) -> BlockLowering:
        if mode == "body":
            return BlockLowering(self.builder, item, lambda name: f"{item}.{torch_key(name)}", self.symbols)
        own = next(iter(body.modules), None) if mode == "single" else None

        def modules(name: str) -> str:
            return item if name == own else self.modules(name)

        return BlockLowering(self.builder, item or self.scope(f"repeat.{index}"), modules, self.symbols)

    def lower_block_arg(self, node: Node, arg: str, names: list, builder: GraphBuilder) -> list:
        """The block an op takes as `arg` (a ModuleRef), lowered on the value names `names`."""
        graph = node.derived[f"{arg}_graph"]
        path = self.modules(node.call.args[arg].name)
        inputs = {ValueRef(spec.node): name for spec, name in zip(graph.inputs, names, strict=True)}
        return BlockLowering(builder, path, lambda name: f"{path}.{torch_key(name)}").run(graph, inputs)

    def lower_op(self, node: Node, values: dict) -> None:
        opdef = get_op(node.op)
        reason = opdef.export_blocker(node.call)
        if reason:
            raise SpecError(f"`{node.op}` cannot be exported to ONNX: {reason}", node.span)
        if opdef.onnx is None:
            raise SpecError(f"`{node.op}` has no ONNX lowering yet", node.span, "export models without it, or add an `onnx=` lowering to the op")
        inputs = {}
        for name, value in node.args.items():
            if isinstance(value, ValueRef):
                inputs[name] = values[value]
            elif isinstance(value, tuple) and value and all(isinstance(v, ValueRef) for v in value):
                inputs[name] = tuple(values[v] for v in value)
        module = self.modules(node.module) if node.module else None
        scope = module or self.scope(identifier(node.op))
        call = OnnxCall(
            self.builder, inputs, dict(node.call.args), node.derived, node.types, scope, module, node.call, self.symbols,
            lambda arg, names, builder: self.lower_block_arg(node, arg, names, builder),
        )
        results = opdef.onnx(call)
        results = [results] if isinstance(results, str) else list(results)
        assert len(results) == len(node.types), f"{node.op} lowering gave {len(results)} outputs for {len(node.types)}"
        for i, value in enumerate(results):
            values[ValueRef(node.id, i)] = value


__all__ = [
    "DEFAULT_OPSET",
    "EXTERNAL_DATA_BYTES",
    "MIN_OPSET",
    "check_opset",
    "export_graph",
    "export_spec",
    "model_metadata",
    "needs_external_data",
    "symbol_sources",
]
