"""Tests of the rendered corpus (aeromamba_corpora.rendered, scripts/build_music_corpus.py): the
catalogue and the pure helpers always, MIDI through music21 when installed, a tiny real build
when fluidsynth, a General MIDI SoundFont and music21 are installed."""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from aeromamba_corpora.rendered import arrange, catalogue, render, score
from aeromamba_corpora.rendered.arrange import STRING_PROGRAMS, DrumStyle
from aeromamba_corpora.rendered.build import (
    EXAMPLE_BASS,
    EXAMPLE_OTHER,
    EXAMPLE_PROGRAMS,
    example_piece,
)
from aeromamba_corpora.rendered.catalogue import CatalogueError, Piece, load_catalogue
from aeromamba_corpora.rendered.score import TPQ, Bar, Music, Note, Track

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "build_music_corpus.py"
CAT = load_catalogue()


# --- catalogue ------------------------------------------------------------------------------


def test_shipped_catalogue_is_consistent():
    """What the loader cannot check: the programs the code fixes have names, every category
    has music, the documented held-out choices hold."""
    sounds = CAT.sounds
    fixed = {*STRING_PROGRAMS, *EXAMPLE_PROGRAMS.values(), EXAMPLE_BASS, EXAMPLE_OTHER}
    assert fixed <= set(sounds.programs), "a program the code uses has no name"
    assert {c.category for c in CAT.collections.values()} == set(CAT.categories)
    held = CAT.heldout_collections()
    assert held["haydn"] == "test" and held["beethoven/opus74"] == "valid"
    assert example_piece(CAT).split == "test", "the example clip must be held out"


def test_catalogue_covers_every_music21_collection():
    """Every folder of the installed music21 corpus is used or excluded with a reason, and
    every split gets pieces; training gets every category."""
    pytest.importorskip("music21")
    root = catalogue.corpus_root()
    folders = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("_")}
    assert folders == set(CAT.collections) | set(CAT.excluded)
    pieces = catalogue.list_pieces(CAT, root)
    assert {p.split for p in pieces} == {"train", "valid", "test"}
    assert {p.category for p in pieces if p.split == "train"} == set(CAT.categories)


def test_arrangement_chances_compare_as_written():
    chorale = CAT.categories["chorale"]  # piano 0.25, organ 0.08, strings 0.10, ensemble 0.57
    kinds = [chorale.arrangement(r) for r in (0.0, 0.2499, 0.25, 0.3299, 0.33, 0.4299)]
    assert kinds == ["piano", "piano", "organ", "organ", "strings", "strings"]
    assert chorale.arrangement(0.43) == "ensemble"  # 0.33 + 0.10 is the bound 0.43 exactly
    assert chorale.arrangement(0.9999) == "ensemble"


def test_arranged_as_fixes_every_piece_s_arrangement():
    """A solo-piano corpus (build_music_corpus.py --arrangement piano): every category, every
    draw, piano; the rest of the catalogue (weights, splits) unchanged."""
    piano = CAT.arranged_as("piano")
    draws = [c.arrangement(r) for c in piano.categories.values() for r in (0.0, 0.5, 0.9999)]
    assert set(draws) == {"piano"}
    assert {n: c.weight for n, c in piano.categories.items()} == {
        n: c.weight for n, c in CAT.categories.items()
    }
    assert piano.collections == CAT.collections
    assert CAT.categories["quartet"].arrangement(0.0) == "strings"  # the original is untouched
    with pytest.raises(CatalogueError, match="unknown arrangement 'harp'"):
        CAT.arranged_as("harp")


def _fake_corpus(root: Path) -> None:
    for rel in (
        "bach/bwv1.6.mxl",
        "bach/notes.mxl",  # not a bwv score: left out
        "haydn/opus1/no1.mxl",
        "beethoven/opus18no1.xml",
        "beethoven/opus18no1.krn",  # the same movement again: MusicXML is kept
        "beethoven/opus74.mxl",
        "mozart/k545/movement1.mxl",
        "essenFolksong/x.abc",  # excluded collection
    ):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("")
    (root / "oneills1850").mkdir()
    (root / "oneills1850" / "book.abc").write_text("X: 1\nT: a\nK: G\nX: 2\nT: b\nK: D\n")


