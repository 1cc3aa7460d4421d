"""The recordings corpus on a tiny fake Debian package built locally (no network)."""

import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from aeromamba_corpora import recordings
from aeromamba_corpora.recordings import (
    CatalogueError,
    Stanza,
    build_corpus,
    licence_of,
    load_catalogue,
    parse_dep5,
)

PACKAGE = "fake-music"
VERSION = "1.2-3"
MUSIC = "usr/share/games/fake/music"
COPYRIGHT = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: fake

Files: *
Copyright: 2020 Someone
License: GPL-2+

Files: debian/*
Copyright: 2021 Packager
License: Expat

Files:
 base/music/zipped.flac
 base/music/other.ogg
Copyright: 2019 Composer
License: CC-BY-SA-3.0
 Long licence text.
"""
needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")


def noise(seconds: float, sr: int, channels: int, seed: int = 0) -> np.ndarray:
    """Full-band noise at -20 dBFS, shape (samples, channels) as soundfile writes it."""
    return 0.1 * np.random.default_rng(seed).standard_normal((int(seconds * sr), channels))


def make_deb(tmp_path: Path) -> Path:
    """A .deb holding music, a jingle, a sound effect, a tracker module, a symbolic link, a
    band-limited track, a zip archive with a FLAC inside and a DEP-5 copyright."""
    tree = tmp_path / "tree"
    music = tree / MUSIC
    music.mkdir(parents=True)
    sf.write(str(music / "song.ogg"), noise(3.0, 44100, 2), 44100, format="OGG")
    sf.write(str(music / "jingle.wav"), noise(1.0, 44100, 1), 44100)
    sf.write(str(music / "lowband.wav"), noise(3.0, 22050, 1), 22050)
    (music / "tune.xm").write_bytes(b"Extended Module: fake")
    (music / "link.ogg").symlink_to("song.ogg")
    (tree / "usr/share/games/fake/sounds").mkdir(parents=True)
    sf.write(str(tree / "usr/share/games/fake/sounds/boom.wav"), noise(3.0, 44100, 1), 44100)
    buffer = tmp_path / "zipped.flac"
    sf.write(str(buffer), noise(2.5, 48000, 2, seed=1), 48000, subtype="PCM_24")
    with zipfile.ZipFile(tree / "usr/share/games/fake/data.pk3", "w") as archive:
        archive.write(buffer, "music/zipped.flac")
    doc = tree / f"usr/share/doc/{PACKAGE}"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(COPYRIGHT)
    (tree / "DEBIAN").mkdir()
    (tree / "DEBIAN/control").write_text(
        f"Package: {PACKAGE}\nVersion: {VERSION}\nArchitecture: all\n"
        "Maintainer: Nobody <nobody@example.org>\nDescription: fake music for tests\n"
    )
    debs = tmp_path / "cache" / "debs"
    debs.mkdir(parents=True)
    deb = debs / f"{PACKAGE}_{VERSION}_all.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "--build", str(tree), str(deb)],
        check=True,
        capture_output=True,
    )
    return deb


def write_catalogue(path: Path, zipped_split: str = "test") -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "min_seconds": 2,
                "min_bandwidth_hz": {"train": 0, "valid": 15000, "test": 15000},
                "packages": [
                    {
                        "name": PACKAGE,
                        "split": "train",
                        "music": [f"{MUSIC}/*", "usr/share/games/fake/data.pk3/music/*"],
                        "groups": [
                            {"match": "*/data.pk3/*", "split": zipped_split},
                            {"match": "*/lowband.wav", "split": "valid"},
                        ],
                    }
                ],
            }
        )
    )
    return path


