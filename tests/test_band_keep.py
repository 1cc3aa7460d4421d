"""predict keeps the band an input already has and fills only the band above it."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import aeromamba
from aeromamba.data.bandwidth import long_term_spectrum, measure_bandwidth
from aeromamba.data.synthetic import music_clip
from aeromamba.enhance import (
    CROSSOVER_WIDTH,
    GUARD_HZ,
    REPLICA_FADE,
    REPLICA_OFFSET,
    REPLICA_STEEPER,
)
from aeromamba.errors import UsageError
from aeromamba.options import InferenceOptions, OptionError

SR = 44100


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return aeromamba.load_pretrained()


def lowpass(audio: np.ndarray, cutoff: float) -> np.ndarray:
    spectrum = np.fft.rfft(audio)
    spectrum[np.fft.rfftfreq(len(audio), 1 / SR) > cutoff] = 0
    return np.fft.irfft(spectrum, len(audio)).astype(np.float32)


def band_power(audio: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / SR)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum())


@pytest.mark.parametrize("cutoff", [8000.0, 11025.0, 16000.0])
def test_the_input_band_is_kept_and_the_band_above_filled(model, cutoff):
    reference = music_clip(6.0, SR, seed=2)
    cut = lowpass(reference, cutoff)
    out, sr = aeromamba.upsample(cut, SR, model)
    kept = cutoff + 200 - GUARD_HZ - CROSSOVER_WIDTH  # the measurement reads ~100-200 Hz high
    error = band_power(out - cut, 20, kept) / band_power(cut, 20, kept)
    assert sr == SR and 10 * np.log10(error) < -60
    above = (cutoff + 500, min(2 * cutoff, 20000))
    filled = band_power(out, *above) / band_power(reference, *above)
    assert -30 < 10 * np.log10(filled) < 3  # the band above is there, not above its true level


def level(audio: np.ndarray, low: float, high: float) -> float:
    """Mean power per bin in [low, high), dB."""
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / SR)
    return float(10 * np.log10(spectrum[(freqs >= low) & (freqs < high)].mean()))


@pytest.mark.parametrize("cutoff", [10000.0, 15000.0])
def test_the_filled_band_falls_below_the_top_octave_line_and_fades_out(model, cutoff):
    """Above a high cutoff the band is filled below the input's top octave extended with its
    slope (REPLICA_OFFSET lower, REPLICA_STEEPER times as steep), and is empty above the
    fade-out, where mastered music holds nothing."""
    cut = lowpass(music_clip(8.0, SR, seed=3), cutoff)
    out, _ = aeromamba.upsample(cut, SR, model)
    top = cutoff + 200 - GUARD_HZ  # the kept band's top (the measurement reads ~200 Hz high)
    edge = top - CROSSOVER_WIDTH
    slope = min(level(cut, top / 2, edge) - level(cut, top / 4, top / 2), 0.0)
    low, high = top + 500, min(top * 2 ** (1 / 3), REPLICA_FADE[0])
    octaves = np.log2(np.sqrt(low * high) / np.sqrt(top / 2 * edge))
    line = level(cut, top / 2, edge) + slope * octaves
    expected = line + REPLICA_OFFSET + (REPLICA_STEEPER - 1) * slope * octaves
    assert abs(level(out, low, high) - expected) < 3
    assert level(out, REPLICA_FADE[1] + 200, SR / 2) < level(cut, top / 2, edge) - 50


def test_full_band_input_passes_through_unchanged(model):
    audio = music_clip(3.0, SR, seed=4)
    assert measure_bandwidth(audio, SR) >= 19500
    out, _ = aeromamba.upsample(audio, SR, model)
    np.testing.assert_allclose(out, audio, atol=1e-6)


def true_lowpass(path: Path) -> float:
    """Where the encoder's lowpass lies: white noise through it falls 30 dB there."""
    freqs, power = long_term_spectrum(sf.read(path, always_2d=True)[0].T, SR)
    return float(freqs[np.flatnonzero(10 * np.log10(power / power.max()) > -30)[-1]])


@pytest.mark.parametrize("level,channels", [(0.5, 1), (0.3, 1), (0.6, 2), (0.2, 2)])
def test_mp3_lowpass_is_measured(tmp_path, level, channels):
    """soundfile's MP3 encoder at 64-190 kb/s: the measured cutoff within 500 Hz."""
    rng = np.random.default_rng(0)
    noise = tmp_path / "noise.mp3"
    sf.write(
        noise,
        0.1 * rng.standard_normal((4 * SR, channels)),
        SR,
        format="MP3",
        compression_level=level,
    )
    music = tmp_path / "music.mp3"
    clip = np.repeat(music_clip(8.0, SR, seed=5)[:, None], channels, axis=1)
    sf.write(music, clip, SR, format="MP3", compression_level=level)
    decoded = sf.read(music, always_2d=True)[0].T
    assert abs(measure_bandwidth(decoded, SR) - true_lowpass(noise)) < 500


def test_channels_last_layout_and_a_transposed_array_is_refused(model):
    stereo = np.stack([music_clip(1.0, 11025, seed=1)] * 2, axis=1)  # (samples, channels)
    out, _ = aeromamba.upsample(stereo, 11025, model)
    assert out.shape == (4 * stereo.shape[0], 2)
    with pytest.raises(UsageError, match=r"pass audio\.T"):
        aeromamba.upsample(stereo.T, 11025, model)


def test_one_set_of_defaults(model):
    options = InferenceOptions.for_model(model)
    assert options.band_cap is None  # the bundled model's metadata sets no cap
    capped = torch.nn.Identity()
    capped.postprocessing = {"band_cap": 0.0}  # as load_model attaches a checkpoint's
    assert InferenceOptions.for_model(capped).band_cap == 0.0
    assert InferenceOptions.from_config(capped, {"band_cap": "off"}).band_cap is None
    assert InferenceOptions.from_config(capped, {"band_cap": None}).band_cap == 0.0
    assert InferenceOptions.from_config(model, {"band_cap": 3.0}).band_cap == 3.0
    with pytest.raises(OptionError, match="chunk"):
        InferenceOptions(chunk=0.1)
    with pytest.raises(OptionError, match="chunck"):
        InferenceOptions.for_model(model, chunck=5)
    audio = music_clip(2.0, 11025, seed=6)
    api, _ = aeromamba.upsample(audio, 11025, model)
    same, _ = aeromamba.upsample(audio, 11025, model, options)
    np.testing.assert_array_equal(api, same)
