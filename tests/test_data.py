"""Tests of the data side: synthetic music, corpus preparation, the paired-segment dataset and
the scripts around them."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy import signal

from aeromamba.data import (
    PairedSegments,
    ensure_prepared,
    is_prepared,
    music_clip,
    prepare_corpus,
    segment_starts,
)
from aeromamba.data import dataset as dataset_module
from aeromamba.data import prepare as prepare_module
from aeromamba.data.prepare import is_musdb
from aeromamba.data.synthetic import corpus_plan
from aeromamba.errors import UsageError

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _prepare(src: Path, dest: Path, **options):
    """prepare_corpus in this process, quietly, every file in train unless `options` say else."""
    options = {"workers": 1, "valid_ratio": 0, "test_ratio": 0, "progress": False} | options
    return prepare_corpus(src, dest, **options)


def _high_band_share(x: np.ndarray, sr: int, cutoff: float = 5500.0) -> float:
    power = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    return float(power[np.fft.rfftfreq(x.size, 1 / sr) > cutoff].sum() / power.sum())


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def _tone(seconds: float, sr: int, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(round(seconds * sr)) / sr)).astype("f4")


# --- synthetic music ----------------------------------------------------------------------


def test_music_clip_is_music_like_and_deterministic():
    clip = music_clip(6.0, 44100, seed=3)
    assert clip.shape == (264600,) and clip.dtype == np.float32
    assert 0.05 < np.abs(clip).max() <= 1.0
    assert np.sqrt(np.mean(clip.astype(np.float64) ** 2)) > 1e-3
    assert _high_band_share(clip, 44100) > 0.005, "energy above 5.5 kHz"
    assert np.array_equal(clip, music_clip(6.0, 44100, seed=3))
    assert not np.allclose(clip, music_clip(6.0, 44100, seed=4))
    frame_rms = np.sqrt(np.mean(clip.reshape(-1, 4410).astype(np.float64) ** 2, axis=1))
    assert frame_rms.max() / np.median(frame_rms) > 1.5, "loudness varies (notes, drums)"


def test_music_clip_at_a_low_rate():
    clip = music_clip(2.0, 11025, seed=1)
    assert clip.shape == (22050,) and np.isfinite(clip).all() and np.abs(clip).max() > 0.05


# --- preparation ----------------------------------------------------------------------------


@pytest.fixture
def raw_folder(tmp_path: Path) -> Path:
    """Good files at several rates and layouts, and every kind of bad file."""
    raw = tmp_path / "raw"
    (raw / "sub").mkdir(parents=True)
    sf.write(raw / "song_a.wav", music_clip(3.0, 44100, seed=1), 44100, subtype="PCM_16")
    left, right = music_clip(3.0, 48000, seed=2), _tone(3.0, 48000, 1000.0, 0.3)
    sf.write(raw / "stereo48.wav", np.stack([left, right], axis=1), 48000, subtype="FLOAT")
    sf.write(raw / "low22.flac", music_clip(3.0, 22050, seed=3), 22050)
    sf.write(raw / "sub" / "nested.wav", music_clip(2.5, 44100, seed=4), 44100)
    (raw / "empty.wav").write_bytes(b"")
    (raw / "notes.wav").write_text("these are not samples\n" * 20)
    sf.write(raw / "silence.wav", np.zeros(3 * 44100, dtype="f4"), 44100)
    sf.write(raw / "short.wav", _tone(0.2, 44100), 44100)
    return raw


def _items(dest: Path, split: str = "train") -> dict[str, dict]:
    manifest = json.loads((dest / f"{split}.json").read_text())
    return {item["name"]: item for item in manifest["items"]}


def test_prepare_folder_converts_records_and_reports(raw_folder: Path, tmp_path: Path):
    dest = tmp_path / "prepared"
    report = _prepare(raw_folder, dest)
    assert is_prepared(dest) and report.layout == "folder"
    manifest = json.loads((dest / "train.json").read_text())
    assert (manifest["hr_sr"], manifest["lr_sr"], manifest["mono"]) == (44100, 11025, "average")
    items = _items(dest)
    assert sorted(items) == ["low22", "song_a", "stereo48", "sub__nested"]
    assert [item["name"] for item in manifest["items"]] == sorted(items)
    facts = {name: (item["source_sr"], item["source_channels"]) for name, item in items.items()}
    assert facts == {
        "low22": (22050, 1),
        "song_a": (44100, 1),
        "stereo48": (48000, 2),
        "sub__nested": (44100, 1),
    }
    assert items["stereo48"]["source"] == "stereo48.wav"
    assert items["sub__nested"]["source"] == "sub/nested.wav"
    for name, item in items.items():
        hr_info, lr_info = sf.info(str(dest / item["hr"])), sf.info(str(dest / item["lr"]))
        assert (hr_info.samplerate, hr_info.channels) == (44100, 1), name
        assert (lr_info.samplerate, lr_info.channels) == (11025, 1), name
        assert (hr_info.frames, lr_info.frames) == (item["hr_length"], item["lr_length"])
        seconds = 2.5 if name == "sub__nested" else 3.0
        assert abs(item["hr_length"] - seconds * 44100) <= 4, name
        assert item["hr_length"] % 4 == 0 and item["lr_length"] == item["hr_length"] // 4

    # stereo 48 kHz: the average of the channels, at 44.1 kHz (checked with scipy's resampler)
    stereo, _ = sf.read(raw_folder / "stereo48.wav", dtype="float64")
    expected = signal.resample_poly(stereo.mean(axis=1), 147, 160)
    hr, _ = sf.read(dest / items["stereo48"]["hr"], dtype="float64")
    interior = slice(2000, hr.size - 2000)
    assert _corr(hr[interior], expected[interior]) > 0.999
    assert np.std(hr[interior] - expected[interior]) < 0.02 * np.std(expected)  # band edges
    # 11.025 kHz version: the 44.1 kHz file low-passed and decimated by 4
    lr, _ = sf.read(dest / items["song_a"]["lr"], dtype="float64")
    hr_a, _ = sf.read(dest / items["song_a"]["hr"], dtype="float64")
    decimated = signal.resample_poly(hr_a, 1, 4)
    assert _corr(lr[500:-500], decimated[500:-500]) > 0.99
    assert _high_band_share(hr_a, 44100) > 0.005 and lr.size == hr_a.size // 4

    reasons = {Path(path).name: reason for path, reason in report.failures}
    assert sorted(reasons) == ["empty.wav", "notes.wav", "short.wav", "silence.wav"]
    assert "empty" in reasons["empty.wav"]
    assert "not a readable audio file" in reasons["notes.wav"]
    assert "silent" in reasons["silence.wav"]
    assert "too short" in reasons["short.wav"]
    saved = json.loads((dest / "report.json").read_text())["skipped"]
    assert sorted(Path(s["path"]).name for s in saved) == sorted(reasons)
    assert not any((dest / "train" / "hr").glob("silence*"))


def test_prepare_is_idempotent(raw_folder: Path, tmp_path: Path):
    dest = tmp_path / "prepared"
    _prepare(raw_folder, dest)
    outputs = sorted(dest.rglob("*.wav")) + sorted(dest.glob("*.json"))
    before = {path: path.stat().st_mtime_ns for path in outputs}
    report = _prepare(raw_folder, dest)
    assert report.reused == 4 and len(report.failures) == 4
    assert {path: path.stat().st_mtime_ns for path in outputs} == before
    # a source edited after preparation is prepared again, the others are not
    future = before[dest / "train" / "hr" / "song_a.wav"] + 10**9
    os.utime(raw_folder / "song_a.wav", ns=(future, future))
    report = _prepare(raw_folder, dest)
    assert report.reused == 3
    changed = {p for p in outputs if p.stat().st_mtime_ns != before[p]}
    assert changed == {dest / "train" / "hr" / "song_a.wav", dest / "train" / "lr" / "song_a.wav"}


def test_prepare_split_folders_in_parallel(tmp_path: Path):
    raw = tmp_path / "raw"
    layout = {"train/a.wav": 1, "train/b.flac": 2, "valid/c.wav": 3, "test/d.wav": 4, "e.wav": 5}
    for name, seed in layout.items():
        (raw / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(raw / name, music_clip(1.5, 44100, seed=seed), 44100)
    report = _prepare(raw, tmp_path / "out", workers=2)
    assert {
        split: sorted(_items(tmp_path / "out", split)) for split in ("train", "valid", "test")
    } == {
        "train": ["a", "b"],
        "valid": ["c"],
        "test": ["d"],
    }
    assert [Path(path).name for path, _ in report.failures] == ["e.wav"]
    assert "outside the split folders" in report.failures[0][1]


def test_prepare_ratio_split_is_seeded(tmp_path: Path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(10):
        sf.write(raw / f"f{i}.wav", _tone(1.1, 44100, 300.0 + 50 * i), 44100)

    def splits(seed: int, dest: str) -> dict[str, list[str]]:
        prepare_corpus(
            raw,
            tmp_path / dest,
            workers=1,
            valid_ratio=0.2,
            test_ratio=0.1,
            seed=seed,
            progress=False,
        )
        return {
            split: sorted(_items(tmp_path / dest, split)) for split in ("train", "valid", "test")
        }

    first = splits(7, "a")
    assert sorted(sum(first.values(), [])) == [f"f{i}" for i in range(10)]
    assert splits(7, "b") == first
    assert any(splits(seed, f"s{seed}") != first for seed in range(3)), "the seed matters"
    with pytest.raises(UsageError, match="valid_ratio"):
        prepare_corpus(raw, tmp_path / "c", valid_ratio=0.6, test_ratio=0.5, progress=False)


def test_prepare_detects_musdb(tmp_path: Path):
    root = tmp_path / "musdb"
    songs = {
        "train": ["Artist A - One", "Artist B - Two", "Artist C - Three"],
        "test": ["D - Four"],
    }
    for split, names in songs.items():
        for index, song in enumerate(names):
            (root / split / song).mkdir(parents=True)
            seed = index + 10 * (split == "test")  # another recording for each song
            mix = np.stack([music_clip(1.5, 44100, seed=seed), _tone(1.5, 44100)], axis=1)
            sf.write(root / split / song / "mixture.wav", mix, 44100)
            sf.write(root / split / song / "vocals.wav", mix, 44100)  # stems are not used
    assert is_musdb(root) and not is_musdb(tmp_path)
    report = _prepare(root, tmp_path / "out", valid_songs=1, seed=5)
    assert report.layout == "musdb" and not report.failures
    found = {split: sorted(_items(tmp_path / "out", split)) for split in ("train", "valid", "test")}
    assert found["test"] == ["D - Four"]
    assert len(found["valid"]) == 1 and len(found["train"]) == 2
    assert sorted(found["train"] + found["valid"]) == sorted(songs["train"])
    item = _items(tmp_path / "out", "valid")[found["valid"][0]]
    assert item["source"] == f"train/{found['valid'][0]}/mixture.wav"
    assert (item["source_channels"], item["source_sr"]) == (2, 44100)
    again = _prepare(root, tmp_path / "again", valid_songs=1, seed=5)
    assert [item["name"] for item in again.items["valid"]] == found["valid"]


def test_prepare_script_exit_status(raw_folder: Path, tmp_path: Path, capsys):
    main = _script("prepare_data").main
    assert main([str(raw_folder), str(tmp_path / "ok"), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "4 files prepared" in out and "empty.wav" in out and "silent" in out
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "empty.wav").write_bytes(b"")
    assert main([str(broken), str(tmp_path / "none"), "--workers", "1"]) == 1
    assert "empty.wav: empty file" in capsys.readouterr().out
    assert not is_prepared(tmp_path / "none")


# --- dataset ---------------------------------------------------------------------------------


@pytest.fixture
def tone_corpus(tmp_path: Path) -> Path:
    """Prepared corpus of one 9-s file: loud 0-4 s, quiet 4-8 s (power 2e-6), loud 8-9 s."""
    raw = tmp_path / "raw"
    raw.mkdir()
    audio = _tone(9.0, 44100, 1000.0, 0.5)
    audio[4 * 44100 : 8 * 44100] *= 0.002
    sf.write(raw / "tone.wav", audio, 44100, subtype="FLOAT")
    _prepare(raw, tmp_path / "prepared")
    return tmp_path / "prepared"


def test_segments_shapes_alignment_and_padding(tone_corpus: Path):
    data = PairedSegments(tone_corpus, "train", segment=4, stride=4)
    assert len(data) == 3
    assert [data.describe(i) for i in range(3)] == [("tone", 0.0), ("tone", 4.0), ("tone", 8.0)]
    hr_file, _ = sf.read(tone_corpus / "train" / "hr" / "tone.wav", dtype="float32")
    for index in range(3):
        lr, hr = data[index]
        assert lr.dtype == hr.dtype == torch.float32
        assert lr.shape == (1, 4 * 11025) and hr.shape == (1, 4 * 44100)
        start = index * 4 * 44100
        present = hr_file[start : start + 4 * 44100]
        assert torch.equal(hr[0, : present.size], torch.from_numpy(present))
        decimated = signal.resample_poly(hr[0].double().numpy(), 1, 4)
        assert _corr(lr[0, 200:10000].double().numpy(), decimated[200:10000]) > 0.99
    lr, hr = data[2]  # 1 s of audio, then zeros
    assert hr[0, :44100].abs().max() > 0.1 and lr[0, :11025].abs().max() > 0.1
    assert torch.all(hr[0, 44100:] == 0) and torch.all(lr[0, 11025:] == 0)
    assert len(PairedSegments(tone_corpus, "train", segment=4, stride=4, pad=False)) == 2


def test_segment_lengths_round_consistently(tone_corpus: Path):
    data = PairedSegments(tone_corpus, "train", segment=0.3, stride=0.25)
    lr, hr = data[0]
    assert lr.shape == (1, round(0.3 * 11025)) and hr.shape[-1] == 4 * lr.shape[-1]
    whole = PairedSegments(tone_corpus, "train", segment=None, stride=None)
    lr, hr = whole[0]
    assert len(whole) == 1 and lr.shape == (1, 9 * 11025) and hr.shape == (1, 9 * 44100)


def test_power_filter_skips_quiet_segments_and_is_cached(tone_corpus: Path, monkeypatch):
    data = PairedSegments(tone_corpus, "train", segment=4, stride=4, min_dbfs=-36)
    assert [data.describe(i) for i in range(len(data))] == [("tone", 0.0), ("tone", 8.0)]
    cache = tone_corpus / "train.segments.json"
    assert cache.is_file()

    def no_reading(*args):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(dataset_module.PairedSegments, "_level", no_reading)
    again = PairedSegments(tone_corpus, "train", segment=4, stride=4, min_dbfs=-36)
    assert again.index == data.index
    with pytest.raises(AssertionError, match="cache"):  # other settings: measured anew
        PairedSegments(tone_corpus, "train", segment=4, stride=4, min_dbfs=-90)
    manifest = tone_corpus / "train.json"
    manifest.write_text(manifest.read_text() + " ")  # another manifest: the cache is stale
    with pytest.raises(AssertionError, match="cache"):
        PairedSegments(tone_corpus, "train", segment=4, stride=4, min_dbfs=-36)


def test_test_protocol_gives_two_excerpts_for_fifty_seconds(tmp_path: Path):
    for split in ("train", "valid", "test"):
        items = []
        if split == "test":
            for name, seconds in (("long", 50.0), ("forty", 40.0), ("short", 7.0)):
                items.append(
                    {
                        "name": name,
                        "hr": f"{name}.wav",
                        "lr": f"{name}_lr.wav",
                        "hr_length": int(seconds * 44100),
                        "lr_length": int(seconds * 11025),
                    }
                )
        manifest = {"hr_sr": 44100, "lr_sr": 11025, "mono": "average", "items": items}
        (tmp_path / f"{split}.json").write_text(json.dumps(manifest))
    sf.write(tmp_path / "long_lr.wav", _tone(50.0, 11025), 11025)
    sf.write(tmp_path / "long.wav", _tone(50.0, 44100), 44100)
    for name, seconds in (("forty", 40.0), ("short", 7.0)):  # headers must match the manifest
        for suffix, rate in (("", 44100), ("_lr", 11025)):
            silence = np.zeros(int(seconds * rate), np.int16)
            sf.write(tmp_path / f"{name}{suffix}.wav", silence, rate, subtype="PCM_16")
    data = PairedSegments(tmp_path, "test", segment=10, stride=40)
    assert [data.describe(i) for i in range(len(data))] == [
        ("forty", 0.0),
        ("long", 0.0),
        ("long", 40.0),
        ("short", 0.0),
    ]
    lr, hr = data[2]
    assert lr.shape == (1, 110250) and hr.shape == (1, 441000) and hr.abs().min() < hr.abs().max()
    assert list(segment_starts(45, 10, 40, pad=True)) == [0, 40]
    assert list(segment_starts(7, 10, 40, pad=False)) == []
    assert len(PairedSegments(tmp_path, "train", segment=4, stride=4)) == 0
    with pytest.raises(UsageError, match="22050"):
        PairedSegments(tmp_path, "test", segment=10, lr_sr=22050)


# --- synthetic corpus and automatic preparation --------------------------------------------


def test_synthetic_corpus_script(tmp_path: Path, capsys):
    main = _script("make_synthetic_corpus").main
    out = tmp_path / "synth"
    assert main([str(out), "--minutes", "0.2", "--seed", "1", "--workers", "2"]) == 0
    clips = {split: sorted((out / split).glob("*.wav")) for split in ("train", "valid", "test")}
    assert all(clips.values()), clips
    lengths = [sf.info(str(p)).duration for p in clips["test"]]
    assert max(lengths) >= 40.0
    assert all(sf.info(str(p)).samplerate == 44100 for paths in clips.values() for p in paths)
    prepared = tmp_path / "synth_prepared"
    assert is_prepared(prepared)
    excerpts = PairedSegments(prepared, "test", segment=10, stride=40)
    assert len(excerpts) >= 2
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")}
    assert main([str(out), "--minutes", "0.2", "--seed", "1", "--workers", "1"]) == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")} == mtimes
    other = tmp_path / "other"
    assert main([str(other), "--minutes", "0.2", "--seed", "1", "--no-prepare"]) == 0
    assert not (tmp_path / "other_prepared").exists()
    first = clips["train"][0]
    assert np.array_equal(sf.read(first)[0], sf.read(other / "train" / first.name)[0])
    assert corpus_plan(0.2, 1) != corpus_plan(0.2, 2)


def test_ensure_prepared(tmp_path: Path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="no source folder"):
        ensure_prepared(None, tmp_path / "root")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ensure_prepared(tmp_path / "missing", tmp_path / "root")
    ensure_prepared(tmp_path / "raw", tmp_path / "root", synthetic_minutes=0.1, seed=2, workers=1)
    assert is_prepared(tmp_path / "root") and (tmp_path / "raw" / "synthetic.json").is_file()

    def no_preparing(*args, **kwargs):
        raise AssertionError("already prepared")

    monkeypatch.setattr(prepare_module, "prepare_corpus", no_preparing)
    ensure_prepared(tmp_path / "raw", tmp_path / "root")
    ensure_prepared(None, tmp_path / "root")
