"""ViSQOL: the C++ reference's conformance scores through visqol-python, then the project's
wrapper (44.1 kHz -> 48 kHz, 16-bit) on the test signals of `tests/signals.py`."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from aeromamba.audio import read_audio, to_mono

pytest.importorskip("visqol", reason="visqol-python not installed (pip install .[eval])")

from aeromamba.metrics.visqol import quantize_16bit, visqol, visqol_api
from tests.conftest import FIXTURES
from tests.signals import lowpass, music

VISQOL_FIXTURES = FIXTURES / "visqol"

# google/visqol conformance.h (C++ v3.3.3, audio mode): reference, degraded, MOS-LQO
CONFORMANCE = [
    ("sopr48_stereo.flac", "sopr48_stereo_256kbps_aac.flac", 4.68228969737946),
    ("strauss48_stereo.flac", "strauss48_stereo_lp35.flac", 1.3888791489130758),
    ("castanets48_stereo.flac", "castanets48_stereo.flac", 4.732101253042348),
]


@pytest.fixture(scope="module")
def visqol_fixtures() -> Path:
    return VISQOL_FIXTURES


def load_mono_48k(path: Path) -> np.ndarray:
    """A conformance clip as the C++ tool reads it: the mean of the channels."""
    audio, sr = read_audio(path)
    assert sr == 48000 and audio.shape[0] == 2
    return to_mono(audio)[0].astype(np.float64)


@pytest.mark.parametrize(("ref_name", "deg_name", "expected"), CONFORMANCE)
def test_conformance(visqol_fixtures: Path, ref_name: str, deg_name: str, expected: float) -> None:
    ref = load_mono_48k(visqol_fixtures / ref_name)
    deg = load_mono_48k(visqol_fixtures / deg_name)
    result = visqol_api("audio").measure_from_arrays(ref, deg, 48000)
    assert result.moslqo == pytest.approx(expected, abs=1e-4)


def test_conformance_needs_the_channel_mean(visqol_fixtures: Path) -> None:
    # Scoring the left channel alone misses the table: the mixdown is part of the protocol.
    ref, _ = read_audio(visqol_fixtures / "sopr48_stereo.flac")
    deg, _ = read_audio(visqol_fixtures / "sopr48_stereo_256kbps_aac.flac")
    left = visqol_api("audio").measure_from_arrays(
        ref[0].astype(np.float64), deg[0].astype(np.float64), 48000
    )
    assert abs(left.moslqo - CONFORMANCE[0][2]) > 1e-3


def test_wrapper_identity() -> None:
    x = music(44100)
    assert visqol(x, x, 44100) == pytest.approx(4.732101, abs=1e-4)


def test_wrapper_lowpass_4k() -> None:
    x = music(44100)
    y = lowpass(x, 4000, 44100)
    assert visqol(y, x, 44100) == pytest.approx(2.392502, abs=1e-4)
    # swapped roles score differently: the wrapper must pass reference and degraded in order
    assert abs(visqol(x, y, 44100) - 2.392502) > 1e-3


def test_wrapper_layouts_agree() -> None:
    x = music(44100)
    y = lowpass(x, 4000, 44100)
    flat = visqol(y, x, 44100)
    # (channels, samples) is mixed down; identical channels change nothing
    assert visqol(np.stack([y, y]), np.stack([x, x]), 44100) == pytest.approx(flat, abs=1e-9)
    assert visqol(torch.from_numpy(y).float(), torch.from_numpy(x), 44100) == pytest.approx(
        flat, abs=1e-9
    )


def test_speech_mode_is_explicit_and_ranks() -> None:
    x = music(44100)
    y = lowpass(x, 4000, 44100)
    same = visqol(x, x, 44100, mode="speech")
    worse = visqol(y, x, 44100, mode="speech")
    assert 1.0 <= worse < same <= 5.0
    # a different model and rate from audio mode
    assert visqol(y, x, 44100) != pytest.approx(worse, abs=1e-3)


def test_quantize_16bit() -> None:
    x = np.array([0.0, 1.0, -1.0, 0.5, 1.4 / 32768, 1.6 / 32768, -2.0])
    q = quantize_16bit(x)
    np.testing.assert_array_equal(q * 32768, [0, 32767, -32768, 16384, 1, 2, -32768])


def test_wrapper_errors() -> None:
    x = music(44100)
    with pytest.raises(ValueError, match="mode"):
        visqol(x, x, 44100, mode="music")  # type: ignore[arg-type]
    bad = x.copy()
    bad[5] = np.nan
    with pytest.raises(ValueError, match="estimate contains 1 NaN/Inf"):
        visqol(bad, x, 44100)
    with pytest.raises(ValueError, match="silent"):
        visqol(np.zeros_like(x), x, 44100)
    with pytest.raises(ValueError, match="expected"):
        visqol(x[None, None], x, 44100)


def test_missing_library_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "visqol", None)  # makes `import visqol` fail
    visqol_api.cache_clear()
    try:
        with pytest.raises(ImportError, match=r"pip install \.\[eval\]"):
            visqol_api("audio")
    finally:
        visqol_api.cache_clear()
