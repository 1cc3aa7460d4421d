"""The output does not depend on where chunk boundaries fall."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from aeromamba import PRETRAINED
from aeromamba.enhance import chunk_plan, crossfade, enhance
from aeromamba.options import InferenceOptions, load_model

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = PRETRAINED


def band_level_per_second(audio: np.ndarray, sr: int, low: float) -> np.ndarray:
    """dB of the power above `low` Hz in each whole second of `audio` (samples,)."""
    seconds = audio[: len(audio) // sr * sr].reshape(-1, sr)
    spectrum = np.abs(np.fft.rfft(seconds, axis=-1)) ** 2
    freqs = np.fft.rfftfreq(sr, 1 / sr)
    return 10 * np.log10(spectrum[:, freqs > low].sum(axis=-1) + 1e-20)


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return load_model(BUNDLED)


@pytest.mark.parametrize("overlap", [1.0, 2.5])
def test_high_band_level_does_not_depend_on_the_chunking(model, overlap):
    """20 s of a produced recording (tests/fixtures/PROVENANCE.md) through 10 s chunks and
    through one pass: the level above 8 kHz agrees within 1 dB in every second. Before, the
    last chunk was zero-padded (up to 6.6 dB lower above 8 kHz), each chunk was normalised by
    its own level and the overlaps lost up to 1.8 dB of the generated band."""
    audio, sr = sf.read(ROOT / "tests" / "fixtures" / "david01_135s_20s_11k.flac", dtype="float32")
    lr = torch.from_numpy(audio)[None]
    options = InferenceOptions.for_model(model).replace(overlap=overlap)
    short = enhance(model, lr, options.replace(chunk=10.0))[0].numpy()
    whole = enhance(model, lr, options.replace(chunk=40.0))[0].numpy()
    difference = band_level_per_second(short, 44100, 8000) - band_level_per_second(
        whole, 44100, 8000
    )
    assert len(difference) == 20
    assert np.abs(difference).max() < 1.0, difference.round(1)


def test_crossfade_keeps_the_power_of_unrelated_and_the_samples_of_identical_renderings():
    torch.manual_seed(0)
    n, sr = 44100, 44100
    same = torch.randn(2, n)
    torch.testing.assert_close(crossfade(same, same.clone(), sr, 4851.0), same)
    old, new = torch.randn(1, n), torch.randn(1, n)  # unrelated: power must not dip midway
    joined = crossfade(old, new, sr, 4851.0)
    middle = joined[0, n // 2 - 2000 : n // 2 + 2000].square().mean()
    assert middle == pytest.approx(1.0, rel=0.1)  # amplitude fades would give 0.5 here


def test_input_std_is_the_scale_forward_normalises_by(model):
    torch.manual_seed(0)
    lr = torch.randn(2, 1, 11025) * torch.tensor([[[0.01]], [[0.5]]])
    stds = model.input_std(lr)
    with torch.no_grad():
        own = model(lr)
        given = model(lr, input_std=stds)
    torch.testing.assert_close(given, own, rtol=0.02, atol=2e-3 * float(lr.abs().max()))
    assert stds[1] / stds[0] == pytest.approx(50, rel=0.02)
    # block by block (bounded memory for long signals): the same scale within 1%
    torch.testing.assert_close(model.input_std(lr, block=4096), stds, rtol=0.01, atol=0)


def test_every_chunk_is_a_whole_window_of_the_signal():
    size, lap, windows = chunk_plan(25 * 100, 100, chunk=10.0, overlap=1.0)
    assert (size, lap) == (1000, 100)
    assert [start for start, _ in windows] == [0, 900, 1500]  # the last one ends at the end
    assert [skip for _, skip in windows] == [0, 0, 300]  # output before 1800 is the overlap's
    assert chunk_plan(700, 100, chunk=10.0, overlap=1.0) == (700, 0, [(0, 0)])  # whole
