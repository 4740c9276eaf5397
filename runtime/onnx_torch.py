"""The comparison export path: the built nn.Module through torch.onnx.export(dynamo=True)."""

from __future__ import annotations

import logging
import warnings

from paperspec.compiler.diagnostics import UsageError
from paperspec.compiler.dims import Sym


def _dims_of(graph) -> dict:
    """One torch.export.Dim per symbolic dim of the model's inputs, honouring declared bounds."""
    from torch.export import Dim

    bounds: dict[str, dict] = {}
    for spec in graph.inputs:
        for name, op, bound in spec.constraints:
            if isinstance(bound, int):
                limit = {"<=": bound, "<": bound - 1}.get(op)
                if limit is not None:
                    bounds.setdefault(name, {})["max"] = limit
    dims: dict = {}
    for spec in graph.inputs:
        for dim in spec.type.shape:
            if isinstance(dim, Sym) and len(dim.terms) == 1 and dim.terms[0] == ((dim.terms[0][0][0],), 1):
                name = dim.terms[0][0][0]
                dims.setdefault(name, Dim(name, min=1, **bounds.get(name, {})))
    return dims


def export_via_torch(spec, model: str | None, params: dict, module, opset: int, metadata: dict):
    """ONNX from tracing the module with torch.export; same input and output names as the spec."""
    try:
        import onnxscript  # noqa: F401  (torch.onnx.export(dynamo=True) needs it)
    except ImportError:
        raise UsageError("--via torch needs onnxscript: pip install 'paperspec[onnx-torch]'") from None
    import torch

    from paperspec.runtime.inputs import example_inputs, symbol_sizes

    graph = spec.graph(model, **params)
    dims = _dims_of(graph)
    sizes = {name: max(2, size) for name, size in symbol_sizes(graph).items()}  # size 1 would specialise
    inputs = example_inputs(graph, sizes)
    dynamic = {
        spec_input.name: {
            axis: dims[dim.terms[0][0][0]]
            for axis, dim in enumerate(spec_input.type.shape)
            if isinstance(dim, Sym) and dim.terms[0][0][0] in dims and len(dim.terms) == 1
        }
        for spec_input in graph.inputs
    }
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # it logs a line per torchvision op it cannot find
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module.eval(),
            tuple(inputs.values()),
            dynamo=True,
            dynamic_shapes=dynamic,
            input_names=list(inputs),
            output_names=[name for name, _, _ in graph.outputs],
            opset_version=opset,
            verbose=False,
        )
    quiet.setLevel(level)
    proto = program.model_proto
    props = dict(metadata)
    props["paperspec.exported_via"] = "torch.onnx.export(dynamo=True)"
    import onnx

    onnx.helper.set_model_props(proto, props)
    return proto
