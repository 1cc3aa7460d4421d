"""Spectrogram pictures: signals stacked on one shared frequency axis (0–22.05 kHz)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from aeromamba.files import atomic_path

MAX_FRAMES = 2000  # more columns than a figure has pixels only costs memory on long files


def log_spectrogram(x: np.ndarray, sr: int, n_fft: int = 2048, hop: int = 512) -> np.ndarray:
    """(frames, bins) magnitude in dB of a 1-D signal (Hann window, floor −120 dB)."""
    x = np.asarray(x, dtype=np.float32)
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop]
    spectrum = np.abs(np.fft.rfft(frames * np.hanning(n_fft).astype(np.float32), axis=-1))
    return 20 * np.log10(np.maximum(spectrum, 1e-6))


def plot_spectrograms(
    signals: dict[str, tuple[np.ndarray, int]],
    path: str | os.PathLike,
    title: str = "",
    max_hz: float = 22050,
) -> Path:
    """Write a PNG with one spectrogram per signal (label → (mono samples, rate)), top to
    bottom, all on the same frequency axis so a band-limited input shows its empty top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(signals), 1, figsize=(12, 2.6 * len(signals)), sharex=True, squeeze=False
    )
    for ax, (label, (signal, sr)) in zip(axes[:, 0], signals.items(), strict=True):
        spec = log_spectrogram(signal, sr, hop=max(512, -(-len(signal) // MAX_FRAMES)))
        duration = len(signal) / sr
        image = ax.imshow(
            spec.T,
            origin="lower",
            aspect="auto",
            cmap="magma",
            vmin=-80,
            vmax=max(spec.max(), -40),
            extent=(0, duration, 0, sr / 2 / 1000),
        )
        ax.set_ylim(0, max_hz / 1000)
        ax.set_facecolor("black")  # no content above the Nyquist of a low-rate signal
        ax.set_ylabel("kHz")
        ax.set_title(f"{label} ({sr / 1000:g} kHz)", fontsize=10, loc="left")
        fig.colorbar(image, ax=ax, pad=0.01, label="dB")
    axes[-1, 0].set_xlabel("seconds")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return path
