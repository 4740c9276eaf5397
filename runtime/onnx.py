"""onnxruntime sessions for exported models, and verification of an export against the PyTorch module."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime

from paperspec.compiler.backends.onnx import (
    DEFAULT_OPSET,
    check_opset,
    export_spec,
    model_metadata,
    needs_external_data,
)
from paperspec.compiler.backends.onnx_weights import check_state
from paperspec.compiler.diagnostics import UsageError
from paperspec.compiler.ir import BlockGraph

TOLERANCES = {"f16": 1e-2, "bf16": 5e-2, "f32": 1e-5, "f64": 1e-9}  # integer and bool outputs must match exactly
_BOUND_CHECKS = {"<=": np.less_equal, "<": np.less, ">=": np.greater_equal, ">": np.greater, "==": np.equal, "!=": np.not_equal}


class InputError(ValueError):
    """An input that does not fit the exported model's declared inputs."""


class VerificationError(Exception):
    """ONNX outputs differ from PyTorch's by more than the tolerance; `report` has the numbers."""

    def __init__(self, report: VerifyReport):
        super().__init__("ONNX export does not match PyTorch:\n" + report.format())
        self.report = report


def default_providers() -> list:
    """CUDA when this onnxruntime build has it, else the CPU."""
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


@dataclass(frozen=True)
class ModelInput:
    name: str
    dtype: np.dtype
    shape: tuple  # ints and dim_param names
    declared: str
    constraints: tuple  # (dim name, op, bound) from the spec, e.g. ("T", "<=", 256)


class OnnxSession:
    """An onnxruntime session that checks inputs against the spec's declarations before running."""

    def __init__(self, model: str | bytes | onnx.ModelProto, providers: list | None = None):
        proto = _load_model(model)
        self.metadata = {prop.key: prop.value for prop in proto.metadata_props}
        self.inputs = _model_inputs(proto, self.metadata)
        self.outputs = [value.name for value in proto.graph.output]
        self._folder = None  # a model too large for one protobuf is handed to onnxruntime as files
        if isinstance(model, (str, bytes)):
            source = model  # a path: onnxruntime reads external data from beside it
        elif needs_external_data(proto):
            self._folder = tempfile.TemporaryDirectory()
            source = os.path.join(self._folder.name, "model.onnx")
            save_onnx(proto, source)
        else:
            source = proto.SerializeToString()
        self.session = onnxruntime.InferenceSession(source, providers=providers or default_providers())

    @property
    def provider(self) -> str:
        return self.session.get_providers()[0]

    def run(self, inputs: Mapping) -> dict:
        """Output name -> numpy array; raises InputError naming the input when one does not fit."""
        feeds = self.check_inputs(inputs)
        return dict(zip(self.outputs, self.session.run(self.outputs, feeds), strict=True))

    def check_inputs(self, inputs: Mapping) -> dict:
        expected = {item.name for item in self.inputs}
        unknown = sorted(set(inputs) - expected)
        if unknown:
            raise InputError(f"the model has no input {', '.join(f'`{n}`' for n in unknown)}; its inputs: {_describe(self.inputs)}")
        missing = [item for item in self.inputs if item.name not in inputs]
        if missing:
            raise InputError(f"missing input {', '.join(f'`{item.name}`: {item.declared}' for item in missing)}")
        sizes: dict = {}
        feeds = {}
        for item in self.inputs:
            value = np.asarray(inputs[item.name])
            problem = _shape_problem(item, value, sizes)
            if problem:
                raise InputError(f"input `{item.name}` must be {item.declared}; got {value.dtype}{list(value.shape)}: {problem}")
            feeds[item.name] = value
        return feeds


def _load_model(model) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, bytes):
        return onnx.load_from_string(model)
    if not os.path.isfile(model):
        raise UsageError(f"no such ONNX file: {model}")
    try:
        return onnx.load(model, load_external_data=False)  # the header: names, types, metadata
    except Exception as error:  # noqa: BLE001 - protobuf raises several kinds for a bad file
        raise UsageError(f"{model} is not an ONNX model ({type(error).__name__})") from None


def _model_inputs(proto: onnx.ModelProto, metadata: dict) -> list:
    declared = {item["name"]: item for item in json.loads(metadata.get("paperspec.inputs", "[]"))}
    inputs = []
    for value in proto.graph.input:
        tensor = value.type.tensor_type
        shape = tuple(d.dim_param if d.HasField("dim_param") else d.dim_value for d in tensor.shape.dim)
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type))
        info = declared.get(value.name, {})
        text = info.get("declared") or f"{dtype}[{', '.join(map(str, shape))}]"
        inputs.append(ModelInput(value.name, dtype, shape, text, tuple(tuple(c) for c in info.get("constraints", ()))))
    return inputs


