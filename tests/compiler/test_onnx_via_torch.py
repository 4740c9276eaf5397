"""The comparison export path (torch.onnx.export with dynamo) and weights saved as external data."""

from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

import paperspec
from paperspec.compiler.backends import onnx as onnx_backend
from paperspec.compiler.backends.onnx import export_spec
from paperspec.compiler.diagnostics import UsageError
from paperspec.runtime.cli import main
from paperspec.runtime.onnx import OnnxSession, export, save_onnx, save_weights, verify

SPECS = os.path.join(os.path.dirname(__file__), "..", "..", "specs")
needs_onnxscript = pytest.mark.skipif(
    importlib.util.find_spec("onnxscript") is None,
    reason="--via torch needs onnxscript, not installed here (pip install 'paperspec[onnx-torch]')",
)

# Small enough for a quick torch.export; verify runs each at two sizes of every symbolic dim.
CASES = [
    ("transformer.pspec", "GPT", {"d": 16, "layers": 2, "heads": 2, "ctx": 16}),
    ("mlp.pspec", "MLP", {"inputs": 6, "width": 8}),
]


def load(name: str) -> paperspec.Spec:
    return paperspec.load(os.path.join(SPECS, name))


@needs_onnxscript
@pytest.mark.parametrize(("path", "model", "params"), CASES, ids=[case[1] for case in CASES])
def test_via_torch_matches_pytorch_at_two_sizes(path, model, params):
    spec = load(path)
    torch.manual_seed(0)
    module = spec.build(model, **params).eval()
    proto = export(spec, model, params, weights=module, via="torch")
    graph = spec.graph(model, **params)
    assert [i.name for i in proto.graph.input] == [s.name for s in graph.inputs]
    assert [o.name for o in proto.graph.output] == [name for name, _, _ in graph.outputs]
    direct = {p.key: p.value for p in export_spec(spec, model, params, module.state_dict()).metadata_props}
    props = {p.key: p.value for p in proto.metadata_props}
    assert props.pop("paperspec.exported_via") == "torch.onnx.export(dynamo=True)"
    assert props == direct
    report = verify(spec, model, params, module=module, onnx_model=proto)
    assert len({tuple(check.sizes.values()) for check in report.checks}) == 2


@needs_onnxscript
def test_via_torch_keeps_symbolic_dims_and_bounds():
    spec = paperspec.loads(
        "model M() {\n  in y: f32[B, T <= 12]\n  in x: f32[B, 2 * T + 1, 4]\n"
        "  out sum(x, dim = 1) + sum(y, dim = 1)[:, none]\n}\n",
        "<derived>",
    )
    module = spec.build().eval()
    proto = export(spec, weights=module, via="torch")
    shapes = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input]
    assert shapes == [["B", "T"], ["B", "2*T + 1", 4]]
    verify(spec, sizes={"B": 3, "T": 5}, module=module, onnx_model=proto)


@needs_onnxscript
def test_cli_export_via_torch_with_weights_and_verify(tmp_path, capsys):
    spec_path = os.path.join(SPECS, "transformer.pspec")
    params = ["--set", "d=16", "--set", "layers=1", "--set", "heads=2", "--set", "ctx=16"]
    module = paperspec.load(spec_path).build("GPT", d=16, layers=1, heads=2, ctx=16)
    save_weights(module, str(tmp_path / "gpt.safetensors"))
    output = tmp_path / "gpt.onnx"
    argv = ["export", spec_path, *params, "--weights", str(tmp_path / "gpt.safetensors"), "--via", "torch", "--verify", "-o", str(output)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "(torch.onnx.export)" in out and "logits at B=4, T=4" in out and "FAIL" not in out
    assert OnnxSession(str(output)).metadata["paperspec.exported_via"].startswith("torch.onnx.export")


def test_via_torch_without_onnxscript_names_the_package(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import onnxscript now raises ImportError
    spec = load("mlp.pspec")
    with pytest.raises(UsageError, match="needs the onnxscript package") as caught:
        export(spec, params={"inputs": 6, "width": 8}, via="torch")
    assert "paperspec[onnx-torch]" in caught.value.hint
    code = main(["export", os.path.join(SPECS, "mlp.pspec"), "--via", "torch", "-o", str(tmp_path / "m.onnx")])
    assert code == 2 and "onnxscript" in capsys.readouterr().err
    assert export(spec, params={"inputs": 6, "width": 8}).graph.input[0].name == "x"  # the direct path does not need it


@needs_onnxscript
def test_torch_exporter_failure_is_a_usage_error(monkeypatch):
    def fail(*args, **kwargs):
        raise torch.onnx.OnnxExporterError("cannot trace this\nlong details")

    monkeypatch.setattr(torch.onnx, "export", fail)
    with pytest.raises(UsageError, match=r"torch.onnx.export\(dynamo=True\) failed for model `MLP`: cannot trace this$"):
        export(load("mlp.pspec"), params={"inputs": 6, "width": 8}, via="torch")


def test_unknown_export_path_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown export path 'tracing'"):
        export(load("mlp.pspec"), via="tracing")


def mlp_and_input(seed: int = 0) -> tuple:
    spec = load("mlp.pspec")
    torch.manual_seed(seed)
    module = spec.build("MLP", inputs=6, width=8).eval()
    return spec, module, np.random.default_rng(seed).standard_normal((3, 6)).astype(np.float32)


def run_file(path, x: np.ndarray) -> np.ndarray:
    """Outputs of onnxruntime on a model read with onnx.load, external data included."""
    proto = onnx.load(str(path))
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_cli_external_data_flag_round_trips(tmp_path):
    spec, module, x = mlp_and_input()
    save_weights(module, str(tmp_path / "w.safetensors"))
    target = tmp_path / "mlp.onnx"
    argv = ["export", os.path.join(SPECS, "mlp.pspec"), "--set", "inputs=6", "--set", "width=8", "--weights", str(tmp_path / "w.safetensors")]
    for _ in range(2):  # a second export replaces the data file rather than appending to it
        assert main([*argv, "--external-data", "--verify", "-o", str(target)]) == 0
    header = onnx.load(str(target), load_external_data=False)
    assert header.graph.initializer and all(t.data_location == onnx.TensorProto.EXTERNAL for t in header.graph.initializer)
    weights_bytes = sum(value.numel() * value.element_size() for value in module.state_dict().values())
    assert os.path.getsize(tmp_path / "mlp.onnx.data") == weights_bytes
    onnx.checker.check_model(str(target), full_check=True)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_file(target, x), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(OnnxSession(str(target)).run({"x": x})["logits"], expected, rtol=1e-5, atol=1e-6)


def test_models_past_the_protobuf_limit_use_external_data(tmp_path, monkeypatch):
    """A real 2 GB model is too big for a test: the limit is lowered to a few bytes instead."""
    spec, module, x = mlp_and_input(seed=1)
    monkeypatch.setattr(onnx_backend, "EXTERNAL_DATA_BYTES", 100)
    proto = export_spec(spec, "MLP", {"inputs": 6, "width": 8}, module.state_dict())  # checked from a file
    before = proto.SerializeToString()
    save_onnx(proto, str(tmp_path / "big.onnx"))
    assert proto.SerializeToString() == before  # saving does not strip the weights from the caller's model
    assert (tmp_path / "big.onnx.data").exists()
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_file(tmp_path / "big.onnx", x), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(OnnxSession(proto).run({"x": x})["logits"], expected, rtol=1e-5, atol=1e-6)