def test_pieces_get_the_catalogues_categories_and_splits(tmp_path):
    _fake_corpus(tmp_path)
    pieces = {p.id: p for p in catalogue.list_pieces(CAT, tmp_path)}
    assert set(pieces) == {
        "bach/bwv1.6.mxl",
        "haydn/opus1/no1.mxl",
        "beethoven/opus18no1.xml",
        "beethoven/opus74.mxl",
        "mozart/k545/movement1.mxl",
        "oneills1850/book.abc#1",
        "oneills1850/book.abc#2",
    }
    assert pieces["haydn/opus1/no1.mxl"].split == "test"
    assert pieces["beethoven/opus74.mxl"].split == "valid"  # a path rule
    assert pieces["beethoven/opus18no1.xml"].split == "train"
    assert pieces["mozart/k545/movement1.mxl"].category == "keyboard"  # a path rule
    assert pieces["oneills1850/book.abc#2"].category == "folk"
    # Hash splits do not depend on the seed: the same piece, the same split, every time.
    for piece_id in ("bach/bwv1.6.mxl", "oneills1850/book.abc#1"):
        u = catalogue.stable_int("split", piece_id) / 2**64
        expected = "train" if u < 0.8 else "valid" if u < 0.9 else "test"
        assert pieces[piece_id].split == expected


def test_split_order_follows_category_weights():
    pieces = [
        Piece(f"c/{i}", None, "c", cat, "train") for cat in ("chorale", "song") for i in range(40)
    ]
    order = catalogue.ordered_for_split(CAT, pieces, "train", seed=1)
    assert sorted(p.id for p in order) == sorted(p.id for p in pieces)
    first = [p.category for p in order[:18]]  # chorale weighs 0.28, song 0.08: 3.5 to 1
    assert 12 <= first.count("chorale") <= 15
    assert order == catalogue.ordered_for_split(CAT, pieces, "train", seed=1)
    assert order != catalogue.ordered_for_split(CAT, pieces, "train", seed=2)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["collections"]["bach"].update(category="motet"), "bach: unknown category"),
        (lambda d: d["paths"][0].update(split="dev"), "mozart/k545: unknown split"),
        (lambda d: d["categories"]["song"].update(arrangements={"ensemble": 0.9}), "sum to 0.9"),
        (lambda d: d["drum_chance"].pop("band"), "chorale: no drum chance for ['band']"),
        (lambda d: d["pools"]["lead"].append(255), "programs without a name: [255]"),
        (lambda d: d.pop("pools"), "not a usable catalogue"),
    ],
)
def test_bad_catalogue_names_the_file_and_the_problem(tmp_path, change, message):
    data = yaml.safe_load(catalogue.CATALOGUE.read_text())
    change(data)
    path = tmp_path / "cat.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(CatalogueError, match=r"cat\.yaml: .*" + re.escape(message)):
        load_catalogue(path)


# --- arrangement ----------------------------------------------------------------------------


def test_drums_follow_the_metre():
    bars = [Bar(i * 3 * TPQ, 3 * TPQ, 0, 3, 4) for i in range(4)]  # four bars of 3/4
    bars += [Bar(12 * TPQ + i * 3 * TPQ, 3 * TPQ, 0, 6, 8) for i in range(4)]  # 6/8
    style = DrumStyle(0, False, False, 0.8, 4, 4, False, False)
    notes = arrange.drum_notes(bars, style, catalogue.rng_for("test"))
    kicks = {n.start for n in notes if n.pitch == arrange.KICK}
    hats = [n for n in notes if n.pitch in (arrange.CLOSED_HAT, arrange.OPEN_HAT)]
    assert all(b.start in kicks for b in bars), "a kick on every downbeat"
    assert any(n.pitch in (arrange.CRASH, arrange.CRASH2, arrange.SPLASH) for n in notes)
    # eighth-note hats: 6 per 3/4 bar and 6 per 6/8 bar, fewer only in fill beats
    assert 30 <= len(hats) <= 48
    assert all(1 <= n.velocity <= 127 for n in notes)
    assert all(n.start < 24 * TPQ for n in notes)


