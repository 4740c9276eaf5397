"""ONNX graph building for op lowerings: scoped node names, constants, weights, dims as tensors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from onnx import NodeProto, TensorProto, helper, numpy_helper

from paperspec.compiler.dims import Dim, FloorDiv

ONNX_DTYPES = {
    "f16": TensorProto.FLOAT16,
    "bf16": TensorProto.BFLOAT16,
    "f32": TensorProto.FLOAT,
    "f64": TensorProto.DOUBLE,
    "i32": TensorProto.INT32,
    "i64": TensorProto.INT64,
    "bool": TensorProto.BOOL,
}
NUMPY_DTYPES = {"f16": np.float16, "f32": np.float32, "f64": np.float64, "i32": np.int32, "i64": np.int64, "bool": np.bool_}


class GraphBuilder:
    """Collects the nodes and initializers of one ONNX graph; every name it hands out is unique.

    Symbolic dims are read from value shapes through `symbols`: dim name -> (value name, axis),
    one mapping per block, since every block names its symbolic sizes itself."""

    def __init__(self, opset: int, weights: Callable[[str], tuple]):
        self.opset = opset
        self.nodes: list[NodeProto] = []
        self.initializers: dict[str, TensorProto] = {}
        self._weights = weights  # state_dict key -> (initializer name, numpy array)
        self._taken: set[str] = set()
        self._constants: dict[tuple, str] = {}
        self._dims: dict[tuple, str] = {}

    def child(self) -> GraphBuilder:
        """A builder for a subgraph (a Scan or Loop body): its own nodes, constants and dims,
        names unique across the whole model, weights from the same initializers."""
        child = GraphBuilder(self.opset, self._weights)
        child._taken = self._taken
        child.initializers = self.initializers
        return child

    def unique(self, base: str) -> str:
        name, suffix = base, 1
        while name in self._taken:
            name = f"{base}_{suffix}"
            suffix += 1
        self._taken.add(name)
        return name

    def node(self, op_type: str, inputs: list, scope: str, outputs: int = 1, **attributes) -> list:
        """Adds `scope/OpType` and returns the names of its outputs."""
        name = self.unique(f"{scope}/{op_type}")
        results = [f"{name}_output_{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), results, name=name, **attributes))
        return results

    def constant(self, value, dtype: str) -> str:
        """A Constant node holding `value` as `dtype`; equal constants are made once."""
        if dtype == "bf16":
            return self.node("Cast", [self.constant(value, "f32")], "constants", to=TensorProto.BFLOAT16)[0]
        array = np.asarray(value, dtype=NUMPY_DTYPES[dtype])
        key = (dtype, array.shape, array.tobytes())
        if key not in self._constants:
            tensor = numpy_helper.from_array(array)
            self._constants[key] = self.node("Constant", [], "constants", value=tensor)[0]
        return self._constants[key]

    def weight(self, key: str) -> str:
        """The initializer for a state_dict key; tied keys share one initializer."""
        name, array = self._weights(key)
        if name not in self.initializers:
            self.initializers[name] = numpy_helper.from_array(array, name)
        return name

    def dim(self, dim: Dim, symbols: dict) -> str:
        """An int64 tensor of shape [1] holding a dim, read from the inputs' shapes when symbolic."""
        if isinstance(dim, int):
            return self.constant([dim], "i64")
        key = ("dim", dim, tuple(sorted((name, symbols.get(name)) for name in dim.atoms())))
        if key not in self._dims:
            total = None
            for monomial, coefficient in dim.terms:
                term = self._monomial(monomial, coefficient, str(dim), symbols)
                total = term if total is None else self.node("Add", [total, term], f"dims/{dim}")[0]
            self._dims[key] = total
        return self._dims[key]

    def _monomial(self, monomial: tuple, coefficient: int, scope: str, symbols: dict) -> str:
        factors = [self._atom(atom, symbols) for atom in monomial]
        if coefficient != 1 or not factors:
            factors.append(self.constant([coefficient], "i64"))
        product = factors[0]
        for factor in factors[1:]:
            product = self.node("Mul", [product, factor], f"dims/{scope}")[0]
        return product

    def _atom(self, atom, symbols: dict) -> str:
        if isinstance(atom, FloorDiv):
            divisor = self.constant([atom.divisor], "i64")
            return self.node("Div", [self.dim(atom.numerator, symbols), divisor], f"dims/{atom}")[0]
        assert atom in symbols, f"symbolic dim {atom} is not the size of any input of its block"
        key = ("shape", *symbols[atom])
        if key not in self._dims:
            source, axis = symbols[atom]
            self._dims[key] = self.node("Shape", [source], f"dims/{atom}", start=axis, end=axis + 1)[0]
        return self._dims[key]

    def scalar_dim(self, dim: Dim, symbols: dict) -> str:
        """A 0-d int64 tensor holding a dim."""
        if isinstance(dim, int):
            return self.constant(dim, "i64")
        key = ("scalar", self.dim(dim, symbols))
        if key not in self._dims:
            axes = self.constant([0], "i64")
            self._dims[key] = self.node("Squeeze", [self.dim(dim, symbols), axes], f"dims/{dim}")[0]
        return self._dims[key]

    def dims(self, dims, symbols: dict, wildcard: bool = False) -> str:
        """A 1-D int64 tensor of dims; with `wildcard` the first symbolic dim becomes -1 (Reshape)."""
        dims = list(dims)
        if wildcard:
            symbolic = [i for i, d in enumerate(dims) if not isinstance(d, int)]
            if symbolic:
                dims[symbolic[0]] = -1
        if all(isinstance(d, int) for d in dims):
            return self.constant(np.array(dims, dtype=np.int64).reshape(len(dims)), "i64")
        pieces, run = [], []
        for d in dims:
            if isinstance(d, int):
                run.append(d)
                continue
            if run:
                pieces.append(self.constant(run, "i64"))
                run = []
            pieces.append(self.dim(d, symbols))
        if run:
            pieces.append(self.constant(run, "i64"))
        return pieces[0] if len(pieces) == 1 else self.node("Concat", pieces, "dims/shape", axis=0)[0]


