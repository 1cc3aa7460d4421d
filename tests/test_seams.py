"""The output does not depend on where chunk boundaries fall."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from aeromamba.enhance import chunk_plan, enhance
from aeromamba.options import InferenceOptions, load_model

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "pretrained" / "aeromamba.pt"


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


def test_high_band_level_does_not_depend_on_the_chunking(model):
    """The last chunk reads real audio, not zero padding (which cost it up to 6.6 dB above
    8 kHz here). What remains is the network's own dependence on its context: it normalises
    each chunk by that chunk's level, which moves the generated band by up to ~2 dB."""
    audio, sr = sf.read(ROOT / "examples" / "example_11k.wav", dtype="float32")
    lr = torch.from_numpy(audio)[None]
    options = InferenceOptions.for_model(model)
    short = enhance(model, lr, options.replace(chunk=10.0))[0].numpy()
    whole = enhance(model, lr, options.replace(chunk=40.0))[0].numpy()
    difference = band_level_per_second(short, 44100, 8000) - band_level_per_second(
        whole, 44100, 8000
    )
    assert np.abs(difference).max() < 2.5, difference.round(1)


def test_every_chunk_is_a_whole_window_of_the_signal():
    size, lap, windows = chunk_plan(25 * 100, 100, chunk=10.0, overlap=1.0)
    assert (size, lap) == (1000, 100)
    assert [start for start, _ in windows] == [0, 900, 1500]  # the last one ends at the end
    assert [skip for _, skip in windows] == [0, 0, 300]  # output before 1800 is the overlap's
    assert chunk_plan(700, 100, chunk=10.0, overlap=1.0) == (700, 0, [(0, 0)])  # whole
