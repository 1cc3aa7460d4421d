#!/usr/bin/env python3
"""Build a reproducible training corpus of real, varied music from package registries alone.

Scores come from the corpus that the `music21` package ships (Bach chorales, Mozart, Beethoven
and Haydn string quartets, Monteverdi madrigals, trecento and Renaissance polyphony, piano
pieces, songs, and Irish and American fiddle tunes from O'Neill's and Ryan's collections). Each
score is exported to MIDI with music21, arranged by seed (solo piano or organ, string quartet,
mixed ensembles with one General MIDI program per part, folk bands whose chords and bass line
are derived from the melody, and in a share of the ensembles a generated drum track on MIDI
channel 10 with kick, snare, hi-hats, ride and crash cymbals following the piece's metre, and
a bass doubling the lowest part an octave down), then rendered with FluidSynth and the
FluidR3_GM SoundFont at 44.1 kHz. Tempo, transposition, velocities, panning, reverb, chorus and
output peak level (-1 to -12 dBFS) vary by seed. Cymbals and hi-hats matter here: they carry
the energy above 5.5 kHz that an 11.025 kHz -> 44.1 kHz model has to restore.

Layout::

    OUT/train/*.wav  OUT/valid/*.wav  OUT/test/*.wav   44.1 kHz, 16-bit, stereo as rendered
    OUT/sources.json  OUT/SOURCES.md                  one entry per file, plus failures
    OUT/.meta/                                        per-file records (for idempotent reruns)

Splits are by piece and hold things out: some collections only ever appear in valid or test
(`SPLIT_BY_COLLECTION`), the large collections are split by a hash of the piece, and some
General MIDI programs and drum kits (`HELDOUT_PROGRAMS`, `HELDOUT_KITS`) are only used in valid
and test, where each arrangement that can use one gets at least one.

Requirements (the script stops with this advice when one is missing)::

    apt-get update && apt-get install -y --no-install-recommends fluidsynth fluid-soundfont-gm
    pip install "music21>=9"          # or: pip install -e ".[corpus]"

Sources and licences: the compositions are public domain. The encodings are distributed with
music21 "with the permission of the encoders ... where permitted under United States copyright
law; some encodings may not be used for commercial uses" (music21/corpus/license.txt; music21
itself is BSD-3-Clause). Each file's entry records the score's corpus path, composer, embedded
rights notice and this licence note. Excluded: the Essen folksongs (non-commercial permission
only), the Palestrina encodings ("rights to all derivative electronic formats reserved"), lead
sheets, test and demo files, 20th-century works, and any score whose embedded rights notice
reserves rights. FluidR3_GM (Frank Wen, Debian package fluid-soundfont-gm) is MIT licensed,
see /usr/share/doc/fluid-soundfont-gm/copyright.

Reproducibility: every choice comes from a random generator seeded by (seed, piece), and the
pieces of each split are taken in a seeded order until the split's share of --minutes is met,
so the same seed gives the same files whatever --workers is. FluidSynth renders offline
deterministically with fixed settings (same MIDI and settings -> identical samples).

Synthetic share: with --synthetic-minutes > 0 the builder calls the project's
`scripts/make_synthetic_corpus.py OUT/.synthetic --minutes M --seed S` and copies its WAVs into
the splits as `synth_*.wav` (train unless they sit under a valid/ or test/ folder); when that
script is absent it says so and goes on without.

Example: --example DIR writes a 15 s excerpt of Liliuokalani's "Aloha 'Oe" (1878, public
domain; music21's encoding is CC0), which belongs to the test split, as DIR/example_44k.wav
(mono 16-bit 44.1 kHz), DIR/example_11k.wav (soxr VHQ to 11.025 kHz) and DIR/README.md.

Usage::

    python scripts/build_music_corpus.py data/music_raw --minutes 75 --seed 0 --workers 2
    python scripts/build_music_corpus.py data/music_raw --example examples
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import dataclasses
import hashlib
import json
import multiprocessing
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

SR = 44100
SOUNDFONTS = (
    Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
    Path("/usr/share/sounds/sf2/default-GM.sf2"),
)
SOUNDFONT_LICENCE = "FluidR3_GM by Frank Wen, MIT licence (Debian package fluid-soundfont-gm)"
CORPUS_LICENCE = (
    "public-domain composition; encoding distributed with music21 by permission of its "
    "encoders, see music21/corpus/license.txt (some encodings: no commercial use)"
)
INSTALL_HINT = (
    "install them with:\n"
    "  apt-get update && apt-get install -y --no-install-recommends fluidsynth "
    "fluid-soundfont-gm\n"
    '  pip install "music21>=9"   (or: pip install -e ".[corpus]")'
)
SPLITS = ("train", "valid", "test")
SPLIT_SHARES = {"train": 0.8, "valid": 0.1, "test": 0.1}
TPQ = 10080  # music21's MIDI ticks per quarter note; kept so its tick times need no rescaling
DRUM_CHANNEL = 9

# Collection -> category. Collections left out are listed in EXCLUDED with the reason.
CATEGORY_BY_COLLECTION = {
    "bach": "chorale",
    "johnson_j_r": "chorale",
    "mozart": "quartet",
    "beethoven": "quartet",
    "haydn": "quartet",
    "corelli": "quartet",
    "schumann_robert": "quartet",
    "monteverdi": "polyphony",
    "trecento": "polyphony",
    "josquin": "polyphony",
    "luca": "polyphony",
    "ciconia": "polyphony",
    "lusitano": "polyphony",
    "joplin": "keyboard",
    "schumann_clara": "keyboard",
    "chopin": "keyboard",
    "cpebach": "keyboard",
    "verdi": "keyboard",
    "schubert": "song",
    "handel": "song",
    "beach": "song",
    "liliuokalani": "song",
    "weber": "song",
    "oneills1850": "folk",
    "ryansMammoth": "folk",
}
# Who to name when a score's metadata names no composer.
COMPOSER_BY_COLLECTION = {
    "bach": "Johann Sebastian Bach",
    "mozart": "Wolfgang Amadeus Mozart",
    "beethoven": "Ludwig van Beethoven",
    "haydn": "Joseph Haydn",
    "monteverdi": "Claudio Monteverdi",
    "trecento": "anonymous and named 14th-century composers",
    "josquin": "Josquin des Prez",
    "joplin": "Scott Joplin",
    "schumann_clara": "Clara Schumann",
    "verdi": "Giuseppe Verdi",
    "handel": "George Frideric Handel",
    "oneills1850": "traditional (O'Neill's Music of Ireland, 1903)",
    "ryansMammoth": "traditional (Ryan's Mammoth Collection, 1883)",
}
# Paths (prefixes) whose category differs from their collection's.
CATEGORY_BY_PREFIX = {
    "mozart/k545": "keyboard",
    "schumann_robert/dichterliebe": "song",
    "schumann_robert/opus48": "song",
}
EXCLUDED = {
    "essenFolksong": "permission for non-commercial use only",
    "palestrina": "encodings: 'rights to all derivative electronic formats reserved'",
    "leadSheet": "'All Rights Reserved' notice",
    "demos": "test and demo files",
    "theoryExercises": "exercises, not compositions",
    "schoenberg": "20th-century work, not public domain everywhere",
    "webern": "20th-century work, not public domain everywhere",
    "airdsAirs": "not needed: the folk share comes from O'Neill's and Ryan's",
    "nottingham-dataset": "not needed: the folk share comes from O'Neill's and Ryan's",
    "miscFolk": "not needed: the folk share comes from O'Neill's and Ryan's",
}
# Held-out pieces: whole collections (or path prefixes) that never appear in training.
SPLIT_BY_COLLECTION = {
    "haydn": "test",
    "joplin": "test",
    "schumann_clara": "test",
    "liliuokalani": "test",
    "johnson_j_r": "test",
    "weber": "test",
    "verdi": "test",
    "beethoven/opus74": "valid",
    "chopin": "valid",
    "corelli": "valid",
    "handel": "valid",
    "schubert": "valid",
    "cpebach": "valid",
    "beach": "valid",
    "lusitano": "valid",
}
HASH_SPLIT_COLLECTIONS = {
    "bach",
    "monteverdi",
    "trecento",
    "josquin",
    "oneills1850",
    "ryansMammoth",
}
SCORE_SUFFIXES = {".mxl": 0, ".xml": 1, ".musicxml": 1, ".krn": 2, ".abc": 3}

# Share of each split's minutes per category (renormalised over the categories a split has).
CATEGORY_WEIGHTS = {
    "chorale": 0.28,
    "quartet": 0.2,
    "folk": 0.22,
    "polyphony": 0.14,
    "keyboard": 0.08,
    "song": 0.08,
}

GM_NAMES = {
    0: "Acoustic Grand Piano", 1: "Bright Acoustic Piano", 2: "Electric Grand Piano",
    3: "Honky-tonk Piano", 4: "Electric Piano 1", 5: "Electric Piano 2", 6: "Harpsichord",
    7: "Clavinet", 8: "Celesta", 9: "Glockenspiel", 11: "Vibraphone", 12: "Marimba",
    13: "Xylophone", 16: "Drawbar Organ", 19: "Church Organ", 20: "Reed Organ", 21: "Accordion",
    22: "Harmonica", 24: "Nylon Guitar", 25: "Steel Guitar", 26: "Jazz Guitar",
    27: "Clean Electric Guitar", 32: "Acoustic Bass", 33: "Fingered Bass", 34: "Picked Bass",
    35: "Fretless Bass", 38: "Synth Bass 1", 39: "Synth Bass 2", 40: "Violin", 41: "Viola",
    42: "Cello", 43: "Contrabass", 45: "Pizzicato Strings", 46: "Orchestral Harp",
    48: "String Ensemble 1", 49: "String Ensemble 2", 52: "Choir Aahs", 53: "Voice Oohs",
    56: "Trumpet", 57: "Trombone", 58: "Tuba", 59: "Muted Trumpet", 60: "French Horn",
    61: "Brass Section", 64: "Soprano Sax", 65: "Alto Sax", 66: "Tenor Sax", 67: "Baritone Sax",
    68: "Oboe", 69: "English Horn", 70: "Bassoon", 71: "Clarinet", 72: "Piccolo", 73: "Flute",
    74: "Recorder", 75: "Pan Flute", 78: "Whistle", 79: "Ocarina", 80: "Square Lead",
    81: "Saw Lead", 88: "New Age Pad", 89: "Warm Pad", 105: "Banjo", 110: "Fiddle",
}  # fmt: skip
DRUM_KITS = {0: "Standard", 8: "Room", 16: "Power", 24: "Electronic", 25: "TR-808", 32: "Jazz",
             40: "Brush"}  # fmt: skip
HELDOUT_PROGRAMS = {2, 6, 11, 22, 35, 46, 65, 69, 105}
HELDOUT_KITS = {25, 40}

POOLS = {
    "piano": [0, 0, 0, 1, 2, 3, 4, 5, 6, 7],
    "organ": [16, 19, 20],
    "high": [40, 73, 68, 71, 56, 65, 64, 72, 74, 69, 59, 21, 22, 11, 8, 9, 13, 12, 24, 25, 26,
             27, 80, 81, 75, 79, 52, 48, 0, 4, 46, 6, 105, 110],
    "mid": [41, 71, 60, 69, 66, 57, 70, 42, 48, 49, 52, 53, 24, 25, 19, 16, 12, 4, 0, 61, 89,
            11, 46, 65, 2],
    "low": [42, 43, 70, 58, 57, 67, 32, 33, 34, 35, 38, 19, 0, 46],
    "bass": [32, 33, 34, 35, 38, 39, 43, 58],
    "comp": [24, 25, 0, 4, 16, 21, 48, 88, 89, 46, 105, 26, 6, 2],
    "lead": [40, 110, 73, 74, 78, 21, 22, 71, 56, 65, 11, 13, 24, 105, 80, 75, 79, 68, 64, 72],
}  # fmt: skip

# GM drum notes
KICK, SIDE_STICK, SNARE, CLOSED_HAT, PEDAL_HAT, OPEN_HAT = 36, 37, 38, 42, 44, 46
LOW_TOM, MID_TOM, HIGH_TOM, CRASH, RIDE, TAMBOURINE, SPLASH, CRASH2 = 45, 47, 50, 49, 51, 54, 55, 57
SHAKER = 70


class SetupError(RuntimeError):
    """A required tool, SoundFont or package is missing."""


class PieceError(RuntimeError):
    """A piece that cannot be parsed, arranged or rendered; the message says why."""


# --------------------------------------------------------------------------- requirements


def find_soundfont() -> Path | None:
    """The first General MIDI SoundFont found at the Debian locations, or None."""
    return next((p for p in SOUNDFONTS if p.is_file()), None)


def check_requirements() -> Path:
    """Return the SoundFont path, or raise SetupError naming what is missing and how to add it."""
    missing = []
    if shutil.which("fluidsynth") is None:
        missing.append("the fluidsynth program")
    sf2 = find_soundfont()
    if sf2 is None:
        missing.append(f"a General MIDI SoundFont ({SOUNDFONTS[0]})")
    try:
        import music21  # noqa: F401
    except ImportError:
        missing.append("the music21 package")
    if missing:
        raise SetupError("missing " + ", ".join(missing) + "; " + INSTALL_HINT)
    assert sf2 is not None
    return sf2


# --------------------------------------------------------------------------- catalogue


@dataclasses.dataclass(frozen=True)
class Piece:
    """One score of the music21 corpus: `path` is corpus-relative, `number` picks an ABC tune."""

    path: str
    number: int | None
    collection: str
    category: str
    split: str

    @property
    def id(self) -> str:
        return self.path if self.number is None else f"{self.path}#{self.number}"

    @property
    def stem(self) -> str:
        slug = re.sub(
            r"[^A-Za-z0-9]+", "-", self.id.rsplit(".", 1)[0] if self.number is None else self.id
        ).strip("-")
        return f"{self.category}_{slug}"[:120]


def stable_int(*parts: object) -> int:
    """A 64-bit integer from a hash of `parts`, the same in every process and Python version."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def rng_for(*parts: object) -> random.Random:
    return random.Random(stable_int(*parts))


