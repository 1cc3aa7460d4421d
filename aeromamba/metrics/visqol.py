"""ViSQOL v3 MOS-LQO through `visqol-python` (a Python port of Google's ViSQOL v3.3.3).

The protocol of the AEROMamba paper (Abreu et al. 2024; `docs/metrics.md`): audio mode at
48 kHz, both signals resampled to 48 kHz and stored as 16-bit. `visqol` reproduces that in
memory: each signal is mixed down to mono (the channel mean, as ViSQOL's own WAV reader
does), resampled with soxr VHQ (`aeromamba.audio.resample`) to the mode's rate, rounded to the
16-bit grid (k / 32768 for integer k in [-32768, 32767], so out-of-range samples clip as in a
16-bit file) and handed to ViSQOL as (reference, degraded).

Speech mode (16 kHz, VAD patches, 21 bands) is available only when asked for with
`mode="speech"`; it uses ViSQOL's lattice quality mapper when `ai-edge-litert` is installed and
otherwise the polynomial mapper, which the library warns about (it reads higher than the C++
default).

Shapes: `estimate` and `reference` are (samples,) or (channels, samples), numpy arrays or torch
tensors, both at `sr`. The result is a Python float on ViSQOL's 1-5 scale.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from aeromamba.audio import resample, to_mono

if TYPE_CHECKING:
    from visqol import VisqolApi

Mode = Literal["audio", "speech"]

#: The sample rate each ViSQOL mode is defined at.
VISQOL_RATES: dict[str, int] = {"audio": 48000, "speech": 16000}

_INT16_SCALE = 32768.0


@cache
def visqol_api(mode: Mode) -> VisqolApi:
    """The configured `visqol.VisqolApi` for `mode`, built on first use and then shared.

    Its `measure_from_arrays(reference, degraded, sample_rate)` takes mono arrays already at the
    mode's rate (`VISQOL_RATES`); `visqol` below does that preparation.
    """
    # Cached: building it loads the SVR / lattice model, and every excerpt reuses it.
    try:
        from visqol import VisqolApi
    except ImportError as err:
        raise ImportError(
            "ViSQOL needs the optional evaluation dependencies: pip install .[eval] "
            "(visqol-python[accel]==3.8.0)"
        ) from err
    api = VisqolApi()
    api.create(mode=mode)
    return api


def quantize_16bit(x: np.ndarray) -> np.ndarray:
    """Round to the 16-bit PCM grid and clip, as writing a 16-bit WAV and reading it back would
    (float64, same shape)."""
    return np.clip(np.round(x * _INT16_SCALE), -_INT16_SCALE, _INT16_SCALE - 1) / _INT16_SCALE


def _prepare(x: np.ndarray | torch.Tensor, name: str, sr: int, target_sr: int) -> np.ndarray:
    """Any accepted input -> mono float64 (samples,) at `target_sr` on the 16-bit grid."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[-1] == 0:
        raise ValueError(f"{name}: expected (samples,) or (channels, samples), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains {int((~np.isfinite(x)).sum())} NaN/Inf samples")
    mono = to_mono(x.astype(np.float32, copy=False))
    out = quantize_16bit(resample(mono, sr, target_sr, quality="VHQ")[0].astype(np.float64))
    if not out.any():
        # ViSQOL levels the degraded signal to the reference's SPL: silence makes that NaN.
        raise ValueError(f"{name} is silent at 16-bit resolution; ViSQOL is undefined for it")
    return out


def visqol(
    estimate: np.ndarray | torch.Tensor,
    reference: np.ndarray | torch.Tensor,
    sr: int,
    *,
    mode: Mode = "audio",
) -> float:
    """MOS-LQO of `estimate` (the degraded signal) against `reference`, both at `sr` Hz.

    Raises ImportError without visqol-python, ValueError for an unknown mode, a bad shape,
    non-finite or silent input, or (from ViSQOL) a signal too short to score (about 1 s is
    needed in audio mode).
    """
    if mode not in VISQOL_RATES:
        raise ValueError(f"mode must be 'audio' or 'speech', got {mode!r}")
    target_sr = VISQOL_RATES[mode]
    ref = _prepare(reference, "reference", sr, target_sr)
    est = _prepare(estimate, "estimate", sr, target_sr)
    # visqol-python's argument order is (reference, degraded); the score is not symmetric.
    result = visqol_api(mode).measure_from_arrays(ref, est, target_sr)
    return float(result.moslqo)
