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


def test_external_data_round_trips(tmp_path):
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch

    from paperspec.runtime.cli import main
    from paperspec.runtime.onnx import save_weights

    spec = paperspec.load("specs/mlp.pspec")
    module = spec.build("MLP", inputs=6, width=8).eval()
    save_weights(module, str(tmp_path / "w.safetensors"))
    target = tmp_path / "mlp.onnx"
    arguments = ["export", "specs/mlp.pspec", "--set", "inputs=6", "--set", "width=8", "--weights", str(tmp_path / "w.safetensors")]
    assert main([*arguments, "--external-data", "--verify", "-o", str(target)]) == 0
    header = onnx.load(str(target), load_external_data=False)
    assert all(t.data_location == onnx.TensorProto.EXTERNAL for t in header.graph.initializer)
    assert (tmp_path / "mlp.onnx.data").exists()
    x = np.random.default_rng(0).standard_normal((3, 6)).astype(np.float32)
    got = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    assert np.abs(got - expected).max() < 1e-5
