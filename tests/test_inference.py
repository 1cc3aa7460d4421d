"""Inference on real-looking files: any rate and channel count, chunked overlap-add that adds
nothing at boundaries, the low band kept on request, and clear errors for bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

import aeromamba
from aeromamba import enhance as enhance_module
from aeromamba.audio import AudioError, resample, write_audio
from aeromamba.checkpoint import model_package, save_checkpoint
from aeromamba.data.synthetic import music_clip
from aeromamba.enhance import chunk_plan, enhance
from aeromamba.errors import UsageError
from aeromamba.inference import find_reference, predict_files, read_lowres
from aeromamba.metrics.lsd import lsd
from aeromamba.models import make_generator

ROOT = Path(__file__).resolve().parents[1]
# One intra-op thread: on 2 cores shared with other jobs, two spinning threads ran ~70× slower.
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Repeat(nn.Module):
    """Identity-like stand-in for a generator: 4× interpolation, by default every sample
    repeated 4 times; `mode="linear"` looks at neighbours, so chunk edges differ."""

    lr_sr, hr_sr, scale = 11025, 44100, 4

    def __init__(self, mode: str = "nearest") -> None:
        super().__init__()
        self.mode = mode
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(x, scale_factor=4, mode=self.mode) + self.dummy


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return make_generator("aeromamba", channels=8).eval()


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "small.pt"
    save_checkpoint(path, {"generator": model_package(model)})
    return path


@pytest.mark.parametrize(
    "mode,chunk,overlap",
    [
        ("nearest", 1.0, 0.25),
        ("nearest", 0.5, 0.0),
        ("linear", 0.7, 0.1),
        ("linear", 2.0, 0.5),
        ("linear", 1.1, 0.9),  # asks for more than half a chunk: capped
    ],
)
def test_ola_adds_nothing_at_boundaries(mode, chunk, overlap):
    lr = torch.from_numpy(music_clip(3.3, 11025, seed=2))[None].repeat(2, 1)
    lr[1] *= -0.5
    stub = Repeat(mode)
    whole = enhance(stub, lr, chunk=10.0)  # one chunk
    assert torch.equal(whole, stub(lr[:, None])[:, 0])
    chunked = enhance(stub, lr, chunk=chunk, overlap=overlap, batch_size=3)
    assert chunked.shape == whole.shape == (2, 4 * lr.shape[-1])
    assert (chunked - whole)[:, 8:-8].abs().max() < 1e-4
    batched = enhance(stub, lr[:, None], chunk=chunk, overlap=overlap)  # (B, 1, L) layout
    assert torch.equal(batched[:, 0], chunked)


def test_chunk_plan_covers_the_signal_once():
    size, lap, starts = chunk_plan(1000, 100, chunk=1.5, overlap=0.3)
    assert (size, lap) == (150, 30)
    assert starts[0] == 0 and starts[-1] + size >= 1000 > starts[-1] + lap
    assert all(b - a == size - lap for a, b in zip(starts, starts[1:], strict=False))
    assert chunk_plan(90, 100, chunk=1.0, overlap=0.5) == (90, 0, [0])
    with pytest.raises(UsageError, match="chunk"):
        chunk_plan(1000, 100, chunk=0.0, overlap=0.1)


def test_ola_with_a_real_model_has_no_level_dip(model):
    lr = torch.from_numpy(music_clip(4.0, 11025, seed=4))[None]
    whole = enhance(model, lr, chunk=10.0)
    chunked = enhance(model, lr, chunk=1.0, overlap=0.25)
    assert chunked.shape == whole.shape == (1, 4 * lr.shape[-1])
    ratio = chunked.pow(2).mean() / whole.pow(2).mean()
    assert 0.7 < ratio < 1.3


def test_bf16_autocast_on_the_cpu_stays_close_to_float32(model, monkeypatch):
    # allowed here whatever the CPU: this model is small enough for emulated bf16
    monkeypatch.setattr(enhance_module, "cpu_has_native", lambda amp: True)
    lr = torch.from_numpy(music_clip(2.0, 11025, seed=5))[None]
    exact = enhance(model, lr)
    mixed = enhance(model, lr, amp="bf16")
    assert mixed.dtype == torch.float32 and mixed.shape == exact.shape
    relative = ((mixed - exact).norm() / exact.norm()).item()
    assert 0 < relative < 0.05  # it did run in bf16, and stays close


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_a_cpu_would_emulate_is_refused_before_any_file(tmp_path, monkeypatch, amp):
    monkeypatch.setattr(enhance_module, "cpu_has_native", lambda amp: False)
    src = tmp_path / "clip.wav"
    write_audio(src, music_clip(0.3, 16000, seed=3)[None], 16000)
    with pytest.raises(UsageError, match=f"amp={amp} needs a CPU with .*use amp=none"):
        predict_files(Repeat(), src, tmp_path / "out", amp=amp)
    assert not (tmp_path / "out").exists()
    summary = predict_files(Repeat(), src, tmp_path / "out", amp="none")
    assert len(summary.done) == 1


def test_native_amp_follows_the_cpu_probes(monkeypatch):
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported", "_is_amx_fp16_supported"):
        monkeypatch.setattr(torch.cpu, probe, lambda: False, raising=False)
    assert not enhance_module.cpu_has_native("bf16") and not enhance_module.cpu_has_native("fp16")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert enhance_module.cpu_has_native("bf16") and not enhance_module.cpu_has_native("fp16")
    monkeypatch.delattr(torch.cpu, "_is_amx_fp16_supported")
    assert enhance_module.cpu_has_native("fp16")  # a torch too old to tell refuses nothing


def test_unknown_amp_is_refused_before_any_file(tmp_path):
    src = tmp_path / "clip.wav"
    write_audio(src, music_clip(0.3, 16000, seed=3)[None], 16000)
    with pytest.raises(UsageError, match="amp must be"):
        predict_files(Repeat(), src, tmp_path / "out", amp="fp8")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("sr", [8000, 16000, 22050, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_any_rate_and_channel_count(model, sr, channels):
    audio = resample(music_clip(1.5, 44100, seed=channels)[None].repeat(channels, 0), 44100, sr)
    out, out_sr = aeromamba.upsample(audio if channels > 1 else audio[0], sr, model)
    assert out_sr == 44100
    expected = round(audio.shape[-1] * 44100 / sr)
    assert out.shape == ((channels, expected) if channels > 1 else (expected,))
    assert np.isfinite(out).all() and np.abs(out).max() > 1e-4


def test_warns_about_the_band_the_resampling_discards(caplog):
    full = music_clip(1.0, 44100, seed=6)[None]
    with caplog.at_level("WARNING", logger="aeromamba.inference"):
        aeromamba.upsample(resample(resample(full, 44100, 11025), 11025, 44100), 44100, Repeat())
        assert not caplog.records  # nothing above 5.5 kHz: nothing lost
        aeromamba.upsample(full, 44100, Repeat())
    assert len(caplog.records) == 1 and "5512.5 Hz" in caplog.records[0].getMessage()


def test_keep_lowband_keeps_the_input_band(model):
    hr = music_clip(3.0, 44100, seed=5)
    lr = resample(hr[None], 44100, 11025)
    plain = enhance(model, torch.from_numpy(lr))[0].numpy()
    kept = enhance(model, torch.from_numpy(lr), keep_lowband=True)[0].numpy()
    up = resample(lr, 11025, 44100)[0]
    n = min(len(up), len(kept))
    low = dict(sr=44100, band="low", cutoff_hz=4500)
    high = dict(sr=44100, band="high", cutoff_hz=6000)
    assert float(lsd(kept[:n], up[:n], **low)) < 0.2 < float(lsd(plain[:n], up[:n], **low))
    assert float(lsd(kept[:n], plain[:n], **high)) < 0.2  # above the band: the model's


def test_predict_folder_mirrors_layout_and_reports_failures(checkpoint, tmp_path):
    src = tmp_path / "in"
    write_audio(src / "a" / "mono.wav", music_clip(1.2, 22050, seed=1)[None], 22050)
    stereo = music_clip(1.0, 48000, seed=2)
    write_audio(src / "b" / "stereo.flac", np.stack([stereo, 0.5 * stereo]), 48000)
    (src / "empty.wav").write_bytes(b"")
    (src / "notes.txt").write_text("not audio")
    sf.write(src / "one.wav", np.zeros((1, 1), dtype=np.float32), 11025)
    sf.write(src / "zero.wav", np.zeros((0, 1), dtype=np.float32), 11025)
    nan = music_clip(1.0, 11025, seed=3)
    nan[100] = np.nan
    sf.write(src / "nan.wav", nan, 11025, subtype="FLOAT")
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "predict.py"),
            f"input={src}",
            f"output={out}",
            f"checkpoint={checkpoint}",
            "device=cpu",
            "threads=1",
            "spectrogram=true",
        ],
        capture_output=True,
        text=True,
        check=False,
        env=ONE_THREAD,
    )
    assert result.returncode == 1  # some files failed
    assert sf.info(out / "a" / "mono.wav").samplerate == 44100
    info = sf.info(out / "b" / "stereo.wav")
    assert info.channels == 2 and info.frames == round(48000 * 1.0 * 44100 / 48000)
    assert (out / "a" / "mono.png").stat().st_size > 1000
    report = result.stdout
    assert "2 done" in report and "1 not audio, 4 failed" in report  # notes.txt: not audio
    assert "notes.txt" not in report
    for name, reason in [
        ("empty.wav", "empty file"),
        ("one.wav", "too short"),
        ("zero.wav", "too short"),
        ("nan.wav", "NaN"),
    ]:
        line = next(line for line in report.splitlines() if name in line)
        assert line.startswith("FAILED") and reason in line
    mtime = (out / "a" / "mono.wav").stat().st_mtime_ns
    model = torch.nn.Identity()  # never called: everything is skipped
    model.lr_sr, model.hr_sr = 11025, 44100
    again = predict_files(model, src / "a", out / "a")
    assert again.skipped and not again.done
    assert (out / "a" / "mono.wav").stat().st_mtime_ns == mtime
    redo = predict_files(Repeat(), src / "a", out / "a", overwrite=True)
    assert redo.done and not redo.skipped
    assert (out / "a" / "mono.wav").stat().st_mtime_ns != mtime


def test_predict_without_a_checkpoint_says_what_to_pass(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "predict.py"), f"checkpoint={tmp_path / 'none.pt'}"],
        capture_output=True,
        text=True,
        check=False,
        env=ONE_THREAD,
    )
    assert result.returncode == 2 and "none.pt: no such checkpoint file" in result.stderr


def test_predict_rejects_a_bad_thread_count(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "predict.py"), "threads=0", f"output={tmp_path}"],
        capture_output=True,
        text=True,
        check=False,
        env=ONE_THREAD,
    )
    assert result.returncode != 0 and "error: threads must be a positive number" in result.stderr
    assert not any(tmp_path.iterdir())


def test_outputs_inside_the_input_folder_are_not_inputs(tmp_path):
    src = tmp_path / "music"
    write_audio(src / "song.flac", music_clip(0.3, 11025, seed=7)[None], 11025)
    write_audio(src / "take.wav", music_clip(0.3, 11025, seed=8)[None], 11025)
    first = predict_files(Repeat(), src, src / "up")
    assert first.done == [src / "song.flac", src / "take.wav"] and not first.failed
    second = predict_files(Repeat(), src, src / "up")
    assert second.skipped == [src / "song.flac", src / "take.wav"] and not second.done
    assert not second.failed and not (src / "up" / "up").exists()


def test_output_format_and_subtype(tmp_path):
    src = tmp_path / "clip.wav"
    write_audio(src, music_clip(0.3, 16000, seed=9)[None], 16000)
    done = predict_files(Repeat(), src, tmp_path / "out", suffix=".flac", subtype="PCM_24")
    assert not done.failed
    info = sf.info(tmp_path / "out" / "clip.flac")
    assert (info.format, info.subtype, info.samplerate) == ("FLAC", "PCM_24", 44100)
    with pytest.raises(UsageError, match="FLOAT"):
        predict_files(Repeat(), src, tmp_path / "out", suffix=".flac", subtype="FLOAT")


def test_reference_matched_by_relative_path_and_plotted(tmp_path):
    from aeromamba.inference import write_spectrogram

    src, ref = tmp_path / "in", tmp_path / "ref"
    hr = music_clip(0.5, 44100, seed=10)[None]
    write_audio(src / "x" / "take.v2.wav", resample(hr, 44100, 11025), 11025)
    write_audio(ref / "x" / "take.v2.flac", hr, 44100)
    write_audio(ref / "x" / "take.wav", hr, 44100)  # a near miss that must not match
    found = find_reference(src / "x" / "take.v2.wav", src, ref)
    assert found == ref / "x" / "take.v2.flac"
    assert find_reference(src / "x" / "take.v2.wav", src, None) is None
    target = tmp_path / "out" / "take.v2.wav"
    write_audio(target, hr, 44100)
    two = plt_height(write_spectrogram(src / "x" / "take.v2.wav", target))
    three = plt_height(write_spectrogram(src / "x" / "take.v2.wav", target, found))
    assert three > two > 0  # one more panel


def plt_height(path: Path) -> int:
    import matplotlib.image

    return matplotlib.image.imread(path).shape[0]


def test_missing_input_and_unwritable_output(model, tmp_path):
    summary = predict_files(model, tmp_path / "nope", tmp_path / "out")
    assert summary.failed and "no such file" in summary.failed[0][1]
    src = tmp_path / "x.wav"
    write_audio(src, music_clip(0.5, 11025)[None], 11025)
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    summary = predict_files(model, src, blocker / "out")
    assert summary.failed and str(src) in summary.failed[0][1]


def test_input_is_never_overwritten(model, tmp_path):
    src = tmp_path / "song.wav"
    write_audio(src, music_clip(0.5, 44100)[None], 44100)
    before = src.read_bytes()
    summary = predict_files(model, src, tmp_path, overwrite=True)
    assert summary.failed and "overwrite the input" in summary.failed[0][1]
    assert src.read_bytes() == before


def test_read_lowres_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....WAVEfmt garbage")
    with pytest.raises(AudioError, match="bad.wav"):
        read_lowres(bad, 11025)


def test_try_compile_falls_back_to_eager(monkeypatch):

    def broken(model):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    model = Repeat()
    assert enhance_module.try_compile(model, 0.1) is model


@pytest.mark.parametrize("chunk,overlap", [(0.001, 0.0), (0.49, 0.0), (1.0, -0.1)])
def test_chunking_below_its_bounds_is_refused_before_any_file(tmp_path, chunk, overlap):
    with pytest.raises(UsageError, match=r"at least"):
        chunk_plan(22050, 11025, chunk, overlap)
    src = tmp_path / "clip.wav"
    write_audio(src, music_clip(2.0, 11025, seed=3)[None], 11025)
    with pytest.raises(UsageError, match=r"(chunk|overlap) must be at least"):
        predict_files(Repeat(), src, tmp_path / "out", chunk=chunk, overlap=overlap)
    assert not (tmp_path / "out").exists()


def loud_float_file(path: Path) -> float:
    """A float WAV peaking at 1.7 (above full scale); returns the peak."""
    clip = music_clip(1.0, 11025, seed=11)
    audio = 1.7 * clip / np.abs(clip).max()
    sf.write(path, audio, 11025, subtype="FLOAT")
    return float(np.abs(audio).max())


def test_float_input_above_full_scale_keeps_its_peak(tmp_path, caplog):
    src = tmp_path / "loud.wav"
    peak = loud_float_file(src)
    with caplog.at_level("WARNING", logger="aeromamba.inference"):
        summary = predict_files(Repeat(), src, tmp_path / "out")
    assert summary.done and not caplog.records
    out, sr = sf.read(tmp_path / "out" / "loud.wav", dtype="float32")
    assert sf.info(tmp_path / "out" / "loud.wav").subtype == "FLOAT"
    assert np.abs(out).max() == pytest.approx(peak, rel=1e-3)


def test_output_that_clips_says_so_once(tmp_path, caplog):
    src = tmp_path / "loud.wav"
    loud_float_file(src)
    with caplog.at_level("WARNING", logger="aeromamba.inference"):
        summary = predict_files(Repeat(), src, tmp_path / "out", subtype="PCM_16")
    assert summary.done
    (record,) = caplog.records
    message = record.getMessage()
    assert "loud.wav" in message and "peak 1.70" in message and "subtype=FLOAT" in message
    assert "\n" not in message


def test_integer_input_keeps_its_sample_format(tmp_path):
    src = tmp_path / "clip.wav"
    sf.write(src, music_clip(0.5, 11025, seed=12), 11025, subtype="PCM_24")
    predict_files(Repeat(), src, tmp_path / "out")
    predict_files(Repeat(), src, tmp_path / "out", suffix=".ogg")
    assert sf.info(tmp_path / "out" / "clip.wav").subtype == "PCM_24"
    assert sf.info(tmp_path / "out" / "clip.ogg").subtype == "VORBIS"  # the format's default


def test_stale_temporaries_of_killed_runs_are_removed(tmp_path):
    from aeromamba.files import HOST

    src = tmp_path / "in"
    write_audio(src / "a.wav", music_clip(0.5, 11025, seed=13)[None], 11025)
    write_audio(src / "b.wav", music_clip(0.5, 11025, seed=14)[None], 11025)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    out = tmp_path / "out"
    (out / "old").mkdir(parents=True)
    stale = [
        out / f".a.wav.{HOST}.{gone.pid}.x1y2.tmp",
        out / "old" / f".c.flac.{HOST}.{gone.pid}.q.tmp",
    ]
    kept = [
        out / f".a.wav.{HOST}.{os.getpid()}.live.tmp",  # a running process's
        out / f".a.wav.otherhost.{gone.pid}.z.tmp",  # another machine's
        out / ".notes.tmp",  # not ours
    ]
    for path in stale + kept:
        path.write_bytes(b"partial")
    write_audio(out / "b.wav", np.zeros((1, 100), np.float32), 44100)  # skipped: exists
    summary = predict_files(Repeat(), src, out)
    assert summary.done == [src / "a.wav"] and summary.skipped == [src / "b.wav"]
    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in kept)


def _band_db(x: np.ndarray, low: float, high: float, sr: int = 44100) -> float:
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / sr)
    return float(10 * np.log10(power[(freqs >= low) & (freqs < high)].mean()))


def _shaped_noise(seconds: float, gain_db, seed: int, sr: int = 44100) -> np.ndarray:
    """White noise through a spectral gain `gain_db(freqs)`."""
    noise = np.random.default_rng(seed).standard_normal(int(seconds * sr))
    freqs = np.fft.rfftfreq(len(noise), 1 / sr)
    shaped = np.fft.irfft(np.fft.rfft(noise) * 10 ** (gain_db(freqs) / 20), n=len(noise))
    return (0.05 * shaped / shaped.std()).astype(np.float32)


def test_band_cap_attenuates_a_flat_tail_on_dark_audio_and_spares_a_natural_slope():
    """A dark input (falling 24 dB an octave up to 5 kHz) under a flat tail 20 dB above it:
    the tail comes down to within a few dB of the extended slope, the band below the
    crossover stays as it was. Pink noise (-3 dB an octave throughout) is left nearly alone."""
    octaves = lambda f: np.log2(np.maximum(f, 1000.0) / 2000.0)  # noqa: E731
    dark = lambda f: np.where(f < 5000, -24 * octaves(f), -24 * octaves(5000.0) + 20)  # noqa: E731
    tail = _shaped_noise(4.0, dark, seed=1)
    capped = enhance_module.cap_band(torch.from_numpy(tail)[None], 44100, 5512.5)[0].numpy()
    expected = -24 * np.log2(8000 / 2000)  # the slope extended to 8 kHz, relative to 2 kHz
    before = _band_db(tail, 7000, 9000) - _band_db(tail, 1800, 2200)
    after = _band_db(capped, 7000, 9000) - _band_db(capped, 1800, 2200)
    assert before > expected + 25 and abs(after - expected) < 6
    assert abs(_band_db(capped, 1000, 4500) - _band_db(tail, 1000, 4500)) < 0.2
    pink = _shaped_noise(4.0, lambda f: -3 * octaves(f), seed=2)
    spared = enhance_module.cap_band(torch.from_numpy(pink)[None], 44100, 5512.5)[0].numpy()
    for low, high in ((6000, 8000), (8000, 12000), (12000, 20000)):
        assert _band_db(pink, low, high) - _band_db(spared, low, high) < 1.5


def test_band_cap_never_raises_and_is_an_option_of_predict(model):
    hr = music_clip(3.0, 44100, seed=7)
    lr = torch.from_numpy(resample(hr[None], 44100, 11025))
    plain = enhance(model, lr, keep_lowband=True)[0].numpy()
    capped = enhance(model, lr, keep_lowband=True, band_cap=0.0)[0].numpy()
    for low, high in ((6000, 10000), (10000, 20000)):
        assert _band_db(capped, low, high) <= _band_db(plain, low, high) + 0.1
    for samples in (1, 441, 1024):  # down to the shortest input predict takes, and below
        tiny = torch.randn(2, samples)
        assert enhance_module.cap_band(tiny, 44100, 5512.5).shape == (2, samples)
    with pytest.raises(enhance_module.OptionError, match="band_cap must be a number"):
        enhance_module.check_band_cap("loud")
    with pytest.raises(enhance_module.OptionError, match="band_cap"):
        predict_files(model, "missing.wav", "out", band_cap=float("nan"))
