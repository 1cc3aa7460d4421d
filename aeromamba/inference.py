"""Inference: upsample audio of any rate and channel count to 44.1 kHz, in bounded memory.

Long signals go through the model in chunks (`chunk` seconds, overlapping by `overlap`) that
are batched, and are overlap-added with complementary sin²/cos² fades whose sum is exactly 1,
so chunk boundaries add nothing. Files are read block by block and resampled to the model's
rate (kept whole: 11025 × 4 bytes per second and channel), and the output is written block by
block to a temporary file that is renamed at the end: memory depends on the chunk size, not
on the file length. Evaluation uses the same `enhance` for whole signals.

Input rules: at least `MIN_SECONDS` of audio (and 2 samples), finite samples. Inputs with more
than `HIGH_BAND_WARNING` of their energy above lr_sr/2 get a warning, since the resampling to
lr_sr discards that band. An output has exactly round(frames · hr_sr / sr) samples per channel
and, unless told otherwise, the input's sample format (a float input stays float, so a peak
above full scale is kept); an output clipped to full scale gets a warning.
"""

from __future__ import annotations

import contextlib
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

from aeromamba.audio import AUDIO_EXTENSIONS, AudioError, check_audio, resample
from aeromamba.devices import AMP_DTYPES
from aeromamba.devices import select_device as select_device  # part of this module's API
from aeromamba.errors import UsageError
from aeromamba.files import atomic_path, remove_stale_temporaries

log = logging.getLogger("aeromamba.inference")
MIN_SECONDS = 0.01  # shorter inputs are refused: too little to resample or listen to
# Shortest chunk: the network is trained on 4 s segments and each pass has a fixed cost, so
# tiny chunks only multiply the passes (0.001 s took half an hour for a 2 s file).
MIN_CHUNK = 0.5
HIGH_BAND_WARNING = 1e-4  # fraction of energy above lr_sr/2 (−40 dB) that deserves a warning


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


class OptionError(UsageError, ValueError):
    """An inference option out of its range (chunk, overlap, amp, format); names the option."""


