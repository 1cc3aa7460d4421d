"""The test signals of `docs/metrics.md` (PAQM check values), shared by the metric tests."""

from __future__ import annotations

import numpy as np


def music(fs: int) -> np.ndarray:
    """`music(fs)`: 2 s, four decaying harmonic notes and four noise bursts."""
    n_samples = 2 * fs
    t = np.arange(n_samples) / fs
    rng = np.random.default_rng(0)
    phases = rng.uniform(0, 2 * np.pi, size=(4, 20))
    bursts = rng.standard_normal((4, n_samples))
    x = np.zeros(n_samples)
    for q, f0 in enumerate((220.0, 277.18, 329.63, 440.0)):
        tau = t - 0.5 * q
        env = np.where(tau >= 0, np.minimum(tau / 0.01, 1) * np.exp(-2.5 * tau), 0.0)
        for h in range(1, 21):
            x += env * (1 / h) * np.sin(2 * np.pi * h * f0 * t + phases[q, h - 1])
    for q in range(4):
        onset = 0.25 + 0.5 * q
        x += np.where(t >= onset, 0.2 * np.exp(-(t - onset) / 0.03), 0.0) * bursts[q]
    return 0.5 * x / np.abs(x).max()


def lowpass(x: np.ndarray, fc: float, fs: int) -> np.ndarray:
    """`lowpass(x, fc)`: zero every rfft bin above fc."""
    spectrum = np.fft.rfft(x)
    spectrum[np.fft.rfftfreq(len(x), 1 / fs) > fc] = 0
    return np.fft.irfft(spectrum, n=len(x))
