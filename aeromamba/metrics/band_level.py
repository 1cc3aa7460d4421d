"""The generated band's level and dynamics against the reference, per band above the input's
Nyquist frequency (5.5–8, 8–12, 12–16 and 16–20 kHz).

One magnitude STFT of each signal (n_fft 2048, hop 512, periodic Hann, no padding: frames lie
inside the signal; a signal shorter than one frame is zero-padded to it), normalised by the
window's sum so that a full-scale sine reads about 0.25. A band holds the bins whose centre
frequency f satisfies low < f <= high; its power in a frame is the mean over those bins.

- `level_<band>`: level error in dB, 10·log10(mean power of the estimate / mean power of the
  reference), the means over every frame and bin of the band (long-term power). 0 is right,
  negative is too dull.
- `spread_<band>`: envelope spread ratio, the standard deviation over frames of the band's
  level in dB, the estimate's over the reference's, over the frames where the reference's band
  is not silent (above `SILENCE`). 1 is right, below 1 is a flattened envelope.

Undefined values are NaN, never an error: a reference whose band is silent over the whole item
has no level error, and one with fewer than two non-silent frames (or a constant level) no
spread. Powers of the estimate are floored at `SILENCE` so that an empty band gives a finite,
very negative level and a spread of 0.
"""

from __future__ import annotations

import math

import numpy as np
import torch

#: (name, low Hz, high Hz): the bands above 5512.5 Hz, the Nyquist of the 11,025 Hz input.
BANDS = (
    ("5_8", 11025 / 2, 8000.0),
    ("8_12", 8000.0, 12000.0),
    ("12_16", 12000.0, 16000.0),
    ("16_20", 16000.0, 20000.0),
)
#: Band labels for tables and plots, in the order of `BANDS`.
BAND_LABELS = {"5_8": "5.5–8 kHz", "8_12": "8–12 kHz", "12_16": "12–16 kHz", "16_20": "16–20 kHz"}
LEVEL_KEYS = tuple(f"level_{name}" for name, _, _ in BANDS)
SPREAD_KEYS = tuple(f"spread_{name}" for name, _, _ in BANDS)
#: Every key `band_level` returns: the level errors, then the spread ratios.
KEYS = LEVEL_KEYS + SPREAD_KEYS

#: Mean power per bin (window-normalised) at or below which a band counts as silent: −120 dB,
#: below the quantisation noise of 16-bit audio in one bin.
SILENCE = 1e-12
N_FFT = 2048
HOP = 512


def _as_signal(x: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    """A 1-D float32 tensor; ValueError for another shape or non-finite samples."""
    t = torch.as_tensor(x).detach().to(device="cpu", dtype=torch.float32)
    if t.ndim != 1:
        raise ValueError(f"{name}: expected a mono signal (samples,), got {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains {int((~torch.isfinite(t)).sum())} NaN/Inf samples")
    return t


def band_powers(x: torch.Tensor, sr: float) -> torch.Tensor:
    """(bands, frames) mean power per bin of each band of `BANDS` in each frame of 1-D `x`."""
    if len(x) < N_FFT:
        x = torch.nn.functional.pad(x, (0, N_FFT - len(x)))
    window = torch.hann_window(N_FFT, periodic=True, dtype=x.dtype)
    spec = torch.stft(x, N_FFT, HOP, window=window, center=False, return_complex=True)
    power = (spec.real.square() + spec.imag.square()) / window.sum().square()
    freqs = np.arange(N_FFT // 2 + 1) * (sr / N_FFT)
    rows = []
    for name, low, high in BANDS:
        first, end = np.searchsorted(freqs, low, "right"), np.searchsorted(freqs, high, "right")
        if first == end:
            raise ValueError(f"band {name}: no STFT bin between {low} and {high} Hz at {sr} Hz")
        rows.append(power[first:end].mean(dim=0))
    return torch.stack(rows)


def _level_error(est: torch.Tensor, ref: torch.Tensor) -> float:
    """Long-term level of one band, estimate against reference, in dB (NaN: silent reference)."""
    ref_power = float(ref.mean())
    if ref_power <= SILENCE:
        return math.nan
    return 10 * math.log10(max(float(est.mean()), SILENCE) / ref_power)


def _spread_ratio(est: torch.Tensor, ref: torch.Tensor) -> float:
    """Std over the reference's non-silent frames of the band level in dB, estimate / reference."""
    active = ref > SILENCE
    if int(active.sum()) < 2:
        return math.nan
    ref_std = float((10 * ref[active].log10()).std())
    if ref_std == 0:
        return math.nan
    return float((10 * est[active].clamp_min(SILENCE).log10()).std()) / ref_std


def band_level(
    estimate: torch.Tensor | np.ndarray, reference: torch.Tensor | np.ndarray, sr: float = 44100
) -> dict[str, float]:
    """`KEYS` → level error (dB) and spread ratio of each band, NaN where undefined, for two mono
    signals of equal length at rate `sr`. ValueError for another shape, a length mismatch,
    non-finite samples or a band without a bin at `sr`."""
    est, ref = _as_signal(estimate, "estimate"), _as_signal(reference, "reference")
    if len(est) != len(ref):
        raise ValueError(f"estimate has {len(est)} samples, reference {len(ref)}")
    est_bands, ref_bands = band_powers(est, sr), band_powers(ref, sr)
    levels = [_level_error(e, r) for e, r in zip(est_bands, ref_bands, strict=True)]
    spreads = [_spread_ratio(e, r) for e, r in zip(est_bands, ref_bands, strict=True)]
    return dict(zip(KEYS, levels + spreads, strict=True))