@dataclass
class OnnxCall:
    """What an ONNX lowering sees: input value names, compile-time values, and node emitters."""

    builder: GraphBuilder
    inputs: dict  # tensor argument -> value name (tensor lists: tuples of names)
    values: dict  # argument -> compile-time value (tensor args: their TensorType)
    derived: dict
    out_types: list
    scope: str  # prefix of the node names, e.g. `layers.0.attn.qkv`
    module: str | None  # state_dict prefix of the op's submodule
    call: object = None  # the OpCall the shape rule saw
    symbols: dict = field(default_factory=dict)  # the block's symbolic dims -> (value name, axis)
    # (block argument, input value names, builder) -> the block's output names, emitted into builder
    lower_block: Callable | None = None

    def __getitem__(self, name: str):
        return self.inputs[name]

    @property
    def opset(self) -> int:
        return self.builder.opset

    def node(self, op_type: str, inputs: list, outputs: int = 1, **attributes):
        """Emits `scope/OpType`; returns its output name, or a list of names when outputs > 1."""
        results = self.builder.node(op_type, inputs, self.scope, outputs, **attributes)
        return results[0] if outputs == 1 else results

    def const(self, value, dtype: str) -> str:
        return self.builder.constant(value, dtype)

    def weight(self, name: str) -> str:
        """The initializer of the op's parameter or buffer `name`, e.g. `weight`, `0.bias`."""
        return self.builder.weight(f"{self.module}.{name}")

    def dim(self, dim: Dim) -> str:
        return self.builder.dim(dim, self.symbols)

    def scalar_dim(self, dim: Dim) -> str:
        return self.builder.scalar_dim(dim, self.symbols)

    def dims(self, dims, wildcard: bool = False) -> str:
        return self.builder.dims(dims, self.symbols, wildcard)

    def cast(self, value: str, source: str, target: str) -> str:
        return value if source == target else self.node("Cast", [value], to=ONNX_DTYPES[target])

    def fill(self, shape: str, value, dtype: str) -> str:
        """A tensor of the shape held by the int64 vector `shape`, every element `value`."""
        tensor = helper.make_tensor("value", ONNX_DTYPES[dtype], [1], [value])
        return self.node("ConstantOfShape", [shape], value=tensor)

    def operand(self, name: str, dtype: str) -> str:
        """A `scalar` argument as a tensor of `dtype`: the input cast if needed, or a constant."""
        value = self.values[name]
        if name in self.inputs:
            return self.cast(self.inputs[name], value.dtype, dtype)
        return self.const(value, dtype)

    def block(self, arg: str, inputs: list, builder: GraphBuilder | None = None) -> list:
        """Emits the block passed as `arg` on `inputs` (into a subgraph's builder if given, else
        inline); returns the names of its outputs."""
        return self.lower_block(arg, inputs, builder or self.builder)

    def block_body(self, arg: str, inputs: list, input_types: list, extra_outputs: int = 0) -> tuple:
        """A subgraph (Scan/Loop body) running the block `arg`: (GraphProto, output names).
        The body's inputs are `inputs` with `input_types` (TensorTypes); its outputs are the
        block's outputs, each through an Identity so no body output is also a body input; with
        `extra_outputs`, the last block output is repeated that many more times (e.g. a Scan that
        stacks the state it carries)."""
        child = self.builder.child()
        results = self.block(arg, inputs, child)
        results = results + [results[-1]] * extra_outputs
        types = self.derived[f"{arg}_outputs"]
        types = types + [types[-1]] * extra_outputs
        return self.subgraph(child, inputs, input_types, results, types)

    def subgraph(self, child: GraphBuilder, inputs: list, input_types: list, results: list, result_types: list) -> tuple:
        """The nodes of `child` as a subgraph (a Scan/Loop body): (GraphProto, output names).
        Each result goes out through an Identity, so no body output is also a body input."""
        outputs = [child.node("Identity", [value], f"{self.scope}/body")[0] for value in results]
        graph = helper.make_graph(
            child.nodes, self.builder.unique(f"{self.scope}/body"),
            [helper.make_tensor_value_info(n, ONNX_DTYPES[t.dtype], None) for n, t in zip(inputs, input_types, strict=True)],
            [helper.make_tensor_value_info(n, ONNX_DTYPES[t.dtype], None) for n, t in zip(outputs, result_types, strict=True)],
        )
        return graph, outputs

    def activation(self, op: str, x: str, x_type) -> str:
        """Applies a registered activation (with its default arguments) through its own lowering."""
        from paperspec.compiler.ops.base import get_op

        opdef = get_op(op)
        values = {arg.name: arg.default for arg in opdef.signature[1:]}
        values["x"] = x_type
        sub = OnnxCall(self.builder, {"x": x}, values, {}, [x_type], f"{self.scope}.{op}", None, symbols=self.symbols)
        return opdef.onnx(sub)


__all__ = ["GraphBuilder", "OnnxCall", "ONNX_DTYPES", "NUMPY_DTYPES"]