def _describe(inputs: list) -> str:
    return ", ".join(f"`{item.name}`: {item.declared}" for item in inputs)


def _shape_problem(item: ModelInput, value: np.ndarray, sizes: dict) -> str | None:
    """What is wrong with one input, if anything; `sizes` collects the dim_params seen so far."""
    if value.dtype != item.dtype:
        return f"dtype is {value.dtype}, expected {item.dtype}"
    if value.ndim != len(item.shape):
        return f"rank is {value.ndim}, expected {len(item.shape)}"
    for axis, (want, got) in enumerate(zip(item.shape, value.shape, strict=True)):
        if isinstance(want, int) and want != got:
            return f"dim {axis} is {got}, expected {want}"
        if isinstance(want, str) and want.isidentifier():
            if sizes.setdefault(want, (got, item.name))[0] != got:
                size, owner = sizes[want]
                return f"dim {axis} is {got}, but {want} = {size} in `{owner}`"
    for name, op, bound in item.constraints:
        size = sizes.get(name, (None,))[0]
        if isinstance(bound, int) and size is not None and not _BOUND_CHECKS[op](size, bound):
            return f"needs {name} {op} {bound}, got {name} = {size}"
    return None


def read_weights(path: str) -> dict:
    """A safetensors file as a state_dict of torch tensors; UsageError when it cannot be read."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from paperspec.runtime.checkpoint import weights_file

    try:
        path = str(weights_file(path))
    except FileNotFoundError as error:
        raise UsageError(str(error)) from None
    if not os.path.isfile(path):
        raise UsageError(f"no such weights file: {path}")
    try:
        return load_file(path)
    except (SafetensorError, OSError) as error:
        raise UsageError(f"cannot read weights from {path}: {error}", "weights must be a safetensors file") from None


def save_onnx(proto: onnx.ModelProto, path: str, external: bool = False) -> None:
    """Writes a model atomically; weights go to `<path>.data` when asked or when the model would
    pass protobuf's 2 GB limit."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = path + ".tmp"
    if external or needs_external_data(proto):
        copy = onnx.ModelProto()
        copy.CopyFrom(proto)  # saving with external data rewrites the model it is given
        proto = copy
        data = os.path.basename(path) + ".data"
        if os.path.exists(os.path.join(os.path.dirname(os.path.abspath(path)), data)):
            os.remove(os.path.join(os.path.dirname(os.path.abspath(path)), data))
        onnx.save(proto, temporary, save_as_external_data=True, all_tensors_to_one_file=True, location=data, size_threshold=0)
    else:
        onnx.save(proto, temporary)
    os.replace(temporary, path)


def save_weights(module, path: str) -> None:
    """Writes a module's weights as safetensors (tied tensors once), for `paperspec export --weights`."""
    from safetensors.torch import save_model

    save_model(module, path)


EXPORT_PATHS = ("direct", "torch")


def export(
    spec, model: str | None = None, params: dict | None = None, weights=None, opset: int = DEFAULT_OPSET, via: str = "direct"
) -> onnx.ModelProto:
    """ONNX for a spec's model; `weights` is a safetensors path, a state_dict, an nn.Module or None (fresh init).
    `via="torch"` exports the built module through torch.onnx.export(dynamo=True) instead, for comparison."""
    if via not in EXPORT_PATHS:
        raise UsageError(f"unknown export path {via!r}", "via is 'direct' (from the IR) or 'torch' (torch.onnx.export)")
    source, module = "the state_dict", None
    if isinstance(weights, str):
        source, weights = weights, read_weights(weights)
    elif hasattr(weights, "state_dict"):
        module, weights = weights, weights.state_dict()
    if via == "direct":
        return export_spec(spec, model, params, weights, opset, source)
    return _export_via_torch(spec, model, dict(params or {}), weights, module, opset, source)


def _export_via_torch(spec, model: str | None, params: dict, state, module, opset: int, source: str) -> onnx.ModelProto:
    from paperspec.runtime.onnx_torch import export_via_torch

    check_opset(opset)
    model = spec.default_model(model)
    graph = spec.graph(model, **params)
    if state is not None:
        check_state(graph, state, source)
    if module is None:
        module = spec.build(model, **params)
        if state is not None:
            module.load_state_dict(state, strict=False)  # safetensors keeps one key of a tie
    return export_via_torch(spec, model, params, module, opset, model_metadata(spec, model, params, graph))


