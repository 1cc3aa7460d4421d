"""Measured bandwidth of a recording: where its program content ends.

A lossy encoder cuts everything above a fixed frequency (typically 16-19 kHz), and material
resampled up from 22.05 kHz has nothing above 11.025 kHz; in both the long-term spectrum falls
by tens of dB within a few hundred Hz and stays down. Such files are poor 44.1 kHz targets, so
the rule looks for that steep, lasting drop rather than for a level relative to the peak alone.

The rule, on the long-term average power spectrum L(f) in dB (Welch: mean over 50 %-overlapping
Blackman-Harris frames of about 20 Hz resolution, channels summed, then a 120 Hz moving
average):

1. Content is whatever lies within ``RANGE_DB`` (90 dB) of the loudest band; below that are
   leakage, rounding noise and decoder residue, not music.
2. The region above f, from f + ``DROP_SPAN_HZ`` (500 Hz) to Nyquist, is a floor when it is
   flat (its 10th and 90th level percentiles within ``FLAT_DB``, 15 dB) and low (90th
   percentile at least ``FLOOR_DB``, 60 dB, under the peak): the white noise of 16-bit
   rounding, a codec's residue or digital silence. Music above f is neither: it keeps falling
   with frequency (a dark mix whose bass stands 40 dB above the rest has no "cut" at 150 Hz).
3. A cut is a frequency f of content with a floor above it and a level at least ``DROP_DB``
   (30 dB) over that floor's 90th percentile. The bandwidth is the highest cut. 30 dB within
   500 Hz is far steeper than music's own roll-off yet well within what encoders (brick
   walls) and resamplers (> 90 dB stop bands) do; measuring the drop against the floor, not
   the peak, keeps quiet recordings whose 16-bit floor lies only 60-80 dB under the peak from
   being read as full band. Percentiles, not extremes, so that the few bins of a transition
   band or of window leakage just above a cut do not hide it.
4. With no cut, the spectrum fades out into its floor or reaches Nyquist: the bandwidth is
   the highest frequency of content (often Nyquist itself).

Silence (all samples zero) and empty input have no content: the bandwidth is 0.0. The window's
main lobe and the smoothing spread a cut upwards, so a brick wall reads ~100 Hz above its
frequency (measured on noise cut at 4-19 kHz).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.fft import rfft
from scipy.ndimage import uniform_filter1d
from scipy.signal import get_window

RULE = 2  # bump when the rule changes: stored measurements are then redone
RANGE_DB = 90.0
DROP_DB = 30.0
DROP_SPAN_HZ = 500.0
FLAT_DB = 15.0
FLOOR_DB = 60.0
SMOOTH_HZ = 120.0
BIN_HZ = 20.0
MAX_CHANNELS = 16
FRAMES_PER_BLOCK = 256


def _as_frames(audio: np.ndarray) -> np.ndarray:
    """(samples,) or (channels, samples) -> (channels, samples) float32."""
    audio = np.atleast_2d(np.asarray(audio))
    if audio.ndim != 2 or audio.shape[0] > MAX_CHANNELS:
        raise ValueError(
            f"expected audio of shape (samples,) or (channels, samples), got {audio.shape}"
        )
    audio = audio.astype(np.float32, copy=False)
    if not np.isfinite(audio).all():
        raise ValueError("audio holds NaN or infinite samples")
    return audio


def long_term_spectrum(audio: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed long-term average power spectrum, channels summed.

    Welch's method (50 % overlap, Blackman-Harris: sidelobes below -92 dB, so a loud pass band
    does not leak over a cut), computed a block of frames at a time to bound memory on long
    files. Returns (freqs in Hz, power), both of shape (bins,); power is linear, arbitrary scale.
    """
    frames = _as_frames(audio)
    frames = frames - frames.mean(axis=1, keepdims=True)  # a DC offset is not content
    nperseg = min(int(2 ** np.round(np.log2(sr / BIN_HZ))), frames.shape[1])
    window = get_window("blackmanharris", nperseg).astype(np.float32)
    segments = sliding_window_view(frames, nperseg, axis=-1)[:, :: max(1, nperseg // 2)]
    power = np.zeros(nperseg // 2 + 1)
    for start in range(0, segments.shape[1], FRAMES_PER_BLOCK):
        spectrum = rfft(segments[:, start : start + FRAMES_PER_BLOCK] * window, axis=-1)
        power += (spectrum.real**2 + spectrum.imag**2).sum(axis=(0, 1))
    freqs = np.arange(len(power)) * (sr / nperseg)
    width = max(1, int(round(SMOOTH_HZ * nperseg / sr)))
    # channels summed: out-of-phase content is not lost as in a downmix
    return freqs, uniform_filter1d(power, width, mode="nearest")


def measure_bandwidth(audio: np.ndarray, sr: int) -> float:
    """Highest frequency (Hz) that still carries program content; 0.0 for silence.

    `audio`: (samples,) or (channels, samples) as in aeromamba.audio, float or int; `sr` in
    Hz. The result is at most sr / 2; see the module docstring for the rule.
    """
    if sr <= 0:
        raise ValueError(f"sample rate must be positive, got {sr}")
    frames = _as_frames(audio)
    if frames.shape[1] < 2 or not np.any(frames):
        return 0.0
    freqs, power = long_term_spectrum(frames, sr)
    peak = power.max()
    if peak <= 0.0:
        return 0.0
    level = 10.0 * np.log10(np.maximum(power / peak, 1e-30))  # dB re the loudest band
    content = level >= -RANGE_DB
    span = int(np.ceil(DROP_SPAN_HZ / (freqs[1] - freqs[0])))
    for i in np.flatnonzero(content[: max(len(level) - span, 0)])[::-1]:
        low, high = np.percentile(level[i + span :], [10, 90])
        if high - low <= FLAT_DB and high <= -FLOOR_DB and level[i] >= high + DROP_DB:
            return float(freqs[i])
    return float(freqs[np.flatnonzero(content)[-1]])
