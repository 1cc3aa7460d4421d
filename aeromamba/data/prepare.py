"""Corpus preparation: raw music files -> 44.1 kHz mono and 11.025 kHz pairs, with manifests.

Sources, detected automatically:

- MUSDB18-HQ: `SRC/train/<song>/mixture.wav` and `SRC/test/<song>/mixture.wav`; the name of
  an item is the song folder. The paper used the official train/test split; as it has no
  validation split, `valid_songs` training songs (5 by default) are drawn with `seed` and moved
  to `valid`, which therefore never overlaps test.
- Any folder of audio files (WAV, FLAC, ...): split by subfolders `train/ valid/ test/` when
  at least one exists (audio outside them is reported, not used), else by a seeded draw of
  `valid_ratio` and `test_ratio` of the files (each at least one file when its ratio is
  positive, as long as train keeps one). The name of an item is its path below the split
  folder (or SRC), without suffix, folders joined with "__".

Each file is averaged to mono (as the paper), resampled to 44.1 kHz when needed and cut to a
multiple of 4 samples; its 11.025 kHz version is made from that with soxr 'VHQ', so that
lr_length == hr_length // 4 exactly. Layout of DEST (paths in manifests are relative to it)::

    DEST/{split}/hr/<name>.wav    44.1 kHz mono, 32-bit float WAV (no clipping, no requantising)
    DEST/{split}/lr/<name>.wav    11.025 kHz mono, 32-bit float WAV
    DEST/{split}.json             manifest, see `write_manifests`; items sorted by name
    DEST/report.json              files skipped by the last run, with reasons

Broken, empty, non-audio, silent and too-short files are skipped and listed with their reason.
Reruns are idempotent: a pair whose files are both newer than the source is kept, not rewritten.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import soundfile as sf
from tqdm import tqdm

from aeromamba.audio import AudioError, list_audio_files, read_audio, resample, to_mono, write_audio
from aeromamba.files import atomic_path

HR_SR = 44100
LR_SR = 11025
RATIO = HR_SR // LR_SR
SPLITS = ("train", "valid", "test")
MONO = "average"
SILENCE_PEAK = 1e-4  # -80 dBFS: below this a file carries no usable music
SUBTYPE = "FLOAT"

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Source:
    """One raw file to prepare as item `name` of `split`."""

    name: str
    split: str
    path: Path


@dataclass
class PrepareReport:
    """What a run did: the manifest items of each split and the skipped files with reasons."""

    dest: Path
    layout: str
    items: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    reused: int = 0

    @property
    def prepared(self) -> int:
        """Number of files in the manifests (newly written or reused)."""
        return sum(len(items) for items in self.items.values())

    def summary(self) -> str:
        """A human-readable account: counts and minutes per split, then each skipped file."""
        parts = []
        for split in SPLITS:
            items = self.items.get(split, [])
            minutes = sum(item["hr_length"] for item in items) / HR_SR / 60
            parts.append(f"{split} {len(items)} ({minutes:.1f} min)")
        lines = [
            f"{self.layout} layout: {self.prepared} files prepared in {self.dest} "
            f"({', '.join(parts)}; {self.reused} already done)"
        ]
        if self.failures:
            lines.append(f"skipped {len(self.failures)} file(s):")
            lines += [f"  {path}: {reason}" for path, reason in self.failures]
        return "\n".join(lines)


def is_musdb(src: Path) -> bool:
    """True if `src` looks like MUSDB18-HQ: a `train/` or `test/` of song folders with mixtures."""
    return any(any((src / split).glob("*/mixture.wav")) for split in ("train", "test"))


def split_counts(count: int, valid_ratio: float, test_ratio: float) -> tuple[int, int]:
    """(valid, test) file counts for `count` files: rounded ratios, at least one for a positive
    ratio, reduced until train keeps at least one file."""
    n_valid = max(1, round(count * valid_ratio)) if valid_ratio > 0 else 0
    n_test = max(1, round(count * test_ratio)) if test_ratio > 0 else 0
    while n_valid + n_test > max(count - 1, 0):
        if n_valid >= n_test:
            n_valid -= 1
        else:
            n_test -= 1
    return n_valid, n_test


def _name(path: Path, base: Path) -> str:
    return "__".join(path.relative_to(base).with_suffix("").parts)


def plan_musdb(src: Path, valid_songs: int, seed: int) -> list[Source]:
    """The mixtures of a MUSDB18-HQ tree, with `valid_songs` train songs drawn into valid."""
    sources = []
    for split in ("train", "test"):
        songs = sorted(p for p in (src / split).glob("*") if p.is_dir())
        sources += [Source(song.name, split, song / "mixture.wav") for song in songs]
    train = [s for s in sources if s.split == "train"]
    count = min(valid_songs, max(len(train) - 1, 0))
    chosen = {train[i].name for i in np.random.default_rng(seed).choice(len(train), count, False)}
    return [
        Source(s.name, "valid", s.path) if s.split == "train" and s.name in chosen else s
        for s in sources
    ]


def plan_folder(
    src: Path, valid_ratio: float, test_ratio: float, seed: int
) -> tuple[list[Source], list[tuple[str, str]]]:
    """Sources of a folder of audio files and the files left out (path, reason)."""
    split_dirs = [split for split in SPLITS if (src / split).is_dir()]
    if split_dirs:
        sources = [
            Source(_name(path, src / split), split, path)
            for split in split_dirs
            for path in list_audio_files(src / split)
        ]
        used = {s.path for s in sources}
        outside = [
            (str(p), f"outside the split folders {', '.join(split_dirs)}; not used")
            for p in list_audio_files(src)
            if p not in used
        ]
        return sources, outside
    files = list_audio_files(src)
    n_valid, n_test = split_counts(len(files), valid_ratio, test_ratio)
    order = np.random.default_rng(seed).permutation(len(files))
    splits = ["test"] * n_test + ["valid"] * n_valid + ["train"] * (len(files) - n_valid - n_test)
    split_of = {int(index): split for index, split in zip(order, splits, strict=True)}
    return [Source(_name(p, src), split_of[i], p) for i, p in enumerate(files)], []


def _unique(sources: Iterable[Source]) -> tuple[list[Source], list[tuple[str, str]]]:
    """Drop (and report) sources whose name repeats one already used in the same split."""
    seen: dict[tuple[str, str], Path] = {}
    kept, dropped = [], []
    for source in sources:
        first = seen.setdefault((source.split, source.name), source.path)
        if first == source.path:
            kept.append(source)
        else:
            dropped.append((str(source.path), f"same item name '{source.name}' as {first}"))
    return kept, dropped


def _pair_paths(dest: Path, source: Source) -> tuple[Path, Path]:
    folder = dest / source.split
    return folder / "hr" / f"{source.name}.wav", folder / "lr" / f"{source.name}.wav"


def _is_done(source: Path, hr: Path, lr: Path) -> bool:
    """Both outputs exist (atomic writes: then complete) and are not older than the source."""
    if not (source.is_file() and hr.is_file() and lr.is_file()):
        return False
    return min(hr.stat().st_mtime_ns, lr.stat().st_mtime_ns) >= source.stat().st_mtime_ns


def prepare_file(source: Source, dest: Path, src_root: Path, min_seconds: float) -> dict | str:
    """Prepare one file; return its manifest item (plus "reused": bool) or the reason to skip it.

    Raises only for problems of DEST (for instance a full disk), never for a bad input.
    """
    hr_path, lr_path = _pair_paths(dest, source)
    try:
        if _is_done(source.path, hr_path, lr_path):
            info = sf.info(str(source.path))
            channels, sr = info.channels, info.samplerate
            hr_length, lr_length = sf.info(str(hr_path)).frames, sf.info(str(lr_path)).frames
            reused = True
        else:
            audio, sr = read_audio(source.path)
            channels = audio.shape[0]
            hr = resample(to_mono(audio), sr, HR_SR)
            hr = hr[:, : hr.shape[-1] // RATIO * RATIO]
            if hr.shape[-1] < min_seconds * HR_SR:
                return f"too short ({hr.shape[-1] / HR_SR:.2f} s, at least {min_seconds} s)"
            peak = float(np.abs(hr).max())
            if peak < SILENCE_PEAK:
                return f"silent (peak {20 * np.log10(max(peak, 1e-12)):.0f} dBFS)"
            lr = resample(hr, HR_SR, LR_SR)
            lr_length = hr.shape[-1] // RATIO
            lr = np.pad(lr[:, :lr_length], ((0, 0), (0, lr_length - min(lr.shape[-1], lr_length))))
            write_audio(hr_path, hr, HR_SR, subtype=SUBTYPE)
            write_audio(lr_path, lr, LR_SR, subtype=SUBTYPE)
            hr_length = hr.shape[-1]
            reused = False
    except (AudioError, sf.LibsndfileError) as err:
        return str(err).removeprefix(f"{source.path}: ")
    return {
        "name": source.name,
        "hr": hr_path.relative_to(dest).as_posix(),
        "lr": lr_path.relative_to(dest).as_posix(),
        "hr_length": int(hr_length),
        "lr_length": int(lr_length),
        "source": source.path.relative_to(src_root).as_posix(),
        "source_sr": int(sr),
        "source_channels": int(channels),
        "reused": reused,
    }


def manifest_path(root: str | os.PathLike, split: str) -> Path:
    """Where the manifest of `split` lives in a prepared folder."""
    return Path(root) / f"{split}.json"


def is_prepared(root: str | os.PathLike) -> bool:
    """True if `root` holds the manifests of all splits."""
    return all(manifest_path(root, split).is_file() for split in SPLITS)


def _write_json(path: Path, data: Any) -> None:
    """Write `data` as JSON atomically, leaving the file untouched if the content is the same."""
    text = json.dumps(data, indent=1) + "\n"
    if path.is_file() and path.read_text() == text:
        return
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_manifests(report: PrepareReport, src: Path, settings: dict[str, Any]) -> None:
    """Write DEST/{split}.json for every split and DEST/report.json.

    A manifest holds {"split", "hr_sr", "lr_sr", "mono", "format", "resampler", "source_root",
    "layout", "settings", "items": [{"name", "hr", "lr", "hr_length", "lr_length", "source",
    "source_sr", "source_channels"}]}: paths relative to DEST, `source` relative to source_root,
    source_sr/source_channels the raw file's rate and channel count.
    """
    for split in SPLITS:
        manifest = {
            "split": split,
            "hr_sr": HR_SR,
            "lr_sr": LR_SR,
            "mono": MONO,
            "format": f"WAV {SUBTYPE}",
            "resampler": "soxr VHQ",
            "source_root": str(src.resolve()),
            "layout": report.layout,
            "settings": settings,
            "items": report.items.get(split, []),
        }
        _write_json(manifest_path(report.dest, split), manifest)
    failures = [{"path": path, "reason": reason} for path, reason in report.failures]
    _write_json(report.dest / "report.json", {"skipped": failures})


def prepare_corpus(
    src: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    workers: int | None = None,
    valid_ratio: float = 0.1,
    test_ratio: float = 0.1,
    seed: int = 0,
    valid_songs: int = 5,
    min_seconds: float = 1.0,
    progress: bool = True,
) -> PrepareReport:
    """Prepare the corpus at `src` into `dest` (see the module docstring) and return the report.

    Manifests are written only if at least one file could be prepared. `workers` processes
    (default: all cores) convert files in parallel; 1 converts in this process.
    """
    src, dest = Path(src), Path(dest)
    if min(valid_ratio, test_ratio) < 0 or valid_ratio + test_ratio >= 1:
        raise ValueError(
            f"valid_ratio {valid_ratio} and test_ratio {test_ratio} must be >= 0 and sum to < 1"
        )
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: source folder not found")
    musdb = is_musdb(src)
    if musdb:
        planned, failures = plan_musdb(src, valid_songs, seed), []
        settings: dict[str, Any] = {"valid_songs": valid_songs, "seed": seed}
    else:
        planned, failures = plan_folder(src, valid_ratio, test_ratio, seed)
        settings = {"valid_ratio": valid_ratio, "test_ratio": test_ratio, "seed": seed}
    settings["min_seconds"] = min_seconds
    sources, duplicates = _unique(planned)
    report = PrepareReport(dest, "musdb" if musdb else "folder", failures=failures + duplicates)
    work = partial(prepare_file, dest=dest, src_root=src, min_seconds=min_seconds)
    workers = min(workers or os.cpu_count() or 1, max(len(sources), 1))
    bar = tqdm(total=len(sources), desc=f"prepare {src}", unit="file", disable=not progress)
    with bar:
        for source, result in zip(sources, map_in_processes(work, sources, workers), strict=True):
            bar.update()
            if isinstance(result, str):
                report.failures.append((str(source.path), result))
                continue
            report.reused += result.pop("reused")
            report.items.setdefault(source.split, []).append(result)
    for items in report.items.values():
        items.sort(key=lambda item: item["name"])
    if report.prepared:
        write_manifests(report, src, settings)
    return report


def map_in_processes(work: Callable[[T], R], jobs: list[T], workers: int) -> Iterator[R]:
    """`work` over `jobs`, results in order, in `workers` processes (1: in this process)."""
    if workers == 1:
        yield from map(work, jobs)
        return
    with ProcessPoolExecutor(workers) as pool:
        yield from pool.map(work, jobs)


def ensure_prepared(
    source: str | os.PathLike | None,
    root: str | os.PathLike,
    *,
    synthetic_minutes: float | None = None,
    seed: int = 0,
    workers: int | None = None,
) -> None:
    """Make sure `root` holds a prepared corpus; prepare it from `source` if it does not.

    With `synthetic_minutes` set and `source` missing, the synthetic corpus is first generated
    into `source` (see `aeromamba.data.synthetic.write_synthetic_corpus`). `seed` seeds the
    split draws and the synthetic corpus. With a dset config `cfg`: ensure_prepared(cfg.source,
    cfg.root, synthetic_minutes=cfg.synthetic_minutes, seed=cfg.seed). Raises
    FileNotFoundError when `root` is not prepared and nothing can prepare it, RuntimeError when
    preparing yields no file.
    """
    root = Path(root)
    if is_prepared(root):
        return
    wanted = ", ".join(manifest_path(root, split).name for split in SPLITS)
    if source is None:
        raise FileNotFoundError(
            f"{root}: not a prepared corpus (missing {wanted}) and no source folder is set; "
            f"run `python scripts/prepare_data.py SRC {root}` or set dset.source"
        )
    source = Path(source)
    if not source.exists():
        if synthetic_minutes is None:
            raise FileNotFoundError(
                f"{root}: not a prepared corpus (missing {wanted}) and the source folder "
                f"{source} does not exist"
            )
        # imported here because the synthetic module uses this one
        from aeromamba.data.synthetic import write_synthetic_corpus

        log.info("generating %.1f min of synthetic music into %s", synthetic_minutes, source)
        write_synthetic_corpus(source, synthetic_minutes, seed=seed, workers=workers)
    log.info("preparing %s into %s", source, root)
    report = prepare_corpus(source, root, workers=workers, seed=seed)
    log.log(logging.WARNING if report.failures else logging.INFO, "%s", report.summary())
    if not report.prepared:
        raise RuntimeError(f"{root}: nothing could be prepared from {source}\n{report.summary()}")
