"""Music-like synthetic audio: a reproducible stand-in corpus when no real music is at hand.

A clip has a key, a tempo and a chord progression; harmonic instruments (pads or plucked
arpeggios, a lead line, a bass line) get ADSR envelopes, vibrato and a brightness that decays
after the attack; a drum kit adds kicks, snares, hi-hats and crash cymbals. Sections change the
arrangement and loudness. Harmonics reach 19.5 kHz (below 0.45·sr) and the cymbals are
high-passed noise, so there is plenty above 5.5 kHz, the band an 11.025 kHz -> 44.1 kHz model
must restore.

`write_synthetic_corpus` (and `scripts/make_synthetic_corpus.py`) turns clips of it into a
seeded corpus of 44.1 kHz WAVs split into train/valid/test, ready for `aeromamba.data.prepare`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from scipy import signal
from tqdm import tqdm

from aeromamba.audio import write_audio
from aeromamba.data.prepare import HR_SR, map_in_processes
from aeromamba.files import atomic_path

TABLE_SIZE = 8192  # one period of a wavetable; 4096 harmonics fit, enough down to ~5 Hz
MAX_PARTIAL_HZ = 19500.0
MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
PROGRESSIONS = ((0, 4, 5, 3), (0, 5, 3, 4), (5, 3, 0, 4), (0, 3, 4, 4), (0, 2, 3, 4), (0, 3, 0, 4))


@dataclass(frozen=True)
class Timbre:
    """A harmonic instrument: spectrum, envelope (seconds) and vibrato."""

    tilt: float  # harmonic k has amplitude k**-tilt before the formant jitter
    even: float  # weight of even harmonics (1: all harmonics, small: clarinet-like)
    attack: float
    decay: float
    sustain: float  # level reached after the decay (0 for plucked sounds)
    release: float
    vibrato: float  # frequency deviation, as a fraction of f0
    bright_decay: float | None  # time constant of the bright-to-dark fade; None: steady
    formant: np.ndarray  # per-harmonic gain, fixed for the instrument


# Ranges drawn per clip for Timbre's fields, in order; None: steady brightness.
# fmt: off
TIMBRE_RANGES: dict[str, tuple[tuple[float, float] | None, ...]] = {
    #         tilt        even        attack          decay       sustain     release
    #         vibrato         bright_decay
    "pad":   ((1.0, 1.4), (0.6, 1.0), (0.08, 0.4),    (0.2, 0.6), (0.6, 0.9), (0.2, 0.6),
              (0.002, 0.005), None),
    "pluck": ((0.7, 1.1), (0.7, 1.0), (0.002, 0.006), (0.8, 2.0), (0.0, 0.0), (0.05, 0.2),
              (0.0, 0.0),     (0.1, 0.4)),
    "lead":  ((0.6, 1.1), (0.2, 1.0), (0.01, 0.08),   (0.1, 0.3), (0.5, 0.8), (0.05, 0.2),
              (0.004, 0.01),  (0.3, 1.0)),
    "bass":  ((1.3, 1.8), (0.5, 1.0), (0.005, 0.02),  (0.2, 0.5), (0.4, 0.7), (0.05, 0.15),
              (0.0, 0.0),     (0.2, 0.5)),
}
# fmt: on


def _timbre(rng: np.random.Generator, kind: str) -> Timbre:
    """Draw one instrument of `kind` (a key of TIMBRE_RANGES)."""
    values = [None if r is None else rng.uniform(*r) for r in TIMBRE_RANGES[kind]]
    return Timbre(*values, formant=np.exp(rng.normal(0.0, 0.35, TABLE_SIZE // 2)))


def _wavetable(timbre: Timbre, f0: float, sr: int, dark: bool) -> np.ndarray:
    """One period (TABLE_SIZE + 1 samples, wrapped) of the instrument's waveform at pitch f0.

    Harmonics stop below min(19.5 kHz, 0.45·sr) at the highest vibrato pitch, so nothing aliases.
    """
    top = min(MAX_PARTIAL_HZ, 0.45 * sr) / (f0 * (1.0 + 2.0 * timbre.vibrato))
    count = int(min(top, TABLE_SIZE // 2 - 1))
    k = np.arange(1, count + 1)
    amps = k ** -(timbre.tilt + (1.5 if dark else 0.0)) * timbre.formant[:count]
    amps[1::2] *= timbre.even
    spectrum = np.zeros(TABLE_SIZE // 2 + 1, dtype=np.complex128)
    spectrum[1 : count + 1] = amps * np.exp(1j * np.linspace(0.0, 3.0 * count, count))
    table = np.fft.irfft(spectrum, TABLE_SIZE)
    table /= np.abs(table).max() + 1e-12
    return np.append(table, table[0])


def _lookup(table: np.ndarray, cycles: np.ndarray) -> np.ndarray:
    """Linearly interpolated wavetable read at the phases `cycles` (in periods)."""
    position = (cycles % 1.0) * TABLE_SIZE
    index = position.astype(np.int64)
    frac = position - index
    return table[index] * (1.0 - frac) + table[index + 1] * frac


def _adsr(timbre: Timbre, held: float, length: int, sr: int) -> np.ndarray:
    """Envelope of a note held `held` seconds, then released; `length` samples."""
    t = np.arange(length) / sr
    attack = min(timbre.attack, held)
    if timbre.sustain > 0:
        level = np.interp(t, [0.0, attack, attack + timbre.decay], [0.0, 1.0, timbre.sustain])
    else:  # plucked: an exponential decay that never settles
        level = np.minimum(t / attack, np.exp(-(t - attack).clip(0) / timbre.decay))
    at_release = level[min(int(held * sr), length - 1)]
    release = at_release * (1.0 - (t - held) / timbre.release)
    return np.where(t < held, level, release.clip(0.0))


def _note(timbre: Timbre, f0: float, held: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One note of `held` seconds plus its release: (samples,) float64."""
    length = int((held + timbre.release) * sr) + 1
    t = np.arange(length) / sr
    depth = timbre.vibrato * np.clip((t - 0.15) / 0.3, 0.0, 1.0)  # vibrato sets in late
    freq = f0 * (1.0 + depth * np.sin(2 * np.pi * rng.uniform(4.5, 6.5) * t + rng.uniform(0, 6)))
    cycles = np.cumsum(freq) / sr
    bright = _lookup(_wavetable(timbre, f0, sr, dark=False), cycles)
    if timbre.bright_decay is None:
        tone = bright
    else:
        mix = 0.25 + 0.75 * np.exp(-t / timbre.bright_decay)
        tone = mix * bright + (1.0 - mix) * _lookup(_wavetable(timbre, f0, sr, dark=True), cycles)
    return tone * _adsr(timbre, held, length, sr)


