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
from aeromamba.enhance import check_amp, chunk_plan, enhance
from aeromamba.inference import find_reference, predict_files, read_lowres
from aeromamba.metrics.lsd import lsd
from aeromamba.models import make_generator
from aeromamba.options import InferenceOptions, OptionError

ROOT = Path(__file__).resolve().parents[1]
# One intra-op thread: on 2 cores shared with other jobs, two spinning threads ran ~70× slower.
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}
# The network's whole band: the model's output as it is, nothing taken from the input.
WHOLE_BAND = InferenceOptions(keep_band=False, keep_lowband=False)


pytestmark = pytest.mark.usefixtures("one_thread")


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
    whole = enhance(stub, lr, WHOLE_BAND.replace(chunk=10.0))  # one chunk
    assert torch.equal(whole, stub(lr[:, None])[:, 0])
    options = WHOLE_BAND.replace(chunk=chunk, overlap=overlap, batch_size=3)
    chunked = enhance(stub, lr, options)
    assert chunked.shape == whole.shape == (2, 4 * lr.shape[-1])
    assert (chunked - whole)[:, 8:-8].abs().max() < 1e-4
    batched = enhance(stub, lr[:, None], options.replace(batch_size=4))  # (B, 1, L) layout
    assert torch.equal(batched[:, 0], chunked)


@pytest.mark.parametrize("length", [151, 269, 1000, 1090])
def test_chunk_plan_covers_the_signal_once(length):
    """Every chunk reads `size` real samples inside the signal; the outputs it keeps (after
    `skip`) follow each other every size − lap samples, overlap by `lap` and end at the end."""
    size, lap, windows = chunk_plan(length, 100, chunk=1.5, overlap=0.3)
    assert (size, lap) == (150, 30)
    assert all(0 <= start and start + size <= length for start, _ in windows)
    kept = [start + skip for start, skip in windows]  # where each chunk's output begins
    assert kept[0] == 0 and windows[-1][0] + size == length
    assert all(b - a == size - lap for a, b in zip(kept, kept[1:], strict=False))
    assert all(skip == 0 for _, skip in windows[:-1])
    assert kept[-1] + lap < length  # the last chunk adds signal beyond its overlap
    assert chunk_plan(90, 100, chunk=1.0, overlap=0.5) == (90, 0, [(0, 0)])
    with pytest.raises(OptionError, match="chunk"):
        InferenceOptions(chunk=0.0, overlap=0.1)


def test_ola_with_a_real_model_has_no_level_dip(model):
    lr = torch.from_numpy(music_clip(4.0, 11025, seed=4))[None]
    whole = enhance(model, lr, WHOLE_BAND.replace(chunk=10.0))  # the model's output alone
    chunked = enhance(model, lr, WHOLE_BAND.replace(chunk=1.0, overlap=0.25))
    assert chunked.shape == whole.shape == (1, 4 * lr.shape[-1])
    ratio = chunked.pow(2).mean() / whole.pow(2).mean()
    assert 0.7 < ratio < 1.3


def test_bf16_autocast_on_the_cpu_stays_close_to_float32(model, monkeypatch):
    # allowed here whatever the CPU: this model is small enough for emulated bf16
    monkeypatch.setattr(enhance_module, "cpu_has_native", lambda amp: True)
    lr = torch.from_numpy(music_clip(2.0, 11025, seed=5))[None]
    exact = enhance(model, lr)
    mixed = enhance(model, lr, InferenceOptions(amp="bf16"))
    assert mixed.dtype == torch.float32 and mixed.shape == exact.shape
    relative = ((mixed - exact).norm() / exact.norm()).item()
    assert 0 < relative < 0.05  # it did run in bf16, and stays close


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_a_cpu_would_emulate_is_refused_before_any_file(tmp_path, monkeypatch, amp):
    monkeypatch.setattr(enhance_module, "cpu_has_native", lambda amp: False)
    src = tmp_path / "clip.wav"
    write_audio(src, music_clip(0.3, 16000, seed=3)[None], 16000)
    with pytest.raises(OptionError, match=f"amp={amp} needs a CPU with .*use amp=none"):
        predict_files(Repeat(), src, tmp_path / "out", options=InferenceOptions(amp=amp))
    assert not (tmp_path / "out").exists()
    summary = predict_files(Repeat(), src, tmp_path / "out", options=InferenceOptions(amp="none"))
    assert len(summary.done) == 1


