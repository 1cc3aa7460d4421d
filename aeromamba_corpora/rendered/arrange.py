"""Seeded arrangements of a piece: instruments, drums, bass lines and folk accompaniment.

An arrangement is one of the catalogue's kinds: solo piano or organ, string quartet, a mixed
ensemble with one General MIDI program per part, or a folk band whose chords and bass line are
derived from the tune. A share of them get a generated drum part on channel 10 (kick, snare,
hi-hats or ride, crash cymbals and fills following the piece's metre) and a bass doubling the
lowest part an octave down. Tempo, transposition, velocities, panning, reverb, chorus and the
output peak level vary by seed. Valid and test arrangements may use the held-out sounds.

Every draw comes from the `random.Random` passed in, in a fixed order: a seed gives the same
arrangement on every machine.
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np

from aeromamba_corpora.rendered.catalogue import Category, Sounds
from aeromamba_corpora.rendered.score import TPQ, Bar, Music, Note, Track

# General MIDI percussion notes
KICK, SIDE_STICK, SNARE, CLOSED_HAT, PEDAL_HAT, OPEN_HAT = 36, 37, 38, 42, 44, 46
LOW_TOM, MID_TOM, HIGH_TOM, CRASH, RIDE, TAMBOURINE, SPLASH, CRASH2 = 45, 47, 50, 49, 51, 54, 55, 57
SHAKER = 70
# String quartet programs by role (violin, viola, cello, string ensemble for piano staves),
# the added bass line's (contrabass), and what extra inner parts of larger scores draw from.
VIOLIN, VIOLA, CELLO, CONTRABASS, STRING_ENSEMBLE = 40, 41, 42, 43, 48
STRING_PROGRAMS = (VIOLIN, VIOLA, CELLO, CONTRABASS, STRING_ENSEMBLE)
SOLO_KEYBOARD = ("piano", "organ")


def beat_grid(bar: Bar) -> tuple[int, int, bool]:
    """(beats per bar, ticks per beat, compound) of a bar's metre."""
    if bar.denominator == 8 and bar.numerator % 3 == 0 and bar.numerator >= 6:
        return bar.numerator // 3, 3 * TPQ // 2, True
    return max(bar.numerator, 1), 4 * TPQ // bar.denominator, False


# --- drums ----------------------------------------------------------------------------------


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


def choose_drum_style(
    rng: random.Random, sounds: Sounds, heldout: bool, light: bool = False
) -> DrumStyle:
    kits = [k for k in sounds.kits if heldout or k not in sounds.heldout_kits]
    if heldout and rng.random() < 0.6:
        kit = rng.choice(sorted(sounds.heldout_kits))
    else:
        kit = rng.choice(kits)
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