def _add(out: np.ndarray, start: float, sound: np.ndarray, sr: int, gain: float) -> None:
    """Mix `sound` into `out` from `start` seconds, dropping what falls past the end."""
    first = int(start * sr)
    if first >= out.size:
        return
    part = sound[: out.size - first]
    out[first : first + part.size] += gain * part


def _midi_hz(note: float) -> float:
    return 440.0 * 2.0 ** ((note - 69.0) / 12.0)


def _filtered_noise(rng: np.random.Generator, n: int, sr: int, band: tuple[float, float | None]):
    """White noise band-passed to `band` Hz (high-passed when the top is None), cut at 0.45·sr."""
    low = min(band[0], 0.4 * sr)
    if band[1] is None or band[1] >= 0.45 * sr:
        sos = signal.butter(4, low, "highpass", fs=sr, output="sos")
    else:
        sos = signal.butter(2, (low, band[1]), "bandpass", fs=sr, output="sos")
    return signal.sosfilt(sos, rng.standard_normal(n))


def _decays(n: int, hits: list[tuple[float, float, float]], sr: int) -> np.ndarray:
    """A train of exponential decays: each hit is (time s, level, time constant s)."""
    env = np.zeros(n)
    for start, level, tau in hits:
        shape = level * np.exp(-np.arange(int(6 * tau * sr)) / (tau * sr))
        _add(env, start, shape, sr, 1.0)
    return env


def _kick(sr: int) -> np.ndarray:
    """A kick drum: a sine gliding from 130 to 45 Hz with a short click."""
    t = np.arange(int(0.4 * sr)) / sr
    freq = 45.0 + 85.0 * np.exp(-t / 0.04)
    body = np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / 0.12)
    return body + 0.3 * np.exp(-t / 0.003) * np.sin(2 * np.pi * min(3000.0, 0.4 * sr) * t)


