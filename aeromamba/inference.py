"""Inference on files: upsample audio files or folders to 44.1 kHz, in bounded memory.

Files are read block by block and resampled to the model's rate (kept whole: 11025 × 4 bytes
per second and channel), go through `aeromamba.enhance.iter_enhance` chunk by chunk, and the
output is written block by block to a temporary file that is renamed at the end: memory
depends on the chunk size, not on the file length. A batch goes on past a bad file and lists
the failures at the end.

An output has exactly round(frames · hr_sr / sr) samples per channel and, unless told
otherwise, the input's sample format (a float input stays float, so a peak above full scale
is kept); an output clipped to full scale gets a warning. The input rules are those of
`aeromamba.enhance`.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch
from torch import nn
from tqdm import tqdm

from aeromamba.audio import AUDIO_EXTENSIONS, AudioError
from aeromamba.devices import select_device as select_device  # part of this module's API
from aeromamba.enhance import (
    MIN_CHUNK,
    MIN_SECONDS,
    OptionError,
    band_energy,
    check_amp,
    check_band_cap,
    check_chunking,
    chunk_plan,
    iter_enhance,
    model_device,
    warn_discarded,
)
from aeromamba.files import atomic_path, remove_stale_temporaries

log = logging.getLogger("aeromamba.inference")


def read_lowres(
    path: Path, lr_sr: int, block_seconds: float = 30.0
) -> tuple[torch.Tensor, int, int, float]:
    """Stream a file from disk and resample it to `lr_sr` block by block (soxr VHQ).

    Returns (lr (C, L'), source rate, source frames, fraction of the energy above lr_sr/2).
    Raises AudioError naming the file for unusable input.
    """
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        info = sf.info(str(path))
    except Exception as err:  # soundfile raises several types
        empty = path.stat().st_size == 0
        reason = "empty file (0 bytes)" if empty else f"not a readable audio file ({err})"
        raise AudioError(f"{path}: {reason}") from err
    sr, frames, channels = info.samplerate, info.frames, info.channels
    if frames < max(2, round(MIN_SECONDS * sr)):
        raise AudioError(
            f"{path}: too short ({frames} samples at {sr} Hz; at least {MIN_SECONDS} s needed)"
        )
    stream = (
        None
        if sr == lr_sr
        else soxr.ResampleStream(sr, lr_sr, channels, dtype="float32", quality="VHQ")
    )
    parts, above, total = [], 0.0, 0.0
    blocksize = max(1, round(block_seconds * sr))
    for block in sf.blocks(str(path), blocksize, dtype="float32", always_2d=True):
        if not np.isfinite(block).all():
            raise AudioError(f"{path}: contains NaN/Inf samples")
        energy = band_energy(block.T, sr, lr_sr / 2)
        above, total = above + energy[0], total + energy[1]
        parts.append((block if stream is None else stream.resample_chunk(block)).T.copy())
    if stream is not None:  # flush the resampler's delay line
        parts.append(stream.resample_chunk(np.zeros((0, channels), np.float32), last=True).T)
    lr = torch.from_numpy(np.concatenate(parts, axis=1))
    return lr, sr, frames, above / (total or 1.0)


def output_format(suffix: str, subtype: str | None, like: str | None = None) -> tuple[str, str]:
    """(soundfile format, subtype) for an output suffix such as ".wav". `subtype` None = `like`
    (the input's subtype) where the format can hold it, so a 24-bit or float input keeps its
    resolution and range, else the format's default. OptionError for a combination soundfile
    cannot write."""
    fmt = suffix.lstrip(".").upper()
    if fmt not in sf.available_formats():
        raise OptionError(f"format={fmt.lower()}: not one of {', '.join(sf.available_formats())}")
    if subtype is None:
        subtype = like if like and sf.check_format(fmt, like) else sf.default_subtype(fmt)
    if not sf.check_format(fmt, subtype):
        raise OptionError(f"subtype={subtype} cannot be written as {fmt}")
    return fmt, subtype


def warn_clipped(target: Path, peak: float, clipped: int, subtype: str) -> None:
    """One warning line for an output whose samples beyond ±1 were clipped."""
    log.warning(
        "%s: peak %.2f (%+.1f dBFS) clipped to full scale in %s (%d samples); subtype=FLOAT "
        "keeps it",
        target,
        peak,
        20 * math.log10(peak),
        subtype,
        clipped,
    )


def predict_file(
    model: nn.Module,
    source: Path,
    target: Path,
    chunk: float = 10.0,
    overlap: float = 1.0,
    batch_size: int = 4,
    keep_lowband: bool = False,
    subtype: str | None = None,
    amp: str = "none",
    band_cap: float | None = None,
) -> float:
    """Upsample one file to `target` (its suffix picks the format; `subtype` None keeps the
    input's where it can, see `output_format`), written block by block to a temporary name
    then renamed; returns the seconds of audio written."""
    if target.resolve() == source.resolve():
        raise AudioError(f"{source}: the output would overwrite the input")
    lr, sr, frames, high = read_lowres(source, model.lr_sr)
    fmt, subtype = output_format(target.suffix, subtype, like=sf.info(str(source)).subtype)
    warn_discarded(source, high, model.lr_sr)
    expected = round(frames * model.hr_sr / sr)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise AudioError(f"{target.parent}: cannot create the output folder ({err})") from err
    chunks = len(chunk_plan(lr.shape[-1], model.lr_sr, chunk, overlap)[2])
    blocks = iter_enhance(model, lr, chunk, overlap, batch_size, keep_lowband, amp, band_cap)
    clip = subtype not in ("FLOAT", "DOUBLE")  # integer and lossy formats cannot exceed ±1
    written, peak, clipped = 0, 0.0, 0
    with (
        atomic_path(target) as tmp,
        torch.inference_mode(),
        sf.SoundFile(str(tmp), "w", model.hr_sr, lr.shape[0], subtype, format=fmt) as out,
    ):
        progress = tqdm(
            blocks, total=chunks, desc=source.name, unit="chunk", leave=False, disable=chunks < 2
        )
        for block in progress:
            block = block[:, : expected - written].numpy()
            if clip:
                magnitude = np.abs(block)
                peak = max(peak, float(magnitude.max(initial=0.0)))
                clipped += int((magnitude > 1).sum())
            out.write(np.clip(block.T, -1, 1) if clip else block.T)
            written += block.shape[1]
        out.write(np.zeros((expected - written, lr.shape[0]), np.float32))  # resampler rounding
    if clipped:
        warn_clipped(target, peak, clipped, subtype)
    return expected / model.hr_sr


@dataclass
class Summary:
    """What a batch job did: files done, skipped (existing output), failed (with reasons)."""

    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0

    def report(self) -> str:
        """One line of counts and speed, then one `FAILED <reason naming the file>` per failure."""
        speed = self.audio_seconds / self.wall_seconds if self.wall_seconds else 0.0
        lines = [
            f"{len(self.done)} done, {len(self.skipped)} skipped (output exists; "
            f"overwrite=true to redo), {len(self.failed)} failed; "
            f"{self.audio_seconds:.1f} s of audio in {self.wall_seconds:.1f} s "
            f"({speed:.2f} audio seconds per second)"
        ]
        lines += [f"FAILED {reason}" for _, reason in self.failed]
        return "\n".join(lines)


def output_path(source: Path, input_root: Path, output: Path, suffix: str) -> Path:
    """Where the output of `source` goes: its path relative to the input, under `output`."""
    relative = source.relative_to(input_root) if input_root.is_dir() else Path(source.name)
    return (output / relative).with_suffix(suffix)


def list_inputs(input_root: Path, output: Path) -> list[Path]:
    """`input_root` if it is a file, else every file under it except hidden ones and those in
    an output folder nested inside it. Everything is tried (soundfile reads more than the
    usual extensions), so a file that is not audio is reported, not silently ignored."""
    if input_root.is_file():
        return [input_root]
    nested = input_root.resolve() in output.resolve().parents
    return sorted(
        p
        for p in input_root.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(input_root).parts)
        and not (nested and output.resolve() in p.resolve().parents)
    )


def predict_files(
    model: nn.Module,
    input: str | os.PathLike,
    output: str | os.PathLike,
    overwrite: bool = False,
    spectrogram: bool = False,
    reference: str | os.PathLike | None = None,
    suffix: str = ".wav",
    **options,
) -> Summary:
    """Upsample a file or every file under a folder into `output` (same relative layout;
    keyword `options` of `predict_file`). Failures are collected and the other files go on.
    Raises OptionError, before any file, for an output format soundfile cannot write, chunks
    out of range (`check_chunking`), a `band_cap` that is no number, or an `amp` that is
    unknown or that the model's device cannot compute natively (`check_amp`). Stale
    temporaries of killed runs under `output` are removed (`aeromamba.files`)."""
    output_format(suffix, options.get("subtype"))
    check_chunking(options.get("chunk", MIN_CHUNK), options.get("overlap", 0.0))  # absent: fine
    check_amp(options.get("amp", "none"), model_device(model))
    check_band_cap(options.get("band_cap"))
    input_root, output = Path(input), Path(output)
    if output.is_dir():
        remove_stale_temporaries(output, "**/.*.tmp")
    summary = Summary()
    start = time.time()
    if not input_root.exists():
        summary.failed.append((input_root, f"{input_root}: no such file or folder"))
        return summary
    sources = list_inputs(input_root, output)
    written: dict[Path, Path] = {}  # output → the input that made it, in this run
    for source in tqdm(sources, desc="files", unit="file", disable=len(sources) < 2):
        target = output_path(source, input_root, output, suffix)
        if target in written:
            summary.failed.append((source, f"{source}: same output {target} as {written[target]}"))
            continue
        if target.exists() and not overwrite:
            summary.skipped.append(source)
            continue
        try:
            summary.audio_seconds += predict_file(model, source, target, **options)
            written[target] = source
            summary.done.append(source)
            if spectrogram:
                write_spectrogram(source, target, find_reference(source, input_root, reference))
        except (AudioError, OSError, RuntimeError, ValueError) as err:
            message = " ".join(str(err).split())  # one line
            summary.failed.append(
                (source, message if str(source) in message else f"{source}: {message}")
            )
    summary.wall_seconds = time.time() - start
    return summary


def find_reference(
    source: Path, input_root: Path, reference: str | os.PathLike | None
) -> Path | None:
    """The reference of `source`: `reference` itself if it is a file, else the file at the
    same relative path under it, with the source's or any audio extension; None if absent."""
    if reference is None:
        return None
    root = Path(reference)
    if root.is_file():
        return root
    base = output_path(source, input_root, root, source.suffix)
    candidates = [base, *(base.with_suffix(ext) for ext in AUDIO_EXTENSIONS)]
    return next((path for path in candidates if path.is_file()), None)


def write_spectrogram(source: Path, target: Path, reference: Path | None = None) -> Path:
    """PNG beside the output (its name with .png): input, output and reference, channels
    averaged."""
    from aeromamba.audio import read_audio
    from aeromamba.plots import plot_spectrograms

    paths = {"input": source, "output": target, "reference": reference}
    signals = {}
    for label, path in paths.items():
        if path is not None:
            audio, sr = read_audio(path)
            signals[label] = (audio.mean(axis=0), sr)
    return plot_spectrograms(signals, target.with_suffix(".png"), title=source.name)
