"""Inference: upsample audio of any rate and channel count to 44.1 kHz, in bounded memory.

Long signals go through the model in chunks (`chunk` seconds, overlapping by `overlap`) that
are batched, and are overlap-added with complementary sin²/cos² fades whose sum is exactly 1,
so chunk boundaries add nothing. Files are read and written block by block: memory depends on
the chunk size, not on the file length. Evaluation uses the same `enhance` for whole files.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch
from torch import nn
from tqdm import tqdm

from aeromamba.audio import AudioError, check_audio, list_audio_files, resample
from aeromamba.files import atomic_path

log = logging.getLogger("aeromamba.inference")
MIN_SECONDS = 0.01  # shorter inputs are refused: too little to resample or listen to
HIGH_BAND_WARNING = 1e-3  # fraction of energy above lr_sr/2 that the resampling discards


def _fade(length: int, device: torch.device) -> torch.Tensor:
    """sin² ramp from 0 to 1 over `length` samples; its complement cos² = 1 − ramp."""
    t = (torch.arange(length, device=device, dtype=torch.float32) + 0.5) / length
    return torch.sin(0.5 * math.pi * t) ** 2


def crossover(
    estimate: torch.Tensor, lowband: torch.Tensor, sr: int, cutoff: float, width: float = 600.0
) -> torch.Tensor:
    """Take the band below `cutoff` from `lowband` and the rest from `estimate` (both
    (..., L) at `sr`), with a raised-cosine transition of `width` Hz ending at `cutoff`."""
    freqs = torch.fft.rfftfreq(estimate.shape[-1], 1 / sr, device=estimate.device)
    position = ((cutoff - freqs) / width).clamp(0, 1)  # 1 below cutoff − width, 0 above
    low = torch.sin(0.5 * math.pi * position) ** 2
    mixed = low * torch.fft.rfft(lowband) + (1 - low) * torch.fft.rfft(estimate)
    return torch.fft.irfft(mixed, n=estimate.shape[-1])


def try_compile(model: nn.Module, chunk: float) -> nn.Module:
    """`torch.compile` the model, checked on one chunk-sized input; the eager model when
    compilation fails (no compiler, unsupported operator, ...)."""
    try:
        compiled = torch.compile(model)
        device = next(model.parameters()).device
        with torch.inference_mode():
            compiled(torch.zeros(1, 1, max(1, round(chunk * model.lr_sr)), device=device))
        return compiled
    except Exception as err:  # noqa: BLE001 - any failure means: run eagerly
        log.warning("torch.compile failed (%s); running eagerly", err)
        return model


def iter_enhance(
    model: nn.Module,
    lr: torch.Tensor,
    chunk: float = 10.0,
    overlap: float = 1.0,
    batch_size: int = 4,
    keep_lowband: bool = False,
    amp: str = "none",
) -> Iterator[torch.Tensor]:
    """Yield the model's output for `lr` (C, L) at `model.lr_sr` block by block, in order:
    the blocks concatenate to (C, scale·L) at `model.hr_sr`. Chunks of all channels are
    batched together (`batch_size` rows per forward pass). `amp` = bf16/fp16 runs the model
    under CUDA autocast (the Mamba scan stays float32)."""
    channels, length = lr.shape
    scale = model.hr_sr // model.lr_sr
    size = max(1, round(chunk * model.lr_sr))
    lap = min(round(overlap * model.lr_sr), size // 2)
    hop = size - lap
    starts = [0]
    while starts[-1] + size < length:
        starts.append(starts[-1] + hop)
    if len(starts) == 1:
        size = length  # a single chunk runs at its own length, without padding
    device = next(model.parameters()).device
    fade_in = _fade(scale * lap, device)
    pending: torch.Tensor | None = None
    per_pass = max(1, batch_size // channels)
    for first in range(0, len(starts), per_pass):
        group = starts[first : first + per_pass]
        pieces = [
            torch.nn.functional.pad(lr[:, s : s + size], (0, max(0, s + size - length)))
            for s in group
        ]
        batch = torch.cat(pieces).to(device)[:, None]  # (chunks·C, 1, size)
        if amp != "none" and device.type == "cuda":
            dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]
            with torch.autocast("cuda", dtype=dtype):
                out = model(batch)[:, 0].float()
        else:
            out = model(batch)[:, 0].float()
        if keep_lowband:
            lowband = torch.from_numpy(
                resample(batch[:, 0].cpu().numpy(), model.lr_sr, model.hr_sr)
            ).to(device)[..., : out.shape[-1]]
            out = crossover(out, lowband, model.hr_sr, model.lr_sr / 2)
        for index, start in enumerate(group, start=first):
            y = out[(index - first) * channels : (index - first + 1) * channels]
            last = index == len(starts) - 1
            if lap and index > 0:
                y[:, : scale * lap] = y[:, : scale * lap] * fade_in + pending
            if last:
                yield y[:, : scale * (length - start)].cpu()
            else:
                if lap:
                    pending = y[:, scale * hop :] * (1 - fade_in)
                yield y[:, : scale * hop].cpu()


def enhance(model: nn.Module, lr: torch.Tensor, **kwargs) -> torch.Tensor:
    """(C, L) at model.lr_sr → (C, scale·L) at model.hr_sr (see `iter_enhance`)."""
    with torch.inference_mode():
        return torch.cat(list(iter_enhance(model, lr, **kwargs)), dim=-1)


def upsample(audio: np.ndarray, sr: int, model: nn.Module, **kwargs) -> tuple[np.ndarray, int]:
    """Upsample `audio` ((samples,) or (channels, samples), any rate) with `model`;
    returns (audio at model.hr_sr with the same layout, model.hr_sr)."""
    audio = np.asarray(audio, dtype=np.float32)
    mono = audio.ndim == 1
    audio2d = audio[None] if mono else audio
    check_audio(audio2d, "input", min_samples=max(2, round(MIN_SECONDS * sr)))
    lr = torch.from_numpy(resample(audio2d, sr, model.lr_sr))
    out = enhance(model, lr, **kwargs).numpy()
    expected = round(audio2d.shape[-1] * model.hr_sr / sr)
    out = (
        out[:, :expected]
        if out.shape[-1] >= expected
        else np.pad(out, ((0, 0), (0, expected - out.shape[-1])))
    )
    return (out[0] if mono else out), model.hr_sr


def high_band_fraction(audio: np.ndarray, sr: int, cutoff: float) -> float:
    """Fraction of the energy of (C, N) above `cutoff` Hz."""
    spectrum = np.abs(np.fft.rfft(audio, axis=-1)) ** 2
    freqs = np.fft.rfftfreq(audio.shape[-1], 1 / sr)
    total = spectrum.sum()
    return float(spectrum[..., freqs > cutoff].sum() / total) if total > 0 else 0.0


def read_lowres(
    path: Path, lr_sr: int, block_seconds: float = 30.0
) -> tuple[torch.Tensor, int, int, float]:
    """Stream a file from disk and resample it to `lr_sr` block by block (soxr VHQ).

    Returns (lr (C, L'), source rate, source frames, fraction of the first block's energy
    above lr_sr/2). Raises AudioError naming the file for unusable input.
    """
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        info = sf.info(str(path))
    except Exception as err:  # noqa: BLE001 - soundfile raises several types
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
    parts, high = [], 0.0
    blocksize = max(1, round(block_seconds * sr))
    read = 0
    for index, block in enumerate(
        sf.blocks(str(path), blocksize=blocksize, dtype="float32", always_2d=True)
    ):
        read += len(block)
        if not np.isfinite(block).all():
            raise AudioError(f"{path}: contains NaN/Inf samples")
        if index == 0:
            high = high_band_fraction(block.T, sr, lr_sr / 2)
        last = read >= frames
        parts.append(block if stream is None else stream.resample_chunk(block, last=last))
    lr = np.concatenate(parts).T
    return torch.from_numpy(np.ascontiguousarray(lr)), sr, frames, high


@dataclass
class Summary:
    """What a batch job did: files done, skipped (existing output), failed (with reasons)."""

    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0

    def report(self) -> str:
        speed = self.audio_seconds / self.wall_seconds if self.wall_seconds else 0.0
        lines = [
            f"{len(self.done)} done, {len(self.skipped)} skipped (output exists; "
            f"overwrite=true to redo), {len(self.failed)} failed; "
            f"{self.audio_seconds:.1f} s of audio in {self.wall_seconds:.1f} s "
            f"({speed:.2f} audio seconds per second)"
        ]
        lines += [f"FAILED {path}: {reason}" for path, reason in self.failed]
        return "\n".join(lines)


def output_path(source: Path, input_root: Path, output: Path, suffix: str) -> Path:
    """Where the output of `source` goes: its path relative to the input, under `output`."""
    relative = source.relative_to(input_root) if input_root.is_dir() else Path(source.name)
    return (output / relative).with_suffix(suffix)


def predict_file(
    model: nn.Module,
    source: Path,
    target: Path,
    chunk: float = 10.0,
    overlap: float = 1.0,
    batch_size: int = 4,
    keep_lowband: bool = False,
    subtype: str = "PCM_16",
    amp: str = "none",
) -> float:
    """Upsample one file to `target` (written block by block to a temporary name, then
    renamed); returns the seconds of audio written."""
    if target.resolve() == source.resolve():
        raise AudioError(f"{source}: the output would overwrite the input")
    lr, sr, frames, high = read_lowres(source, model.lr_sr)
    if high > HIGH_BAND_WARNING:
        log.warning(
            "%s: %.1f%% of its energy is above %g Hz and is discarded by the resampling to %d Hz",
            source,
            100 * high,
            model.lr_sr / 2,
            model.lr_sr,
        )
    expected = round(frames * model.hr_sr / sr)
    written = 0
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise AudioError(f"{target.parent}: cannot create the output folder ({err})") from err
    with atomic_path(target) as tmp, torch.inference_mode():
        fmt = target.suffix.lstrip(".").upper() or "WAV"
        with sf.SoundFile(str(tmp), "w", model.hr_sr, lr.shape[0], subtype, format=fmt) as out:
            for block in iter_enhance(model, lr, chunk, overlap, batch_size, keep_lowband, amp):
                block = block[:, : expected - written].numpy()
                out.write(np.clip(block.T, -1, 1) if subtype.startswith("PCM") else block.T)
                written += block.shape[1]
            if written < expected:  # resampler rounding: pad the last few samples
                out.write(np.zeros((expected - written, lr.shape[0]), dtype=np.float32))
    return expected / model.hr_sr


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
    """Upsample a file or every audio file under a folder into `output` (same relative
    layout). Failures are collected and the other files go on."""
    input_root, output = Path(input), Path(output)
    summary = Summary()
    start = time.time()
    if not input_root.exists():
        summary.failed.append((input_root, "no such file or folder"))
        return summary
    sources = list_audio_files(input_root) if input_root.is_dir() else [input_root]
    if input_root.is_dir():
        # a file soundfile cannot read is reported, not silently ignored
        sources += sorted(
            p
            for p in input_root.rglob("*")
            if p.is_file()
            and p not in sources
            and not p.name.startswith(".")
            and output.resolve() not in p.resolve().parents
        )
    for source in tqdm(sources, desc="files", unit="file", disable=len(sources) < 2):
        target = output_path(source, input_root, output, suffix)
        if target.exists() and not overwrite:
            summary.skipped.append(source)
            continue
        try:
            summary.audio_seconds += predict_file(model, source, target, **options)
            summary.done.append(source)
            if spectrogram:
                write_spectrogram(source, target, reference, input_root)
        except (AudioError, OSError, RuntimeError, ValueError) as err:
            message = str(err)
            summary.failed.append(
                (source, message if str(source) in message else f"{source}: {message}")
            )
    summary.wall_seconds = time.time() - start
    return summary


def write_spectrogram(
    source: Path, target: Path, reference: str | os.PathLike | None, input_root: Path
) -> Path:
    """PNG beside the output: input, output (and the reference when one is given)."""
    from aeromamba.audio import read_audio
    from aeromamba.plots import plot_spectrograms

    signals = {}
    for label, path in (("input", source), ("output", target)):
        audio, sr = read_audio(path)
        signals[label] = (audio.mean(axis=0), sr)
    if reference is not None:
        ref_root = Path(reference)
        ref = (
            ref_root
            if ref_root.is_file()
            else output_path(source, input_root, ref_root, source.suffix)
        )
        if ref.exists():
            audio, sr = read_audio(ref)
            signals["reference"] = (audio.mean(axis=0), sr)
    return plot_spectrograms(signals, target.with_suffix(".png"), title=source.name)
