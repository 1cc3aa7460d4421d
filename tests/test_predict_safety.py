"""predict never writes an input, never leaves a bad output in place, and takes any file: the
targets of a run are planned before anything is written, an output is checked before it is
renamed into place, and a folder's non-audio files are counted, not failed."""

from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from aeromamba import inference
from aeromamba.audio import write_audio
from aeromamba.data.synthetic import music_clip
from aeromamba.errors import UsageError
from aeromamba.inference import predict_files
from aeromamba.models import make_generator
from aeromamba.options import InferenceOptions

pytestmark = pytest.mark.usefixtures("one_thread")


class Stub(nn.Module):
    """4× sample repetition, then `damage` applied to the output (a stand-in generator)."""

    lr_sr, hr_sr = 11025, 44100

    def __init__(self, damage=lambda y: y) -> None:
        super().__init__()
        self.damage = damage
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.damage(nn.functional.interpolate(x, scale_factor=4) + self.dummy)


def clip_file(path: Path, seconds: float = 0.3, seed: int = 0, sr: int = 11025) -> Path:
    write_audio(path, music_clip(seconds, sr, seed=seed)[None], sr)
    return path


def contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# --- targets are planned: no input is ever written -------------------------------------------


def test_an_output_never_replaces_another_input(tmp_path):
    folder = tmp_path / "music"
    clip_file(folder / "x.wav", seed=1)
    clip_file(folder / "x.flac", seed=2)
    before = contents(folder)
    summary = predict_files(Stub(), folder, folder, overwrite=True)
    assert contents(folder) == before and not summary.done
    reasons = dict(summary.failed)
    assert "would overwrite the input" in reasons[folder / "x.flac"]
    assert "would overwrite the input" in reasons[folder / "x.wav"]


