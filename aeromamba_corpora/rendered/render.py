"""MIDI -> audio with the fluidsynth program and a General MIDI SoundFont, then trimmed,
cut and normalised. FluidSynth renders offline deterministically: the same MIDI file and
settings give identical samples."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

from aeromamba.errors import CorpusError
from aeromamba_corpora.rendered.arrange import Arrangement
from aeromamba_corpora.rendered.score import PieceError

SR = 44100
INSTALL_HINT = (
    "install them with:\n"
    "  apt-get update && apt-get install -y --no-install-recommends fluidsynth "
    "fluid-soundfont-gm\n"
    '  pip install "music21>=9"   (or: pip install -e ".[corpus]")'
)


class SetupError(CorpusError):
    """A required tool, SoundFont or package is missing."""


def find_soundfont(paths: tuple[str, ...]) -> Path | None:
    """The first of `paths` (the catalogue's SoundFont locations) that is a file, or None."""
    return next((Path(p) for p in paths if Path(p).is_file()), None)


def check_requirements(soundfonts: tuple[str, ...]) -> Path:
    """Return the SoundFont path, or raise SetupError naming what is missing and how to add it."""
    missing = []
    if shutil.which("fluidsynth") is None:
        missing.append("the fluidsynth program")
    sf2 = find_soundfont(soundfonts)
    if sf2 is None:
        missing.append(f"a General MIDI SoundFont ({soundfonts[0]})")
    try:
        import music21  # noqa: F401
    except ImportError:
        missing.append("the music21 package")
    if missing or sf2 is None:
        raise SetupError("missing " + ", ".join(missing) + "; " + INSTALL_HINT)
    return sf2


def render(midi_path: Path, wav_path: Path, sf2: Path, arr: Arrangement) -> np.ndarray:
    """Render with the fluidsynth program to float samples, (channels, samples) at SR."""
    room, damp, width, level = arr.reverb
    settings = {
        "synth.reverb.active": 1,
        "synth.reverb.room-size": f"{room:.3f}",
        "synth.reverb.damp": f"{damp:.3f}",
        "synth.reverb.width": f"{width:.3f}",
        "synth.reverb.level": f"{level:.3f}",
        "synth.chorus.active": int(arr.chorus),
        "synth.polyphony": 512,
        "synth.cpu-cores": 1,  # parallelism comes from the build's worker processes
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
    """Trim silence at both ends, cut to `max_seconds` with a fade, normalise to `peak_db`.

    `audio`: (channels, samples) at SR; silence is below -60 dB of the loudest 10 ms frame.
    """
    mono = audio.mean(axis=0)
    hop = SR // 100
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