def _backbeat(beats: int, compound: bool) -> tuple[list[int], list[int]]:
    """(kick beats, snare beats) of a bar."""
    if compound:
        kicks = [0] if beats < 4 else [0, 2]
        return kicks, [1] if beats == 2 else [1, 3] if beats == 4 else [beats - 1]
    if beats == 4:
        return [0, 2], [1, 3]
    if beats in (2, 3):
        return [0], [beats - 1]
    return [0], [beats // 2] if beats > 1 else []


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
        kicks, snares = _backbeat(beats, compound)
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
            hits += [(origin + b * beat, PEDAL_HAT, 0.6) for b in snares]
        if style.tambourine:
            hits += [(origin + b * beat, TAMBOURINE, 0.55) for b in snares]
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


# --- folk accompaniment ---------------------------------------------------------------------


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


def _chord_segments(bars: list[Bar]) -> list[tuple[int, int]]:
    """(start, end) ticks of one chord per bar, two in long complete bars of an even metre."""
    segments: list[tuple[int, int]] = []
    for bar in bars:
        beats, beat, _ = beat_grid(bar)
        if beats >= 4 and beats % 2 == 0 and bar.pad == 0:
            half = beats // 2 * beat
            segments += [(bar.start, bar.start + half), (bar.start + half, bar.start + bar.length)]
        else:
            segments.append((bar.start, bar.start + bar.length))
    return segments


def harmonise(music: Music, melody: list[Note]) -> list[tuple[int, int, set[int], int]]:
    """One chord per bar (per half bar in long bars) fitting the melody: (start, end, pcs, root)."""
    candidates = chord_candidates(music.key_tonic, music.key_minor)
    prior = {0: 0.25, 1: 0.05, 2: 0.15}  # tonic, subdominant, dominant slightly favoured
    segments = _chord_segments(music.bars)
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
        best = 0 if i == len(segments) - 1 else int(np.argmax(scores))  # end on the tonic
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


# --- arrangement ----------------------------------------------------------------------------


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


def choose_arrangement(
    category: Category, sounds: Sounds, rng: random.Random, heldout: bool
) -> Arrangement:
    """The seeded arrangement of a piece of `category`; valid/test may use held-out sounds."""
    kind = category.arrangement(rng.random())
    drum_chance = category.drum_chance[kind]
    drums = choose_drum_style(rng, sounds, heldout) if rng.random() < drum_chance else None
    bass_double = kind in ("ensemble", "strings") and rng.random() < (0.7 if drums else 0.25)
    return Arrangement(
        kind=kind,
        drums=drums,
        bass_double=bass_double,
        transpose=rng.choice([0, 0, 0, -5, -3, -2, -1, 1, 2, 3, 4, 5]),
        tempo_factor=rng.uniform(0.88, 1.12),
        base_bpm=rng.uniform(*category.bpm),
        peak_db=rng.uniform(-12.0, -1.0),
        reverb=(
            rng.uniform(0.2, 0.85),
            rng.uniform(0.1, 0.6),
            rng.uniform(0.5, 1.0),
            rng.uniform(0.2, 0.8),
        ),
        chorus=rng.random() < 0.35,
    )


def pick_program(sounds: Sounds, pool: str, rng: random.Random, heldout: bool) -> int:
    options = [p for p in sounds.pools[pool] if heldout or p not in sounds.heldout_programs]
    return rng.choice(options)


def _mean_pitch(track: Track) -> float:
    return float(np.mean([n.pitch for n in track.notes]))


def assign_roles(tracks: list[Track]) -> None:
    """Label melodic tracks high/mid/low by mean pitch; piano staves keep a keyboard role."""
    means = [_mean_pitch(t) for t in tracks]
    order = sorted(range(len(tracks)), key=lambda i: -means[i])
    for rank, i in enumerate(order):
        tracks[i].role = "high" if rank == 0 else "low" if rank == len(order) - 1 else "mid"
        if "piano" in tracks[i].name.lower():
            tracks[i].role = "keys"


def _programs(
    music: Music, arr: Arrangement, sounds: Sounds, rng: random.Random, held: bool
) -> None:
    """Give every part its program; folk bands get their chord and bass parts here."""
    tracks = music.tracks
    if arr.kind in SOLO_KEYBOARD:
        program = pick_program(sounds, arr.kind, rng, held)
        if held and arr.kind == "piano" and rng.random() < 0.5:
            program = rng.choice(sorted(sounds.heldout_programs & set(sounds.pools["piano"])))
        for t in tracks:
            t.program, t.pan = program, 64 + rng.randint(-12, 12)
    elif arr.kind == "strings":
        for i, t in enumerate(tracks):
            t.program = {
                "high": VIOLIN,
                "mid": VIOLIN if i <= 1 else VIOLA,
                "low": CELLO,
                "keys": STRING_ENSEMBLE,
            }[t.role]
            if len(tracks) > 4 and t.role == "mid":
                t.program = rng.choice([VIOLIN, VIOLA, CELLO])
    elif arr.kind == "band":
        melody = tracks[0]
        melody.role, melody.program = "lead", pick_program(sounds, "lead", rng, held)
        for extra in tracks[1:]:
            extra.program = pick_program(sounds, "mid", rng, held)
        comp, bass = folk_accompaniment(music, melody.notes, rng)
        if comp:
            tracks.append(Track("chords", comp, "comp", pick_program(sounds, "comp", rng, held)))
        if bass:
            tracks.append(Track("bass", bass, "bass", pick_program(sounds, "bass", rng, held)))
    else:
        keys = pick_program(sounds, "piano", rng, held)
        for t in tracks:
            t.program = keys if t.role == "keys" else pick_program(sounds, t.role, rng, held)
    if held and arr.kind in ("ensemble", "band"):
        # Every held-out arrangement that can gets at least one held-out instrument.
        if not any(t.program in sounds.heldout_programs for t in tracks):
            t = rng.choice(tracks)
            pool = {"keys": "piano", "lead": "lead", "comp": "comp"}.get(t.role, t.role)
            pool_programs = sounds.pools.get(pool, sounds.pools["mid"])
            options = sorted(sounds.heldout_programs & set(pool_programs))
            if options:
                t.program = rng.choice(options)


def apply_arrangement(
    music: Music, arr: Arrangement, sounds: Sounds, rng: random.Random, heldout: bool
) -> None:
    """Give every track a program, add drums, bass and folk parts, set pans and sends."""
    tracks = music.tracks
    assign_roles(tracks)
    _programs(music, arr, sounds, rng, heldout)
    if arr.bass_double:
        lowest = min(tracks, key=_mean_pitch)
        notes = [
            Note(n.start, n.end, n.pitch - 12 if n.pitch - 12 >= 28 else n.pitch, n.velocity)
            for n in lowest.notes
        ]
        program = (
            CONTRABASS if arr.kind == "strings" else pick_program(sounds, "bass", rng, heldout)
        )
        tracks.append(Track("bass double", notes, "bass", program))
    melodic = len(tracks)
    for i, t in enumerate(tracks):
        if arr.kind not in SOLO_KEYBOARD:
            spread = 0 if t.role == "bass" else int(50 * (i / max(melodic - 1, 1) - 0.5))
            t.pan = max(0, min(127, 64 + spread + rng.randint(-8, 8)))
        t.reverb = rng.randint(25, 90)
        t.chorus = rng.randint(0, 40) if arr.chorus else 0
        scale = rng.uniform(0.8, 1.05) * (1.1 if t.role in ("high", "lead") else 1.0)
        for n in t.notes:
            n.velocity = max(1, min(127, int(round(n.velocity * scale + rng.uniform(-5, 5)))))
    if arr.drums is not None and music.bars:
        notes = drum_notes(music.bars, arr.drums, rng)
        reverb = rng.randint(20, 60)
        kit = arr.drums.kit
        tracks.append(
            Track("drums", notes, "drums", kit, drum=True, reverb=reverb, transpose=False)
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