@dataclass(frozen=True)
class OutputCheck:
    output: str
    sizes: dict
    max_abs: float  # max |onnx - torch|
    max_rel: float  # max |onnx - torch| / max(max |torch|, 1): absolute for small outputs, else relative to their scale
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_rel <= self.tolerance


@dataclass
class VerifyReport:
    provider: str
    checks: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def max_abs(self) -> float:
        return max((check.max_abs for check in self.checks), default=0.0)

    def format(self) -> str:
        lines = [f"onnxruntime ({self.provider}) vs PyTorch (eval mode):"]
        for check in self.checks:
            sizes = ", ".join(f"{k}={v}" for k, v in check.sizes.items()) or "fixed sizes"
            verdict = "ok" if check.ok else f"FAIL (tolerance {check.tolerance:g})"
            lines.append(f"  {check.output} at {sizes}: max abs {check.max_abs:.3g}, max rel {check.max_rel:.3g}  {verdict}")
        return "\n".join(lines)


def verify(
    spec,
    model: str | None = None,
    params: dict | None = None,
    sizes: dict | None = None,
    *,
    module=None,
    onnx_model: str | onnx.ModelProto | None = None,
    tolerance: float | None = None,
    seed: int = 0,
    providers: list | None = None,
) -> VerifyReport:
    """Runs PyTorch and onnxruntime on random inputs at the example sizes and at a second size of
    every symbolic dim; raises VerificationError when an output differs by more than the tolerance."""
    import torch

    from paperspec.runtime.inputs import example_inputs

    params = dict(params or {})
    graph = spec.graph(model, **params)
    module = (module or spec.build(model, **params)).eval()
    onnx_model = onnx_model or export_spec(spec, model, params, module.state_dict())
    session = OnnxSession(onnx_model, providers)
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    report = VerifyReport(session.provider)
    for run_sizes in size_sets(graph, sizes):
        inputs = example_inputs(graph, run_sizes, seed=seed, device=str(device))
        with torch.no_grad():
            expected = module(*inputs.values())
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = session.run({name: value.cpu().numpy() for name, value in inputs.items()})
        for (name, ref, _), want in zip(graph.outputs, expected, strict=True):
            limit = tolerance if tolerance is not None else TOLERANCES.get(graph.type_of(ref).dtype, 0.0)
            report.checks.append(_compare(name, run_sizes, got[name], want.cpu().numpy(), limit))
    if not report.ok:
        raise VerificationError(report)
    return report


def _compare(name: str, sizes: dict, got: np.ndarray, want: np.ndarray, tolerance: float) -> OutputCheck:
    if got.shape != want.shape:
        return OutputCheck(name, dict(sizes), float("inf"), float("inf"), tolerance)
    got64, want64 = got.astype(np.float64), want.astype(np.float64)
    same = (got64 == want64) | (np.isnan(got64) & np.isnan(want64))
    error = np.where(same, 0.0, np.abs(got64 - want64))
    worst = float(np.nan_to_num(error, nan=np.inf).max(initial=0.0))
    # relative to the output's scale, not each element's: sums that cancel lose digits in both runtimes
    scale = max(float(np.abs(want64[np.isfinite(want64)]).max(initial=0.0)), 1.0)
    return OutputCheck(name, dict(sizes), worst, worst / scale, tolerance)


def size_sets(graph: BlockGraph, sizes: dict | None = None) -> list:
    """The example sizes of the symbolic dims, and a second set where every one of them differs."""
    from paperspec.runtime.inputs import symbol_sizes

    used = set().union(*(spec.type.symbols() for spec in graph.inputs))
    first = {name: size for name, size in symbol_sizes(graph, sizes).items() if name in used}
    if not first:
        return [first]
    second = {}
    for index, (name, size) in enumerate(first.items()):
        candidates = [size + index + 1 + step for step in range(8)] + list(range(size - 1, 0, -1))
        second[name] = next((c for c in candidates if _allowed(graph, name, c)), size)
    return [first, second]


def _allowed(graph: BlockGraph, name: str, size: int) -> bool:
    for spec in graph.inputs:
        for symbol, op, bound in spec.constraints:
            if symbol == name and isinstance(bound, int) and not _BOUND_CHECKS[op](size, bound):
                return False
    return True
