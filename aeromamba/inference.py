"""Inference on files: upsample audio files or folders to 44.1 kHz, in bounded memory.

Files are read block by block and resampled to the model's rate (kept whole: 11025 × 4 bytes
per second and channel), go through `aeromamba.enhance.iter_enhance` chunk by chunk, and the
output is written block by block to a temporary file that is renamed at the end: memory
depends on the chunk size, not on the file length. A batch goes on past a bad file and lists
the failures at the end.

Safety: every target of a run is planned before anything is written; a target that is an
input of the run (paths resolved, links followed) or that two inputs share is refused, so no
input is ever written. An output is renamed into place only when the whole item succeeded:
its samples are finite and its spectrogram (if asked for) is written. A signal peaking above
full scale goes through the model scaled to a peak of 1 and is scaled back after. Per file,
only what a file can cause is caught (unreadable audio, OS errors, `UsageError`); running out
of memory stops the run with the options to lower, and any other exception is a bug.

An output has exactly round(frames · hr_sr / sr) samples per channel and, unless told
otherwise, the input's sample format where the output's container can hold it, else the
closest it can (a float or lossy input is written as float, so a peak above full scale is
kept), said in the log; an output clipped to full scale gets a warning. In a folder, files
that soundfile cannot read and whose names are not those of audio files are counted as
"not audio". The input rules are those of `aeromamba.enhance`.
"""

from __future__ import annotations

import errno
import functools
import io
import logging
import math
import os
import re
import stat
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch
from torch import nn
from tqdm import tqdm

from aeromamba.audio import AUDIO_EXTENSIONS, AUDIO_SUFFIXES, AudioError, read_audio
from aeromamba.cli import os_error_message
from aeromamba.devices import select_device as select_device  # part of this module's API
from aeromamba.enhance import (
    MIN_SECONDS,
    band_energy,
    check_amp,
    chunk_plan,
    enhance_signal,
    model_device,
    warn_discarded,
)
from aeromamba.errors import UsageError
from aeromamba.files import atomic_path, remove_stale_temporaries
from aeromamba.options import InferenceOptions, OptionError

