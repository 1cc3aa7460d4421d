"""scripts/evaluate_lossy.py: the lossy conditions, the excerpts and the table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from aeromamba.data.bandwidth import measure_bandwidth
from aeromamba.data.synthetic import music_clip
from aeromamba.errors import UsageError
from tests.script_loader import load_script

lossy = load_script("scripts/evaluate_lossy.py")
SR = 44100


def stereo_clip(seconds: float, seed: int) -> np.ndarray:
    left, right = music_clip(seconds, SR, seed), music_clip(seconds, SR, seed + 100)
    return np.stack([left, 0.5 * (left + right)], axis=1)


def test_excerpts_are_full_and_a_short_file_is_one():
    assert lossy.excerpt_starts(100, 10, 40) == [0, 40, 80]
    assert lossy.excerpt_starts(89, 10, 40) == [0, 40]
    assert lossy.excerpt_starts(5, 5, 40) == [0]


def test_references_skip_what_is_not_audio_and_refuse_other_rates(tmp_path: Path):
    sf.write(tmp_path / "b.wav", np.zeros((SR, 2), np.float32), SR)
    (tmp_path / "cover.jpg").write_bytes(b"\xff\xd8\xff not audio")
    assert lossy.reference_files(tmp_path) == [tmp_path / "b.wav"]
    sf.write(tmp_path / "a.wav", np.zeros(22050, np.float32), 22050)
    with pytest.raises(UsageError, match=r"a\.wav: 22050 Hz"):
        lossy.reference_files(tmp_path)
    with pytest.raises(UsageError, match="no such"):
        lossy.reference_files(tmp_path / "missing")
    with pytest.raises(UsageError, match="choose from"):
        lossy.conditions_option("mp3_64_mono,wav")


@pytest.mark.parametrize("name", ["mp3_64_mono", "mp3_128_stereo", "sr22050", "sr11025"])
def test_conditions_have_their_rate_channels_and_lowpass(name):
    reference = stereo_clip(6.0, seed=3)
    condition = lossy.CONDITIONS[name]
    decoded, rate, bits = condition.make(reference)
    assert rate == condition.rate and len(decoded) == round(len(reference) * rate / SR)
    assert decoded.shape[1] == (1 if condition.mono else 2)
    cutoff = measure_bandwidth(decoded.T, rate)
    if condition.level is None:  # soxr's pass band ends a little below Nyquist
        assert 0.9 * rate / 2 < cutoff < rate / 2 + 300
    else:  # the encoder's lowpass near 16 kHz, and roughly the bit rate asked for
        assert 15500 < cutoff < 17500
        assert 0.6 < bits / (64000 if condition.mono else 128000) < 1.5


@pytest.mark.slow
def test_end_to_end_on_a_tiny_folder(tmp_path: Path):
    references = tmp_path / "references"
    references.mkdir()
    for seed in (1, 2):
        sf.write(references / f"song{seed}.wav", stereo_clip(3.0, seed), SR, subtype="FLOAT")
    out = tmp_path / "out"
    status = lossy.main([str(references), str(out), "--excerpt", "1", "--every", "1.5"])
    assert status == 0
    document = json.loads((out / "lossy.json").read_text())
    summary = document["summary"]
    assert list(summary) == list(lossy.CONDITIONS)
    for entry in summary.values():
        for system in (lossy.ALONE, lossy.PREDICT):
            assert entry[system]["visqol"]["n"] == entry[system]["lsd"]["n"] == 4  # 2 × 2
    # the band above the input's own is filled: closer to the reference than nothing
    for name in ("sr22050", "sr11025"):
        assert summary[name]["lsd_ratio"] < 1
    table = (out / "lossy.md").read_text()
    assert "MP3 ~64 kb/s mono" in table and "predict default" in table