def split_of(path: str, collection: str, piece_id: str) -> str:
    for prefix, split in SPLIT_BY_COLLECTION.items():
        if path.startswith(prefix):  # a collection, or a path prefix such as beethoven/opus74
            return split
    if collection in HASH_SPLIT_COLLECTIONS:
        # The split must not depend on --seed, or pieces would move between splits.
        u = stable_int("split", piece_id) / 2**64
        return "train" if u < 0.8 else "valid" if u < 0.9 else "test"
    return "train"


def category_of(path: str, collection: str) -> str:
    for prefix, category in CATEGORY_BY_PREFIX.items():
        if path.startswith(prefix):
            return category
    return CATEGORY_BY_COLLECTION[collection]


def corpus_root() -> Path:
    from music21 import corpus

    return Path(corpus.__file__).resolve().parent


def catalogue() -> list[Piece]:
    """Every usable score of the music21 corpus, in a fixed order, with its split."""
    root = corpus_root()
    pieces: list[Piece] = []
    for collection in sorted(CATEGORY_BY_COLLECTION):
        best: dict[str, Path] = {}
        for file in sorted((root / collection).rglob("*")):
            if file.suffix not in SCORE_SUFFIXES or not file.is_file():
                continue
            if collection == "bach" and not file.name.startswith("bwv"):
                continue
            # Some movements ship as both MusicXML and Humdrum: keep one (MusicXML first).
            key = str(file.with_suffix(""))
            if key not in best or SCORE_SUFFIXES[file.suffix] < SCORE_SUFFIXES[best[key].suffix]:
                best[key] = file
        for file in sorted(best.values()):
            rel = file.relative_to(root).as_posix()
            numbers: list[int | None] = [None]
            if file.suffix == ".abc":
                found = re.findall(r"^X:\s*(\d+)", file.read_text("utf-8", "replace"), re.M)
                numbers = [int(n) for n in found] if len(found) > 1 else [None]
            for number in numbers:
                piece_id = rel if number is None else f"{rel}#{number}"
                split = split_of(rel, collection, piece_id)
                pieces.append(Piece(rel, number, collection, category_of(rel, collection), split))
    return pieces


