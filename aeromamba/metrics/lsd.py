"""Log-spectral distance (LSD), over the full band or restricted to the high or low band.

The protocol of the AEROMamba paper (Abreu et al. 2024; `docs/metrics.md`): magnitude STFT
with `torch.stft`, n_fft 2048, hop 512, periodic Hann window of 2048, `center=True` with
torch's default reflect padding, no normalisation; P = |X|^2; per frame
    sqrt(mean over bins of (log10 clamp(P_ref, 1e-8) - log10 clamp(P_est, 1e-8))^2)
and the mean of that over frames.

The band-restricted variants take the mean over a subset of the STFT bins only:
`lsd_hf` over bins whose centre frequency is strictly above the cutoff (by default 5512.5 Hz,
the Nyquist frequency of the 11,025 Hz input, i.e. the band the model has to invent) and
`lsd_lf` over bins at or below it. At 44.1 kHz bin 256 lies exactly on 5512.5 Hz and counts
as low band: 257 low bins, 768 high bins.

Shapes: `estimate` and `reference` are the same shape, one of
    (samples,)            -> a 0-d tensor
    (batch, samples)      -> (batch,)
    (batch, 1, samples)   -> (batch,)
Torch tensors and numpy arrays are accepted; float64 input is computed in float64, anything
else in float32 (or the tensor's own floating dtype), on the device of the first tensor given.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import numpy as np
import torch

Band = Literal["full", "high", "low"]

#: Metric names in the order `lsd_bands` returns them.
LSD_NAMES = ("lsd", "lsd_hf", "lsd_lf")

#: Nyquist frequency of the 11,025 Hz low-resolution input: the default band split.
DEFAULT_CUTOFF_HZ = 11025 / 2

_POWER_FLOOR = 1e-8


@lru_cache(maxsize=16)
def _hann(n_fft: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    # Cached so that scoring thousands of excerpts does not rebuild (and re-upload) the window.
    return torch.hann_window(n_fft, periodic=True, device=device, dtype=dtype)


@lru_cache(maxsize=16)
def _bin_frequencies(n_fft: int, sr: float) -> np.ndarray:
    # float64 so that a cutoff lying exactly on a bin (5512.5 Hz = bin 256 at 44.1 kHz) compares
    # exactly rather than landing on either side through rounding.
    return np.arange(n_fft // 2 + 1, dtype=np.float64) * (sr / n_fft)


def _as_batch(x: torch.Tensor | np.ndarray, name: str) -> tuple[torch.Tensor, bool]:
    """Return (batch, samples) and whether the input was 1-D."""
    t = torch.as_tensor(x) if isinstance(x, np.ndarray) else x
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor or numpy array, got {type(x).__name__}")
    if t.ndim == 1:
        return t.unsqueeze(0), True
    if t.ndim == 2:
        return t, False
    if t.ndim == 3 and t.shape[1] == 1:
        return t[:, 0], False
    raise ValueError(
        f"{name}: expected shape (samples,), (batch, samples) or (batch, 1, samples), "
        f"got {tuple(t.shape)}; mix multichannel audio down to mono first"
    )


def _prepare(
    estimate: torch.Tensor | np.ndarray, reference: torch.Tensor | np.ndarray, n_fft: int
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    est, scalar = _as_batch(estimate, "estimate")
    ref, _ = _as_batch(reference, "reference")
    if est.shape[-1] != ref.shape[-1]:
        raise ValueError(
            f"estimate and reference differ in length: {est.shape[-1]} vs {ref.shape[-1]} samples"
        )
    if est.shape != ref.shape:
        raise ValueError(
            f"estimate and reference differ in shape: {tuple(estimate.shape)} vs "
            f"{tuple(reference.shape)}"
        )
    if est.shape[-1] < n_fft:
        raise ValueError(
            f"input too short for LSD: {est.shape[-1]} samples, at least n_fft = {n_fft} needed"
        )
    dtype = torch.promote_types(est.dtype, ref.dtype)
    if dtype != torch.float64:
        dtype = dtype if dtype.is_floating_point else torch.float32
        # half precision would overflow |X|^2 and defeat the 1e-8 floor
        dtype = torch.float32 if torch.finfo(dtype).bits < 32 else dtype
    device = est.device if isinstance(estimate, torch.Tensor) else ref.device
    est = est.to(device=device, dtype=dtype)
    ref = ref.to(device=device, dtype=dtype)
    for name, t in (("estimate", est), ("reference", ref)):
        if not torch.isfinite(t).all():
            bad = int((~torch.isfinite(t)).sum())
            raise ValueError(f"{name} contains {bad} NaN/Inf samples")
    return est, ref, scalar


def _log_power(x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """(batch, samples) -> log10 of the floored power spectrogram, (batch, bins, frames)."""
    spec = torch.stft(
        x,
        n_fft,
        hop_length=hop,
        window=_hann(n_fft, x.device, x.dtype),
        center=True,
        return_complex=True,
    )
    power = spec.real.square() + spec.imag.square()
    return torch.log10(power.clamp_min(_POWER_FLOOR))


def _band_mask(band: Band, n_fft: int, sr: float, cutoff_hz: float) -> np.ndarray:
    freqs = _bin_frequencies(n_fft, float(sr))
    if band == "full":
        return np.ones_like(freqs, dtype=bool)
    if band == "high":
        mask = freqs > cutoff_hz
    elif band == "low":
        mask = freqs <= cutoff_hz
    else:
        raise ValueError(f"band must be 'full', 'high' or 'low', got {band!r}")
    if not mask.any():
        raise ValueError(
            f"no STFT bin in the {band} band for cutoff {cutoff_hz} Hz at sr {sr} Hz, n_fft {n_fft}"
        )
    return mask


def _lsd_from_sq_diff(sq_diff: torch.Tensor, mask: np.ndarray) -> torch.Tensor:
    """Mean over frames of per-frame RMS over the masked bins: (batch, bins, frames) -> (batch,)."""
    if not mask.all():
        index = torch.from_numpy(np.flatnonzero(mask)).to(sq_diff.device)
        sq_diff = sq_diff.index_select(1, index)
    return sq_diff.mean(dim=1).sqrt().mean(dim=-1)


def lsd_bands(
    estimate: torch.Tensor | np.ndarray,
    reference: torch.Tensor | np.ndarray,
    *,
    sr: float = 44100,
    cutoff_hz: float = DEFAULT_CUTOFF_HZ,
    bands: tuple[Band, ...] = ("full", "high", "low"),
    n_fft: int = 2048,
    hop: int = 512,
) -> dict[str, torch.Tensor]:
    """LSD over several bands from one STFT of each signal.

    Returns {'lsd', 'lsd_hf', 'lsd_lf'} (those of `bands`), each (batch,) or 0-d for 1-D input.
    Raises ValueError for a length or shape mismatch, non-finite samples, fewer than `n_fft`
    samples, or a band holding no bin.
    """
    names = {"full": "lsd", "high": "lsd_hf", "low": "lsd_lf"}
    masks = {band: _band_mask(band, n_fft, sr, cutoff_hz) for band in bands}
    est, ref, scalar = _prepare(estimate, reference, n_fft)
    sq_diff = (_log_power(ref, n_fft, hop) - _log_power(est, n_fft, hop)).square()
    out = {}
    for band, mask in masks.items():
        value = _lsd_from_sq_diff(sq_diff, mask)
        out[names[band]] = value[0] if scalar else value
    return out


def lsd(
    estimate: torch.Tensor | np.ndarray,
    reference: torch.Tensor | np.ndarray,
    *,
    n_fft: int = 2048,
    hop: int = 512,
    sr: float = 44100,
    band: Band = "full",
    cutoff_hz: float = DEFAULT_CUTOFF_HZ,
) -> torch.Tensor:
    """LSD of `estimate` against `reference` over `band` ('full', 'high' above `cutoff_hz`,
    'low' at or below it); (batch,) or 0-d for 1-D input. `sr` and `cutoff_hz` only matter
    for a restricted band. Errors as `lsd_bands`."""
    (value,) = lsd_bands(
        estimate, reference, sr=sr, cutoff_hz=cutoff_hz, bands=(band,), n_fft=n_fft, hop=hop
    ).values()
    return value