def model_device(model: nn.Module) -> torch.device:
    """Where the model's parameters are (the CPU for a model without any)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def cpu_has_native(amp: str) -> bool:
    """Whether this CPU computes `amp` (bf16 or fp16) natively: bf16 with AVX512-BF16 or AMX,
    fp16 with AMX-FP16. Elsewhere oneDNN and MKL fall back to reference kernels: on an AVX2
    AMD EPYC a bf16 3×3 convolution took 100× and a bf16 GEMM 400× the float32 time. A
    PyTorch too old to tell counts as native (nothing is refused on a guess)."""

    def has(feature: str) -> bool:
        probe = getattr(torch.cpu, f"_is_{feature}_supported", None)
        return probe is None or bool(probe())

    if amp == "bf16":
        return has("avx512_bf16") or has("amx_tile")
    return amp == "fp16" and has("amx_fp16")


def check_amp(amp: str, device: torch.device | None = None) -> None:
    """Raise ValueError unless `amp` is none, bf16 or fp16 and, on a CPU `device`, one this
    CPU computes natively (`cpu_has_native`)."""
    if amp != "none" and amp not in AMP_DTYPES:
        raise OptionError(f"amp must be none, bf16 or fp16, got {amp!r}")
    if amp != "none" and device is not None and device.type == "cpu" and not cpu_has_native(amp):
        needs = "AVX512-BF16 or AMX" if amp == "bf16" else "AMX-FP16"
        raise OptionError(
            f"amp={amp} needs a CPU with {needs}; this one "
            f"({torch.backends.cpu.get_cpu_capability()}) would emulate {amp}, about 100x "
            "slower than float32: use amp=none"
        )


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """Mixed precision for inference: `amp` none, bf16 or fp16. Convolutions and matrix
    products then run in that type (the Mamba scan stays float32). On a CPU with AVX512-BF16
    or AMX, bf16 about halves the time of the convolutions; results differ slightly from
    float32 (0.4% relative on the bundled model). A CPU without native support is refused."""
    check_amp(amp, device)
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AMP_DTYPES[amp])


def try_compile(model: nn.Module, chunk: float) -> nn.Module:
    """`torch.compile` the model, checked on one chunk-sized input; the eager model when
    compilation fails (no compiler, unsupported operator, ...)."""
    try:
        compiled = torch.compile(model)
        device = model_device(model)
        with torch.inference_mode():
            compiled(torch.zeros(1, 1, max(1, round(chunk * model.lr_sr)), device=device))
        return compiled
    except Exception as err:  # noqa: BLE001 - any failure means: run eagerly
        log.warning("torch.compile failed (%s); running eagerly", err)
        return model


def check_chunking(chunk: float, overlap: float) -> None:
    """OptionError unless chunk >= MIN_CHUNK seconds and overlap >= 0 seconds."""
    if not chunk >= MIN_CHUNK:  # also refuses NaN
        raise OptionError(f"chunk must be at least {MIN_CHUNK} s, got {chunk}")
    if not overlap >= 0:
        raise OptionError(f"overlap must be at least 0 s, got {overlap}")


def chunk_plan(length: int, sr: int, chunk: float, overlap: float) -> tuple[int, int, list[int]]:
    """Split `length` samples at `sr` into chunks of `chunk` seconds overlapping by `overlap`
    seconds (at most half a chunk); returns (chunk samples, overlap samples, chunk starts).
    A signal that fits in one chunk is one chunk of its own length. See `check_chunking`."""
    check_chunking(chunk, overlap)
    size = max(1, round(chunk * sr))
    if length <= size:
        return length, 0, [0]
    lap = min(round(overlap * sr), size // 2)
    hop = size - lap
    return size, lap, list(range(0, length - lap, hop))


def iter_enhance(
    model: nn.Module,
    lr: torch.Tensor,
    chunk: float = 10.0,
    overlap: float = 1.0,
    batch_size: int = 4,
    keep_lowband: bool = False,
    amp: str = "none",
) -> Iterator[torch.Tensor]:
    """Yield the model's output for `lr` (C, L) at `model.lr_sr` chunk by chunk, in order:
    the (C, ·) blocks concatenate to (C, scale·L) at `model.hr_sr`. Chunks of all channels
    are batched together: max(1, batch_size // C) chunks × C rows per forward pass. `amp` =
    bf16/fp16 runs the model under autocast (see `autocast`)."""
    channels, length = lr.shape
    scale = model.hr_sr // model.lr_sr
    size, lap, starts = chunk_plan(length, model.lr_sr, chunk, overlap)
    hop = size - lap
    device = model_device(model)
    fade_in = _fade(scale * lap, device)
    pending: torch.Tensor | None = None  # the faded-out tail of the previous chunk
    per_pass = max(1, batch_size // channels)
    for first in range(0, len(starts), per_pass):
        group = starts[first : first + per_pass]
        pieces = [
            torch.nn.functional.pad(lr[:, s : s + size], (0, max(0, s + size - length)))
            for s in group
        ]
        batch = torch.cat(pieces).to(device)[:, None]  # (chunks·C, 1, size)
        with autocast(device, amp):
            out = model(batch)[:, 0].float()
        if keep_lowband:
            lowband = torch.from_numpy(
                resample(batch[:, 0].cpu().numpy(), model.lr_sr, model.hr_sr)
            ).to(device)[..., : out.shape[-1]]
            out = crossover(out, lowband, model.hr_sr, model.lr_sr / 2)
        for index, start in enumerate(group, start=first):
            y = out[(index - first) * channels : (index - first + 1) * channels]
            if pending is not None:
                y[:, : scale * lap] = y[:, : scale * lap] * fade_in + pending
            if index == len(starts) - 1:
                yield y[:, : scale * (length - start)].cpu()
            else:
                pending = y[:, scale * hop :] * (1 - fade_in) if lap else None
                yield y[:, : scale * hop].cpu()


def enhance(model: nn.Module, lr: torch.Tensor, **kwargs) -> torch.Tensor:
    """(C, L) or (B, 1, L) at model.lr_sr → (C, scale·L) or (B, 1, scale·L) at model.hr_sr,
    chunked and overlap-added (keyword arguments of `iter_enhance`)."""
    if lr.dim() == 3 and lr.shape[1] == 1:
        return enhance(model, lr[:, 0], **kwargs)[:, None]
    if lr.dim() != 2:
        raise ValueError(f"expected (C, L) or (B, 1, L), got {tuple(lr.shape)}")
    with torch.inference_mode():
        return torch.cat(list(iter_enhance(model, lr, **kwargs)), dim=-1)


def band_energy(audio: np.ndarray, sr: int, cutoff: float) -> tuple[float, float]:
    """(energy above `cutoff` Hz, total energy) of (C, N), from one rfft per channel."""
    spectrum = np.abs(np.fft.rfft(audio, axis=-1)) ** 2
    freqs = np.fft.rfftfreq(audio.shape[-1], 1 / sr)
    return float(spectrum[..., freqs > cutoff].sum()), float(spectrum.sum())


def warn_discarded(name: str | os.PathLike, fraction: float, lr_sr: int) -> None:
    """Log a warning when `fraction` (of the energy above lr_sr/2) exceeds HIGH_BAND_WARNING."""
    if fraction > HIGH_BAND_WARNING:
        log.warning(
            "%s: %.1f%% of its energy is above %g Hz and is discarded by the resampling to %d Hz",
            name,
            100 * fraction,
            lr_sr / 2,
            lr_sr,
        )


def _fit(audio: np.ndarray, length: int) -> np.ndarray:
    """Crop or zero-pad (C, N) to `length` samples (resamplers round lengths)."""
    return np.pad(audio[:, :length], ((0, 0), (0, max(0, length - audio.shape[-1]))))


def upsample(audio: np.ndarray, sr: int, model: nn.Module, **kwargs) -> tuple[np.ndarray, int]:
    """Upsample `audio` ((samples,) or (channels, samples), any rate) with `model` (keyword
    arguments of `iter_enhance`); returns (audio at model.hr_sr with the same layout and
    round(samples · hr_sr / sr) samples, model.hr_sr)."""
    audio = np.asarray(audio, dtype=np.float32)
    mono = audio.ndim == 1
    audio2d = audio[None] if mono else audio
    check_audio(audio2d, "input", min_samples=max(2, round(MIN_SECONDS * sr)))
    above, total = band_energy(audio2d, sr, model.lr_sr / 2)
    warn_discarded("input", above / (total or 1.0), model.lr_sr)
    lr = torch.from_numpy(resample(audio2d, sr, model.lr_sr))
    out = _fit(enhance(model, lr, **kwargs).numpy(), round(audio2d.shape[-1] * model.hr_sr / sr))
    return (out[0] if mono else out), model.hr_sr


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
    blocks = iter_enhance(model, lr, chunk, overlap, batch_size, keep_lowband, amp)
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
    out of range (`check_chunking`), or an `amp` that is unknown or that the model's device
    cannot compute natively (`check_amp`). Stale temporaries of killed runs under `output`
    are removed (`aeromamba.files`)."""
    output_format(suffix, options.get("subtype"))
    check_chunking(options.get("chunk", MIN_CHUNK), options.get("overlap", 0.0))  # absent: fine
    check_amp(options.get("amp", "none"), model_device(model))
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