def test_native_amp_follows_the_cpu_probes(monkeypatch):
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported", "_is_amx_fp16_supported"):
        monkeypatch.setattr(torch.cpu, probe, lambda: False, raising=False)
    assert not enhance_module.cpu_has_native("bf16") and not enhance_module.cpu_has_native("fp16")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert enhance_module.cpu_has_native("bf16") and not enhance_module.cpu_has_native("fp16")
    monkeypatch.delattr(torch.cpu, "_is_amx_fp16_supported")
    assert enhance_module.cpu_has_native("fp16")  # a torch too old to tell refuses nothing


def test_unknown_amp_is_refused_where_the_options_are_made():
    with pytest.raises(OptionError, match="amp must be"):
        InferenceOptions.from_config(None, {"amp": "fp8"})  # predict's and test.py's options
    with pytest.raises(OptionError, match="amp must be"):
        aeromamba.upsample(music_clip(0.3, 16000, seed=3), 16000, Repeat(), amp="fp8")
    with pytest.raises(OptionError, match="amp must be"):
        check_amp("fp8", torch.device("cpu"))  # predict_files' own check, before any file


@pytest.mark.parametrize("sr", [8000, 16000, 22050, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_any_rate_and_channel_count(model, sr, channels):
    audio = resample(music_clip(1.5, 44100, seed=channels)[None].repeat(channels, 0), 44100, sr)
    out, out_sr = aeromamba.upsample(audio.T if channels > 1 else audio[0], sr, model)
    assert out_sr == 44100
    expected = round(audio.shape[-1] * 44100 / sr)
    assert out.shape == ((expected, channels) if channels > 1 else (expected,))
    assert np.isfinite(out).all() and np.abs(out).max() > 1e-4


def test_warns_about_the_band_the_resampling_discards(caplog):
    """Without keep_band the band above lr_sr/2 is lost, and said so; keep_band keeps it."""
    full = music_clip(1.0, 44100, seed=6)
    dull = resample(resample(full[None], 44100, 11025), 11025, 44100)[0]
    with caplog.at_level("WARNING", logger="aeromamba.inference"):
        aeromamba.upsample(dull, 44100, Repeat(), keep_band=False)
        assert not caplog.records  # nothing above 5.5 kHz: nothing lost
        aeromamba.upsample(full, 44100, Repeat())
        assert not caplog.records  # kept: passed through
        aeromamba.upsample(full, 44100, Repeat(), keep_band=False)
    assert len(caplog.records) == 1 and "5512.5 Hz" in caplog.records[0].getMessage()


def test_keep_lowband_keeps_the_input_band(model):
    hr = music_clip(3.0, 44100, seed=5)
    lr = resample(hr[None], 44100, 11025)
    plain = enhance(model, torch.from_numpy(lr), WHOLE_BAND)[0].numpy()
    kept = enhance(model, torch.from_numpy(lr), WHOLE_BAND.replace(keep_lowband=True))[0].numpy()
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
    with pytest.raises(OptionError, match="FLOAT"):
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
def test_chunking_below_its_bounds_is_refused_where_the_options_are_made(chunk, overlap):
    """Refused before any model pass, whichever way the options come (predict.py refuses them
    before the model loads: test_tools_errors)."""
    needle = r"(chunk|overlap) must be at least"
    with pytest.raises(OptionError, match=needle):
        InferenceOptions.from_config(None, {"chunk": chunk, "overlap": overlap})
    with pytest.raises(OptionError, match=needle):
        InferenceOptions().replace(chunk=chunk, overlap=overlap)
    audio = music_clip(2.0, 11025, seed=3)
    with pytest.raises(OptionError, match=needle):
        aeromamba.upsample(audio, 11025, Repeat(), chunk=chunk, overlap=overlap)


def loud_float_file(path: Path, peak: float = 1.7) -> None:
    """A float WAV of a music clip peaking at `peak` (1.7: above full scale)."""
    clip = music_clip(1.0, 11025, seed=11)
    sf.write(path, peak * clip / np.abs(clip).max(), 11025, subtype="FLOAT")


class Recording(Repeat):
    """Repeat, remembering the largest input sample it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.peak = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.peak = max(self.peak, float(x.abs().max()))
        return super().forward(x)


@pytest.mark.parametrize("options", [WHOLE_BAND, InferenceOptions()], ids=["whole", "keep_band"])
def test_float_input_above_full_scale_keeps_its_level(tmp_path, caplog, options):
    """An input peaking at 1.7 goes through the model at full scale and comes back at its own
    level, unclipped, as float: its output is twice that of the same clip at 0.85 (which goes
    through as it is). Where the output is the model's own (Repeat's held samples), its peak
    is the input's; with keep_band it is the input's band plus the band Repeat makes above
    lr_sr/2 (its hold's images), which peaks higher."""
    outputs, models = {}, {}
    for peak in (1.7, 0.85):
        src = tmp_path / f"in{peak}" / "loud.wav"
        src.parent.mkdir()
        loud_float_file(src, peak)
        models[peak] = Recording()
        with caplog.at_level("WARNING", logger="aeromamba.inference"):
            summary = predict_files(models[peak], src, tmp_path / f"out{peak}", options=options)
        assert summary.done and not caplog.records
        assert sf.info(tmp_path / f"out{peak}" / "loud.wav").subtype == "FLOAT"
        outputs[peak], _ = sf.read(tmp_path / f"out{peak}" / "loud.wav", dtype="float32")
    assert models[1.7].peak == pytest.approx(1.0) and models[0.85].peak == pytest.approx(0.85)
    np.testing.assert_allclose(outputs[1.7], 2 * outputs[0.85], rtol=1e-5, atol=1e-6)
    assert np.abs(outputs[1.7]).max() > 1.7 * (1 - 1e-3)
    if options == WHOLE_BAND:
        assert np.abs(outputs[1.7]).max() == pytest.approx(1.7, rel=1e-3)


def test_output_that_clips_says_so_once(tmp_path, caplog):
    """The warning names the file, the peak and the count of the samples clipped, as the same
    output written as float has them."""
    src = tmp_path / "loud.wav"
    loud_float_file(src)
    predict_files(Repeat(), src, tmp_path / "float")
    unclipped = np.abs(sf.read(tmp_path / "float" / "loud.wav", dtype="float32")[0])
    with caplog.at_level("WARNING", logger="aeromamba.inference"):
        summary = predict_files(Repeat(), src, tmp_path / "out", subtype="PCM_16")
    assert summary.done
    (record,) = caplog.records
    message = record.getMessage()
    assert "loud.wav" in message and "subtype=FLOAT" in message and "\n" not in message
    assert f"peak {unclipped.max():.2f}" in message
    assert f"({int((unclipped > 1).sum())} samples)" in message
    assert np.abs(sf.read(tmp_path / "out" / "loud.wav")[0]).max() <= 1


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
    kept = WHOLE_BAND.replace(keep_lowband=True)
    plain = enhance(model, lr, kept)[0].numpy()
    capped = enhance(model, lr, kept.replace(band_cap=0.0))[0].numpy()
    for low, high in ((6000, 10000), (10000, 20000)):
        assert _band_db(capped, low, high) <= _band_db(plain, low, high) + 0.1
    for samples in (1, 441, 1024):  # down to the shortest input predict takes, and below
        tiny = torch.randn(2, samples)
        assert enhance_module.cap_band(tiny, 44100, 5512.5).shape == (2, samples)
    with pytest.raises(OptionError, match="band_cap must be a number"):
        InferenceOptions(band_cap="loud")
    with pytest.raises(OptionError, match="band_cap"):
        InferenceOptions.from_config(model, {"band_cap": float("nan")})
