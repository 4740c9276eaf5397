"""Spectral ops: real FFTs and the Fourier layers of Fourier neural operators (Li et al. 2021).

paperspec dtypes are real, so a complex tensor is a real one with a trailing dim of 2 holding
(real, imag) — the layout of torch.view_as_real and of ONNX's DFT operator. `rfft` gives such a
tensor and `irfft` takes one; the Fourier layers keep their complex weights the same way."""

from __future__ import annotations

from paperspec.compiler.dims import Dim, floordiv
from paperspec.compiler.ops.base import ShapeError, register
from paperspec.compiler.ops.shapes import normalize_axis, require_rank

NORMS = ("backward", "ortho", "forward")
# n ** exponent scales the unnormalised transform (rfft) or ONNX's 1/n inverse (irfft) to each norm.
_RFFT_SCALE = {"backward": 0, "ortho": -0.5, "forward": -1}
_IRFFT_SCALE = {"backward": 0, "ortho": 0.5, "forward": 1}
_LAST = 2**63 - 1  # Slice's "to the end"
# onnxruntime 1.32's DFT, measured against numpy: (1) its one-sided inverse (irfft) gives wrong
# values for many spectra whose length is not n // 2 + 1 (e.g. 5 frequencies to n = 12 or n = 4),
# so spectra are cut or padded to that length first; (2) in f64 its inverse, one-sided or not, is
# accurate to only about 1e-8 for lengths that are not powers of two, while its forward DFT is
# accurate to about 1e-15, so f64 exports compute inverses with forward DFTs.

_CHECK_GRID_HELPER = '''
def check_grid(op: str, what: str, size: int, needed: int):
    """Raises a ValueError naming the op when a grid is too small for its Fourier modes."""
    if size < needed:
        raise ValueError(f"{op}: more modes than the grid allows: {what} needs at least {needed} points, got {size}")
'''

_SPECTRAL_CONV1D_HELPER = '''
class SpectralConv1d(nn.Module):
    """FNO Fourier layer on [B, C, L]: the lowest `modes` frequencies times learned complex
    weights [C_in, C_out, modes] (stored as (real, imag) in a trailing dim of 2), the rest zeroed."""

    def __init__(self, in_channels: int, out_channels: int, modes: int):
        super().__init__()
        self.modes = modes
        scale = 1 / (in_channels * out_channels)
        self.weight = nn.Parameter(scale * torch.rand(in_channels, out_channels, modes, 2))

    def forward(self, x):
        length = x.shape[-1]
        check_grid("spectral_conv1d", f"modes = {self.modes} along the last dim", length, 2 * self.modes - 2)
        spectrum = torch.fft.rfft(x)[..., : self.modes]
        mixed = torch.einsum("bix,iox->box", spectrum, torch.view_as_complex(self.weight))
        return torch.fft.irfft(mixed, n=length)  # irfft pads the spectrum with zeros to L // 2 + 1
'''

_SPECTRAL_CONV2D_HELPER = '''
class SpectralConv2d(nn.Module):
    """FNO Fourier layer on [B, C, H, W]: the lowest `modes2` frequencies along W, and the lowest
    `modes1` positive (`weight1`) and negative (`weight2`) ones along H, times learned complex weights."""

    def __init__(self, in_channels: int, out_channels: int, modes1: int, modes2: int):
        super().__init__()
        self.modes1, self.modes2 = modes1, modes2
        scale = 1 / (in_channels * out_channels)
        self.weight1 = nn.Parameter(scale * torch.rand(in_channels, out_channels, modes1, modes2, 2))
        self.weight2 = nn.Parameter(scale * torch.rand(in_channels, out_channels, modes1, modes2, 2))

    def forward(self, x):
        height, width = x.shape[-2], x.shape[-1]
        check_grid("spectral_conv2d", f"modes1 = {self.modes1} along dim -2", height, 2 * self.modes1)
        check_grid("spectral_conv2d", f"modes2 = {self.modes2} along the last dim", width, 2 * self.modes2 - 2)
        spectrum = torch.fft.rfft2(x)[..., : self.modes2]
        low = torch.einsum("bixy,ioxy->boxy", spectrum[..., : self.modes1, :], torch.view_as_complex(self.weight1))
        high = torch.einsum("bixy,ioxy->boxy", spectrum[..., -self.modes1 :, :], torch.view_as_complex(self.weight2))
        between = low.new_zeros(*low.shape[:-2], height - 2 * self.modes1, self.modes2)
        return torch.fft.irfft2(torch.cat([low, between, high], dim=-2), s=(height, width))
'''


