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
5. Frame by frame: steps 1-4 also run on the spectrum of each second (``BLOCK_SECONDS``) that
   is within ``ACTIVE_DB`` (30 dB) of the loudest second. An encoder whose band varies over
   the file (one that widens it now and then) shows its widest cut in the long-term spectrum;
   the bandwidth is the lower of that and the 90th percentile (``PERCENTILE``) of the
   per-second cutoffs, given at least ``MIN_BLOCKS`` such seconds. Where the lowpass is fixed
   (MP3 and resampled files) both agree.

Silence (all samples zero) and empty input have no content: the bandwidth is 0.0. The window's
main lobe and the smoothing spread a cut upwards, so a brick wall reads ~100 Hz above its
frequency (measured on noise cut at 4-19 kHz).
"""

from __future__ import annotations

import bisect

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.fft import rfft
from scipy.ndimage import uniform_filter1d
from scipy.signal import get_window

RULE = 3  # bump when the rule changes: stored measurements are then redone
RANGE_DB = 90.0
DROP_DB = 30.0
DROP_SPAN_HZ = 500.0
FLAT_DB = 15.0
FLOOR_DB = 60.0
SMOOTH_HZ = 120.0
BIN_HZ = 20.0
MAX_CHANNELS = 16
FRAMES_PER_BLOCK = 256
BLOCK_SECONDS = 1.0
ACTIVE_DB = 30.0
MIN_BLOCKS = 4
PERCENTILE = 90.0


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


def block_spectra(
    audio: np.ndarray, sr: int, block_seconds: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed average power spectra of consecutive blocks of `block_seconds` (None: the
    whole signal as one block), channels summed.

    Welch's method (50 % overlap, Blackman-Harris: sidelobes below -92 dB, so a loud pass band
    does not leak over a cut), computed a batch of frames at a time to bound memory on long
    files. Returns (freqs in Hz (bins,), power (blocks, bins)); power is linear, arbitrary
    scale.
    """
    frames = _as_frames(audio)
    frames = frames - frames.mean(axis=1, keepdims=True)  # a DC offset is not content
    nperseg = min(int(2 ** np.round(np.log2(sr / BIN_HZ))), frames.shape[1])
    hop = max(1, nperseg // 2)
    window = get_window("blackmanharris", nperseg).astype(np.float32)
    segments = sliding_window_view(frames, nperseg, axis=-1)[:, ::hop]
    count = segments.shape[1]
    per_block = count if block_seconds is None else max(1, round(block_seconds * sr / hop))
    power = np.zeros((-(-count // per_block), nperseg // 2 + 1))
    for start in range(0, count, FRAMES_PER_BLOCK):
        spectrum = rfft(segments[:, start : start + FRAMES_PER_BLOCK] * window, axis=-1)
        frame_power = (spectrum.real**2 + spectrum.imag**2).sum(axis=0)
        np.add.at(power, (start + np.arange(len(frame_power))) // per_block, frame_power)
    freqs = np.arange(power.shape[1]) * (sr / nperseg)
    width = max(1, int(round(SMOOTH_HZ * nperseg / sr)))
    # channels summed: out-of-phase content is not lost as in a downmix
    return freqs, uniform_filter1d(power, width, axis=-1, mode="nearest")


def long_term_spectrum(audio: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """(freqs in Hz, power) of the whole signal, both (bins,): `block_spectra` in one block."""
    freqs, power = block_spectra(audio, sr)
    return freqs, power[0]


def suffix_percentiles(values: np.ndarray, q: float) -> np.ndarray:
    """(len(values),): the `q`th percentile (linear interpolation, as np.percentile) of
    values[k:] for every k, from one sorted insertion per value."""
    ordered: list[float] = []
    out = np.empty(len(values))
    for k in range(len(values) - 1, -1, -1):
        bisect.insort(ordered, float(values[k]))
        position = q / 100 * (len(ordered) - 1)
        below = int(position)
        above = min(below + 1, len(ordered) - 1)
        out[k] = ordered[below] + (position - below) * (ordered[above] - ordered[below])
    return out


def spectrum_cutoff(freqs: np.ndarray, power: np.ndarray) -> float:
    """Where the content of one power spectrum stops (steps 1-4 of the module's rule); 0.0
    for a spectrum without power."""
    peak = power.max()
    if peak <= 0.0:
        return 0.0
    level = 10.0 * np.log10(np.maximum(power / peak, 1e-30))  # dB re the loudest band
    content = level >= -RANGE_DB
    span = int(np.ceil(DROP_SPAN_HZ / (freqs[1] - freqs[0])))
    if len(level) <= span:
        return float(freqs[np.flatnonzero(content)[-1]])
    # the floor above bin i is level[i + span:]
    low, high = (suffix_percentiles(level[span:], q) for q in (10, 90))
    head = level[: len(low)]
    cuts = content[: len(low)] & (high - low <= FLAT_DB) & (high <= -FLOOR_DB)
    cuts &= head >= high + DROP_DB
    found = np.flatnonzero(cuts)
    return float(freqs[found[-1] if len(found) else np.flatnonzero(content)[-1]])


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
    freqs, blocks = block_spectra(frames, sr, BLOCK_SECONDS)
    overall = spectrum_cutoff(freqs, blocks.sum(axis=0))
    energy = blocks.sum(axis=1)
    active = blocks[energy >= energy.max() * 10 ** (-ACTIVE_DB / 10)]
    if len(active) < MIN_BLOCKS:
        return overall
    cutoffs = [spectrum_cutoff(freqs, block) for block in active]
    framewise = np.percentile(cutoffs, PERCENTILE, method="lower")  # one block's cutoff
    return min(overall, float(framewise))
