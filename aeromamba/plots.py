"""Spectrogram pictures: signals stacked on one shared frequency axis (0–22.05 kHz)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from aeromamba.files import atomic_path

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

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
    return _save_png(fig, path)


LEVEL_LIMIT_DB = 30.0  # bars beyond ± this (e.g. a baseline with no band at all) are cut
SPREAD_LIMIT = 3.0


def _extent(summary: dict, keys: tuple[str, ...], least: float, most: float) -> float:
    """The largest |mean| + CI of `keys` over the systems, within [least, most], plus 10 %."""
    reach = [
        abs(e["mean"]) + (e["ci95"] or 0.0)
        for row in summary.values()
        for e in (row[key] for key in keys)
        if e["mean"] is not None
    ]
    return 1.1 * min(max([least, *reach]), most)


def _bars(ax: Axes, summary: dict, keys: tuple[str, ...], limits: tuple[float, float]) -> None:
    """Grouped bars, one group per band and one bar per system, with 95% CI whiskers; a bar
    beyond `limits` is cut there and labelled with its value."""
    systems = list(summary)
    width = 0.8 / max(len(systems), 1)
    for i, system in enumerate(systems):
        entries = [summary[system][key] for key in keys]
        x = np.arange(len(keys)) + (i - (len(systems) - 1) / 2) * width
        means = np.array([np.nan if e["mean"] is None else e["mean"] for e in entries])
        errors = np.array([0.0 if e["ci95"] is None else e["ci95"] for e in entries])
        shown = np.clip(means, *limits)
        ax.bar(x, shown, width, yerr=np.where(shown == means, errors, 0.0), label=system)
        for xi, mean, height in zip(x, means, shown, strict=True):
            if np.isfinite(mean) and height != mean:
                ax.annotate(f"{mean:.0f}", (xi, height), ha="center", fontsize=7)
    ax.set_ylim(*limits)


def plot_band_levels(summary: dict, path: str | os.PathLike, title: str = "") -> Path:
    """Write a PNG of the generated band per system (summary: system -> key -> {"mean",
    "ci95"} with the keys of `aeromamba.metrics.band_level`): level error (dB, 0 is right)
    and envelope spread ratio (1 is right) per band, systems side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from aeromamba.metrics.band_level import BAND_LABELS, LEVEL_KEYS, SPREAD_KEYS

    fig, (level, spread) = plt.subplots(1, 2, figsize=(12, 3.8))
    extent = _extent(summary, LEVEL_KEYS, 3.0, LEVEL_LIMIT_DB)
    _bars(level, summary, LEVEL_KEYS, (-extent, extent))
    _bars(spread, summary, SPREAD_KEYS, (0.0, _extent(summary, SPREAD_KEYS, 1.5, SPREAD_LIMIT)))
    for ax, reference, label in ((level, 0.0, "level error (dB)"), (spread, 1.0, "spread ratio")):
        ax.axhline(reference, color="black", linewidth=0.8)
        ax.set_xticks(range(len(BAND_LABELS)), list(BAND_LABELS.values()))
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    level.set_title("level, output − reference", fontsize=10, loc="left")
    spread.set_title("envelope spread, output / reference", fontsize=10, loc="left")
    level.legend(fontsize=8)
    if title:
        fig.suptitle(f"generated band: {title}")
    return _save_png(fig, path)


def _save_png(fig: Figure, path: str | os.PathLike) -> Path:
    """Lay out `fig`, write it atomically as a PNG at `path`, close it; returns the path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return path