log = logging.getLogger("aeromamba.inference")
SFE_SYSTEM = 2  # libsndfile's error code for a failed system call (errno says which)
PCM_DEPTHS = {"PCM_U8": 8, "PCM_S8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32}


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
    try:
        stream = (
            None
            if sr == lr_sr
            else soxr.ResampleStream(sr, lr_sr, channels, dtype="float32", quality="VHQ")
        )
    except ValueError as err:
        raise AudioError(f"{path}: cannot resample {sr} Hz to {lr_sr} Hz ({err})") from err
    parts, above, total = [], 0.0, 0.0
    blocksize = max(1, round(block_seconds * sr))
    try:
        for block in sf.blocks(str(path), blocksize, dtype="float32", always_2d=True):
            if not np.isfinite(block).all():
                raise AudioError(f"{path}: contains NaN/Inf samples")
            # float64: the squares of a loud float file overflow float32
            energy = band_energy(block.T.astype(np.float64), sr, lr_sr / 2)
            above, total = above + energy[0], total + energy[1]
            parts.append((block if stream is None else stream.resample_chunk(block)).T.copy())
        if stream is not None:  # flush the resampler's delay line
            parts.append(stream.resample_chunk(np.zeros((0, channels), np.float32), last=True).T)
    except sf.SoundFileError as err:
        raise AudioError(f"{path}: unreadable audio ({err})") from err
    lr = torch.from_numpy(np.concatenate(parts, axis=1))
    return lr, sr, frames, above / (total or 1.0)


@functools.lru_cache
def can_write(fmt: str, subtype: str) -> bool:
    """Whether soundfile writes `subtype` in the container `fmt`, tried in memory
    (`sf.check_format` says yes to some it cannot write, such as MPEG_LAYER_III in WAV)."""
    try:
        with sf.SoundFile(io.BytesIO(), "w", 44100, 1, subtype, format=fmt) as probe:
            probe.write(np.zeros(64, np.float32))
    except (sf.SoundFileError, TypeError, ValueError):
        return False
    return True


def closest_subtype(fmt: str, like: str) -> str:
    """The subtype `fmt` can hold that is closest to an input's `like`: `like` itself, else
    the PCM depth its name ends with or the next deeper one (PCM_24, ALAC_20, DWVW_12, ...),
    else float, else the deepest PCM; a float or lossy input (no depth) goes to float first.
    The format's default when none fits."""
    match = re.search(r"_(\d+)$", like)
    depth = int(match[1]) if match and like not in ("FLOAT", "DOUBLE") else math.inf
    deeper = [name for name, bits in PCM_DEPTHS.items() if bits >= depth]
    shallower = [name for name, bits in reversed(PCM_DEPTHS.items()) if bits < depth]
    candidates = [like, *deeper, "FLOAT", *shallower]
    return next((name for name in candidates if can_write(fmt, name)), sf.default_subtype(fmt))


def output_format(suffix: str, subtype: str | None, like: str | None = None) -> tuple[str, str]:
    """(soundfile format, subtype) for an output suffix such as ".wav". `subtype` None = the
    closest to `like` (the input's subtype) the format can hold (`closest_subtype`), so a
    24-bit or float input keeps its resolution and range, else the format's default.
    OptionError for a combination soundfile cannot write."""
    fmt = suffix.lstrip(".").upper()
    if fmt not in sf.available_formats():
        raise OptionError(f"format={fmt.lower()}: not one of {', '.join(sf.available_formats())}")
    if subtype is None:
        subtype = closest_subtype(fmt, like) if like else sf.default_subtype(fmt)
    if not can_write(fmt, subtype):
        raise OptionError(f"subtype={subtype} cannot be written as {fmt}")
    return fmt, subtype


@contextmanager
def sound_errors(path: Path) -> Iterator[None]:
    """Turn libsndfile's failures in writing `path` into errors that name `path` and the
    reason: the system's (an OSError such as "No space left on device", where libsndfile
    only says "System error."), else libsndfile's (an AudioError)."""
    try:
        yield
    except sf.LibsndfileError as err:
        if err.code != SFE_SYSTEM:
            raise AudioError(f"{path}: cannot be written ({err.error_string})") from err
        code = sf._ffi.errno or errno.EIO  # the failed system call's, still set
        raise OSError(code, os.strerror(code), str(path)) from err


def level_gain(lr: torch.Tensor) -> float:
    """The peak of a signal above full scale (1 otherwise): it goes through the model divided
    by it, at the level the model knows, and its output is multiplied back."""
    peak = float(lr.abs().max()) if lr.numel() else 0.0
    return peak if peak > 1 else 1.0


def check_weights(model: nn.Module) -> None:
    """UsageError when the model has NaN/Inf weights (a damaged checkpoint): every output
    would be garbage."""
    tensors = [*model.parameters(), *model.buffers()]
    bad = sum(int((~torch.isfinite(t)).sum()) for t in tensors if t.is_floating_point())
    if bad:
        raise UsageError(
            f"the model has {bad} NaN/Inf weights: its checkpoint is damaged; use another one"
        )


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
    options: InferenceOptions | None = None,
    subtype: str | None = None,
    spectrogram: bool = False,
    reference: Path | None = None,
) -> float:
    """Upsample one file to `target` with `options` (None: `InferenceOptions.for_model`; with
    keep_band the file is also read whole at its own rate, see `enhance_signal`; its line
    names the measured cutoff and what was generated). Its suffix picks the format;
    `subtype` None keeps the input's where it can, see `output_format`. Written block by
    block to a temporary name that is renamed only when the output is whole and finite and,
    with `spectrogram`, its PNG (beside it, with `reference` if given) is written; returns
    the seconds of audio written.
    AudioError for unusable input or a non-finite output, OSError for a failed write."""
    if target.resolve() == source.resolve():
        raise AudioError(f"{source}: the output would overwrite the input")
    lr, sr, frames, high = read_lowres(source, model.lr_sr)
    like = sf.info(str(source)).subtype
    fmt, subtype_out = output_format(target.suffix, subtype, like=like)
    if subtype is None and subtype_out != like:
        log.info("%s: %s cannot hold its %s samples; written as %s", source, fmt, like, subtype_out)
    expected = round(frames * model.hr_sr / sr)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise AudioError(f"{target.parent}: cannot create the output folder ({err})") from err
    gain = level_gain(lr)
    options = options or InferenceOptions.for_model(model)
    chunks = len(chunk_plan(lr.shape[-1], model.lr_sr, options.chunk, options.overlap)[2])
    lr.div_(gain)  # in place: no second copy of a long file
    if options.keep_band:
        audio, sr = read_audio(source)
        audio /= gain
    else:
        warn_discarded(source, high, model.lr_sr)
        audio, sr = lr, model.lr_sr
    plan, blocks = enhance_signal(model, lr, audio, sr, options)
    log.info("%s: %s", source, plan.describe())
    progress = tqdm(
        blocks, total=chunks, desc=source.name, unit="chunk", leave=False, disable=chunks < 2
    )
    with atomic_path(target) as tmp, torch.inference_mode():
        with (
            sound_errors(target),
            sf.SoundFile(str(tmp), "w", model.hr_sr, lr.shape[0], subtype_out, format=fmt) as out,
        ):
            peak, clipped = write_blocks(out, progress, expected, gain, source)
        if spectrogram:
            write_spectrogram(source, tmp, reference, png=target.with_suffix(".png"))
    if clipped:
        warn_clipped(target, peak, clipped, subtype_out)
    return expected / model.hr_sr