def _quartet() -> Music:
    """Four parts of eight quarter notes each, in 4/4."""
    tracks = [
        Track(name, [Note(i * TPQ, (i + 1) * TPQ, pitch + i % 3, 80) for i in range(8)])
        for name, pitch in (("Soprano", 72), ("Alto", 65), ("Tenor", 57), ("Bass", 45))
    ]
    bars = [Bar(0, 4 * TPQ, 0, 4, 4), Bar(4 * TPQ, 4 * TPQ, 0, 4, 4)]
    return Music(tracks, [(0, 500_000)], bars, True, 0, False, "", "", "")


@pytest.mark.parametrize("split", ["train", "valid"])
def test_heldout_sounds_only_outside_training(split):
    sounds, heldout = CAT.sounds, split != "train"
    with_heldout = 0
    for seed in range(60):
        rng = random.Random(seed)
        category = CAT.categories[("chorale", "quartet", "song")[seed % 3]]
        arr = arrange.choose_arrangement(category, sounds, rng, heldout)
        music = _quartet()
        arrange.apply_arrangement(music, arr, sounds, rng, heldout)
        used = [sounds.is_heldout(t.program, t.drum) for t in music.tracks]
        if not heldout:
            assert not any(used), f"seed {seed}: a held-out sound in training"
        elif arr.kind == "ensemble":
            assert any(used), f"seed {seed}: a held-out ensemble without a held-out sound"
        with_heldout += any(used)
    assert heldout == (with_heldout > 0)


def test_tempo_map_round_trip():
    tempos = [(0, 500_000), (4 * TPQ, 1_000_000)]  # 120 qpm, then 60 qpm
    assert score.tick_to_seconds(4 * TPQ, tempos) == pytest.approx(2.0)
    assert score.tick_to_seconds(6 * TPQ, tempos) == pytest.approx(4.0)
    for seconds in (0.5, 2.0, 3.7):
        tick = score.seconds_to_tick(seconds, tempos)
        assert score.tick_to_seconds(tick, tempos) == pytest.approx(seconds, abs=1e-4)


# --- MIDI and audio -------------------------------------------------------------------------


