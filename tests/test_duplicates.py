"""The same recording under several files (a backup copy, another container, bit depth, rate
or level) is found from the decoded audio, all its copies go to one split, and the copies are
reported; distinct recordings are never taken for copies."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from aeromamba.audio import resample
from aeromamba.data import music_clip, prepare_corpus
from aeromamba.data import prepare as prepare_module
from aeromamba.data.prepare import fingerprint, same_recording

SONGS = 12
SECONDS = 3.0


def _song(index: int) -> np.ndarray:
    return music_clip(SECONDS, 44100, seed=100 + index)


def _copies(raw: Path, index: int) -> list[Path]:
    """Copies of song `index` the way users keep them: a backup WAV, 24-bit FLAC, a 48 kHz
    copy 6 dB quieter, one in another folder."""
    audio = _song(index)
    name = f"song{index:02d}"
    paths = [raw / f"backup_{name}.wav", raw / f"{name}.flac", raw / "old" / f"{name} (1).wav"]
    sf.write(paths[0], audio, 44100, subtype="PCM_16")
    sf.write(paths[1], audio, 44100, subtype="PCM_24")
    paths[2].parent.mkdir(exist_ok=True)
    quieter = resample(audio[None] * 0.5, 44100, 48000)[0]
    sf.write(paths[2], quieter, 48000, subtype="FLOAT")
    return paths


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> tuple[Path, Path, dict[str, list[str]], str]:
    """A folder of 12 songs, four of them with three copies each, prepared in three splits;
    also the copies of each song and the run's summary."""
    root = tmp_path_factory.mktemp("duplicates")
    raw = root / "raw"
    raw.mkdir()
    groups = {}
    for index in range(SONGS):
        sf.write(raw / f"song{index:02d}.wav", _song(index), 44100, subtype="FLOAT")
        if index < 4:
            copies = _copies(raw, index)
            groups[f"song{index:02d}"] = [p.relative_to(raw).as_posix() for p in copies]
    report = prepare_corpus(
        raw, root / "prepared", workers=1, progress=False, valid_ratio=0.3, test_ratio=0.3
    )
    return raw, root / "prepared", groups, report.summary()


def _split_of_source(dest: Path) -> dict[str, str]:
    found = {}
    for split in ("train", "valid", "test"):
        for item in json.loads((dest / f"{split}.json").read_text())["items"]:
            found[item["source"]] = split
    return found


def test_copies_of_a_recording_land_in_one_split(prepared):
    _, dest, groups, _ = prepared
    splits = _split_of_source(dest)
    # NAME.flac, now in the split of NAME.wav, is the same item there: left out, reported
    assert len(splits) == SONGS + 2 * len(groups)
    for name, copies in groups.items():
        together = {splits[path] for path in (f"{name}.wav", *copies) if path in splits}
        assert len(together) == 1, (name, together)


def test_copies_are_reported(prepared):
    _, dest, groups, summary = prepared
    assert "4 recording(s) found in more than one file" in summary
    report = json.loads((dest / "report.json").read_text())
    expected = [sorted([f"{name}.wav", *copies]) for name, copies in groups.items()]
    assert sorted(sorted(group) for group in report["duplicates"]) == sorted(expected)


def test_distinct_recordings_are_not_copies(prepared):
    raw, _, _, _ = prepared
    prints = [fingerprint(raw / f"song{index:02d}.wav") for index in range(SONGS)]
    for a in range(SONGS):
        for b in range(a + 1, SONGS):
            assert not same_recording(prints[a], prints[b]), (a, b)


def test_a_copy_with_another_start_is_found(tmp_path: Path):
    audio = _song(0)
    sf.write(tmp_path / "a.wav", audio, 44100)
    # half a fingerprint frame (50 ms) cut, the farthest from any frame of the original
    later = resample(audio[None, 2205:] * 0.5, 44100, 48000)[0]
    sf.write(tmp_path / "b.wav", later, 48000, subtype="PCM_16")
    assert same_recording(fingerprint(tmp_path / "a.wav"), fingerprint(tmp_path / "b.wav"))


def test_a_rerun_reuses_the_fingerprints(prepared, tmp_path: Path, monkeypatch):
    raw, dest, _, _ = prepared

    def no_decoding(path):
        raise AssertionError(f"{path}: fingerprinted again")

    monkeypatch.setattr(prepare_module, "fingerprint", no_decoding)
    report = prepare_corpus(raw, dest, workers=1, progress=False, valid_ratio=0.3, test_ratio=0.3)
    assert len(report.duplicates) == 4 and report.reused == report.prepared