def ordered_for_split(pieces: list[Piece], split: str, seed: int) -> list[Piece]:
    """The split's pieces interleaved by category weights, in an order fixed by the seed."""
    rng = rng_for("order", seed, split)
    queues: dict[str, deque[Piece]] = {}
    for category in sorted(CATEGORY_WEIGHTS):
        chosen = [p for p in pieces if p.split == split and p.category == category]
        rng.shuffle(chosen)
        if chosen:
            queues[category] = deque(chosen)
    order: list[Piece] = []
    # Weighted round robin on expected time: the category furthest behind its share goes next.
    used = {c: 0.0 for c in queues}
    while queues:
        category = min(queues, key=lambda c: (used[c] / CATEGORY_WEIGHTS[c], c))
        order.append(queues[category].popleft())
        used[category] += 1.0
        if not queues[category]:
            del queues[category]
    return order


# --------------------------------------------------------------------------- score -> notes


@dataclasses.dataclass
class Note:
    start: int  # ticks
    end: int
    pitch: int
    velocity: int


@dataclasses.dataclass
class Bar:
    start: int  # tick of the bar's first sounding beat
    length: int  # sounding length in ticks (short for a pickup)
    pad: int  # ticks missing at the start of a pickup bar
    numerator: int
    denominator: int


@dataclasses.dataclass
class Track:
    name: str
    notes: list[Note]
    role: str = "mid"
    program: int = 0
    drum: bool = False
    pan: int = 64
    reverb: int = 40
    chorus: int = 0
    transpose: bool = True


@dataclasses.dataclass
class Music:
    """A piece as note lists on music21's tick grid, with its tempo map and bars."""

    tracks: list[Track]
    tempos: list[tuple[int, int]]  # (tick, microseconds per quarter)
    bars: list[Bar]
    tempo_marked: bool
    key_tonic: int  # pitch class
    key_minor: bool
    title: str
    composer: str
    rights: str


def parse_score(piece_path: str, number: int | None) -> Any:
    from music21 import corpus, stream

    score = (
        corpus.parse(piece_path, number=number) if number is not None else corpus.parse(piece_path)
    )
    if isinstance(score, stream.Opus):
        score = score.scores[0]
    if not isinstance(score, stream.Score):
        raise PieceError(f"parsed to {type(score).__name__}, not a score")
    return score


def strip_repeats(score: Any) -> None:
    """Remove repeat signs that music21 cannot expand, so the piece plays straight through."""
    from music21 import bar, repeat, spanner, stream

    for measure in score.recurse().getElementsByClass(stream.Measure):
        if isinstance(measure.leftBarline, bar.Repeat):
            measure.leftBarline = None
        if isinstance(measure.rightBarline, bar.Repeat):
            measure.rightBarline = None
    for cls in (repeat.RepeatExpression, spanner.RepeatBracket):
        for element in list(score.recurse().getElementsByClass(cls)):
            element.activeSite.remove(element)


def score_to_music(score: Any, want_key: bool = False) -> Music:
    """Expand repeats, export with music21's MIDI writer and read back notes, tempos and bars.

    The key is only analysed when `want_key` (it is slow on long scores); else C major.
    """
    from music21 import meter, midi, repeat, stream, tempo

    for part in score.parts:
        if not part.hasMeasures():  # some ABC voices come unbarred; repeats need bars
            part.makeMeasures(inPlace=True)
    try:
        expanded = score.expandRepeats()
    except repeat.ExpanderException:
        strip_repeats(score)
        expanded = score.expandRepeats()
    mf = midi.translate.streamToMidiFile(expanded)
    if mf.ticksPerQuarterNote != TPQ:
        raise PieceError(f"unexpected MIDI resolution {mf.ticksPerQuarterNote}")
    tempos: list[tuple[int, int]] = []
    tracks: list[Track] = []
    for midi_track in mf.tracks:
        tick, name, notes = 0, "", []
        sounding: dict[int, list[tuple[int, int]]] = {}
        for event in midi_track.events:
            if isinstance(event, midi.DeltaTime):
                tick += event.time
            elif event.type == midi.MetaEvents.SET_TEMPO:
                tempos.append((tick, int.from_bytes(event.data, "big")))
            elif event.type == midi.MetaEvents.SEQUENCE_TRACK_NAME:
                name = event.data.decode("utf-8", "replace")
            elif event.isNoteOn():
                sounding.setdefault(event.pitch, []).append((tick, event.velocity))
            elif event.isNoteOff() and sounding.get(event.pitch):
                start, velocity = sounding[event.pitch].pop(0)
                if tick > start:
                    notes.append(Note(start, tick, event.pitch, velocity))
        if notes:
            tracks.append(Track(name=name, notes=sorted(notes, key=lambda n: (n.start, n.pitch))))
    if not tracks:
        raise PieceError("no notes")

    bars: list[Bar] = []
    first = expanded.parts[0] if expanded.parts else expanded
    signature = meter.TimeSignature("4/4")
    for measure in first.getElementsByClass(stream.Measure):
        if measure.timeSignature is not None:
            signature = measure.timeSignature
        length = int(round(measure.duration.quarterLength * TPQ))
        if length <= 0:
            continue
        pad = int(round(float(measure.paddingLeft) * TPQ))
        bars.append(
            Bar(
                int(round(float(measure.offset) * TPQ)),
                length,
                pad,
                signature.numerator,
                signature.denominator,
            )
        )
    if not bars:  # unmeasured scores still get a 4/4 grid for the drums
        end = max(n.end for t in tracks for n in t.notes)
        bars = [Bar(t, 4 * TPQ, 0, 4, 4) for t in range(0, end, 4 * TPQ)]

    marked = any(
        m.number is not None for m in expanded.recurse().getElementsByClass(tempo.MetronomeMark)
    )
    tonic, minor = 0, False
    if want_key:
        try:
            analysed = score.analyze("key")
            tonic, minor = analysed.tonic.pitchClass, analysed.mode == "minor"
        except Exception:  # key finding fails on odd scores; C major then, only for chords
            pass
    md = score.metadata
    title = (md.title or md.movementName or "") if md else ""
    composer = (md.composer or "") if md else ""
    rights = str(md.copyright) if md and md.copyright else ""
    return Music(
        tracks,
        sorted(set(tempos)) or [(0, 500000)],
        bars,
        marked,
        tonic,
        minor,
        title,
        composer,
        rights,
    )


# --------------------------------------------------------------------------- time helpers


def tick_to_seconds(tick: int, tempos: list[tuple[int, int]]) -> float:
    seconds, last_tick, last_us = 0.0, 0, tempos[0][1]
    for t, us in tempos:
        if t >= tick:
            break
        seconds += (t - last_tick) * last_us / TPQ / 1e6
        last_tick, last_us = t, us
    return seconds + (tick - last_tick) * last_us / TPQ / 1e6


def seconds_to_tick(seconds: float, tempos: list[tuple[int, int]]) -> int:
    elapsed, last_tick, last_us = 0.0, 0, tempos[0][1]
    for t, us in tempos[1:]:
        span = (t - last_tick) * last_us / TPQ / 1e6
        if elapsed + span >= seconds:
            break
        elapsed += span
        last_tick, last_us = t, us
    return last_tick + int((seconds - elapsed) * 1e6 / last_us * TPQ)


def music_end(music: Music) -> int:
    return max(n.end for t in music.tracks for n in t.notes)


def window(music: Music, start: int, end: int) -> None:
    """Keep [start, end) in place: notes starting inside, clipped at `end`, shifted to 0."""
    for track in music.tracks:
        track.notes = [
            Note(n.start - start, min(n.end, end) - start, n.pitch, n.velocity)
            for n in track.notes
            if start <= n.start < end
        ]
    music.tracks = [t for t in music.tracks if t.notes]
    current = [us for t, us in music.tempos if t <= start][-1:] or [music.tempos[0][1]]
    music.tempos = [(0, current[0])] + [
        (t - start, us) for t, us in music.tempos if start < t < end
    ]
    music.bars = [
        dataclasses.replace(b, start=b.start - start) for b in music.bars if start <= b.start < end
    ]