def _require_real(x, op: str) -> None:
    # torch.fft and onnxruntime's DFT compute in f32 and f64 only
    if x.dtype not in ("f32", "f64"):
        raise ShapeError(f"`{op}` needs an f32 or f64 tensor, got {x}", "x", 'cast it with cast(x, "f32")')


def _require_norm(call) -> None:
    if call["norm"] not in NORMS:
        raise ShapeError(f"`norm` must be one of {', '.join(NORMS)}, got {call['norm']!r}", "norm")


# ---- rfft and irfft ----


def _rfft(call):
    x = call["x"]
    _require_real(x, "rfft")
    _require_norm(call)
    axis = normalize_axis(call["dim"], x.rank)
    call.derived.update(axis=axis, length=x.shape[axis])
    shape = list(x.shape)
    shape[axis] = floordiv(x.shape[axis], 2) + 1
    return x.with_shape(tuple(shape) + (2,))


def _irfft(call):
    x, n = call["x"], call["n"]
    _require_real(x, "irfft")
    _require_norm(call)
    if x.rank < 2 or x.shape[-1] != 2:
        raise ShapeError(f"`irfft` needs a complex tensor: (real, imag) in a trailing dim of 2, got {x}", "x", "rfft gives such tensors")
    if isinstance(n, int) and n < 1:
        raise ShapeError(f"`n` of irfft must be positive, got {n}", "n")
    axis = normalize_axis(call["dim"], x.rank - 1)
    call.derived.update(axis=axis, size=x.shape[axis])
    shape = list(x.shape[:-1])
    shape[axis] = n
    return x.with_shape(tuple(shape))


def _norm_keyword(c) -> str:
    return f", norm={c['norm']}" if c.values["norm"] != "backward" else ""


def _rfft_torch(c):
    return f"torch.view_as_real(torch.fft.rfft({c['x']}, dim={c['dim']}{_norm_keyword(c)}))"


def _irfft_torch(c):
    # view_as_complex needs the trailing (real, imag) pair to be adjacent in memory
    spectrum = f"torch.view_as_complex({c['x']}.contiguous())"
    return f"torch.fft.irfft({spectrum}, n={c['n']}, dim={c['dim']}{_norm_keyword(c)})"


def _rfft_onnx(c):
    axis, dtype = c.derived["axis"], c.values["x"].dtype
    spectrum = real_dft(c, c["x"], axis)
    return _scaled(c, spectrum, c.derived["length"], _RFFT_SCALE[c.values["norm"]], dtype)


def _irfft_onnx(c):
    axis, n, dtype = c.derived["axis"], c.values["n"], c.values["x"].dtype
    signal = inverse_real_dft(c, c["x"], axis, c.derived["size"], n)
    return _scaled(c, signal, n, _IRFFT_SCALE[c.values["norm"]], dtype)


register(
    "rfft",
    "x: tensor, dim: int = -1, norm: str = 'backward'",
    _rfft,
    _rfft_torch,
    "FFT of a real tensor along dim, non-negative frequencies only: size n // 2 + 1 there, plus a "
    "trailing dim of 2 holding (real, imag) (torch.fft.rfft); norm: backward (none), ortho or forward (1/n)",
    category="spectral",
    onnx=_rfft_onnx,
)

