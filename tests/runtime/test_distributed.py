"""Two CPU processes under torchrun reach the weights one process reaches with the same global batch."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from safetensors.torch import load_file

from paperspec.runtime.distributed import World, shard

SPEC = textwrap.dedent(
    """
    spec ddp "two processes, one result"
    model MLP(n: int = 8) {
      in x: f32[B, n]
      out linear(dropout(relu(linear(x, 16)), 0.0), 2)
    }
    data parity = sparse_parity(n = 8, k = 2, seed = 0)
    train run {
      model net = MLP()
      data parity
      batch 32
      loss cross_entropy(net(batch.x), batch.y)
      optimizer adamw(lr = 0.01)
      schedule warmup_cosine(warmup = 5)
      steps 12
    }
    """
)


def train(tmp_path: Path, out: str, *extra: str) -> dict:
    spec = tmp_path / "ddp.pspec"
    spec.write_text(SPEC)
    command = [sys.executable, "-m", "paperspec.runtime.cli", "train", str(spec), "--out", str(tmp_path / out), "--quiet", *extra]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240)
    # A failing rank's own traceback comes first; torchrun's summary of the ranks comes last.
    assert result.returncode == 0, result.stderr[:4000] + "\n...\n" + result.stderr[-1500:]
    (weights,) = (tmp_path / out).glob("ddp/run/*/checkpoints/step_0000012/net.safetensors")
    return load_file(weights)


def test_two_processes_match_one_process(tmp_path):
    single = train(tmp_path, "one")
    double = train(tmp_path, "two", "--nproc", "2")
    assert single.keys() == double.keys()
    for key in single:
        assert (single[key] - double[key]).abs().max() < 1e-5, key


def test_each_rank_takes_its_own_equal_slice():
    import torch

    batch = {"x": torch.arange(8).reshape(8, 1)}
    parts = [shard(batch, World(rank, 2, rank))["x"].flatten().tolist() for rank in range(2)]
    assert parts == [[0, 1, 2, 3], [4, 5, 6, 7]]
    with pytest.raises(ValueError, match="does not split evenly"):
        shard(batch, World(0, 3, 0))
