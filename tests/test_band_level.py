"""The generated band's level error and envelope spread ratio on signals with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aeromamba.metrics.band_level import KEYS, LEVEL_KEYS, SPREAD_KEYS, band_level

SR = 44100


def _envelope_db(seconds: float, depth_db: float) -> np.ndarray:
    """A slow level modulation: depth_db · sin(2π · 1.5 Hz · t), in dB."""
    t = np.arange(int(seconds * SR)) / SR
    return depth_db * np.sin(2 * np.pi * 1.5 * t)


def _noise(seconds: float, seed: int = 0) -> np.ndarray:
    return 0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SR))


def _gain_above(x: np.ndarray, hz: float, db: float) -> np.ndarray:
    """x with every rfft bin above `hz` raised by `db`."""
    spectrum = np.fft.rfft(x)
    spectrum[np.fft.rfftfreq(len(x), 1 / SR) > hz] *= 10 ** (db / 20)
    return np.fft.irfft(spectrum, n=len(x))


def test_identical_signals_have_no_level_error_and_unit_spread():
    x = _noise(3.0) * 10 ** (_envelope_db(3.0, 12) / 20)
    scores = band_level(x, x)
    assert list(scores) == list(KEYS)
    for key in LEVEL_KEYS:
        assert scores[key] == pytest.approx(0.0, abs=1e-9)
    for key in SPREAD_KEYS:
        assert scores[key] == pytest.approx(1.0, abs=1e-9)


def test_a_gain_above_8_khz_is_measured_in_the_bands_above_it_only():
    reference = _noise(4.0) * 10 ** (_envelope_db(4.0, 12) / 20)
    scores = band_level(_gain_above(reference, 8000, 6.0), reference)
    assert scores["level_5_8"] == pytest.approx(0.0, abs=0.1)
    for band in ("8_12", "12_16", "16_20"):
        assert scores[f"level_{band}"] == pytest.approx(6.0, abs=0.1)
    for key in SPREAD_KEYS:  # a constant gain does not change the dynamics
        assert scores[key] == pytest.approx(1.0, abs=0.02)


def test_a_flattened_envelope_halves_the_spread():
    noise, envelope = _noise(4.0), _envelope_db(4.0, 12)
    reference = noise * 10 ** (envelope / 20)
    flattened = noise * 10 ** (0.5 * envelope / 20)
    scores = band_level(flattened, reference)
    for key in SPREAD_KEYS:
        assert scores[key] == pytest.approx(0.5, abs=0.02)
    # white noise: every band's long-term level moves with the envelope's mean power
    expected = 10 * math.log10(np.mean(10 ** (envelope / 20)) / np.mean(10 ** (envelope / 10)))
    for key in LEVEL_KEYS:
        assert scores[key] == pytest.approx(expected, abs=0.1)


def test_a_silent_reference_gives_nan_not_an_error():
    silence = np.zeros(2 * SR)
    scores = band_level(_noise(2.0), silence)
    assert all(math.isnan(value) for value in scores.values())


def test_a_silent_estimate_is_far_too_dull_with_no_dynamics():
    reference = _noise(2.0) * 10 ** (_envelope_db(2.0, 12) / 20)
    scores = band_level(np.zeros_like(reference), reference)
    for key in LEVEL_KEYS:
        assert math.isfinite(scores[key]) and scores[key] < -60
    for key in SPREAD_KEYS:
        assert scores[key] == 0.0


def test_spread_counts_only_the_frames_where_the_reference_sounds():
    reference = np.concatenate([np.zeros(2 * SR), _noise(2.0) * 10 ** (_envelope_db(2.0, 12) / 20)])
    # the estimate adds a faint hiss where the reference is silent: it must not count
    estimate = reference + np.concatenate([1e-4 * _noise(2.0, seed=1), np.zeros(2 * SR)])
    scores = band_level(estimate, reference)
    for key in SPREAD_KEYS:
        assert scores[key] == pytest.approx(1.0, abs=0.02)


def test_short_and_mismatched_inputs():
    scores = band_level(_noise(0.01), _noise(0.01))  # shorter than one frame: padded
    assert scores["level_8_12"] == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(scores["spread_8_12"])  # one frame has no spread
    with pytest.raises(ValueError, match="samples"):
        band_level(_noise(1.0), _noise(2.0))
    with pytest.raises(ValueError, match="NaN"):
        band_level(np.full(4096, np.nan), _noise(0.1))


class _Brighter(torch.nn.Module):
    """A stand-in generator: for each validation input, its reference 6 dB brighter above 8 kHz."""

    hr_sr = SR

    def __init__(self, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        super().__init__()
        self.outputs = {
            lr.numpy().tobytes(): _gain_above(hr[0].numpy(), 8000, 6.0) for lr, hr in pairs
        }

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.outputs[lr[0].numpy().tobytes()])[None, None]


def test_validation_logs_the_band_level_and_skips_silent_items(tmp_path):
    from aeromamba.models import make_discriminator, make_generator
    from aeromamba.training.distributed import World
    from aeromamba.training.solver import Solver, TrainConfig

    pairs = []
    for seed in (1, 2):
        hr = _noise(1.0, seed) * 10 ** (_envelope_db(1.0, 12) / 20)
        pairs.append((torch.from_numpy(hr[::4]).float()[None], torch.from_numpy(hr)[None]))
    pairs.append((torch.zeros(1, SR // 4), torch.zeros(1, SR)))  # a silent segment
    solver = Solver(
        make_generator("aeromamba", channels=8),
        make_discriminator(ndf=4, max_channels=32),
        [],
        pairs,
        TrainConfig(epochs=1, batch_size=2, adversarial=False),
        tmp_path,
        torch.device("cpu"),
        World(),
        {},
        logger=None,
    )
    solver.generator = _Brighter(pairs)
    scores = solver.validate()
    assert set(KEYS) <= set(scores)
    assert scores["level_5_8"] == pytest.approx(0.0, abs=0.1)
    assert scores["level_8_12"] == pytest.approx(6.0, abs=0.1)
    assert scores["spread_8_12"] == pytest.approx(1.0, abs=0.02)