register(
    "irfft",
    "x: tensor, n: dim, dim: int = -1, norm: str = 'backward'",
    _irfft,
    _irfft_torch,
    "inverse of rfft: a complex tensor (trailing dim of 2: real, imag) to a real signal of length n "
    "along dim; the spectrum is cut or zero-padded to n // 2 + 1 (torch.fft.irfft)",
    category="spectral",
    onnx=_irfft_onnx,
)

# ---- Fourier layers ----


# op -> its modes arguments: (name, axis, whether the axis has a full spectrum with modes at both ends)
_MODES = {
    "spectral_conv1d": (("modes", -1, False),),
    "spectral_conv2d": (("modes1", -2, True), ("modes2", -1, False)),
}


def _spectral_input(call, op: str, rank: int):
    x = call["x"]
    _require_real(x, op)
    require_rank(x, op, (rank,))
    if not isinstance(x.shape[1], int):
        raise ShapeError(f"`{op}` needs a known channel count in dim 1, got {x}", "x", "declare the channels as a number or parameter")
    for name in ("channels",) + tuple(name for name, _, _ in _MODES[op]):
        if call[name] <= 0:
            raise ShapeError(f"`{name}` of {op} must be positive, got {call[name]}", name)
    call.derived["in_channels"] = x.shape[1]
    return x


def _check_modes(op: str, arg: str, modes: int, size: Dim, full: bool) -> None:
    """Concrete grids are checked here; symbolic ones by the generated module when it runs."""
    # A half spectrum (rfft) has size // 2 + 1 frequencies; a full one splits its modes between both ends.
    needed = 2 * modes if full else 2 * modes - 2
    if isinstance(size, int) and size < needed:
        most = size // 2 if full else size // 2 + 1
        raise ShapeError(
            f"`{op}`: more modes than the grid allows: {arg} = {modes} needs at least {needed} points, got {size}",
            arg,
            f"use at most {most} modes for a grid of {size}",
        )


def _spectral_conv(op: str, rank: int):
    def infer(call):
        x = _spectral_input(call, op, rank)
        for name, axis, full in _MODES[op]:
            _check_modes(op, name, call[name], x.shape[axis], full)
        return x.with_shape((x.shape[0], call["channels"]) + x.shape[2:])

    return infer


def _spectral_conv_params(op: str):
    def parameters(call):
        modes = tuple(call[name] for name, _, _ in _MODES[op])
        shape = (call.derived["in_channels"], call["channels"]) + modes + (2,)
        return {"weight": shape} if op == "spectral_conv1d" else {"weight1": shape, "weight2": shape}

    return parameters


def _spectral_conv1d_onnx(c):
    length, modes = c.values["x"].shape[-1], c.values["modes"]
    spectrum = _cut(c, real_dft(c, c["x"], 2), 2, 0, c.const([modes], "i64"))
    mixed = c.node("Einsum", [spectrum, _complex_matrix(c, "weight")], equation="bixp,ioxpq->boxq")
    return inverse_real_dft(c, mixed, 2, modes, length)


def _spectral_conv2d_onnx(c):
    height, width = c.values["x"].shape[-2:]
    modes1, modes2 = c.values["modes1"], c.values["modes2"]
    # only the kept columns need the DFT along H
    half = _cut(c, real_dft(c, c["x"], 3), 3, 0, c.const([modes2], "i64"))
    spectrum = dft(c, half, 2)
    equation = "bixyp,ioxypq->boxyq"
    low = c.node("Einsum", [_cut(c, spectrum, 2, 0, c.const([modes1], "i64")), _complex_matrix(c, "weight1")], equation=equation)
    high = c.node("Einsum", [_cut(c, spectrum, 2, -modes1, c.const([_LAST], "i64")), _complex_matrix(c, "weight2")], equation=equation)
    rows = inverse_dft(c, _rows(c, low, high, height, modes1), 2, height)
    return inverse_real_dft(c, rows, 3, modes2, width)


