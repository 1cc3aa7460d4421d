"""Corpus integrity: a prepared corpus never reads its own outputs, a file's split is a function
of the file, empty splits and band-limited sources are reported, the segment level filter does
not depend on the segment length, and the stride follows the segment."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hydra import compose, initialize_config_dir
from script_loader import load_script

from aeromamba.data import PairedSegments, music_clip, prepare_corpus, write_synthetic_corpus
from aeromamba.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]


def _prepare(src: Path, dest: Path, **options):
    options = {"workers": 1, "progress": False} | options
    return prepare_corpus(src, dest, **options)


def _write(path: Path, seconds: float = 1.2, sr: int = 44100, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, music_clip(seconds, sr, seed=seed), sr, subtype="FLOAT")


def _splits(dest: Path) -> dict[str, str]:
    """Item name -> split, from the manifests."""
    found = {}
    for split in ("train", "valid", "test"):
        for item in json.loads((dest / f"{split}.json").read_text())["items"]:
            assert item["name"] not in found, f"{item['name']} in two splits"
            found[item["name"]] = split
    return found


def _tone(seconds: float, dbfs: float, sr: int = 44100) -> np.ndarray:
    """A sine whose RMS level is `dbfs`."""
    amplitude = np.sqrt(2) * 10 ** (dbfs / 20)
    return (amplitude * np.sin(2 * np.pi * 440 * np.arange(round(seconds * sr)) / sr)).astype("f4")


@pytest.mark.parametrize("where", ["inside", "same", "around"])
def test_destination_inside_the_source_is_refused(tmp_path: Path, where: str):
    src = tmp_path / "raw"
    _write(src / "a.wav")
    dest = {"inside": src / "prepared", "same": src, "around": tmp_path}[where]
    with pytest.raises(UsageError, match="outside the source folder"):
        _prepare(src, dest)
    assert sorted(p.name for p in src.rglob("*") if p.is_file()) == ["a.wav"], "nothing written"


def test_adding_files_never_moves_existing_ones(tmp_path: Path):
    src, dest = tmp_path / "raw", tmp_path / "prepared"
    for i in range(24):
        _write(src / f"song{i:02d}.wav", seed=i)
    _prepare(src, dest, valid_ratio=0.2, test_ratio=0.2)
    before = _splits(dest)
    assert set(before.values()) == {"train", "valid", "test"}
    for i in range(24, 36):
        _write(src / "more" / f"song{i:02d}.wav", seed=i)
    _prepare(src, dest, valid_ratio=0.2, test_ratio=0.2)
    after = _splits(dest)
    assert {name: after[name] for name in before} == before
    assert len(after) == 36


def test_stale_outputs_are_removed(tmp_path: Path):
    src, dest = tmp_path / "raw", tmp_path / "prepared"
    for i in range(12):
        _write(src / f"s{i}.wav", seed=i)
    _prepare(src, dest, valid_ratio=0.2, test_ratio=0.2, seed=1)
    (src / "s3.wav").unlink()
    report = _prepare(src, dest, valid_ratio=0.2, test_ratio=0.2, seed=2)  # another draw
    on_disk = sorted(p.relative_to(dest).as_posix() for p in dest.glob("*/*/*.wav"))
    listed = sorted(
        item[key]
        for split in ("train", "valid", "test")
        for item in json.loads((dest / f"{split}.json").read_text())["items"]
        for key in ("hr", "lr")
    )
    assert on_disk == listed, "every audio file under DEST is in exactly one manifest"
    assert any("s3.wav" in path for path in report.removed)
    assert "stale output" in report.summary()


def test_empty_split_is_reported_after_dropping_unusable_files(tmp_path: Path):
    src = tmp_path / "raw"
    _write(src / "train" / "good.wav")
    _write(src / "test" / "good2.wav", seed=3)
    (src / "valid").mkdir()
    (src / "valid" / "broken.wav").write_text("not audio")
    report = _prepare(src, tmp_path / "prepared")
    assert report.empty_splits == ["valid"]
    assert "warning: empty split(s): valid" in report.summary()


def test_low_rate_and_band_limited_sources_are_flagged_and_measured(tmp_path: Path):
    src, dest = tmp_path / "raw", tmp_path / "prepared"
    _write(src / "train" / "full.wav", seconds=3.0)
    _write(src / "train" / "low22.wav", seconds=3.0, sr=22050, seed=1)
    report = _prepare(src, dest)
    warned = {Path(path).name: what for path, what in report.warnings}
    assert list(warned) == ["low22.wav"] and "22050 Hz" in warned["low22.wav"]
    items = {i["name"]: i for i in json.loads((dest / "train.json").read_text())["items"]}
    assert items["low22"]["bandwidth_hz"] <= 11025
    assert items["full"]["bandwidth_hz"] > 16000
    saved = json.loads((dest / "report.json").read_text())["warnings"]
    assert [Path(w["path"]).name for w in saved] == ["low22.wav"]
    again = _prepare(src, dest)  # reused files keep their measurement and warning
    assert again.reused == 2 and [Path(p).name for p, _ in again.warnings] == ["low22.wav"]


def test_level_filter_does_not_depend_on_the_segment_length(tmp_path: Path):
    src, dest = tmp_path / "raw", tmp_path / "prepared"
    (src / "train").mkdir(parents=True)
    sf.write(src / "train" / "loud.wav", _tone(8.0, -30.0), 44100, subtype="FLOAT")
    sf.write(src / "train" / "quiet.wav", _tone(8.0, -42.0), 44100, subtype="FLOAT")
    _prepare(src, dest)
    for segment in (0.5, 1.0, 2.0, 4.0):
        data = PairedSegments(dest, "train", segment=segment, min_dbfs=-36.0, pad=False)
        names = {data.describe(i)[0] for i in range(len(data))}
        assert names == {"loud"}, segment
        assert len(data) == int(8.0 / segment)


def test_synthetic_corpus_is_as_loud_as_music_and_survives_short_segments(tmp_path: Path):
    levels = []
    for seed in range(8):
        clip = music_clip(6.0, 44100, seed=seed).astype(np.float64)
        levels.append(10 * np.log10(np.mean(clip**2)))
        assert np.abs(clip).max() <= 10 ** (-1 / 20) + 1e-6
    assert -24.0 < min(levels) and max(levels) < -12.0, levels
    write_synthetic_corpus(tmp_path / "raw", 1.0, seed=4, workers=1, progress=False)
    _prepare(tmp_path / "raw", tmp_path / "prepared")
    kept = PairedSegments(tmp_path / "prepared", "train", segment=1.0, min_dbfs=-36.0)
    every = PairedSegments(tmp_path / "prepared", "train", segment=1.0)
    assert len(kept) >= 0.8 * len(every) > 0


def test_stride_follows_the_segment_by_default():
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        for variant in ("aero", "aeromamba", "aeromamba_official"):
            cfg = compose("config", [f"experiment={variant}", "experiment.segment=1"])
            assert cfg.experiment.stride is None, variant


def test_dataset_stride_defaults_to_the_segment(tmp_path: Path):
    _write(tmp_path / "raw" / "train" / "a.wav", seconds=6.0)
    _prepare(tmp_path / "raw", tmp_path / "prepared")
    data = PairedSegments(tmp_path / "prepared", "train", segment=1.0, stride=None, pad=False)
    assert data.stride == data.segment and len(data) == 6


def test_a_kind_can_be_oversampled(tmp_path: Path):
    _write(tmp_path / "raw" / "train" / "piano" / "p.wav", seconds=3.0)
    _write(tmp_path / "raw" / "train" / "produced" / "q.wav", seconds=3.0, seed=1)
    _prepare(tmp_path / "raw", tmp_path / "prepared")
    plain = PairedSegments(tmp_path / "prepared", "train", segment=1.0, pad=False)
    more = PairedSegments(tmp_path / "prepared", "train", 1.0, pad=False, repeat={"piano": 3})
    groups = [more.group(i) for i in range(len(more))]
    assert len(plain) == 6 and groups.count("piano") == 9 and groups.count("produced") == 3


def test_prepare_script_errors_are_one_line(tmp_path: Path, capsys):
    main = load_script("scripts/prepare_data.py").main
    _write(tmp_path / "raw" / "a.wav")
    for argv in (
        [str(tmp_path / "missing"), str(tmp_path / "out")],
        [str(tmp_path / "raw"), str(tmp_path / "raw" / "out")],
        [str(tmp_path / "raw"), str(tmp_path / "out"), "--valid-ratio", "0.9"],
    ):
        assert main(argv + ["--workers", "1"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), err


def test_files_no_manifest_ever_listed_are_left_alone(tmp_path: Path):
    """A destination may hold the user's own files: only outputs an earlier manifest listed are
    ever removed."""
    src, dest = tmp_path / "raw", tmp_path / "prepared"
    for i in range(6):
        _write(src / f"s{i}.wav", seed=i)
    mine = [dest / "train" / "hr" / "mine.wav", dest / "test" / "lr" / "notes.tmp"]
    for path in mine:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"the user's own file")
    _prepare(src, dest, valid_ratio=0.2, test_ratio=0.2, seed=1)
    _prepare(src, dest, valid_ratio=0.2, test_ratio=0.2, seed=2)  # another draw: outputs move
    assert all(path.read_bytes() == b"the user's own file" for path in mine)
