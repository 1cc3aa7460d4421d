"""measure_bandwidth on synthetic signals whose true band limit is known."""

import numpy as np
import pytest
import soxr

from aeromamba.data.bandwidth import measure_bandwidth

SR = 44100
TOLERANCE_HZ = 300.0


def pink_noise(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """Noise falling 3 dB per octave (music-like tilt), unit RMS, shape (samples,)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / sr)
    spectrum[1:] /= np.sqrt(freqs[1:] / freqs[1])
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, n)
    return noise / np.sqrt(np.mean(noise**2))


def brick_wall(audio: np.ndarray, sr: int, cutoff: float) -> np.ndarray:
    """Remove everything above `cutoff` Hz, as a lossy encoder's low-pass does."""
    spectrum = np.fft.rfft(audio)
    spectrum[np.fft.rfftfreq(len(audio), 1 / sr) > cutoff] = 0.0
    return np.fft.irfft(spectrum, len(audio))


def quantize_16bit(audio: np.ndarray, seed: int = 1) -> np.ndarray:
    """16-bit rounding with TPDF dither: a white noise floor near -101 dBFS."""
    rng = np.random.default_rng(seed)
    dither = rng.random(audio.shape) - rng.random(audio.shape)
    return np.round(audio * 32767 + dither) / 32767


@pytest.mark.parametrize("cutoff", [4000.0, 11025.0, 16000.0, 17500.0, 19000.0])
def test_lossy_cut_is_found(cutoff):
    audio = quantize_16bit(0.1 * brick_wall(pink_noise(8.0, SR), SR, cutoff))
    assert measure_bandwidth(audio, SR) == pytest.approx(cutoff, abs=TOLERANCE_HZ)


def test_cut_without_any_noise_floor():
    audio = brick_wall(np.random.default_rng(2).standard_normal(SR * 4), SR, 16000.0)
    assert measure_bandwidth(audio, SR) == pytest.approx(16000.0, abs=TOLERANCE_HZ)


def test_dark_mix_with_loud_bass_is_not_cut_at_the_bass():
    """Bass 40 dB above the rest falls steeply at 150 Hz, but music continues above it,
    fading (20 dB per octave above 1 kHz) into a flat floor: no cut, and content goes on to
    where it sinks 90 dB under the peak (near 4 kHz here), far above the bass."""
    rng = np.random.default_rng(6)
    n = SR * 8
    bass = brick_wall(rng.standard_normal(n), SR, 150.0)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SR)
    spectrum *= np.minimum(1.0, (1000.0 / np.maximum(freqs, 1.0)) ** (20 / 6.02))
    rest = np.fft.irfft(spectrum, n)
    floor = 1e-7 * rng.standard_normal(n)
    audio = bass / np.std(bass) + 0.01 * rest / np.std(rest) + floor
    assert 3000.0 <= measure_bandwidth(audio, SR) <= 8000.0


def test_quiet_material_resampled_from_22050():
    """-40 dBFS music-like noise upsampled from 22.05 kHz: its dither floor is not content."""
    low = 0.01 * pink_noise(8.0, 22050)
    audio = quantize_16bit(soxr.resample(low, 22050, SR, quality="HQ"))
    assert 10000.0 <= measure_bandwidth(audio, SR) <= 11025.0 + TOLERANCE_HZ


def test_full_band_reaches_nyquist():
    audio = quantize_16bit(0.1 * pink_noise(8.0, SR))
    assert measure_bandwidth(audio, SR) == pytest.approx(SR / 2, abs=TOLERANCE_HZ)
    white = np.random.default_rng(3).standard_normal(SR * 4)
    assert measure_bandwidth(white, SR) == pytest.approx(SR / 2, abs=TOLERANCE_HZ)


def test_other_sample_rate_is_bounded_by_its_nyquist():
    audio = pink_noise(6.0, 22050)
    assert measure_bandwidth(audio, 22050) == pytest.approx(11025.0, abs=TOLERANCE_HZ)
    cut = brick_wall(pink_noise(6.0, 48000), 48000, 15000.0)
    assert measure_bandwidth(cut, 48000) == pytest.approx(15000.0, abs=TOLERANCE_HZ)


def test_pure_tone_ends_at_its_frequency():
    t = np.arange(SR * 3) / SR
    assert measure_bandwidth(0.5 * np.sin(2 * np.pi * 1000.0 * t), SR) == pytest.approx(
        1000.0, abs=TOLERANCE_HZ
    )


def test_stereo_uses_all_channels():
    full = pink_noise(6.0, SR, seed=4)
    cut = brick_wall(pink_noise(6.0, SR, seed=5), SR, 12000.0)
    assert measure_bandwidth(np.stack([cut, np.zeros_like(cut)]), SR) == pytest.approx(
        12000.0, abs=TOLERANCE_HZ
    )
    # Content that exists in one channel only still counts.
    both = np.stack([cut, 0.1 * full])
    assert measure_bandwidth(both, SR) == pytest.approx(SR / 2, abs=TOLERANCE_HZ)


def test_silence_and_empty_input_have_no_bandwidth():
    assert measure_bandwidth(np.zeros(SR), SR) == 0.0
    assert measure_bandwidth(np.zeros((2, SR), dtype=np.float32), SR) == 0.0
    assert measure_bandwidth(np.zeros(0), SR) == 0.0


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="shape"):
        measure_bandwidth(np.zeros((SR, 2)), SR)
    with pytest.raises(ValueError, match="NaN"):
        measure_bandwidth(np.full(SR, np.nan), SR)


def test_a_lowpass_that_varies_over_the_file_reads_at_its_high_percentile():
    """An encoder that widens its band now and then (one second in twenty at 19 kHz, faded in
    and out over 20 ms; the rest at 15 kHz): the long-term spectrum shows the widest cut, the
    file's lowpass is 15 kHz."""
    noise = pink_noise(20.0, SR)
    wide = np.clip(np.abs(np.arange(len(noise)) / SR - 5.5) * 50 - 24, 0, 1)  # 0 in 5-6 s
    mix = brick_wall(noise, SR, 15000.0) * wide + brick_wall(noise, SR, 19000.0) * (1 - wide)
    audio = quantize_16bit(0.1 * mix)
    assert measure_bandwidth(audio, SR) == pytest.approx(15000.0, abs=TOLERANCE_HZ)