def _rows(c, low: str, high: str, height: Dim, modes1: int) -> str:
    """The lowest and highest rows of a spectrum of `height` rows, zeros between them."""
    gap = c.dim(height - 2 * modes1)
    if not isinstance(height, int):
        # A graph cannot raise; on a grid too small for the modes the output gets 2 * modes1 rows,
        # not H, rather than Pad cropping rows into silently wrong values.
        gap = c.node("Max", [gap, c.const([0], "i64")])
    return c.node("Concat", [_padded(c, low, 2, gap), high], axis=2)


register(
    "spectral_conv1d",
    "x: tensor, channels: int, modes: int",
    _spectral_conv("spectral_conv1d", 3),
    lambda c: f"{c.module}({c['x']})",
    "Fourier layer of an FNO on [B, C, L]: rfft, the lowest `modes` frequencies times learned complex "
    "weights (`weight`: [C, channels, modes, 2], real and imag), the rest zeroed, irfft to length L; "
    "needs modes <= L // 2 + 1",
    category="layer",
    torch_module=lambda c: f"SpectralConv1d({c.derived['in_channels']}, {c['channels']}, {c['modes']})",
    parameters=_spectral_conv_params("spectral_conv1d"),
    torch_helpers=(("check_grid", _CHECK_GRID_HELPER), ("SpectralConv1d", _SPECTRAL_CONV1D_HELPER)),
    onnx=_spectral_conv1d_onnx,
)

register(
    "spectral_conv2d",
    "x: tensor, channels: int, modes1: int, modes2: int",
    _spectral_conv("spectral_conv2d", 4),
    lambda c: f"{c.module}({c['x']})",
    "Fourier layer of an FNO on [B, C, H, W]: rfft2, the lowest modes1 positive (`weight1`) and negative "
    "(`weight2`) frequencies along H by the lowest modes2 along W times learned complex weights "
    "([C, channels, modes1, modes2, 2]), the rest zeroed, irfft2; needs 2 * modes1 <= H and modes2 <= W // 2 + 1",
    category="layer",
    torch_module=lambda c: f"SpectralConv2d({c.derived['in_channels']}, {c['channels']}, {c['modes1']}, {c['modes2']})",
    parameters=_spectral_conv_params("spectral_conv2d"),
    torch_helpers=(("check_grid", _CHECK_GRID_HELPER), ("SpectralConv2d", _SPECTRAL_CONV2D_HELPER)),
    onnx=_spectral_conv2d_onnx,
)

# ---- ONNX: DFT nodes and their plumbing ----


def dft(c, x: str, axis: int, inverse: int = 0, onesided: int = 0, length: str = "") -> str:
    """A DFT of a [..., 2] or [..., 1] tensor. Opset 20 made the axis an input; 17 had an attribute."""
    if c.opset >= 20:
        return c.node("DFT", [x, length, c.const(axis, "i64")], inverse=inverse, onesided=onesided)
    return c.node("DFT", [x, length] if length else [x], axis=axis, inverse=inverse, onesided=onesided)


def real_dft(c, x: str, axis: int) -> str:
    """rfft: a real tensor gets a trailing dim of 1 (DFT's real layout) and gives [..., n // 2 + 1, ..., 2]."""
    return dft(c, c.node("Unsqueeze", [x, c.const([-1], "i64")]), axis, onesided=1)


def inverse_real_dft(c, spectrum: str, axis: int, size: Dim, n: Dim) -> str:
    """irfft of a [..., size, ..., 2] spectrum to a real signal of length n (scaled by 1/n)."""
    spectrum = _fitted(c, spectrum, axis, size, floordiv(n, 2) + 1)
    if c.opset >= 20 and c.values["x"].dtype == "f32":
        signal = dft(c, spectrum, axis, inverse=1, onesided=1, length=c.scalar_dim(n))
        return c.node("Gather", [signal, c.const(0, "i64")], axis=-1)  # the real part
    # Opsets 18 and 19 have no one-sided inverse, and f64 inverses lose digits (see the top);
    # for the full spectrum X of a real signal, Re(ifft(X)) = Re(fft(conj X)) / n.
    signal = dft(c, _conjugate_full_spectrum(c, spectrum, axis, n), axis)
    return _scaled(c, c.node("Gather", [signal, c.const(0, "i64")], axis=-1), n, -1, c.values["x"].dtype)