@needs_dpkg
def test_build_from_a_fake_package(tmp_path):
    make_deb(tmp_path)
    out = tmp_path / "out"
    catalogue = load_catalogue(write_catalogue(tmp_path / "catalogue.yaml"))
    lines = []
    (package,) = build_corpus(out, tmp_path / "cache", catalogue, log=lines.append)
    assert lines == []
    assert package.version == VERSION and package.dep5
    assert package.licences == ["CC-BY-SA-3.0", "Expat", "GPL-2+"]
    records = {r.path.split("/")[-1]: r for r in package.records}
    assert sorted(records) == [
        "boom.wav",
        "jingle.wav",
        "link.ogg",
        "lowband.wav",
        "song.ogg",
        "tune.xm",
        "zipped.flac",
    ]
    song, zipped = records["song.ogg"], records["zipped.flac"]
    assert (song.status, song.split, song.licence) == ("used", "train", "GPL-2+")
    assert (zipped.status, zipped.split, zipped.licence) == ("used", "test", "CC-BY-SA-3.0")
    assert zipped.path == "usr/share/games/fake/data.pk3/music/zipped.flac"
    assert song.copyright == f"usr/share/doc/{PACKAGE}/copyright"
    assert song.bandwidth_hz > 15000 and records["lowband.wav"].bandwidth_hz <= 11025
    for name, reason in [
        ("boom.wav", "not in the package's music folders"),
        ("jingle.wav", "shorter than 2 s"),
        ("link.ogg", "symbolic link"),
        ("lowband.wav", "band-limited"),
        ("tune.xm", "tracker module"),
    ]:
        assert records[name].status == "skipped" and records[name].reason.startswith(reason)

    wav = out / "test/produced/fake-music__usr__share__games__fake__data.pk3__music__zipped.wav"
    assert zipped.output == str(wav.relative_to(out))
    info = sf.info(str(wav))
    assert (info.samplerate, info.channels, info.frames) == (48000, 2, 120000)
    assert info.subtype == "PCM_16"
    produced = sorted(p.relative_to(out).as_posix() for p in out.glob("*/produced/*"))
    assert produced == [
        "test/produced/fake-music__usr__share__games__fake__data.pk3__music__zipped.wav",
        "train/produced/fake-music__usr__share__games__fake__music__song.wav",
    ]
    data = json.loads((out / "recordings.json").read_text())
    assert len(data["files"]) == 7
    assert {r["split"]: r["files"] for r in data["summary"]} == {"train": 1, "test": 1}
    assert "| fake-music | 1.2-3 | CC-BY-SA-3.0, GPL-2+ | 2 |" in (out / "SOURCES.md").read_text()


@needs_dpkg
def test_rerun_reuses_outputs_and_follows_catalogue_changes(tmp_path, monkeypatch):
    make_deb(tmp_path)
    out, cache = tmp_path / "out", tmp_path / "cache"
    build_corpus(out, cache, load_catalogue(write_catalogue(tmp_path / "c.yaml")), log=print)
    song = out / "train/produced/fake-music__usr__share__games__fake__music__song.wav"
    stamp = song.stat().st_mtime_ns
    decoded = []
    original = recordings.Member.read
    monkeypatch.setattr(
        recordings.Member, "read", lambda self: decoded.append(self.path) or original(self)
    )
    moved = load_catalogue(write_catalogue(tmp_path / "c2.yaml", zipped_split="valid"))
    (package,) = build_corpus(out, cache, moved, log=print)
    # Only the short jingle (never measured) and the file whose split changed are decoded.
    assert sorted(p.split("/")[-1] for p in decoded) == ["jingle.wav", "zipped.flac"]
    assert song.stat().st_mtime_ns == stamp
    assert not list((out / "test/produced").glob("*.wav"))
    assert len(list((out / "valid/produced").glob("*zipped.wav"))) == 1
    assert {r.path.split("/")[-1] for r in package.records if r.status == "used"} == {
        "song.ogg",
        "zipped.flac",
    }
    # Measurements of an older bandwidth rule are redone; WAVs in place are kept.
    monkeypatch.setattr(recordings, "RULE", recordings.RULE + 1)
    decoded.clear()
    build_corpus(out, cache, moved, log=print)
    assert len(decoded) == 4 and song.stat().st_mtime_ns == stamp


def test_unreadable_audio_is_reported_and_skipped(tmp_path):
    member = recordings.Member("usr/share/x/music/bad.ogg", file=tmp_path / "bad.ogg")
    member.file.write_bytes(b"OggS not really")
    record = recordings.Record("p", "1", member.path, None, "c", "train")
    catalogue = recordings.Catalogue((), 1.0, dict.fromkeys(recordings.SPLITS, 0.0))
    result = recordings.process_member(member, record, tmp_path, catalogue, None, True)
    assert result.status == "skipped" and result.reason.startswith("cannot decode")


def test_dep5_parsing_and_matching():
    stanzas = parse_dep5(COPYRIGHT)
    assert stanzas == [
        Stanza(("*",), "GPL-2+"),
        Stanza(("debian/*",), "Expat"),
        Stanza(("base/music/zipped.flac", "base/music/other.ogg"), "CC-BY-SA-3.0"),
    ]
    assert licence_of("usr/share/g/base/data.pk3/music/other.ogg", stanzas) == "CC-BY-SA-3.0"
    assert licence_of("usr/share/g/music/song.ogg", stanzas) == "GPL-2+"
    assert parse_dep5("This package was debianized by someone.\nGPL-2.\n") is None


def test_bad_catalogue_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "min_seconds: 1\nmin_bandwidth_hz: {train: 0, valid: 0, test: 0}\n"
        "packages: [{name: a, split: holdout, music: ['*']}]\n"
    )
    with pytest.raises(CatalogueError, match=f"{path}.*unknown split"):
        load_catalogue(path)
    path.write_text("packages: []\n")
    with pytest.raises(CatalogueError, match=str(path)):
        load_catalogue(path)


def test_shipped_catalogue_lists_the_twelve_packages():
    catalogue = load_catalogue()
    assert len(catalogue.packages) == 12
    assert all(os.sep not in p.name for p in catalogue.packages)