RMS_DBFS = (-22.0, -14.0)  # mastered music: classical near the low end, pop near the high
MAX_PEAK = 10.0 ** (-1.0 / 20.0)


def music_clip(duration: float, sr: int = 44100, seed: int = 0) -> np.ndarray:
    """A music-like clip of `duration` seconds at `sr`: (round(duration·sr),) float32.

    Deterministic for a given (duration, sr, seed); as loud as mastered music: RMS level drawn
    in RMS_DBFS by seed, lowered where needed to keep the peak at most -1 dBFS.
    """
    rng = np.random.default_rng(seed)
    n = max(1, round(duration * sr))
    scale = MAJOR if rng.random() < 0.6 else MINOR
    tonic = int(rng.integers(36, 48))  # bass register; chords and lead sit octaves above
    beat = 60.0 / rng.uniform(70.0, 150.0)
    meter = 3 if rng.random() < 0.2 else 4
    bar = meter * beat
    progression = PROGRESSIONS[rng.integers(len(PROGRESSIONS))]
    chord_kind = "pad" if rng.random() < 0.5 else "pluck"
    chords, lead, bass = _timbre(rng, chord_kind), _timbre(rng, "lead"), _timbre(rng, "bass")

    def pitch(degree: int, octave: int) -> float:
        return _midi_hz(tonic + 12 * (octave + degree // 7) + scale[degree % 7])

    music = np.zeros(n)
    drum_hits: dict[str, list[tuple[float, float, float]]] = {"hat": [], "snare": [], "crash": []}
    kicks: list[tuple[float, float]] = []
    gains: list[tuple[float, float]] = []  # (time, gain) breakpoints of the section loudness
    melody = 7 + int(rng.integers(0, 5))
    bar_index, time = 0, 0.0
    while time < duration:
        bars = int(rng.choice([2, 4]))
        gain = rng.uniform(0.3, 1.0)
        gains += [(time, gain), (time + bars * bar - 0.3, gain)]
        drums, with_lead, with_bass = rng.random(3) < (0.7, 0.8, 0.85)
        if drums:
            drum_hits["crash"].append((time, rng.uniform(0.5, 1.0), rng.uniform(0.4, 0.9)))
        for _ in range(bars):
            root = progression[bar_index % len(progression)]
            triad = [root, root + 2, root + 4] + ([root + 6] if rng.random() < 0.3 else [])
            if chord_kind == "pad":
                for degree in triad:
                    _add(music, time, _note(chords, pitch(degree, 1), bar, sr, rng), sr, 0.12)
            else:  # arpeggio on eighth notes
                for step in range(2 * meter):
                    degree = triad[step % len(triad)] + 7 * (step // len(triad) % 2)
                    note = _note(chords, pitch(degree, 1), beat / 2, sr, rng)
                    _add(music, time + step * beat / 2, note, sr, 0.15 * rng.uniform(0.6, 1.0))
            if with_bass:
                for half in range(2):
                    start = time + half * bar / 2
                    note = _note(bass, pitch(root, 0), bar / 2 * 0.9, sr, rng)
                    _add(music, start, note, sr, 0.3 * rng.uniform(0.7, 1.0))
            position = 0.0
            while position < meter:  # lead: a random walk on the scale, some rests
                length = float(rng.choice([0.5, 1.0, 1.5, 2.0], p=[0.4, 0.35, 0.1, 0.15]))
                melody = int(np.clip(melody + rng.choice([-2, -1, 0, 1, 2]), 5, 16))
                if with_lead and rng.random() < 0.85:
                    note = _note(lead, pitch(melody, 1), length * beat * 0.95, sr, rng)
                    _add(music, time + position * beat, note, sr, 0.2 * rng.uniform(0.6, 1.0))
                position += length
            if drums:
                for step in range(2 * meter):
                    at = time + step * beat / 2
                    if rng.random() < 0.9:
                        tau = 0.25 if rng.random() < 0.08 else rng.uniform(0.02, 0.06)
                        drum_hits["hat"].append((at, rng.uniform(0.3, 0.7), tau))
                    if step % 4 == 2:
                        drum_hits["snare"].append((at, rng.uniform(0.6, 1.0), 0.12))
                    if step % 4 == 0 or rng.random() < 0.1:
                        kicks.append((at, rng.uniform(0.7, 1.0)))
            bar_index += 1
            time += bar

    noise_bands = {"hat": (7000.0, None), "snare": (1000.0, 9000.0), "crash": (3500.0, None)}
    levels = {"hat": 0.12, "snare": 0.25, "crash": 0.1}
    drums_mix = np.zeros(n)
    for kind, hits in drum_hits.items():
        if hits:
            noise = _filtered_noise(rng, n, sr, noise_bands[kind])
            drums_mix += levels[kind] * noise / (noise.std() + 1e-12) * _decays(n, hits, sr)
    kick = _kick(sr)
    for at, level in kicks:
        _add(drums_mix, at, kick, sr, 0.6 * level)
    times, values = zip(*gains, strict=True)
    loudness = np.interp(np.arange(n) / sr, times, values)
    mix = (music + drums_mix) * loudness
    rms = 10.0 ** (rng.uniform(*RMS_DBFS) / 20.0)
    gain = min(rms / (np.sqrt(np.mean(mix**2)) + 1e-12), MAX_PEAK / (np.abs(mix).max() + 1e-12))
    return (mix * gain).astype(np.float32)


LONG_TEST_SECONDS = 50.0  # one test clip long enough for two 10-s excerpts taken every 40 s
CLIP_SECONDS = (10.0, 40.0)
PLAN_FILE = "synthetic.json"


def corpus_plan(minutes: float, seed: int) -> list[dict[str, Any]]:
    """The clips of a synthetic corpus: [{"file", "split", "seconds", "seed"}], file relative.

    Clip lengths are drawn in CLIP_SECONDS until `minutes` are reached (at least 3 clips); the
    first clip, in test, lasts LONG_TEST_SECONDS; about 10 % of the clips go to valid and 10 %
    to test. Clip i's length and seed depend only on (seed, i), so a longer corpus extends a
    shorter one.
    """
    rng = np.random.default_rng(seed)
    seconds = [LONG_TEST_SECONDS]
    while sum(seconds) < minutes * 60 or len(seconds) < 3:
        seconds.append(round(float(rng.uniform(*CLIP_SECONDS)), 2))
    n_valid = n_test = max(1, round(len(seconds) / 10))
    n_train = len(seconds) - n_valid - n_test
    splits = ["test"] * n_test + ["valid"] * n_valid + ["train"] * n_train
    return [
        {
            "file": f"{split}/clip_{index:04d}.wav",
            "split": split,
            "seconds": length,
            "seed": int(np.random.SeedSequence([seed, index]).generate_state(1)[0]),
        }
        for index, (split, length) in enumerate(zip(splits, seconds, strict=True))
    ]


def _write_clip(clip: dict[str, Any], out: Path) -> None:
    audio = music_clip(clip["seconds"], HR_SR, clip["seed"])
    write_audio(out / clip["file"], audio[None], HR_SR, subtype="PCM_16")


def write_synthetic_corpus(
    out: str | os.PathLike,
    minutes: float,
    *,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Write the clips of `corpus_plan(minutes, seed)` as 44.1 kHz 16-bit mono WAVs under
    OUT/{train,valid,test}/ and the plan as OUT/synthetic.json; return the plan.

    Reruns keep the clips the previous plan already holds and delete clips it no longer lists.
    """
    out = Path(out)
    plan = corpus_plan(minutes, seed)
    plan_path = out / PLAN_FILE
    done = json.loads(plan_path.read_text())["clips"] if plan_path.is_file() else []
    todo = [clip for clip in plan if clip not in done or not (out / clip["file"]).is_file()]
    listed = {out / clip["file"] for clip in plan}
    for stale in out.glob("*/clip_*.wav"):
        if stale not in listed:
            stale.unlink()
    workers = min(workers or os.cpu_count() or 1, max(len(todo), 1))
    clips = map_in_processes(partial(_write_clip, out=out), todo, workers)
    for _ in tqdm(clips, total=len(todo), desc=f"synthesise {out}", disable=not progress):
        pass
    record = {"seed": seed, "minutes": minutes, "sr": HR_SR, "clips": plan}
    with atomic_path(plan_path) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")
    return plan