def write_blocks(
    out: sf.SoundFile, blocks: Iterable[torch.Tensor], expected: int, gain: float, source: Path
) -> tuple[float, int]:
    """Write the model's (C, ·) blocks, multiplied by `gain`, into `out` up to `expected`
    frames (zero-padded: resampler rounding); integer and lossy subtypes are clipped to ±1.
    Returns (peak, samples clipped). AudioError, before anything is renamed into place, at the
    first block with NaN/Inf samples."""
    clip = out.subtype not in ("FLOAT", "DOUBLE")  # integer and lossy formats cannot exceed ±1
    written, peak, clipped = 0, 0.0, 0
    for block in blocks:
        with np.errstate(over="ignore"):  # beyond the float range: refused below
            block = (block[:, : expected - written].numpy() * gain).astype(np.float32)
        if not np.isfinite(block).all():
            bad = int((~np.isfinite(block)).sum())
            raise AudioError(
                f"{source}: the output has {bad} NaN/Inf samples at {written / out.samplerate:.1f}"
                " s; nothing was written"
            )
        if clip:
            magnitude = np.abs(block)
            peak = max(peak, float(magnitude.max(initial=0.0)))
            clipped += int((magnitude > 1).sum())
        out.write(np.clip(block.T, -1, 1) if clip else block.T)
        written += block.shape[1]
    out.write(np.zeros((expected - written, out.channels), np.float32))
    return peak, clipped


@dataclass
class Summary:
    """What a batch job did: files done, skipped (existing output), not audio (in a folder),
    failed (with reasons)."""

    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    not_audio: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0

    def report(self, redo: str = "overwrite=true") -> str:
        """One line of counts and speed, then one `FAILED <reason naming the file>` per failure;
        `redo` is the option that rewrites existing outputs, in the caller's syntax."""
        speed = self.audio_seconds / self.wall_seconds if self.wall_seconds else 0.0
        lines = [
            f"{len(self.done)} done, {len(self.skipped)} skipped (output exists; "
            f"{redo} to redo), {len(self.not_audio)} not audio, {len(self.failed)} "
            f"failed; {self.audio_seconds:.1f} s of audio in {self.wall_seconds:.1f} s "
            f"({speed:.2f} audio seconds per second)"
        ]
        lines += [f"FAILED {reason}" for _, reason in self.failed]
        return "\n".join(lines)


def output_path(source: Path, input_root: Path, output: Path, suffix: str) -> Path:
    """Where the output of `source` goes: its path relative to the input, under `output`."""
    relative = source.relative_to(input_root) if input_root.is_dir() else Path(source.name)
    return (output / relative).with_suffix(suffix)


def special_kind(path: Path) -> str:
    """What a path that is no regular file or folder is, in words."""
    mode = path.stat().st_mode
    kinds = [
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ]
    return next((name for test, name in kinds if test(mode)), "a special file")


