"""LSD (full, high and low band) against its definition, an independent numpy computation and
the behaviour known in closed form (identity, a constant gain)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aeromamba.metrics.lsd import LSD_NAMES, lsd, lsd_bands
from tests.signals import lowpass, music

SR = 44100


def noisy_music() -> np.ndarray:
    """Music over a -31 dB white floor: every STFT bin stays far above the 1e-8 power floor, so a
    gain shows up undistorted in every bin."""
    return music(SR) + 3e-3 * np.random.default_rng(1).standard_normal(2 * SR)


def numpy_lsd(est: np.ndarray, ref: np.ndarray, keep: np.ndarray | None = None) -> float:
    """The protocol written out with plain numpy: reflect-pad n_fft/2, frame, periodic Hann,
    rfft, log10 of the floored power, RMS over (kept) bins, mean over frames."""
    n_fft, hop = 2048, 512
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)

    def log_power(x: np.ndarray) -> np.ndarray:
        padded = np.pad(x, n_fft // 2, mode="reflect")
        n_frames = 1 + (len(padded) - n_fft) // hop
        frames = np.stack([padded[i * hop : i * hop + n_fft] for i in range(n_frames)])
        power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2
        return np.log10(np.maximum(power, 1e-8))

    sq = (log_power(ref) - log_power(est)) ** 2
    if keep is not None:
        sq = sq[:, keep]
    return float(np.sqrt(sq.mean(axis=1)).mean())


def test_identity_is_zero() -> None:
    x = music(SR)
    for name, value in lsd_bands(x, x).items():
        assert value.item() == 0.0, name


def test_half_gain_is_two_log10_two() -> None:
    x = noisy_music()
    expected = 2 * math.log10(2)
    assert lsd(0.5 * x, x).item() == pytest.approx(expected, abs=1e-4)
    # |log P_ref - log P_est| is symmetric, so doubling reads the same
    assert lsd(x, 0.5 * x).item() == pytest.approx(expected, abs=1e-4)
    # float32 tensors, as the models produce them
    xt = torch.from_numpy(x).float()
    assert lsd(0.5 * xt, xt).item() == pytest.approx(expected, abs=1e-4)


def test_gain_in_high_band_only_shows_in_lsd_hf() -> None:
    x = noisy_music()
    low = lowpass(x, 5512.5, SR)
    y = low + 0.5 * (x - low)
    values = lsd_bands(y, x)
    assert values["lsd_hf"].item() == pytest.approx(2 * math.log10(2), abs=0.05)
    assert values["lsd_lf"].item() < 0.1


def test_lowpass_4k_large_high_band_small_low_band() -> None:
    x = music(SR)
    y = lowpass(x, 4000, SR)
    values = lsd_bands(y, x, cutoff_hz=4000)
    assert values["lsd_hf"].item() > 2.0
    assert values["lsd_lf"].item() < 0.05


def test_lowpass_at_default_cutoff() -> None:
    # The default split is the 11,025 Hz input's Nyquist frequency, 5512.5 Hz.
    x = music(SR)
    y = lowpass(x, 5512, SR)
    values = lsd_bands(y, x)
    assert values["lsd_hf"].item() > 2.0
    # the brick wall smears the few bins next to the cutoff, hence the looser bound
    assert values["lsd_lf"].item() < 0.25
    assert values["lsd_hf"].item() > 10 * values["lsd_lf"].item()
    # the full band lies between its parts (RMS over the union of the bin sets, per frame)
    assert values["lsd_lf"].item() < values["lsd"].item() < values["lsd_hf"].item()


def test_matches_independent_numpy_computation() -> None:
    x = music(SR)
    y = lowpass(x, 6000, SR) + 0.01 * np.random.default_rng(2).standard_normal(2 * SR)
    values = lsd_bands(y, x)
    freqs = np.arange(1025) * SR / 2048
    assert values["lsd"].item() == pytest.approx(numpy_lsd(y, x), abs=1e-5)
    assert values["lsd_hf"].item() == pytest.approx(numpy_lsd(y, x, freqs > 5512.5), abs=1e-5)
    assert values["lsd_lf"].item() == pytest.approx(numpy_lsd(y, x, freqs <= 5512.5), abs=1e-5)
    # float32 through torch against float64 numpy
    yt, xt = torch.from_numpy(y).float(), torch.from_numpy(x).float()
    assert lsd(yt, xt).item() == pytest.approx(numpy_lsd(y, x), abs=1e-4)


def test_band_argument_agrees_with_lsd_bands() -> None:
    x = music(SR)
    y = lowpass(x, 8000, SR)
    values = lsd_bands(y, x, cutoff_hz=3000)
    for band, name in zip(("full", "high", "low"), LSD_NAMES, strict=True):
        assert lsd(y, x, band=band, cutoff_hz=3000).item() == values[name].item()


def test_default_cutoff_bin_counts_as_low_band() -> None:
    # At 44.1 kHz bin 256 is exactly 5512.5 Hz: a difference confined to it must only move LF.
    x = noisy_music()
    n = np.arange(2 * SR)
    y = x + 0.5 * np.sin(2 * np.pi * 5512.5 * n / SR)
    values = lsd_bands(y, x)
    assert values["lsd_lf"].item() > 0.1
    freqs = np.arange(1025) * SR / 2048
    assert values["lsd_hf"].item() == pytest.approx(numpy_lsd(y, x, freqs > 5512.5), abs=1e-5)
    assert values["lsd_lf"].item() == pytest.approx(numpy_lsd(y, x, freqs <= 5512.5), abs=1e-5)


@pytest.mark.parametrize("layout", ["(B, T)", "(B, 1, T)"])
def test_batch_shapes(layout: str) -> None:
    x = music(SR)
    refs = np.stack([x, x, lowpass(x, 4000, SR)])
    ests = np.stack([x, 0.5 * x, x])
    expected = [lsd(e, r).item() for e, r in zip(ests, refs, strict=True)]
    if layout == "(B, 1, T)":
        refs, ests = refs[:, None], ests[:, None]
    values = lsd_bands(torch.from_numpy(ests), torch.from_numpy(refs))
    for value in values.values():
        assert value.shape == (3,)
    assert values["lsd"].tolist() == pytest.approx(expected, abs=1e-12)
    assert values["lsd"][0].item() == 0.0


def test_scalar_for_1d_and_numpy_matches_torch() -> None:
    x = music(SR)
    y = lowpass(x, 4000, SR)
    value = lsd(y, x)
    assert value.dim() == 0
    assert value.item() == pytest.approx(lsd(torch.from_numpy(y), torch.from_numpy(x)).item())


def test_errors() -> None:
    x = music(SR)
    with pytest.raises(ValueError, match=r"88200 vs 88199"):
        lsd(x, x[:-1])
    with pytest.raises(ValueError, match="shape"):
        lsd(np.stack([x, x]), np.stack([x, x, x]))
    bad = x.copy()
    bad[100] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        lsd(bad, x)
    bad[100] = np.inf
    with pytest.raises(ValueError, match="reference contains 1 NaN/Inf"):
        lsd(x, bad)
    with pytest.raises(ValueError, match="too short"):
        lsd(x[:1000], x[:1000])
    with pytest.raises(ValueError, match="band"):
        lsd(x, x, band="mid")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no STFT bin"):
        lsd(x, x, band="high", cutoff_hz=30000)
    with pytest.raises(ValueError, match=r"\(batch, 1, samples\)"):
        lsd(np.stack([x, x])[None], np.stack([x, x])[None])