def inverse_dft(c, spectrum: str, axis: int, n: Dim) -> str:
    """The inverse DFT of a full [..., n, ..., 2] spectrum along axis (scaled by 1/n)."""
    if c.values["x"].dtype == "f32":
        return dft(c, spectrum, axis, inverse=1)
    conjugate = _conjugation(c)  # ifft(X) = conj(fft(conj X)) / n: f64 inverses lose digits
    signal = c.node("Mul", [dft(c, c.node("Mul", [spectrum, conjugate]), axis), conjugate])
    return _scaled(c, signal, n, -1, c.values["x"].dtype)


def _conjugate_full_spectrum(c, half: str, axis: int, n: Dim) -> str:
    """conj of the full spectrum of a real signal, from its non-negative half: X[n - k] = conj(X[k])."""
    mirrored = c.node("Slice", [half, c.dim(n - floordiv(n, 2) - 1), c.const([0], "i64"), c.const([axis], "i64"), c.const([-1], "i64")])
    return c.node("Concat", [c.node("Mul", [half, _conjugation(c)]), mirrored], axis=axis)


def _conjugation(c) -> str:
    """Multiplies (real, imag) pairs into complex conjugates."""
    return c.const([1.0, -1.0], c.values["x"].dtype)


def _fitted(c, spectrum: str, axis: int, size: Dim, target: Dim) -> str:
    """The spectrum cut or zero-padded to `target` along axis, as irfft does."""
    difference = target - size
    if difference == 0:
        return spectrum
    if not isinstance(difference, int) or difference > 0:
        amount = c.dim(difference)
        if not isinstance(difference, int):
            amount = c.node("Max", [amount, c.const([0], "i64")])
        spectrum = _padded(c, spectrum, axis, amount)
    if not isinstance(difference, int) or difference < 0:
        spectrum = _cut(c, spectrum, axis, 0, c.dim(target))
    return spectrum


def _padded(c, x: str, axis: int, amount: str) -> str:
    """Zeros appended along axis; `amount` is an int64 tensor of shape [1]."""
    pads = c.node("Concat", [c.const([0], "i64"), amount], axis=0)
    return c.node("Pad", [x, pads, "", c.const([axis], "i64")])


def _cut(c, x: str, axis: int, start: int, end: str) -> str:
    return c.node("Slice", [x, c.const([start], "i64"), end, c.const([axis], "i64")])


def _complex_matrix(c, name: str) -> str:
    """A complex weight [..., 2] as the real 2x2 blocks [[re, im], [-im, re]] ([..., 2, 2]), so
    that one Einsum over (real, imag) pairs multiplies complex numbers."""
    weight = c.weight(name)
    swapped = c.node("Mul", [c.node("Gather", [weight, c.const([1, 0], "i64")], axis=-1), c.const([-1.0, 1.0], c.values["x"].dtype)])
    rows = [c.node("Unsqueeze", [value, c.const([-2], "i64")]) for value in (weight, swapped)]
    return c.node("Concat", rows, axis=-2)


def _scaled(c, x: str, n: Dim, exponent: float, dtype: str) -> str:
    """x * n ** exponent, with n read from the shapes when it is symbolic."""
    if exponent == 0:
        return x
    if isinstance(n, int):
        return c.node("Mul", [x, c.const(n**exponent, dtype)])
    size = c.cast(c.dim(n), "i64", dtype)
    return c.node("Mul", [x, c.node("Pow", [size, c.const(exponent, dtype)])])