# --------------------------------------------------------------------------- arrangement


def beat_grid(bar: Bar) -> tuple[int, int, bool]:
    """(beats per bar, ticks per beat, compound) of a bar's metre."""
    if bar.denominator == 8 and bar.numerator % 3 == 0 and bar.numerator >= 6:
        return bar.numerator // 3, 3 * TPQ // 2, True
    return max(bar.numerator, 1), 4 * TPQ // bar.denominator, False


@dataclasses.dataclass
class DrumStyle:
    kit: int
    ride: bool  # ride cymbal instead of hi-hat
    sixteenths: bool
    level: float  # velocity scale
    crash_every: int
    fill_every: int
    shaker: bool
    tambourine: bool


def choose_drum_style(rng: random.Random, heldout: bool, light: bool = False) -> DrumStyle:
    kits = [k for k in DRUM_KITS if heldout or k not in HELDOUT_KITS]
    kit = rng.choice(sorted(HELDOUT_KITS)) if heldout and rng.random() < 0.6 else rng.choice(kits)
    return DrumStyle(
        kit=kit,
        ride=rng.random() < 0.3,
        sixteenths=rng.random() < 0.35,
        level=rng.uniform(0.45, 0.65) if light else rng.uniform(0.6, 1.0),
        crash_every=rng.choice([4, 8, 8]),
        fill_every=rng.choice([4, 8]),
        shaker=rng.random() < 0.25,
        tambourine=rng.random() < 0.2,
    )