def list_inputs(input_root: Path, output: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(files, problems): `input_root` if it is a file, else every file under it except hidden
    ones and those in an output folder nested inside it; problems are the links that lead
    nowhere and the things that are no regular files (FIFOs, devices), with reasons, never
    opened. UsageError for an `input_root` that is no regular file or folder."""
    if input_root.is_file():
        return [input_root], []
    if not input_root.is_dir():
        raise UsageError(
            f"input={input_root}: not a regular file or folder ({special_kind(input_root)})"
        )
    nested = input_root.resolve() in output.resolve().parents
    files, problems = [], []
    for path in sorted(input_root.rglob("*")):
        if any(part.startswith(".") for part in path.relative_to(input_root).parts):
            continue
        if path.is_symlink() and not path.exists():
            problems.append((path, f"{path}: broken link to {os.readlink(path)}"))
        elif not path.is_file() and not path.is_dir():
            problems.append((path, f"{path}: not a regular file ({special_kind(path)})"))
        elif path.is_file() and not (nested and output.resolve() in path.resolve().parents):
            files.append(path)
    return files, problems


def is_audio(path: Path) -> bool:
    """Whether a file found in a folder is tried as audio: named as an audio file
    (`AUDIO_SUFFIXES`), or readable by soundfile whatever its name."""
    if path.suffix.lower() in AUDIO_SUFFIXES:
        return True
    try:
        sf.info(str(path))
    except Exception:  # soundfile raises several types for what is not audio
        return False
    return True


def plan_targets(
    sources: list[Path],
    inputs: list[Path],
    input_root: Path,
    output: Path,
    suffix: str,
    spectrogram: bool = False,
) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
    """Every (source, target) of a run that may be written, and the refused sources with
    reasons: those whose target (or spectrogram) is one of the run's `inputs` (resolved paths,
    so through links), and all those sharing one target."""
    taken = {path.resolve(): path for path in inputs}
    targets = {source: output_path(source, input_root, output, suffix) for source in sources}
    sharing = Counter(target.resolve() for target in targets.values())
    plan, refused = [], []
    for source, target in targets.items():
        written = [target, target.with_suffix(".png")] if spectrogram else [target]
        hit = next((path for path in written if path.resolve() in taken), None)
        if hit is not None:
            refused.append(
                (
                    source,
                    f"{source}: its output {hit} would overwrite the input {taken[hit.resolve()]}",
                )
            )
        elif sharing[target.resolve()] > 1:
            others = [
                str(s)
                for s, t in targets.items()
                if s != source and t.resolve() == target.resolve()
            ]
            refused.append((source, f"{source}: same output {target} as {', '.join(others)}"))
        else:
            plan.append((source, target))
    return plan, refused


def failure_line(source: Path, err: Exception) -> str:
    """One line naming `source` and why it failed."""
    text = os_error_message(err) if isinstance(err, OSError) else str(err)
    message = " ".join(text.split())
    return message if str(source) in message else f"{source}: {message}"


def out_of_memory(source: Path, model: nn.Module, options: dict) -> UsageError:
    """The one-line error that stops a run out of memory: which options to lower."""
    inference = options.get("options") or InferenceOptions.for_model(model)
    chunk, batch_size = inference.chunk, inference.batch_size
    return UsageError(
        f"{source}: out of memory on {model_device(model)}; lower chunk= (now {chunk} s) or "
        f"batch_size= (now {batch_size})"
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
    keyword `options` of `predict_file`). Every target is planned first (`plan_targets`);
    failures are collected and the other files go on. Raises OptionError, before any file,
    for an output format soundfile cannot write or an `amp` that the model's device cannot
    compute natively (`check_amp`; the other options are checked where `InferenceOptions`
    is made); UsageError for a model with
    NaN/Inf weights, an input that is no regular file or folder, or running out of memory.
    Stale temporaries of killed runs under `output` are removed (`aeromamba.files`)."""
    output_format(suffix, options.get("subtype"))
    check_amp((options.get("options") or InferenceOptions()).amp, model_device(model))
    check_weights(model)
    input_root, output = Path(input), Path(output)
    summary = Summary()
    start = time.time()
    if not input_root.exists():
        summary.failed.append((input_root, f"{input_root}: no such file or folder"))
        return summary
    inputs, summary.failed = list_inputs(input_root, output)
    if output.is_dir():
        remove_stale_temporaries(output, "**/.*.tmp")
    sources = [path for path in inputs if input_root.is_file() or is_audio(path)]
    summary.not_audio = sorted(set(inputs) - set(sources))
    plan, refused = plan_targets(sources, inputs, input_root, output, suffix, spectrogram)
    summary.failed += refused
    for source, target in tqdm(plan, desc="files", unit="file", disable=len(plan) < 2):
        if target.exists() and not overwrite:
            summary.skipped.append(source)
            continue
        found = find_reference(source, input_root, reference) if spectrogram else None
        try:
            summary.audio_seconds += predict_file(
                model, source, target, spectrogram=spectrogram, reference=found, **options
            )
            summary.done.append(source)
        except (torch.OutOfMemoryError, MemoryError) as err:
            raise out_of_memory(source, model, options) from err
        except RuntimeError as err:  # the CPU allocator's failure is a plain RuntimeError
            if "can't allocate memory" not in str(err):
                raise
            raise out_of_memory(source, model, options) from err
        except (UsageError, OSError) as err:
            summary.failed.append((source, failure_line(source, err)))
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


def write_spectrogram(
    source: Path, output: Path, reference: Path | None = None, png: Path | None = None
) -> Path:
    """PNG of input, output and reference, channels averaged, at `png` (default: beside the
    output, its name with .png)."""
    from aeromamba.plots import plot_spectrograms

    paths = {"input": source, "output": output, "reference": reference}
    signals = {}
    for label, path in paths.items():
        if path is not None:
            audio, sr = read_audio(path)
            signals[label] = (audio.mean(axis=0), sr)
    return plot_spectrograms(signals, png or output.with_suffix(".png"), title=source.name)
