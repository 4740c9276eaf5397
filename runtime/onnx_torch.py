"""The comparison export path: the built nn.Module through torch.onnx.export(dynamo=True)."""

from __future__ import annotations

import logging
import warnings

import onnx

from paperspec.compiler.diagnostics import UsageError
from paperspec.compiler.dims import Sym

EXPORTER = "torch.onnx.export(dynamo=True)"
_LIMITS = {"<=": ("max", 0), "<": ("max", -1), ">=": ("min", 0), ">": ("min", 1), "==": ("value", 0)}


def symbol_dims(graph) -> dict:
    """One torch.export.Dim per symbolic dim of the model's inputs, within its declared bounds
    (`T <= ctx` gives max = ctx); sizes start at 1."""
    from torch.export import Dim

    bounds: dict[str, dict] = {}
    for spec in graph.inputs:
        for name, op, bound in spec.constraints:
            if isinstance(bound, int) and op in _LIMITS:
                key, offset = _LIMITS[op]
                for limit in ("min", "max") if key == "value" else (key,):
                    bounds.setdefault(name, {})[limit] = bound + offset
    names = sorted(set().union(*(spec.type.symbols() for spec in graph.inputs)))
    return {name: Dim(name, **{"min": 1, **bounds.get(name, {})}) for name in names}


def dynamic_shapes(graph, dims: dict) -> dict:
    """Input name -> {axis: Dim}; a dim like `2 * T + 1` becomes a Dim derived from T."""
    shapes = {}
    for spec in graph.inputs:
        axes = {}
        for axis, dim in enumerate(spec.type.shape):
            if isinstance(dim, Sym):
                axes[axis] = _derived(dim, dims, spec)
        shapes[spec.name] = axes
    return shapes


def _derived(dim: Sym, dims: dict, spec):
    terms = dim.as_terms()
    offset = terms.pop((), 0)
    ((monomial, coefficient),) = terms.items() if len(terms) == 1 else ((None, 0),)
    if coefficient < 1 or len(monomial) != 1 or not isinstance(monomial[0], str):
        raise UsageError(
            f"--via torch cannot express dim `{dim}` of input `{spec.name}` for torch.export",
            "torch.export takes dims linear in one symbol (`T`, `2 * T + 1`); export this model directly",
        )
    base = dims[monomial[0]] if coefficient == 1 else coefficient * dims[monomial[0]]
    return base + offset if offset else base


def export_via_torch(spec, model: str, params: dict, module, opset: int, metadata: dict) -> onnx.ModelProto:
    """ONNX from tracing the module with torch.export; the spec's input and output names and
    dims, the direct exporter's metadata plus `paperspec.exported_via`."""
    try:
        import onnxscript  # noqa: F401 - torch.onnx.export(dynamo=True) needs it
    except ImportError:
        raise UsageError(
            "--via torch needs the onnxscript package, which is not installed",
            "pip install 'paperspec[onnx-torch]' (or pip install onnxscript); the direct export needs neither",
        ) from None
    import torch

    from paperspec.runtime.inputs import example_inputs, symbol_sizes

    graph = spec.graph(model, **params)
    dims = symbol_dims(graph)
    # size 1 would be specialised by torch.export, so examples are at least 2
    sizes = {name: max(2, size) for name, size in symbol_sizes(graph).items()}
    inputs = example_inputs(graph, sizes)
    # torch.onnx logs a line per torchvision op it cannot find, onnx_ir one per empty attribute
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnx_ir", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module.eval(),
                tuple(inputs.values()),
                dynamo=True,
                dynamic_shapes=dynamic_shapes(graph, dims),
                input_names=list(inputs),
                output_names=[name for name, _, _ in graph.outputs],
                opset_version=opset,
                verbose=False,
            )
    except torch.onnx.OnnxExporterError as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(f"{EXPORTER} failed for model `{model}`: {message}", "the direct export (without --via) does not trace the module") from None
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
    proto = program.model_proto
    onnx.helper.set_model_props(proto, {**metadata, "paperspec.exported_via": EXPORTER})
    return proto
