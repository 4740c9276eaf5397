"""Every binary state of n units, for exact sums over them: the partition function of a small
Boltzmann machine is a logsumexp over one layer's states (the other layer summed out in closed form)."""

from __future__ import annotations

import numpy as np

from paperspec.compiler.ops.base import ShapeError, register
from paperspec.compiler.types import TensorType

# 2^20 states of 20 units is 80 MB of f32; beyond that enumeration is the wrong tool.
MOST_UNITS = 20

_BINARY_STATES_HELPER = '''
def binary_states(n: int, device=None):
    """Every binary vector of length n as the rows of an f32 [2^n, n] tensor, in counting order
    (row i holds the bits of i, the first column the most significant)."""
    bits = torch.arange(n - 1, -1, -1, device=device)
    return ((torch.arange(2**n, device=device)[:, None] >> bits) & 1).to(torch.float32)
'''


def all_binary_states(n: int) -> np.ndarray:
    """The same table in numpy, for the ONNX constant."""
    rows = np.arange(2**n)[:, None] >> np.arange(n - 1, -1, -1)
    return (rows & 1).astype(np.float32).reshape(2**n, n)


def _binary_states(call):
    n = call["n"]
    if not 1 <= n <= MOST_UNITS:
        raise ShapeError(
            f"`binary_states` enumerates 2^n states; n must be between 1 and {MOST_UNITS}, got {n}",
            "n",
            "enumerate the smaller layer of the model: the other one sums out in closed form",
        )
    return TensorType("f32", (2**n, n))


register(
    "binary_states",
    "n: int",
    _binary_states,
    lambda c: f"binary_states({c['n']}, device={c.device})",
    "every binary vector of length n as the rows of f32[2^n, n], in counting order (row i holds the "
    "bits of i, most significant first), e.g. the hidden states summed over in an RBM's exact "
    "partition function; n <= 20. ONNX: a constant",
    category="creation",
    torch_helpers=(("binary_states", _BINARY_STATES_HELPER),),
    onnx=lambda c: c.const(all_binary_states(c.values["n"]), "f32"),
)
