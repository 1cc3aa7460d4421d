"""Audio file I/O, validation and resampling (soundfile + soxr), shared by data, inference and
evaluation.

Arrays are float32 numpy arrays shaped (channels, samples): the layout torch models use.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from aeromamba.errors import UsageError
from aeromamba.files import atomic_path

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".mp3", ".opus", ".caf")
# Names of audio files, readable by soundfile or not: a file named so that soundfile cannot
# read is a failure; any other file soundfile cannot read is no audio (a cover, notes, a list).
AUDIO_SUFFIXES = frozenset(
    (*AUDIO_EXTENSIONS, *(f".{name.lower()}" for name in sf.available_formats()))
) | {".aac", ".m4a", ".mp2", ".mpc", ".wma", ".wv", ".ape", ".alac", ".ac3", ".dsf", ".mka"}


class AudioError(UsageError):
    """A file that cannot be used as audio; the message names the file and the problem."""


def read_audio(path: str | os.PathLike, min_samples: int = 2) -> tuple[np.ndarray, int]:
    """Read a file as float32 (channels, samples) and its rate, rejecting what cannot be used.

    Raises AudioError for a missing, unreadable or empty file, fewer than `min_samples`
    samples, or non-finite samples.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_file() and path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises several types for non-audio input
        raise AudioError(f"{path}: not a readable audio file ({err})") from err
    audio = np.ascontiguousarray(data.T)
    check_audio(audio, f"{path}", min_samples=min_samples)
    return audio, int(sr)


def check_audio(audio: np.ndarray, name: str, min_samples: int = 2) -> None:
    """Raise AudioError naming `name` if `audio` (channels, samples) is too short or not finite."""
    if audio.ndim != 2:
        raise AudioError(f"{name}: expected (channels, samples), got shape {tuple(audio.shape)}")
    if audio.shape[-1] < min_samples:
        raise AudioError(
            f"{name}: too short ({audio.shape[-1]} samples, at least {min_samples} needed)"
        )
    if not np.isfinite(audio).all():
        bad = int((~np.isfinite(audio)).sum())
        raise AudioError(f"{name}: contains {bad} NaN/Inf samples")


def resample(audio: np.ndarray, sr_in: int, sr_out: int, quality: str = "VHQ") -> np.ndarray:
    """Resample (channels, samples) with libsoxr; identity when the rates match."""
    if sr_in == sr_out:
        return audio.astype(np.float32, copy=False)
    out = soxr.resample(np.ascontiguousarray(audio.T), sr_in, sr_out, quality=quality)
    return np.ascontiguousarray(out.T, dtype=np.float32)


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Average the channels of (channels, samples) into (1, samples)."""
    return audio.mean(axis=0, keepdims=True, dtype=np.float32)


def write_audio(
    path: str | os.PathLike,
    audio: np.ndarray,
    sr: int,
    subtype: str | None = None,
    format: str | None = None,
) -> None:
    """Write (channels, samples) atomically: to a temporary file in the same folder, then rename.

    The folder is created if needed. A reader never sees a half-written file.
    """
    path = Path(path)
    fmt = format or path.suffix.lstrip(".").upper() or "WAV"
    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.ascontiguousarray(audio.T), sr, subtype=subtype, format=fmt)


def list_audio_files(root: str | os.PathLike) -> list[Path]:
    """All audio files under `root` (recursively), sorted; `root` itself if it is a file."""
    root = Path(root)
    if root.is_file():
        return [root]
    return sorted(
        p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
    )
