"""scripts/pack_corpus.py (a corpus sample for a GPU machine) and scripts/gpu_campaign.sh."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.script_loader import ROOT, load_script

pack_corpus = load_script("scripts/pack_corpus.py")

RATE = 16000
MIB = 2**20
# train: files of 6 s of noise, which FLAC barely compresses, so that --mib binds: more
# excerpts than fit, in shares 20/20/60%
TRAIN = {"piano": 6, "ensemble": 6, "produced": 18}
SECONDS = 6


def _noise(seconds: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.3, 0.3, int(seconds * RATE)).astype(np.float32)


def _sine(seconds: float, peak: float, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    tone = peak * np.sin(2 * np.pi * 440 * t)
    return np.stack([tone * (c + 1) / channels for c in range(channels)], axis=1)


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    """SRC/{train,valid,test}/{kind}/*.wav with a stereo, a float, a broken and a short file."""
    root = tmp_path_factory.mktemp("raw")
    for kind, count in TRAIN.items():
        (root / "train" / kind).mkdir(parents=True)
        for index in range(count):
            path = root / "train" / kind / f"{kind}{index}.wav"
            sf.write(path, _noise(SECONDS, 100 * len(kind) + index), RATE, subtype="PCM_16")
    (root / "train" / "produced" / "broken.wav").write_bytes(b"RIFF\x00\x00not audio at all")
    sf.write(root / "train" / "piano" / "short.wav", _noise(2, 9), RATE)
    valid = root / "valid"
    for kind in TRAIN:
        (valid / kind).mkdir(parents=True)
    sf.write(valid / "piano" / "mono.wav", _sine(5, 0.5), RATE, subtype="PCM_16")
    sf.write(valid / "ensemble" / "stereo.wav", _sine(5, 0.5, channels=2), RATE, subtype="PCM_16")
    sf.write(valid / "produced" / "float.wav", _sine(5, 1.5), RATE, subtype="FLOAT")
    (root / "test" / "piano").mkdir(parents=True)
    sf.write(root / "test" / "piano" / "held_out.wav", _noise(10, 7), RATE)
    return root


def _args(src: Path, dest: Path, *options: str) -> list[str]:
    """2 MiB, a quarter for valid, excerpts of 4 s: several pieces per kind."""
    sizes = ["--mib", "2", "--valid-share", "0.25", "--excerpt-seconds", "4"]
    return [str(src), str(dest), *sizes, *options]


@pytest.fixture(scope="module")
def packed(src: Path, tmp_path_factory) -> tuple[Path, str]:
    """The pack of `src` with seed 0, and its report."""
    dest = tmp_path_factory.mktemp("pack") / "pack"
    report = io.StringIO()
    with contextlib.redirect_stdout(report):
        assert pack_corpus.main(_args(src, dest)) == 0
    return dest, report.getvalue()


def _files(dest: Path) -> list[dict]:
    return json.loads((dest / "pack.json").read_text())["files"]


def test_size_stays_under_the_limit_and_train_fills_its_share(packed):
    dest, _ = packed
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    assert size <= 2 * MIB
    train = sum(p.stat().st_size for p in (dest / "train").rglob("*.flac"))
    assert 0.95 * 0.75 * 2 * MIB < train <= 0.75 * 2 * MIB


def test_outputs_are_mono_16_bit_flac_at_the_source_rate(packed):
    dest, _ = packed
    flacs = sorted(dest.rglob("*.flac"))
    assert len(flacs) == len(_files(dest)) > 6
    for path in flacs:
        info = sf.info(str(path))
        assert (info.format, info.subtype, info.channels, info.samplerate) == (
            "FLAC",
            "PCM_16",
            1,
            RATE,
        )


def test_each_kind_keeps_its_share_of_the_split(packed):
    dest, _ = packed
    train = [f for f in _files(dest) if f["file"].startswith("train/")]
    total = sum(f["seconds"] for f in train)
    assert total < 0.8 * 4 * sum(TRAIN.values())  # the budget, not the sources, bounded it
    for kind, count in TRAIN.items():
        share = sum(f["seconds"] for f in train if f["kind"] == kind) / total
        # within one excerpt of the source's share
        assert abs(share - count / sum(TRAIN.values())) <= 4 / total + 1e-6, kind


def test_channels_are_averaged_and_loud_floats_scaled_not_clipped(packed, src):
    dest, _ = packed
    by_source = {f["source"]: f for f in _files(dest)}
    stereo = by_source["valid/ensemble/stereo.wav"]
    assert stereo["source_channels"] == 2
    original, _ = sf.read(src / stereo["source"], dtype="float32")
    start = round(stereo["start_seconds"] * RATE)
    frames = round(stereo["seconds"] * RATE)
    decoded, _ = sf.read(dest / stereo["file"], dtype="float32")
    expected = original[start : start + frames].mean(axis=1)
    np.testing.assert_allclose(decoded, expected, atol=1.5 / 32768)
    loud = by_source["valid/produced/float.wav"]
    assert loud["gain"] == pytest.approx(1 / 1.5, rel=1e-3)
    decoded, _ = sf.read(dest / loud["file"], dtype="float32")
    assert 0.99 < np.abs(decoded).max() <= 1.0


def test_bad_and_short_files_are_reported_and_skipped(packed):
    dest, out = packed
    sources = {f["source"] for f in _files(dest)}
    assert not {"train/produced/broken.wav", "train/piano/short.wav"} & sources
    lines = out.splitlines()
    assert "skipped 2 file(s):" in lines
    broken = [line for line in lines if "broken.wav" in line]
    assert len(broken) == 1 and "not a readable audio file" in broken[0]
    assert any("short.wav: too short (2.00 s" in line for line in lines)


def test_the_test_split_is_never_packed(packed):
    dest, _ = packed
    assert not (dest / "test").exists()
    assert all(f["file"].split("/")[0] in ("train", "valid") for f in _files(dest))


def test_a_seed_gives_the_same_pack_and_another_seed_another(src, packed, tmp_path):
    dest, _ = packed
    again = tmp_path / "again"
    assert pack_corpus.main(_args(src, again)) == 0
    assert _files(again) == _files(dest)
    for record in _files(dest):
        assert (again / record["file"]).read_bytes() == (dest / record["file"]).read_bytes()
    other = tmp_path / "other"
    assert pack_corpus.main(_args(src, other, "--seed", "1")) == 0
    assert _files(other) != _files(dest)


def test_a_rerun_replaces_the_pack_and_keeps_other_files(src, tmp_path):
    dest = tmp_path / "pack"
    assert pack_corpus.main(_args(src, dest)) == 0
    (dest / "start.pt").write_bytes(b"weights")
    assert pack_corpus.main(_args(src, dest, "--seed", "1")) == 0
    listed = {dest / f["file"] for f in _files(dest)}
    assert set(dest.rglob("*.flac")) == listed
    assert (dest / "start.pt").read_bytes() == b"weights"


def test_dest_inside_src_is_refused(src, capsys):
    assert pack_corpus.main(_args(src, src / "train" / "pack")) == 2
    assert "must lie outside" in capsys.readouterr().err
    assert not (src / "train" / "pack").exists()


def test_gpu_campaign_script_parses():
    result = subprocess.run(
        ["bash", "-n", str(ROOT / "scripts" / "gpu_campaign.sh")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_a_rerun_removes_only_what_the_previous_pack_listed(src, tmp_path):
    dest = tmp_path / "pack"
    assert pack_corpus.main(_args(src, dest)) == 0
    first = {dest / f["file"] for f in _files(dest)}
    mine = dest / "train" / "piano" / "mine.flac"  # the user's file in a packed folder
    mine.write_bytes(b"the only copy")
    assert pack_corpus.main(_args(src, dest, "--seed", "1")) == 0
    second = {dest / f["file"] for f in _files(dest)}
    assert first - second, "the new pack leaves some of the first one out"
    assert not any(path.exists() for path in first - second)
    assert mine.read_bytes() == b"the only copy"


def test_a_non_empty_folder_that_is_no_pack_is_refused(src, tmp_path, capsys):
    dest = tmp_path / "music"
    mine = dest / "train" / "piano" / "take1.flac"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"the only copy")
    assert pack_corpus.main(_args(src, dest)) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {dest}: ") and "pack.json" in error
    assert len(error.strip().splitlines()) == 1
    assert mine.read_bytes() == b"the only copy"
    assert sorted(p.name for p in dest.rglob("*")) == ["piano", "take1.flac", "train"]


@pytest.mark.parametrize(
    "listed", ["../victim.flac", "train/../../victim.flac", "/abs/victim.flac", "notes.flac", 7]
)
def test_a_pack_json_listing_files_outside_the_pack_is_refused(src, tmp_path, capsys, listed):
    dest = tmp_path / "pack"
    assert pack_corpus.main(_args(src, dest)) == 0
    victim = tmp_path / "victim.flac"
    victim.write_bytes(b"the only copy")
    (dest / "notes.flac").write_bytes(b"mine too")
    manifest = json.loads((dest / "pack.json").read_text())
    manifest["files"].append({"file": listed})
    (dest / "pack.json").write_text(json.dumps(manifest))
    assert pack_corpus.main(_args(src, dest, "--seed", "1")) == 2
    error = capsys.readouterr().err
    assert "pack.json" in error and len(error.strip().splitlines()) == 1
    assert victim.read_bytes() == b"the only copy"
    assert (dest / "notes.flac").read_bytes() == b"mine too"


@pytest.mark.parametrize("content", ["{not json", '{"files": 3}', "[]"])
def test_a_damaged_pack_json_is_refused(src, tmp_path, capsys, content):
    dest = tmp_path / "pack"
    assert pack_corpus.main(_args(src, dest)) == 0
    (dest / "pack.json").write_text(content)
    flacs = sorted(dest.rglob("*.flac"))
    assert pack_corpus.main(_args(src, dest, "--seed", "1")) == 2
    assert "pack.json" in capsys.readouterr().err
    assert sorted(dest.rglob("*.flac")) == flacs


def test_an_interrupted_pack_can_be_rerun(src, tmp_path, monkeypatch):
    dest = tmp_path / "pack"
    real = pack_corpus.atomic_path
    calls = []

    def dies_on_the_third_file(path):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(path)

    monkeypatch.setattr(pack_corpus, "atomic_path", dies_on_the_third_file)
    with pytest.raises(KeyboardInterrupt):
        pack_corpus.main(_args(src, dest))
    monkeypatch.setattr(pack_corpus, "atomic_path", real)
    assert pack_corpus.main(_args(src, dest, "--seed", "1")) == 0
    assert set(dest.rglob("*.flac")) == {dest / f["file"] for f in _files(dest)}


def test_a_destination_under_a_file_is_one_line(src, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("mine")
    assert pack_corpus.main(_args(src, blocker / "pack")) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and str(blocker) in error
    assert len(error.strip().splitlines()) == 1
    assert blocker.read_text() == "mine"
    assert pack_corpus.main(_args(src, blocker)) == 2
    assert str(blocker) in capsys.readouterr().err
