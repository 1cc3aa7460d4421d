"""Scores as note lists: music21 score -> notes, tempo map and bars; notes -> MIDI file.

Times are MIDI ticks on music21's grid (TPQ ticks a quarter note), so notes read back from
music21's MIDI export need no rescaling. Both directions go through music21's MIDI objects
(`music21.midi`): the score is exported with `midi.translate.streamToMidiFile` and read back,
and the arranged notes are written as a `midi.MidiFile` of `midi.MidiTrack`s.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from aeromamba.errors import CorpusError
from aeromamba.files import atomic_path

TPQ = 10080  # music21's MIDI ticks per quarter note
DRUM_CHANNEL = 10  # General MIDI percussion, 1-based as music21 counts channels


class PieceError(CorpusError):
    """A piece that cannot be parsed, arranged or rendered; the message says why."""


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
    """One part: its notes and how it sounds (GM program or drum kit, pan, reverb and chorus
    sends, 0-127); `transpose`: whether the arrangement's transposition applies."""

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


# --- music21 score -> Music ------------------------------------------------------------------


def parse_score(piece_path: str, number: int | None) -> Any:
    """The music21 Score of a corpus path (`number`: the tune of an ABC book)."""
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


def _read_tracks(mf: Any) -> tuple[list[Track], list[tuple[int, int]]]:
    """Named note tracks and (tick, µs per quarter) tempo events of a music21 MidiFile."""
    from music21 import midi

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
    return tracks, tempos


def _bars(expanded: Any, tracks: list[Track]) -> list[Bar]:
    """The first part's bars with their metres; a 4/4 grid for unmeasured scores."""
    from music21 import meter, stream

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
        start = int(round(float(measure.offset) * TPQ))
        bars.append(Bar(start, length, pad, signature.numerator, signature.denominator))
    if not bars:  # unmeasured scores still get a 4/4 grid for the drums
        end = max(n.end for t in tracks for n in t.notes)
        bars = [Bar(t, 4 * TPQ, 0, 4, 4) for t in range(0, end, 4 * TPQ)]
    return bars


def score_to_music(score: Any, want_key: bool = False) -> Music:
    """Expand repeats, export with music21's MIDI writer and read back notes, tempos and bars.

    The key is only analysed when `want_key` (it is slow on long scores); else C major.
    """
    from music21 import midi, repeat, tempo

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
    tracks, tempos = _read_tracks(mf)
    if not tracks:
        raise PieceError("no notes")
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
    return Music(
        tracks=tracks,
        tempos=sorted(set(tempos)) or [(0, 500000)],
        bars=_bars(expanded, tracks),
        tempo_marked=marked,
        key_tonic=tonic,
        key_minor=minor,
        title=(md.title or md.movementName or "") if md else "",
        composer=(md.composer or "") if md else "",
        rights=str(md.copyright) if md and md.copyright else "",
    )


# --- time -----------------------------------------------------------------------------------


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


# --- Music -> MIDI file ---------------------------------------------------------------------

# Controllers set on every track at tick 0: volume, then the track's pan, reverb, chorus.
VOLUME, PAN, REVERB_SEND, CHORUS_SEND = 7, 10, 91, 93


def _midi_track(index: int, events: list[tuple[int, int, Any]]) -> Any:
    """A music21 MidiTrack of (tick, order, MidiEvent) events, sorted by tick then order
    (setup 0, note-offs 1 before note-ons 2 at the same tick), ended by END_OF_TRACK."""
    from music21 import midi

    track = midi.MidiTrack(index)
    end = midi.MidiEvent(track, type=midi.MetaEvents.END_OF_TRACK)
    end.data = b""
    last = 0
    for tick, _, event in sorted(events, key=lambda e: (e[0], e[1])):
        event.track = track
        track.events += [midi.DeltaTime(track, time=tick - last), event]
        last = tick
    track.events += [midi.DeltaTime(track, time=0), end]
    return track


def _channel_event(kind: Any, channel: int, first: int, second: int | None = None) -> Any:
    """A channel message: note on/off (pitch, velocity), controller (number, value) or
    program change (program)."""
    from music21 import midi

    event = midi.MidiEvent(type=kind, channel=channel)
    if second is None:
        event.data = first
    else:
        event.parameter1, event.parameter2 = first, second
    return event


def midi_file(music: Music) -> Any:
    """A type-1 music21 MidiFile: a tempo track, then one track per part on its own channel
    (drums on channel 10), each opening with its program and controller settings."""
    from music21 import midi

    voice = midi.ChannelVoiceMessages
    mf = midi.MidiFile()
    mf.ticksPerQuarterNote = TPQ
    conductor = []
    for tick, us in music.tempos:
        tempo = midi.MidiEvent(type=midi.MetaEvents.SET_TEMPO)
        tempo.data = int(us).to_bytes(3, "big")
        conductor.append((tick, 0, tempo))
    mf.tracks.append(_midi_track(0, conductor))
    channels = [c for c in range(1, 17) if c != DRUM_CHANNEL]
    for i, track in enumerate(music.tracks):
        ch = DRUM_CHANNEL if track.drum else channels[i % len(channels)]
        setup = [(VOLUME, 100), (PAN, track.pan), (REVERB_SEND, track.reverb)]
        setup.append((CHORUS_SEND, track.chorus))
        events = [(0, 0, _channel_event(voice.PROGRAM_CHANGE, ch, track.program))]
        events += [(0, 0, _channel_event(voice.CONTROLLER_CHANGE, ch, *cc)) for cc in setup]
        for n in track.notes:
            events.append((n.start, 2, _channel_event(voice.NOTE_ON, ch, n.pitch, n.velocity)))
            events.append((n.end, 1, _channel_event(voice.NOTE_OFF, ch, n.pitch, 0)))
        mf.tracks.append(_midi_track(i + 1, events))
    return mf


def write_midi(path: str | os.PathLike, music: Music) -> None:
    """Write `music` as a standard MIDI file (see `midi_file`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(midi_file(music).writestr())
