"""The comparison export path (torch.onnx.export with dynamo) agrees with PyTorch like the direct one."""

import pytest

import paperspec
from paperspec.compiler.backends.onnx import model_metadata
from paperspec.runtime.onnx import verify

pytest.importorskip("onnxscript")

from paperspec.runtime.onnx_torch import export_via_torch  # noqa: E402

CASES = [
    ("specs/transformer.pspec", "GPT", {"d": 16, "layers": 1, "heads": 2, "ctx": 16}),
    ("specs/mlp.pspec", "MLP", {"inputs": 6, "width": 8}),
]


@pytest.mark.parametrize(("path", "model", "params"), CASES)
def test_via_torch_matches_pytorch_at_two_sizes(path, model, params):
    spec = paperspec.load(path)
    module = spec.build(model, **params)
    metadata = model_metadata(spec, model, params, spec.graph(model, **params))
    proto = export_via_torch(spec, model, params, module, 21, metadata)
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["paperspec.exported_via"].startswith("torch.onnx.export")
    assert [i.name for i in proto.graph.input] == [s.name for s in spec.graph(model, **params).inputs]
    report = verify(spec, model, params, module=module, onnx_model=proto)
    assert report.ok and len(report.checks) == 2