def drum_notes(bars: list[Bar], style: DrumStyle, rng: random.Random) -> list[Note]:
    """A kit part following the bars' metres: kick/snare backbeat, hats or ride, crashes, fills."""
    hits: list[tuple[int, int, float]] = []  # (tick, note, loudness 0..1)
    for index, bar in enumerate(bars):
        beats, beat, compound = beat_grid(bar)
        origin = bar.start - bar.pad  # where the bar would start if it were complete
        bar_len = beats * beat
        step = beat // 3 if compound else beat // 2
        if style.sixteenths and not compound and beat <= TPQ:
            step = beat // 4
        if compound:
            kicks = [0] if beats < 4 else [0, 2]
            snares = [1] if beats == 2 else [1, 3] if beats == 4 else [beats - 1]
        elif beats == 4:
            kicks, snares = [0, 2], [1, 3]
        elif beats == 3:
            kicks, snares = [0], [2]
        elif beats == 2:
            kicks, snares = [0], [1]
        else:
            kicks, snares = [0], [beats // 2] if beats > 1 else []
        fill = (
            index % style.fill_every == style.fill_every - 1
            and index + 1 < len(bars)
            and rng.random() < 0.6
        )
        fill_from = bar_len - beat if fill else bar_len
        for b in kicks:
            hits.append((origin + b * beat, KICK, 0.95))
        if kicks and rng.random() < 0.3 and not compound and beats >= 4:
            hits.append((origin + (beats - 1) * beat + beat // 2, KICK, 0.7))
        for b in snares:
            if b * beat < fill_from:
                hits.append((origin + b * beat, SNARE, 0.9))
        cymbal = RIDE if style.ride else CLOSED_HAT
        for pos in range(0, fill_from, step):
            on_beat = pos % beat == 0
            loud = 0.75 if on_beat else 0.5 + 0.1 * rng.random()
            note = cymbal
            if not style.ride and not on_beat and pos + step >= bar_len and index % 2 == 1:
                note = OPEN_HAT
            hits.append((origin + pos, note, loud))
            if style.shaker and not on_beat:
                hits.append((origin + pos, SHAKER, 0.45))
        if style.ride:
            for b in snares:
                hits.append((origin + b * beat, PEDAL_HAT, 0.6))
        if style.tambourine:
            for b in snares:
                hits.append((origin + b * beat, TAMBOURINE, 0.55))
        if index % style.crash_every == 0:
            hits.append((origin, rng.choice([CRASH, CRASH, CRASH2, SPLASH]), 0.9))
        if fill:
            toms = [SNARE, HIGH_TOM, MID_TOM, LOW_TOM]
            division = 4 if beat >= TPQ else 2
            for i in range(division):
                pos = fill_from + i * beat // division
                hits.append((origin + pos, toms[min(i * len(toms) // division, 3)], 0.85))
    notes = []
    for tick, pitch, loud in hits:
        if tick < bars[0].start:
            continue  # the silent part of a pickup bar
        velocity = int(round(127 * style.level * loud + rng.uniform(-6, 6)))
        notes.append(Note(tick, tick + TPQ // 8, pitch, max(1, min(127, velocity))))
    return sorted(notes, key=lambda n: (n.start, n.pitch))


def chord_candidates(tonic: int, minor: bool) -> list[tuple[str, set[int], int]]:
    """(name, pitch classes, root) of the diatonic triads a folk accompaniment may use."""
    triads = (
        [("i", 0, 3), ("iv", 5, 3), ("V", 7, 4), ("VI", 8, 4), ("VII", 10, 4), ("III", 3, 4)]
        if minor
        else [("I", 0, 4), ("IV", 5, 4), ("V", 7, 4), ("vi", 9, 3), ("ii", 2, 3)]
    )
    return [
        (name, {(tonic + r) % 12, (tonic + r + third) % 12, (tonic + r + 7) % 12}, (tonic + r) % 12)
        for name, r, third in triads
    ]


def harmonise(music: Music, melody: list[Note]) -> list[tuple[int, int, set[int], int]]:
    """One chord per bar (per half bar in long bars) fitting the melody: (start, end, pcs, root)."""
    candidates = chord_candidates(music.key_tonic, music.key_minor)
    prior = {0: 0.25, 1: 0.05, 2: 0.15}  # tonic, subdominant, dominant slightly favoured
    segments: list[tuple[int, int]] = []
    for bar in music.bars:
        beats, beat, _ = beat_grid(bar)
        if beats >= 4 and beats % 2 == 0 and bar.pad == 0:
            half = beats // 2 * beat
            segments += [(bar.start, bar.start + half), (bar.start + half, bar.start + bar.length)]
        else:
            segments.append((bar.start, bar.start + bar.length))
    chords = []
    previous = 0
    for i, (start, end) in enumerate(segments):
        scores = []
        for c, (_, pcs, _root) in enumerate(candidates):
            score = prior.get(c, 0.0) + (0.15 if c == previous else 0.0)
            for n in melody:
                overlap = min(n.end, end) - max(n.start, start)
                if overlap <= 0:
                    continue
                fits = n.pitch % 12 in pcs
                score += overlap / TPQ * (1.0 if fits else -0.4)
                if fits and n.start == start:
                    score += 0.5
            scores.append(score)
        best = 0 if i == len(segments) - 1 else int(np.argmax(scores))
        previous = best
        chords.append((start, end, candidates[best][1], candidates[best][2]))
    return chords


def folk_accompaniment(
    music: Music, melody: list[Note], rng: random.Random
) -> tuple[list[Note], list[Note]]:
    """Chord and bass parts for a single-line tune: (comp notes, bass notes)."""
    chords = harmonise(music, melody)
    pattern = rng.choice(["block", "offbeat", "arpeggio", "sustain"])
    comp, bass = [], []
    level = rng.uniform(0.75, 1.0)
    bar_at = {b.start: b for b in music.bars}
    grid_bar = music.bars[0]
    for start, end, pcs, root in chords:
        grid_bar = bar_at.get(start, grid_bar)
        _, beat, compound = beat_grid(grid_bar)
        voicing = sorted(55 + (pc - 55) % 12 for pc in pcs)
        root_pitch = 36 + (root - 36) % 12
        bass.append(Note(start, min(end, start + beat * 2), root_pitch, int(90 * level)))
        middle = start + ((end - start) // 2 // beat) * beat
        if middle > start and end - start >= 2 * beat:
            fifth = 36 + (root + 7 - 36) % 12
            bass.append(Note(middle, end, fifth, int(80 * level)))
        pos, i = start, 0
        step = beat // 3 if pattern == "arpeggio" and compound else beat // 2
        while pos < end:
            if pattern == "sustain":
                comp += [Note(start, end, p, int(62 * level)) for p in voicing]
                break
            if pattern == "block":
                comp += [Note(pos, pos + int(beat * 0.9), p, int(68 * level)) for p in voicing]
                pos += beat
            elif pattern == "offbeat":
                off = pos + beat // 2
                if off < end:
                    comp += [Note(off, off + beat // 2, p, int(66 * level)) for p in voicing]
                pos += beat
            else:
                p = voicing[i % len(voicing)] + (12 if (i // len(voicing)) % 2 else 0)
                comp.append(Note(pos, min(end, pos + step * 2), p, int(64 * level)))
                pos += step
                i += 1
    return comp, bass


@dataclasses.dataclass
class Arrangement:
    kind: str  # piano, organ, strings, ensemble, band
    drums: DrumStyle | None
    bass_double: bool
    transpose: int
    tempo_factor: float
    base_bpm: float  # beats per minute for scores without a tempo mark
    peak_db: float
    reverb: tuple[float, float, float, float]  # room size, damping, width, level
    chorus: bool


def choose_arrangement(category: str, rng: random.Random, heldout: bool) -> Arrangement:
    """The seeded arrangement of a piece of `category`; valid/test may use held-out sounds."""
    r = rng.random()
    if category == "chorale":
        kind = (
            "piano" if r < 0.25 else "organ" if r < 0.33 else "strings" if r < 0.43 else "ensemble"
        )
    elif category == "polyphony":
        kind = "piano" if r < 0.2 else "organ" if r < 0.25 else "ensemble"
    elif category == "quartet":
        kind = "strings" if r < 0.6 else "ensemble"
    elif category == "keyboard":
        kind = "piano" if r < 0.75 else "ensemble"
    elif category == "song":
        kind = "ensemble"
    else:
        kind = "band" if r < 0.85 else "piano"
    drum_chance = {"ensemble": 0.5, "band": 0.8, "strings": 0.12, "piano": 0.0, "organ": 0.0}[kind]
    if category == "quartet" and kind == "ensemble":
        drum_chance = 0.3
    drums = choose_drum_style(rng, heldout) if rng.random() < drum_chance else None
    bass_double = kind in ("ensemble", "strings") and rng.random() < (0.7 if drums else 0.25)
    ranges = {
        "chorale": (60, 96),
        "polyphony": (55, 84),
        "quartet": (72, 132),
        "keyboard": (70, 130),
        "song": (60, 100),
        "folk": (80, 120),
    }
    return Arrangement(
        kind=kind,
        drums=drums,
        bass_double=bass_double,
        transpose=rng.choice([0, 0, 0, -5, -3, -2, -1, 1, 2, 3, 4, 5]),
        tempo_factor=rng.uniform(0.88, 1.12),
        base_bpm=rng.uniform(*ranges[category]),
        peak_db=rng.uniform(-12.0, -1.0),
        reverb=(
            rng.uniform(0.2, 0.85),
            rng.uniform(0.1, 0.6),
            rng.uniform(0.5, 1.0),
            rng.uniform(0.2, 0.8),
        ),
        chorus=rng.random() < 0.35,
    )


def pick_program(pool: str, rng: random.Random, heldout: bool) -> int:
    options = [p for p in POOLS[pool] if heldout or p not in HELDOUT_PROGRAMS]
    return rng.choice(options)


def assign_roles(tracks: list[Track]) -> None:
    """Label melodic tracks high/mid/low by mean pitch; piano staves keep a keyboard role."""
    means = [float(np.mean([n.pitch for n in t.notes])) for t in tracks]
    order = sorted(range(len(tracks)), key=lambda i: -means[i])
    for rank, i in enumerate(order):
        tracks[i].role = "high" if rank == 0 else "low" if rank == len(order) - 1 else "mid"
        if "piano" in tracks[i].name.lower():
            tracks[i].role = "keys"


def apply_arrangement(music: Music, arr: Arrangement, rng: random.Random, heldout: bool) -> None:
    """Give every track a program, add drums, bass and folk parts, set pans and sends."""
    tracks = music.tracks
    assign_roles(tracks)
    if arr.kind in ("piano", "organ"):
        program = pick_program(arr.kind, rng, heldout)
        if heldout and arr.kind == "piano" and rng.random() < 0.5:
            program = rng.choice(sorted(HELDOUT_PROGRAMS & set(POOLS["piano"])))
        for t in tracks:
            t.program, t.pan = program, 64 + rng.randint(-12, 12)
    elif arr.kind == "strings":
        for i, t in enumerate(tracks):
            t.program = {"high": 40, "mid": 40 if i <= 1 else 41, "low": 42, "keys": 48}[t.role]
            if len(tracks) > 4 and t.role == "mid":
                t.program = rng.choice([40, 41, 42])
    elif arr.kind == "band":
        melody = tracks[0]
        melody.role, melody.program = "lead", pick_program("lead", rng, heldout)
        for extra in tracks[1:]:
            extra.program = pick_program("mid", rng, heldout)
        comp, bass = folk_accompaniment(music, melody.notes, rng)
        if comp:
            tracks.append(Track("chords", comp, "comp", pick_program("comp", rng, heldout)))
        if bass:
            tracks.append(Track("bass", bass, "bass", pick_program("bass", rng, heldout)))
    else:
        keys = pick_program("piano", rng, heldout)
        for t in tracks:
            t.program = keys if t.role == "keys" else pick_program(t.role, rng, heldout)
    if heldout and arr.kind in ("ensemble", "band"):
        # Every held-out arrangement that can gets at least one held-out instrument.
        if not any(t.program in HELDOUT_PROGRAMS for t in tracks):
            t = rng.choice(tracks)
            pool = {"keys": "piano", "lead": "lead", "comp": "comp"}.get(t.role, t.role)
            options = sorted(HELDOUT_PROGRAMS & set(POOLS.get(pool, POOLS["mid"])))
            if options:
                t.program = rng.choice(options)
    if arr.bass_double:
        lowest = min(tracks, key=lambda t: float(np.mean([n.pitch for n in t.notes])))
        notes = [
            Note(n.start, n.end, n.pitch - 12 if n.pitch - 12 >= 28 else n.pitch, n.velocity)
            for n in lowest.notes
        ]
        program = 43 if arr.kind == "strings" else pick_program("bass", rng, heldout)
        tracks.append(Track("bass double", notes, "bass", program))
    melodic = len(tracks)
    for i, t in enumerate(tracks):
        if arr.kind not in ("piano", "organ"):
            spread = 0 if t.role == "bass" else int(50 * (i / max(melodic - 1, 1) - 0.5))
            t.pan = max(0, min(127, 64 + spread + rng.randint(-8, 8)))
        t.reverb = rng.randint(25, 90)
        t.chorus = rng.randint(0, 40) if arr.chorus else 0
        scale = rng.uniform(0.8, 1.05) * (1.1 if t.role in ("high", "lead") else 1.0)
        for n in t.notes:
            n.velocity = max(1, min(127, int(round(n.velocity * scale + rng.uniform(-5, 5)))))
    if arr.drums is not None and music.bars:
        tracks.append(
            Track(
                "drums",
                drum_notes(music.bars, arr.drums, rng),
                "drums",
                arr.drums.kit,
                drum=True,
                pan=64,
                reverb=rng.randint(20, 60),
                transpose=False,
            )
        )
    for t in tracks:
        if t.transpose and arr.transpose:
            for n in t.notes:
                n.pitch += arr.transpose
                while n.pitch < 21:
                    n.pitch += 12
                while n.pitch > 108:
                    n.pitch -= 12


def set_tempo(music: Music, arr: Arrangement) -> None:
    """Scale marked tempos by the seed's factor; give unmarked scores the seed's tempo."""
    if music.tempo_marked:
        music.tempos = [(t, us / arr.tempo_factor) for t, us in music.tempos]
    else:
        _, beat, _ = beat_grid(music.bars[0]) if music.bars else (4, TPQ, False)
        qpm = arr.base_bpm * beat / TPQ
        music.tempos = [(0, 6e7 / qpm)]
    # Keep every tempo playable: 40 to 220 quarter notes a minute.
    music.tempos = [(t, int(min(max(us, 6e7 / 220), 6e7 / 40))) for t, us in music.tempos]


# --------------------------------------------------------------------------- MIDI + render


def _vlq(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def _chunk(events: list[tuple[int, int, bytes]]) -> bytes:
    body, last = bytearray(), 0
    for tick, _, data in sorted(events, key=lambda e: (e[0], e[1])):
        body += _vlq(tick - last) + data
        last = tick
    body += _vlq(0) + b"\xff\x2f\x00"
    return b"MTrk" + len(body).to_bytes(4, "big") + bytes(body)


def write_midi(path: Path, music: Music) -> None:
    """A type-1 MIDI file: a tempo track, then one track per part on its own channel."""
    conductor = [(t, 0, b"\xff\x51\x03" + int(us).to_bytes(3, "big")) for t, us in music.tempos]
    chunks = [_chunk(conductor)]
    channels = [c for c in range(16) if c != DRUM_CHANNEL]
    for i, track in enumerate(music.tracks):
        ch = DRUM_CHANNEL if track.drum else channels[i % len(channels)]
        # order 0: setup at tick 0; 1: note-offs before 2: note-ons at the same tick
        events = [
            (0, 0, bytes([0xC0 | ch, track.program])),
            (0, 0, bytes([0xB0 | ch, 7, 100])),
            (0, 0, bytes([0xB0 | ch, 10, track.pan])),
            (0, 0, bytes([0xB0 | ch, 91, track.reverb])),
            (0, 0, bytes([0xB0 | ch, 93, track.chorus])),
        ]
        for n in track.notes:
            events.append((n.start, 2, bytes([0x90 | ch, n.pitch, n.velocity])))
            events.append((n.end, 1, bytes([0x80 | ch, n.pitch, 0])))
        chunks.append(_chunk(events))
    header = b"MThd" + (6).to_bytes(4, "big") + (1).to_bytes(2, "big")
    header += len(chunks).to_bytes(2, "big") + TPQ.to_bytes(2, "big")
    path.write_bytes(header + b"".join(chunks))


def render(midi_path: Path, wav_path: Path, sf2: Path, arr: Arrangement) -> np.ndarray:
    """Render with the fluidsynth program to float samples, (channels, samples)."""
    room, damp, width, level = arr.reverb
    settings = {
        "synth.reverb.active": 1,
        "synth.reverb.room-size": f"{room:.3f}",
        "synth.reverb.damp": f"{damp:.3f}",
        "synth.reverb.width": f"{width:.3f}",
        "synth.reverb.level": f"{level:.3f}",
        "synth.chorus.active": int(arr.chorus),
        "synth.polyphony": 512,
        "synth.cpu-cores": 1,  # parallelism comes from --workers
    }
    command = ["fluidsynth", "-ni", "-q", "-F", str(wav_path), "-r", str(SR), "-O", "float"]
    command += ["-T", "wav", "-g", "0.5"]
    for key, value in settings.items():
        command += ["-o", f"{key}={value}"]
    command += [str(sf2), str(midi_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if result.returncode != 0 or not wav_path.is_file():
        raise PieceError(f"fluidsynth failed ({result.returncode}): {result.stderr.strip()[:300]}")
    audio, sr = sf.read(str(wav_path), dtype="float32", always_2d=True)
    if sr != SR:
        raise PieceError(f"fluidsynth wrote {sr} Hz")
    return np.ascontiguousarray(audio.T)


def finish_audio(audio: np.ndarray, max_seconds: float, peak_db: float) -> np.ndarray:
    """Trim silence at both ends, cut to `max_seconds` with a fade, normalise to `peak_db`."""
    mono = audio.mean(axis=0)
    hop = 441
    frames = len(mono) // hop
    if frames == 0:
        raise PieceError("rendered no audio")
    rms = np.sqrt(np.mean(mono[: frames * hop].reshape(frames, hop) ** 2, axis=1) + 1e-20)
    loud = rms > max(rms.max() * 10 ** (-60 / 20), 10 ** (-80 / 20))
    if not loud.any():
        raise PieceError("rendered silence")
    first, last = int(np.argmax(loud)), frames - int(np.argmax(loud[::-1]))
    start = max(0, first * hop - SR // 50)
    end = min(audio.shape[1], last * hop + SR // 4)
    audio = audio[:, start:end]
    limit = int(max_seconds * SR)
    if audio.shape[1] > limit:
        audio = audio[:, :limit].copy()
        fade = min(SR // 2, limit // 4)
        audio[:, -fade:] *= np.cos(np.linspace(0, np.pi / 2, fade)) ** 2
    peak = float(np.abs(audio).max())
    if peak <= 1e-6:
        raise PieceError("rendered silence")
    return (audio * (10 ** (peak_db / 20) / peak)).astype(np.float32)


def write_wav(path: Path, audio: np.ndarray, sr: int = SR) -> None:
    """16-bit PCM WAV written to a temporary name first, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    sf.write(str(tmp), audio.T, sr, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)


# --------------------------------------------------------------------------- one piece


@dataclasses.dataclass(frozen=True)
class Job:
    piece: Piece
    seed: int
    out: str
    sf2: str
    max_seconds: float


def meta_path(out: Path, split: str, stem: str) -> Path:
    return out / ".meta" / split / f"{stem}.json"


def arrange_piece(
    piece: Piece,
    seed: int,
    max_seconds: float,
    arr: Arrangement | None = None,
    start_quarter: float | None = None,
) -> tuple[Music, Arrangement, dict[str, Any]]:
    """Parse, window and arrange one piece; returns the music, its arrangement and a record.

    `arr` and `start_quarter` (the excerpt starts at the first bar from there) override the
    seeded choices.
    """
    rng = rng_for("piece", seed, piece.id)
    heldout = piece.split != "train"
    if arr is None:
        arr = choose_arrangement(piece.category, rng, heldout)
    try:
        score = parse_score(piece.path, piece.number)
    except PieceError:
        raise
    except Exception as err:  # music21 raises many types for files it cannot read
        raise PieceError(f"parse failed: {type(err).__name__}: {err}") from err
    try:
        music = score_to_music(score, want_key=arr.kind == "band")
    except PieceError:
        raise
    except Exception as err:
        raise PieceError(f"MIDI export failed: {type(err).__name__}: {err}") from err
    if re.search(r"reserved|ut orpheus", music.rights, re.I):
        raise PieceError(f"excluded: embedded rights notice {music.rights!r}")
    set_tempo(music, arr)
    total = tick_to_seconds(music_end(music), music.tempos)
    start_s = 0.0
    if total > max_seconds * 1.1 and music.bars:
        starts = [b.start for b in music.bars if b.pad == 0 or b.start == 0]
        room = [t for t in starts if total - tick_to_seconds(t, music.tempos) >= max_seconds]
        if start_quarter is not None:
            start_tick = next((t for t in starts if t >= start_quarter * TPQ), starts[0])
        elif room and rng.random() > 0.35:  # often the opening, else a bar further in
            start_tick = rng.choice(room)
        else:
            start_tick = music.bars[0].start
        start_s = tick_to_seconds(start_tick, music.tempos)
        end_tick = seconds_to_tick(start_s + max_seconds + 1.0, music.tempos)
        window(music, start_tick, end_tick)
    apply_arrangement(music, arr, rng, heldout)
    record = {
        "piece": piece.id,
        "corpus_path": piece.path,
        "tune_number": piece.number,
        "collection": piece.collection,
        "category": piece.category,
        "split": piece.split,
        "title": music.title,
        "composer": music.composer
        or COMPOSER_BY_COLLECTION.get(piece.collection, piece.collection),
        "rights_notice": music.rights,
        "licence": CORPUS_LICENCE,
        "arrangement": arr.kind,
        "programs": [
            {
                "part": t.name,
                "program": t.program,
                "name": DRUM_KITS.get(t.program, "?") + " kit"
                if t.drum
                else GM_NAMES.get(t.program, "?"),
                "heldout": (t.program in HELDOUT_KITS) if t.drum else t.program in HELDOUT_PROGRAMS,
            }
            for t in music.tracks
        ],
        "drums": arr.drums is not None,
        "drum_kit": DRUM_KITS[arr.drums.kit] if arr.drums else None,
        "bass_double": arr.bass_double,
        "transpose": arr.transpose,
        "tempo_qpm": round(6e7 / music.tempos[0][1], 1),
        "excerpt_start_s": round(start_s, 2),
        "peak_dbfs": round(arr.peak_db, 2),
        "seed": seed,
        "soundfont": SOUNDFONT_LICENCE,
    }
    return music, arr, record


def render_job(job: Job) -> dict[str, Any]:
    """Render one piece to its file (or reuse it); returns its record, with 'error' on failure."""
    piece, out = job.piece, Path(job.out)
    wav = out / piece.split / f"{piece.stem}_s{job.seed}.wav"
    meta = meta_path(out, piece.split, wav.stem)
    if wav.is_file() and meta.is_file():
        record = json.loads(meta.read_text())
        record["reused"] = True
        return record
    try:
        music, arr, record = arrange_piece(piece, job.seed, job.max_seconds)
        with tempfile.TemporaryDirectory(prefix="m21render_") as tmp:
            midi_path = Path(tmp) / "piece.mid"
            write_midi(midi_path, music)
            audio = render(midi_path, Path(tmp) / "render.wav", Path(job.sf2), arr)
        audio = finish_audio(audio, job.max_seconds, arr.peak_db)
        if audio.shape[1] < 2 * SR:
            raise PieceError(f"only {audio.shape[1] / SR:.1f} s of sound")
    except PieceError as err:
        return {"piece": piece.id, "split": piece.split, "error": str(err)}
    except Exception as err:  # report anything else too: a bad piece must not stop the build
        return {"piece": piece.id, "split": piece.split, "error": f"{type(err).__name__}: {err}"}
    record.update(
        file=f"{piece.split}/{wav.name}",
        seconds=round(audio.shape[1] / SR, 3),
        channels=int(audio.shape[0]),
        sample_rate=SR,
    )
    write_wav(wav, audio)
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps(record, indent=1))
    record["reused"] = False
    return record


# --------------------------------------------------------------------------- the build


def build_split(
    pool: cf.Executor,
    order: list[Piece],
    target_s: float,
    args: argparse.Namespace,
    sf2: Path,
    progress: Any,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Render pieces in order until `target_s` seconds are accepted; (accepted, failed).

    Results are accepted strictly in order, so the set does not depend on how many workers ran;
    files rendered past the target by workers running ahead are removed again.
    """
    accepted: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    pending: deque[cf.Future[dict[str, Any]]] = deque()
    queue = iter(order)
    total = 0.0
    while total < target_s:
        while len(pending) < 2 * args.workers:
            piece = next(queue, None)
            if piece is None:
                break
            job = Job(piece, args.seed, str(args.out), str(sf2), args.max_seconds_per_piece)
            pending.append(pool.submit(render_job, job))
        if not pending:
            print(f"warning: ran out of pieces at {total / 60:.1f} min", file=sys.stderr)
            break
        result = pending.popleft().result()
        if "error" in result:
            failed.append(result)
            progress.write(f"skipped {result['piece']}: {result['error']}")
            continue
        accepted.append(result)
        progress.update(max(0.0, min(result["seconds"], target_s - total)) / 60)
        total += result["seconds"]
    for future in pending:
        future.cancel()
    for future in pending:
        if future.cancelled():
            continue
        extra = future.result()
        if "error" not in extra and not extra.get("reused"):
            (args.out / extra["file"]).unlink(missing_ok=True)
            meta_path(args.out, extra["split"], Path(extra["file"]).stem).unlink(missing_ok=True)
    return accepted, failed


def add_synthetic(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run the project's synthetic generator and copy its WAVs into the splits."""
    script = Path(__file__).resolve().parent / "make_synthetic_corpus.py"
    if args.synthetic_minutes <= 0:
        return []
    if not script.is_file():
        print(f"warning: {script.name} not found; no synthetic share added", file=sys.stderr)
        return [{"synthetic": "skipped", "reason": f"{script} not found"}]
    target = args.out / ".synthetic"
    command = [
        sys.executable,
        str(script),
        str(target),
        "--minutes",
        str(args.synthetic_minutes),
        "--seed",
        str(args.seed),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        print(f"warning: synthetic generator failed: {result.stderr[-500:]}", file=sys.stderr)
        return [{"synthetic": "failed", "reason": result.stderr[-500:]}]
    records = []
    for wav in sorted(target.rglob("*.wav")):
        parts = wav.relative_to(target).parts
        split = next((p for p in parts[:-1] if p in SPLITS), "train")
        info = sf.info(str(wav))
        if info.samplerate != SR:
            print(f"warning: {wav} is {info.samplerate} Hz, not used", file=sys.stderr)
            continue
        name = "synth_" + "_".join(p for p in parts if p not in SPLITS)
        (args.out / split).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(wav, args.out / split / name)
        records.append(
            {
                "file": f"{split}/{name}",
                "split": split,
                "seconds": info.duration,
                "source": "scripts/make_synthetic_corpus.py",
                "seed": args.seed,
                "licence": "generated by this project (MIT)",
            }
        )
    return records


def write_sources(
    out: Path,
    args: argparse.Namespace,
    records: list[dict[str, Any]],
    failed: list[dict[str, Any]],
    synthetic: list[dict[str, Any]],
) -> None:
    """sources.json (everything) and SOURCES.md (a readable table) beside the splits."""
    summary: dict[str, Any] = {}
    for split in SPLITS:
        mine = [r for r in records if r["split"] == split]
        summary[split] = {
            "files": len(mine),
            "minutes": round(sum(r["seconds"] for r in mine) / 60, 2),
            "with_drums": sum(r["drums"] for r in mine),
            "with_heldout_instrument": sum(any(p["heldout"] for p in r["programs"]) for r in mine),
        }
    data = {
        "builder": "scripts/build_music_corpus.py",
        "seed": args.seed,
        "minutes": args.minutes,
        "max_seconds_per_piece": args.max_seconds_per_piece,
        "soundfont": SOUNDFONT_LICENCE,
        "corpus_licence": CORPUS_LICENCE,
        "music21_version": __import__("music21").__version__,
        "heldout_programs": {p: GM_NAMES[p] for p in sorted(HELDOUT_PROGRAMS)},
        "heldout_kits": {k: DRUM_KITS[k] for k in sorted(HELDOUT_KITS)},
        "heldout_collections": SPLIT_BY_COLLECTION,
        "excluded_collections": EXCLUDED,
        "summary": summary,
        "files": sorted(records, key=lambda r: r["file"]),
        "synthetic": synthetic,
        "failed": failed,
    }
    (out / "sources.json").write_text(json.dumps(data, indent=1, ensure_ascii=False))
    lines = [
        "# Sources of this corpus",
        "",
        f"Built by `scripts/build_music_corpus.py` with seed {args.seed}, target "
        f"{args.minutes} min, at most {args.max_seconds_per_piece} s per piece.",
        "",
        f"- Scores: the music21 {data['music21_version']} corpus; {CORPUS_LICENCE}.",
        f"- SoundFont: {SOUNDFONT_LICENCE}.",
        "- Held-out GM programs (valid/test only): "
        + ", ".join(f"{p} {GM_NAMES[p]}" for p in sorted(HELDOUT_PROGRAMS))
        + "; drum kits: "
        + ", ".join(DRUM_KITS[k] for k in sorted(HELDOUT_KITS)),
        "- Held-out collections: "
        + ", ".join(f"{c} ({s})" for c, s in SPLIT_BY_COLLECTION.items()),
        "- Excluded: " + "; ".join(f"{c}: {why}" for c, why in EXCLUDED.items()),
        "",
        "| split | files | minutes | with drums | with held-out instrument |",
        "| --- | --- | --- | --- | --- |",
    ]
    for split, s in summary.items():
        lines.append(
            f"| {split} | {s['files']} | {s['minutes']} | {s['with_drums']} | "
            f"{s['with_heldout_instrument']} |"
        )
    lines += [
        "",
        "| file | s | score (corpus path) | composer | rights notice | arrangement | programs "
        "| drums | seed |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]

    def cell(value: object) -> str:
        return str(value).replace("|", "/").replace("\n", " ")

    for r in data["files"]:
        programs = ", ".join(f"{p['name']}" + ("*" if p["heldout"] else "") for p in r["programs"])
        lines.append(
            f"| {r['file']} | {r['seconds']:.1f} | {cell(r['piece'])} | {cell(r['composer'])} | "
            f"{cell(r['rights_notice']) or '-'} | {r['arrangement']} | {cell(programs)} | "
            f"{r['drum_kit'] or 'no'} | {r['seed']} |"
        )
    lines += ["", "`*` held-out instrument.", ""]
    if synthetic:
        lines += ["## Synthetic share", ""]
        lines += [f"- {s.get('file', s)}" for s in synthetic] + [""]
    lines += ["## Skipped pieces", ""]
    lines += [f"- {f['piece']} ({f['split']}): {f['error']}" for f in failed] or ["none"]
    (out / "SOURCES.md").write_text("\n".join(lines) + "\n")


def build(args: argparse.Namespace, sf2: Path) -> None:
    from tqdm import tqdm

    started = time.time()
    pieces = catalogue()
    records: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    targets = {s: args.minutes * 60 * SPLIT_SHARES[s] for s in SPLITS}
    with (
        # spawn, not fork: forked workers would inherit (and print) the progress bar
        cf.ProcessPoolExecutor(args.workers, multiprocessing.get_context("spawn")) as pool,
        tqdm(
            total=round(args.minutes, 2),
            desc="rendering (minutes of audio)",
            bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]",
        ) as progress,
    ):
        for split in SPLITS:
            order = ordered_for_split(pieces, split, args.seed)
            done, bad = build_split(pool, order, targets[split], args, sf2, progress)
            records += done
            failed += bad
    # Files of an earlier build (other seed, target or code) would be read as training data:
    # move them out of the splits, keeping them for a later rerun that wants them again.
    kept = {r["file"] for r in records}
    for split in SPLITS:
        for wav in sorted((args.out / split).glob("*.wav")):
            meta = meta_path(args.out, split, wav.stem)
            if f"{split}/{wav.name}" in kept or not meta.is_file():
                continue
            unused = args.out / ".unused" / split
            unused.mkdir(parents=True, exist_ok=True)
            os.replace(wav, unused / wav.name)
            os.replace(meta, unused / meta.name)
            print(f"moved {split}/{wav.name}, not part of this build, to {unused}")
    synthetic = add_synthetic(args)
    write_sources(args.out, args, records, failed, synthetic)
    minutes = {s: sum(r["seconds"] for r in records if r["split"] == s) / 60 for s in SPLITS}
    print(
        f"built {len(records)} files in {time.time() - started:.0f} s: "
        + ", ".join(f"{s} {m:.1f} min" for s, m in minutes.items())
        + f"; {len(failed)} skipped (see {args.out / 'SOURCES.md'})"
    )


# --------------------------------------------------------------------------- example clip

EXAMPLE_PIECE = Piece("liliuokalani/aloha_oe.mxl", None, "liliuokalani", "song", "test")
EXAMPLE_SECONDS = 15.0


def build_example(directory: Path, sf2: Path, seed: int) -> None:
    """The fixed, held-out example clip at 44.1 kHz and 11.025 kHz, with a README."""
    arr = Arrangement(
        kind="ensemble",
        drums=DrumStyle(
            kit=0,
            ride=False,
            sixteenths=False,
            level=0.5,
            crash_every=8,
            fill_every=8,
            shaker=True,
            tambourine=False,
        ),
        bass_double=True,
        transpose=0,
        tempo_factor=1.0,
        base_bpm=84.0,
        peak_db=-3.0,
        reverb=(0.5, 0.3, 0.8, 0.5),
        chorus=False,
    )
    # The refrain (bars 12-17), where the four-part chorus joins the piano.
    music, arr, record = arrange_piece(EXAMPLE_PIECE, seed, EXAMPLE_SECONDS + 2, arr, 44.0)
    # Fixed instruments by part name, so the clip does not change when the pools do.
    fixed = {"soprano": 73, "alto": 48, "tenor": 48, "bass": 42, "solo voice": 40, "piano": 0}
    for t in music.tracks:
        if not t.drum:
            t.program = fixed.get(t.name.lower(), 32 if t.role == "bass" else 48)
    with tempfile.TemporaryDirectory(prefix="m21example_") as tmp:
        write_midi(Path(tmp) / "example.mid", music)
        audio = render(Path(tmp) / "example.mid", Path(tmp) / "example.wav", sf2, arr)
    audio = finish_audio(audio.mean(axis=0, keepdims=True), EXAMPLE_SECONDS, arr.peak_db)
    # Resample what the 16-bit file holds, so the pair matches the files exactly.
    audio = np.round(audio * 32767) / 32767
    low = soxr.resample(audio[0].astype(np.float64), SR, 11025, quality="VHQ")
    directory.mkdir(parents=True, exist_ok=True)
    write_wav(directory / "example_44k.wav", audio.astype(np.float32), SR)
    write_wav(directory / "example_11k.wav", low[None, :].astype(np.float32), 11025)
    names: dict[str, list[str]] = {}
    for t in music.tracks:
        sound = f"{DRUM_KITS[t.program]} drum kit" if t.drum else GM_NAMES[t.program]
        names.setdefault(sound, []).append(t.name or "part")
    parts = "; ".join(f"{sound} ({', '.join(who)})" for sound, who in names.items())
    readme = f"""# Example clip

`example_44k.wav` is a {EXAMPLE_SECONDS:.0f} s excerpt (mono, 16-bit, 44.1 kHz) of *Aloha 'Oe*
by Queen Lili'uokalani (1878), rendered by `scripts/build_music_corpus.py --example` from the
music21 corpus score `{EXAMPLE_PIECE.path}` with FluidSynth and the FluidR3_GM SoundFont.
`example_11k.wav` is the same clip resampled to 11.025 kHz with soxr `VHQ`
(`soxr.resample(x, 44100, 11025, quality="VHQ")`): the input a super-resolution model gets.

- Arrangement: {parts}. The light drum part (hi-hats, shaker, kick, snare, crash)
  adds energy above 5.5 kHz, which the 11.025 kHz version lacks.
- Excerpt: from {record["excerpt_start_s"]:.1f} s into the piece at {record["tempo_qpm"]:.0f}
  quarter notes a minute, where the four-part chorus (here flute, strings and cello) joins.
- The piece belongs to the builder's test split: it is never in the training data.

## Licence

- Composition: public domain (published 1884; the composer died in 1917).
- Encoding: music21 corpus file `{EXAMPLE_PIECE.path}`, whose rights notice reads
  "{record["rights_notice"]}".
- Sounds: {SOUNDFONT_LICENCE}.
- The rendered clips may be used freely (CC0).
"""
    (directory / "README.md").write_text(readme)
    print(f"example written to {directory}")


# --------------------------------------------------------------------------- command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="output folder (train/, valid/, test/ inside)")
    parser.add_argument("--minutes", type=float, default=60.0, help="total target minutes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    parser.add_argument("--max-seconds-per-piece", type=float, default=60.0)
    parser.add_argument(
        "--synthetic-minutes",
        type=float,
        default=5.0,
        help="minutes from scripts/make_synthetic_corpus.py (0: none)",
    )
    parser.add_argument(
        "--example", type=Path, metavar="DIR", help="also write the example clip to DIR"
    )
    parser.add_argument(
        "--example-only", action="store_true", help="write only the --example clip, no corpus"
    )
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.max_seconds_per_piece < 5 or args.workers < 1:
        parser.error("--minutes must be > 0, --max-seconds-per-piece >= 5, --workers >= 1")
    if args.example_only and args.example is None:
        parser.error("--example-only needs --example DIR")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        sf2 = check_requirements()
    except SetupError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.example is not None:
        build_example(args.example, sf2, args.seed)
    if not args.example_only:
        args.out.mkdir(parents=True, exist_ok=True)
        build(args, sf2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