def test_a_target_linked_to_an_input_is_refused(tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    clip_file(folder / "a.flac", seed=1)
    clip_file(folder / "b.wav", seed=2)
    out.mkdir()
    (out / "a.wav").symlink_to(folder / "b.wav")
    before = contents(folder)
    summary = predict_files(Stub(), folder, out, overwrite=True)
    assert contents(folder) == before and (out / "a.wav").is_symlink()
    assert summary.done == [folder / "b.wav"]
    ((source, reason),) = summary.failed
    assert source == folder / "a.flac" and "would overwrite the input" in reason


def test_a_target_two_inputs_share_is_refused_for_both(tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    clip_file(folder / "song.wav", seed=1)
    clip_file(folder / "song.flac", seed=2)
    clip_file(folder / "other.wav", seed=3)
    summary = predict_files(Stub(), folder, out)
    assert summary.done == [folder / "other.wav"]
    assert sorted(source for source, _ in summary.failed) == [
        folder / "song.flac",
        folder / "song.wav",
    ]
    assert all("same output" in reason for _, reason in summary.failed)
    assert not (out / "song.wav").exists()


# --- only a finite, successful output is renamed into place ----------------------------------


def test_a_finite_input_of_any_level_gives_a_finite_output(tmp_path):
    torch.manual_seed(0)
    model = make_generator("aeromamba", channels=8).eval()
    clip = music_clip(0.5, 11025, seed=4)
    clip = clip / np.abs(clip).max()
    outputs = {}
    options = InferenceOptions(band_cap=0.0)  # its squared levels overflowed float32
    for peak in (1.0, 1e20, 3e38):
        source = tmp_path / f"in{peak:g}.wav"
        sf.write(source, peak * clip, 11025, subtype="FLOAT")
        summary = predict_files(model, source, tmp_path / "out", options=options)
        if summary.done:
            outputs[peak], _ = sf.read(tmp_path / "out" / source.name, dtype="float64")
            assert np.isfinite(outputs[peak]).all()
        else:  # beyond the float range once restored: refused in one line
            ((_, reason),) = summary.failed
            assert peak > 1e30 and "NaN/Inf" in reason and "\n" not in reason
    np.testing.assert_allclose(outputs[1e20] / 1e20, outputs[1.0], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("subtype", ["FLOAT", "PCM_16"])
def test_non_finite_output_is_a_failure_and_never_put_in_place(tmp_path, subtype):
    def half_nan(y: torch.Tensor) -> torch.Tensor:
        y = y.clone()
        y[..., ::2] = float("nan")
        return y

    source = clip_file(tmp_path / "song.wav")
    for _ in range(2):  # the next run does not take the failed item for done
        summary = predict_files(Stub(half_nan), source, tmp_path / "out", subtype=subtype)
        ((failed, reason),) = summary.failed
        assert failed == source and "NaN" in reason and not summary.skipped
        assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]


def test_a_model_with_nan_weights_is_refused_before_any_file(tmp_path):
    source = clip_file(tmp_path / "song.wav")
    model = Stub()
    with torch.no_grad():
        model.dummy.fill_(float("nan"))
    with pytest.raises(UsageError, match="NaN"):
        predict_files(model, source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_failed_spectrogram_leaves_no_output(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError(errno.EACCES, "Permission denied", "song.png")

    monkeypatch.setattr(inference, "write_spectrogram", broken)
    source = clip_file(tmp_path / "song.wav")
    summary = predict_files(Stub(), source, tmp_path / "out", spectrogram=True)
    assert summary.failed and not (tmp_path / "out" / "song.wav").exists()


# --- what is caught per file, and what stops the run -----------------------------------------


def test_a_bug_is_not_reported_as_a_failed_file(tmp_path):
    def bug(y: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("shape mismatch in layer 3")

    source = clip_file(tmp_path / "song.wav")
    with pytest.raises(RuntimeError, match="layer 3"):
        predict_files(Stub(bug), source, tmp_path / "out")


def test_out_of_memory_stops_and_names_the_options_to_lower(tmp_path):
    def oom(y: torch.Tensor) -> torch.Tensor:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    clip_file(tmp_path / "in" / "a.wav")
    clip_file(tmp_path / "in" / "b.wav")
    with pytest.raises(UsageError, match=r"out of memory.*chunk=.*batch_size=") as caught:
        options = InferenceOptions(chunk=10.0, batch_size=4)
        predict_files(Stub(oom), tmp_path / "in", tmp_path / "out", options=options)
    assert "\n" not in str(caught.value)


def test_disk_full_names_the_reason_and_the_file(tmp_path, monkeypatch):
    @contextmanager
    def full_disk(path):
        yield Path("/dev/full")

    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    monkeypatch.setattr(inference, "atomic_path", full_disk)
    source = clip_file(tmp_path / "song.wav")
    summary = predict_files(Stub(), source, tmp_path / "out")
    ((_, reason),) = summary.failed
    assert "No space left on device" in reason and str(tmp_path / "out" / "song.wav") in reason


# --- inputs that are no regular files ---------------------------------------------------------


def test_an_input_that_is_no_regular_file_is_refused(tmp_path):
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        with pytest.raises(UsageError, match="not a regular file"):
            predict_files(Stub(), path, tmp_path / "out")


def test_broken_links_and_pipes_in_a_folder_are_reported(tmp_path):
    folder = tmp_path / "in"
    clip_file(folder / "good.wav")
    (folder / "gone.wav").symlink_to(tmp_path / "nowhere.wav")
    os.mkfifo(folder / "pipe.wav")
    summary = predict_files(Stub(), folder, tmp_path / "out")
    assert summary.done == [folder / "good.wav"]
    reasons = dict(summary.failed)
    assert "broken link" in reasons[folder / "gone.wav"]
    assert "not a regular file" in reasons[folder / "pipe.wav"]


# --- any file in: MP3s, and folders with covers and notes -------------------------------------


def test_an_mp3_is_written_with_a_subtype_wav_can_hold(tmp_path, caplog):
    source = tmp_path / "song.mp3"
    sf.write(source, music_clip(1.0, 22050, seed=5), 22050, format="MP3")
    with caplog.at_level("INFO", logger="aeromamba.inference"):
        summary = predict_files(Stub(), source, tmp_path / "out")
    assert summary.done and not summary.failed
    info = sf.info(tmp_path / "out" / "song.wav")
    assert info.subtype == "FLOAT" and info.samplerate == 44100
    assert any(
        "MPEG_LAYER_III" in r.getMessage() and "FLOAT" in r.getMessage() for r in caplog.records
    )


def test_pcm_depths_go_to_the_closest_the_container_holds():
    assert inference.output_format(".flac", None, like="PCM_32") == ("FLAC", "PCM_24")
    assert inference.output_format(".wav", None, like="PCM_24") == ("WAV", "PCM_24")
    assert inference.output_format(".flac", None, like="FLOAT") == ("FLAC", "PCM_24")
    assert inference.output_format(".wav", None, like="VORBIS") == ("WAV", "FLOAT")
    with pytest.raises(UsageError, match="MPEG_LAYER_III"):
        inference.output_format(".wav", "MPEG_LAYER_III")


def test_non_audio_files_in_a_folder_are_counted_not_failed(tmp_path):
    folder = tmp_path / "album"
    clip_file(folder / "01.wav")
    (folder / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    (folder / "notes.txt").write_text("liner notes")
    (folder / "album.m3u").write_text("01.wav\n")
    (folder / "02.flac").write_text("not really flac")  # an audio name: a failure
    summary = predict_files(Stub(), folder, tmp_path / "out")
    assert summary.done == [folder / "01.wav"]
    assert summary.not_audio == [folder / "album.m3u", folder / "cover.jpg", folder / "notes.txt"]
    assert [source for source, _ in summary.failed] == [folder / "02.flac"]
    assert "3 not audio" in summary.report()
