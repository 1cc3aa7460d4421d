"""The campaign layout on tiny fake corpora."""

import json
import os
from pathlib import Path

import pytest

from aeromamba_corpora.mix import MixError, kind_of, mix_corpora


def fake_music(root: Path, files: list[tuple[str, str, float]]) -> Path:
    """A build_music_corpus.py-like corpus: (split/name.wav, arrangement, seconds) entries."""
    records = []
    for file, arrangement, seconds in files:
        (root / file).parent.mkdir(parents=True, exist_ok=True)
        (root / file).write_bytes(b"RIFF" + file.encode())
        split = file.split("/")[0]
        records.append(
            {"file": file, "split": split, "arrangement": arrangement, "seconds": seconds}
        )
    (root / "sources.json").write_text(json.dumps({"files": records}))
    (root / "SOURCES.md").write_text("# Sources of this corpus\n\nrendered\n")
    return root


def fake_recordings(root: Path, files: list[tuple[str, str, float]]) -> Path:
    """A recordings corpus: (output, status, seconds) entries."""
    root.mkdir(parents=True, exist_ok=True)
    records = []
    for output, status, seconds in files:
        if status == "used":
            (root / output).parent.mkdir(parents=True, exist_ok=True)
            (root / output).write_bytes(b"RIFF" + output.encode())
        split = output.split("/")[0]
        used = status == "used"
        records.append(
            {
                "output": output if used else None,
                "split": split,
                "status": status,
                "duration_s": seconds,
            }
        )
    (root / "recordings.json").write_text(json.dumps({"files": records}))
    (root / "SOURCES.md").write_text("# Produced recordings: sources\n\npackages\n")
    return root


def test_kinds_from_arrangements():
    assert [kind_of(a) for a in ("piano", "organ", "strings", "ensemble", "band")] == [
        "piano",
        "piano",
        "ensemble",
        "ensemble",
        "ensemble",
    ]


def test_layout_links_counts_and_sources(tmp_path):
    music = fake_music(
        tmp_path / "music",
        [
            ("train/a.wav", "piano", 60.0),
            ("train/b.wav", "band", 30.0),
            ("test/c.wav", "organ", 90.0),
            ("valid/d.wav", "strings", 120.0),
        ],
    )
    recordings = fake_recordings(
        tmp_path / "rec",
        [
            ("train/produced/pkg__x.wav", "used", 240.0),
            ("test/produced/pkg__y.wav", "used", 180.0),
            ("train/produced/pkg__z.wav", "skipped", 10.0),
        ],
    )
    out = tmp_path / "campaign"
    table = mix_corpora(music, recordings, out)
    files = sorted(p.relative_to(out).as_posix() for p in out.glob("*/*/*.wav"))
    assert files == [
        "test/piano/c.wav",
        "test/produced/pkg__y.wav",
        "train/ensemble/b.wav",
        "train/piano/a.wav",
        "train/produced/pkg__x.wav",
        "valid/ensemble/d.wav",
    ]
    assert (out / "train/piano/a.wav").samefile(music / "train/a.wav")
    assert os.stat(out / "train/produced/pkg__x.wav").st_nlink == 2
    assert table["train"] == {"piano": (1, 1.0), "ensemble": (1, 0.5), "produced": (1, 4.0)}
    assert table["valid"]["produced"] == (0, 0.0)
    assert json.loads((out / "music_sources.json").read_text())["files"][0]["file"] == "train/a.wav"
    assert (out / "recordings.json").is_file()
    text = (out / "SOURCES.md").read_text()
    assert "| train | 1 files, 1.0 min | 1 files, 0.5 min | 1 files, 4.0 min |" in text
    assert "## Sources of this corpus" in text and "## Produced recordings: sources" in text

    # A rerun after a file left the music corpus removes its link and keeps the rest.
    fake_music(music, [("train/a.wav", "piano", 60.0)])
    mix_corpora(music, recordings, out)
    assert not (out / "train/ensemble/b.wav").exists()
    assert (out / "train/piano/a.wav").samefile(music / "train/a.wav")


def test_missing_file_and_clash_are_refused(tmp_path):
    music = fake_music(tmp_path / "music", [("train/a.wav", "piano", 60.0)])
    (music / "train/a.wav").unlink()
    recordings = fake_recordings(tmp_path / "rec", [])
    with pytest.raises(MixError, match="sources.json: lists train/a.wav, which is missing"):
        mix_corpora(music, recordings, tmp_path / "out")
    fake_music(music, [("train/same.wav", "piano", 1.0), ("valid/same.wav", "piano", 1.0)])
    fake_recordings(recordings, [("train/produced/same.wav", "used", 40.0)])
    mix_corpora(music, recordings, tmp_path / "out")  # same name, other split or kind: fine
    (music / "train/x").mkdir()
    (music / "train/x/same.wav").write_bytes(b"RIFF")
    data = json.loads((music / "sources.json").read_text())
    data["files"].append(
        {"file": "train/x/same.wav", "split": "train", "arrangement": "organ", "seconds": 1}
    )
    (music / "sources.json").write_text(json.dumps(data))
    with pytest.raises(MixError, match="would both be train/piano/same.wav"):
        mix_corpora(music, recordings, tmp_path / "out")


def test_several_rendered_corpora_mix_in(tmp_path):
    """A solo-piano corpus beside the main one: both laid out, each sources file kept, and two
    corpora with one folder name refused."""
    music = fake_music(tmp_path / "music", [("train/a.wav", "band", 60.0)])
    piano = fake_music(tmp_path / "piano", [("train/b.wav", "piano", 120.0)])
    recordings = fake_recordings(tmp_path / "rec", [])
    out = tmp_path / "campaign"
    table = mix_corpora([music, piano], recordings, out)
    assert table["train"]["piano"] == (1, 2.0) and table["train"]["ensemble"] == (1, 1.0)
    assert (out / "train/piano/b.wav").samefile(piano / "train/b.wav")
    assert (out / "music_sources.json").is_file() and (out / "music_sources.piano.json").is_file()
    assert "`" + str(piano) + "`" in (out / "SOURCES.md").read_text()
    other = fake_music(tmp_path / "other" / "music", [("train/c.wav", "piano", 1.0)])
    with pytest.raises(MixError, match="distinct folder names"):
        mix_corpora([music, other], recordings, tmp_path / "out2")