def test_midi_file_holds_the_music(tmp_path):
    midi = pytest.importorskip("music21.midi", reason="music21 not installed")
    melody = Track("melody", [Note(0, TPQ, 60, 90), Note(TPQ, 2 * TPQ, 62, 80)], program=73)
    melody.pan, melody.reverb = 20, 70
    drums = Track("drums", [Note(0, TPQ // 8, arrange.KICK, 100)], program=25, drum=True)
    music = Music([melody, drums], [(0, 500_000), (TPQ, 400_000)], [], True, 0, False, "", "", "")
    path = tmp_path / "t.mid"
    score.write_midi(path, music)
    mf = midi.MidiFile()
    mf.readstr(path.read_bytes())
    assert mf.format == 1 and mf.ticksPerQuarterNote == TPQ and len(mf.tracks) == 3
    tracks, tempos = score._read_tracks(mf)
    assert tempos == music.tempos
    assert [t.notes for t in tracks] == [melody.notes, drums.notes]
    events = [e for e in mf.tracks[2].events if not isinstance(e, midi.DeltaTime)]
    assert {e.channel for e in events if e.isNoteOn()} == {10}, "drums on channel 10"
    first = [e for e in mf.tracks[1].events if not isinstance(e, midi.DeltaTime)]
    assert first[0].type == midi.ChannelVoiceMessages.PROGRAM_CHANGE and first[0].data == 73
    controls = {e.parameter1: e.parameter2 for e in first[1:5]}
    assert controls == {7: 100, 10: 20, 91: 70, 93: 0}


def test_finish_audio_trims_cuts_and_normalises():
    sr = render.SR
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(20 * sr) / sr)
    audio = np.concatenate([np.zeros(sr), tone, np.zeros(2 * sr)])[None, :].repeat(2, axis=0)
    out = render.finish_audio(audio.astype(np.float32), max_seconds=10.0, peak_db=-6.0)
    assert out.shape == (2, 10 * sr)
    assert 20 * np.log10(np.abs(out).max()) == pytest.approx(-6.0, abs=0.01)
    assert np.abs(out[:, : sr // 10]).max() > 0.1, "leading silence trimmed"
    assert np.abs(out[:, -10:]).max() < 0.01, "faded out at the cut"
    with pytest.raises(score.PieceError):
        render.finish_audio(np.zeros((2, sr), np.float32), 10.0, -6.0)


def test_missing_tools_name_the_install_commands(monkeypatch):
    monkeypatch.setattr(render.shutil, "which", lambda name: None)
    with pytest.raises(render.SetupError, match="apt-get install .*fluidsynth fluid-soundfont-gm"):
        render.check_requirements(CAT.soundfonts)


# --- a real build ---------------------------------------------------------------------------


def _needs_renderer():
    pytest.importorskip("music21", reason="music21 not installed (pip install -e '.[corpus]')")
    if shutil.which("fluidsynth") is None:
        pytest.skip("fluidsynth not installed (apt-get install -y fluidsynth)")
    if render.find_soundfont(CAT.soundfonts) is None:
        pytest.skip("no GM SoundFont (apt-get install -y fluid-soundfont-gm)")


def _build(out: Path) -> None:
    options = "--minutes 0.3 --workers 1 --max-seconds-per-piece 8 --synthetic-minutes 0 --seed 3"
    command = [sys.executable, str(SCRIPT), str(out), *options.split()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def _digests(out: Path) -> dict[str, str]:
    return {
        p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.glob("*/*.wav"))
    }


@pytest.mark.slow
def test_tiny_build_is_complete_and_reproducible(tmp_path):
    _needs_renderer()
    out = tmp_path / "corpus"
    _build(out)
    sources = json.loads((out / "sources.json").read_text())
    listed = {entry["file"] for entry in sources["files"]}
    wavs = _digests(out)
    assert set(wavs) == listed
    for split in ("train", "valid", "test"):
        files = sorted((out / split).glob("*.wav"))
        assert files, f"no {split} files"
        for path in files:
            audio, sr = sf.read(str(path))
            assert sr == 44100
            assert 2.0 <= len(audio) / sr <= 8.0 + 1e-6
            assert np.abs(audio).max() > 10 ** (-13 / 20), f"{path.name} is (nearly) silent"
            assert path.name in (out / "SOURCES.md").read_text()
    for entry in sources["files"]:
        if entry["split"] == "train":
            assert not any(p["heldout"] for p in entry["programs"]), "held-out sound in training"
    # The same seed gives the same files; a rerun in place reuses them.
    again = tmp_path / "again"
    _build(again)
    assert _digests(again) == wavs
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("*/*.wav")}
    _build(out)
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/*.wav")} == mtimes


@pytest.mark.slow
def test_example_clip_is_the_shipped_one(tmp_path):
    """--example-only renders examples/ again, sample for sample."""
    _needs_renderer()
    shipped = SCRIPT.parents[1] / "examples"
    command = [sys.executable, str(SCRIPT), str(tmp_path), "--example", str(tmp_path / "ex")]
    result = subprocess.run([*command, "--example-only"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ("example_44k.wav", "example_11k.wav", "README.md"):
        assert (tmp_path / "ex" / name).read_bytes() == (shipped / name).read_bytes(), name
