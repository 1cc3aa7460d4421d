"""Corpus preparation: raw music files -> 44.1 kHz mono and 11.025 kHz pairs, with manifests.

Sources, detected automatically:

- MUSDB18-HQ: `SRC/train/<song>/mixture.wav` and `SRC/test/<song>/mixture.wav`; the name of
  an item is the song folder. The paper used the official train/test split; as it has no
  validation split, the `valid_songs` training songs (5 by default) of lowest
  `stable_fraction(seed, name)` go to `valid`, which therefore never overlaps test.
- Any folder of audio files (WAV, FLAC, ...): split by subfolders `train/ valid/ test/` when
  at least one exists (audio outside them is reported, not used), else each file by a hash
  of `seed` and its path below SRC (`stable_fraction`): `test_ratio` of the hash range goes to
  test, the next `valid_ratio` to valid, the rest to train. A file's split is thus a function
  of the file alone: adding or removing files never moves another one. The name of an item is
  its path below the split folder (or SRC), without suffix, folders joined with "__"; its
  `group` is the first of those folders ("" for a file directly in it), e.g. the kind of
  music in a corpus laid out as `SRC/test/piano/...`.

The same recording under several files (`backup_NAME.wav` beside `NAME.flac`, a copy at
another rate, bit depth or level) would put training material into the test split. Copies are
found from the decoded audio (`fingerprint`, `same_recording`: a coarse, level-normalised
band-energy envelope of the mono signal, compared over a few frames of offset), and every copy
goes to the split of the group's first file in path order; the groups are reported. A copy
trimmed by more than a second, or whose length differs by more than 2%, is not recognised,
nor are recordings shorter than 3 s compared.
Fingerprints are cached in DEST/fingerprints.npz by source path, size and modification time.

DEST must lie outside SRC (and SRC outside DEST): otherwise a rerun would read its own
outputs back as sources.

Each file is averaged to mono (as the paper), resampled to 44.1 kHz when needed and cut to a
multiple of 4 samples; its 11.025 kHz version is made from that with soxr 'VHQ', so that
lr_length == hr_length // 4 exactly. Layout of DEST (paths in manifests are relative to it)::

    DEST/{split}/hr/<name>.wav    44.1 kHz mono, 32-bit float WAV (no clipping, no requantising)
    DEST/{split}/lr/<name>.wav    11.025 kHz mono, 32-bit float WAV
    DEST/{split}.json             manifest, see `write_manifests`; items sorted by name
    DEST/report.json              files skipped by the last run, with reasons; copies found

Broken, empty, non-audio, silent and too-short files are skipped and listed with their reason;
files sampled below 44.1 kHz or band-limited are kept with a warning, and every item records
its measured bandwidth. Reruns are idempotent: a pair whose files are both newer than the
source is kept, not rewritten; outputs the previous manifests listed and the new ones do not
are removed, and nothing that this tool did not write.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
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
from aeromamba.data.bandwidth import measure_bandwidth
from aeromamba.errors import UsageError
from aeromamba.files import atomic_path, remove_stale_temporaries

HR_SR = 44100
LR_SR = 11025
RATIO = HR_SR // LR_SR
SPLITS = ("train", "valid", "test")
MONO = "average"
SILENCE_PEAK = 1e-4  # -80 dBFS: below this a file carries no usable music
SUBTYPE = "FLOAT"
BAND_LIMITED_HZ = 16000.0  # below this a 44.1 kHz target lacks much of the band to learn
PRINT_SR = 4000  # fingerprints: the band below 2 kHz, which every copy keeps
PRINT_WINDOW = 1200  # 300 ms frames: two copies a frame apart still correlate above 0.88
PRINT_HOP = 400  # every 100 ms
PRINT_BANDS = np.round(np.geomspace(50, 2000, 9)[:-1] * PRINT_WINDOW / PRINT_SR).astype(int)
PRINT_SHIFT = 10  # frames of offset searched (1 s)
PRINT_MATCH = 0.75  # correlation of two prints of one recording (distinct music: below 0.6)
PRINT_MIN_FRAMES = 25  # shorter prints (2.7 s) match distinct music by chance: not compared

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Source:
    """One raw file to prepare as item `name` of `split`."""

    name: str
    split: str
    path: Path
    group: str = ""


@dataclass
class PrepareReport:
    """What a run did: the manifest items of each split, the skipped files with reasons, the
    kept files with warnings, and the stale outputs removed."""

    dest: Path
    layout: str
    items: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (path, what)
    reused: int = 0
    removed: list[str] = field(default_factory=list)  # stale outputs, relative to dest
    duplicates: list[list[str]] = field(default_factory=list)  # copies, relative to the source

    @property
    def prepared(self) -> int:
        """Number of files in the manifests (newly written or reused)."""
        return sum(len(items) for items in self.items.values())

    @property
    def empty_splits(self) -> list[str]:
        """The splits that hold no file."""
        return [split for split in SPLITS if not self.items.get(split)]

    def summary(self) -> str:
        """A human-readable account: counts and minutes per split, then each file of note."""
        parts = []
        for split in SPLITS:
            items = self.items.get(split, [])
            minutes = sum(item["hr_length"] for item in items) / HR_SR / 60
            parts.append(f"{split} {len(items)} ({minutes:.1f} min)")
        lines = [
            f"{self.layout} layout: {self.prepared} files prepared in {self.dest} "
            f"({', '.join(parts)}; {self.reused} already done)"
        ]
        if self.prepared and self.empty_splits:
            lines.append(f"warning: empty split(s): {', '.join(self.empty_splits)}")
        if self.removed:
            lines.append(f"removed {len(self.removed)} stale output(s) no manifest lists")
        if self.duplicates:
            lines.append(
                f"{len(self.duplicates)} recording(s) found in more than one file, each kept "
                f"in one split:"
            )
            lines += [f"  {' = '.join(group)}" for group in self.duplicates]
        if self.warnings:
            lines.append(f"warnings for {len(self.warnings)} file(s):")
            lines += [f"  {path}: {what}" for path, what in self.warnings]
        if self.failures:
            lines.append(f"skipped {len(self.failures)} file(s):")
            lines += [f"  {path}: {reason}" for path, reason in self.failures]
        return "\n".join(lines)


def is_musdb(src: Path) -> bool:
    """True if `src` looks like MUSDB18-HQ: a `train/` or `test/` of song folders with mixtures."""
    return any(any((src / split).glob("*/mixture.wav")) for split in ("train", "test"))


def stable_fraction(seed: int, key: str) -> float:
    """A number in [0, 1) fixed by (`seed`, `key`) alone: SHA-256, not Python's salted hash."""
    digest = hashlib.sha256(f"{seed}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_of(fraction: float, valid_ratio: float, test_ratio: float) -> str:
    """The split of a file whose `stable_fraction` is `fraction`."""
    if fraction < test_ratio:
        return "test"
    return "valid" if fraction < test_ratio + valid_ratio else "train"


def _source(path: Path, base: Path, split: str) -> Source:
    parts = path.relative_to(base).with_suffix("").parts
    return Source("__".join(parts), split, path, parts[0] if len(parts) > 1 else "")


def plan_musdb(src: Path, valid_songs: int, seed: int) -> list[Source]:
    """The mixtures of a MUSDB18-HQ tree, with `valid_songs` train songs moved to valid."""
    sources = []
    for split in ("train", "test"):
        songs = sorted(p for p in (src / split).glob("*") if p.is_dir())
        sources += [Source(song.name, split, song / "mixture.wav") for song in songs]
    train = sorted(
        (s.name for s in sources if s.split == "train"), key=lambda n: stable_fraction(seed, n)
    )
    chosen = set(train[: min(valid_songs, max(len(train) - 1, 0))])
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
            _source(path, src / split, split)
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
    sources = []
    for path in list_audio_files(src):
        fraction = stable_fraction(seed, path.relative_to(src).as_posix())
        sources.append(_source(path, src, split_of(fraction, valid_ratio, test_ratio)))
    return sources, []


def fingerprint(path: Path) -> np.ndarray | None:
    """A coarse print of the recording in `path`, the same for its copies in any container,
    bit depth, rate or level: (frames, bands) float32, the log energy of the PRINT_BANDS bands
    (50 Hz-2 kHz) of frames of PRINT_WINDOW samples every PRINT_HOP at PRINT_SR, each band
    normalised over time. None for audio that cannot be read or is shorter than two frames."""
    try:
        audio, sr = read_audio(path)
    except (AudioError, sf.LibsndfileError):
        return None
    mono = resample(to_mono(audio), sr, PRINT_SR, quality="HQ")[0]
    if mono.size < PRINT_WINDOW + PRINT_HOP:
        return None
    frames = np.lib.stride_tricks.sliding_window_view(mono, PRINT_WINDOW)[::PRINT_HOP]
    power = np.abs(np.fft.rfft(frames * np.hanning(PRINT_WINDOW), axis=1)) ** 2
    bands = np.add.reduceat(power, PRINT_BANDS, axis=1).astype(np.float64)
    level = np.log10(bands + bands.max() * 1e-8 + 1e-30)
    level -= level.mean(axis=0)
    return (level / (level.std(axis=0) + 0.05)).astype(np.float32)


def same_recording(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    """Whether two fingerprints are of one recording: both of PRINT_MIN_FRAMES or more,
    lengths within 2%, and they correlate by at least PRINT_MATCH at some offset of at most
    PRINT_SHIFT frames."""
    if a is None or b is None or min(len(a), len(b)) < PRINT_MIN_FRAMES:
        return False
    if abs(len(a) - len(b)) > max(2, 0.02 * max(len(a), len(b))):
        return False
    for shift in range(-PRINT_SHIFT, PRINT_SHIFT + 1):
        x, y = (a[shift:], b) if shift >= 0 else (a, b[-shift:])
        n = min(len(x), len(y))
        if _correlation(x[:n].ravel(), y[:n].ravel()) >= PRINT_MATCH:
            return True
    return False


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's correlation of two vectors; 0 when either is constant."""
    x, y = x - x.mean(), y - y.mean()
    norm = float(np.sqrt(np.dot(x, x) * np.dot(y, y)))
    return float(np.dot(x, y)) / norm if norm > 0 else 0.0


def _fingerprints(
    sources: list[Source], dest: Path, workers: int, progress: bool
) -> list[np.ndarray | None]:
    """The fingerprints of `sources`, from DEST/fingerprints.npz where the file is unchanged;
    the cache is rewritten with those of `sources`."""
    keys = [_print_key(source.path) for source in sources]
    cache_path = dest / "fingerprints.npz"
    cached: dict[str, np.ndarray] = {}
    try:
        with np.load(cache_path, allow_pickle=False) as stored:
            cached = {key: stored[key] for key in set(keys) & set(stored.files)}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        pass  # none yet, or damaged: computed anew
    todo = [(s.path, key) for s, key in zip(sources, keys, strict=True) if key not in cached]
    found = map_in_processes(fingerprint, [path for path, _ in todo], workers)
    for (_, key), result in tqdm(
        zip(todo, found, strict=True), total=len(todo), desc="fingerprints", disable=not progress
    ):
        if result is not None:
            cached[key] = result
    dest.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache_path) as tmp, open(tmp, "wb") as file:
        np.savez_compressed(file, **{key: cached[key] for key in keys if key in cached})
    return [cached.get(key) for key in keys]


def _print_key(path: Path) -> str:
    """The cache key of a file's fingerprint: its path, size and modification time."""
    stat = path.stat()
    text = f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}"
    return hashlib.sha256(text.encode()).hexdigest()


def keep_copies_together(
    sources: list[Source], prints: list[np.ndarray | None], src: Path
) -> tuple[list[Source], list[list[str]]]:
    """`sources` with every copy of a recording in the split of the group's first file (in
    path order), and the groups of copies (paths relative to `src`)."""
    order = sorted(range(len(sources)), key=lambda i: sources[i].path.as_posix())
    rank = {i: place for place, i in enumerate(order)}
    root = list(range(len(sources)))

    def find(i: int) -> int:
        while root[i] != i:
            i = root[i]
        return i

    by_length = sorted((i for i in order if prints[i] is not None), key=lambda i: len(prints[i]))
    for place, i in enumerate(by_length):
        for j in by_length[place + 1 :]:
            if len(prints[j]) > len(prints[i]) * 1.02 + 2:
                break
            if find(i) != find(j) and same_recording(prints[i], prints[j]):
                first, other = sorted((find(i), find(j)), key=rank.__getitem__)
                root[other] = first
    group = {i: find(i) for i in order}
    members: dict[int, list[int]] = {}
    for i in order:
        members.setdefault(group[i], []).append(i)
    copies = [m for m in members.values() if len(m) > 1]
    kept = [Source(s.name, sources[group[i]].split, s.path, s.group) for i, s in enumerate(sources)]
    reported = [[sources[i].path.relative_to(src).as_posix() for i in m] for m in copies]
    return kept, reported


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


def _warnings(source_sr: int, bandwidth: float) -> list[str]:
    """Why a prepared file makes a poor 44.1 kHz target, if it does."""
    if source_sr < HR_SR:
        return [
            f"sampled at {source_sr} Hz: its 44.1 kHz target has nothing above "
            f"{source_sr / 2:.0f} Hz (measured bandwidth {bandwidth:.0f} Hz)"
        ]
    if bandwidth < BAND_LIMITED_HZ:
        return [f"band-limited: measured bandwidth {bandwidth:.0f} Hz"]
    return []


def prepare_file(
    source: Source, dest: Path, src_root: Path, min_seconds: float, previous: dict | None = None
) -> dict | str:
    """Prepare one file; return its manifest item (plus "reused": bool and "warnings": list of
    str) or the reason to skip it. `previous` is the item of the last run's manifest, if any.

    Raises only for problems of DEST (for instance a full disk), never for a bad input.
    """
    hr_path, lr_path = _pair_paths(dest, source)
    try:
        reused = _is_done(source.path, hr_path, lr_path)
        if reused:
            info = sf.info(str(source.path))
            channels, sr = info.channels, info.samplerate
            hr_length, lr_length = sf.info(str(hr_path)).frames, sf.info(str(lr_path)).frames
            bandwidth = (previous or {}).get("bandwidth_hz")
            if bandwidth is None:
                bandwidth = measure_bandwidth(sf.read(str(hr_path), dtype="float32")[0], HR_SR)
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
            bandwidth = measure_bandwidth(hr[0], HR_SR)
            lr = resample(hr, HR_SR, LR_SR)
            lr_length = hr.shape[-1] // RATIO
            lr = np.pad(lr[:, :lr_length], ((0, 0), (0, lr_length - min(lr.shape[-1], lr_length))))
            write_audio(hr_path, hr, HR_SR, subtype=SUBTYPE)
            write_audio(lr_path, lr, LR_SR, subtype=SUBTYPE)
            hr_length = hr.shape[-1]
    except (AudioError, sf.LibsndfileError) as err:
        return str(err).removeprefix(f"{source.path}: ")
    return {
        "name": source.name,
        "group": source.group,
        "hr": hr_path.relative_to(dest).as_posix(),
        "lr": lr_path.relative_to(dest).as_posix(),
        "hr_length": int(hr_length),
        "lr_length": int(lr_length),
        "source": source.path.relative_to(src_root).as_posix(),
        "source_sr": int(sr),
        "source_channels": int(channels),
        "bandwidth_hz": round(float(bandwidth)),
        "reused": reused,
        "warnings": _warnings(int(sr), float(bandwidth)),
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
    "layout", "settings", "items": [{"name", "group", "hr", "lr", "hr_length", "lr_length",
    "source", "source_sr", "source_channels", "bandwidth_hz"}]}: paths relative to DEST,
    `source` relative to source_root, source_sr/source_channels the raw file's rate and channel
    count, bandwidth_hz the highest frequency with content in the 44.1 kHz file (see
    `aeromamba.data.bandwidth`). DEST/report.json lists the skipped files and the warnings.
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
    warnings = [{"path": path, "warning": what} for path, what in report.warnings]
    _write_json(
        report.dest / "report.json",
        {"skipped": failures, "warnings": warnings, "duplicates": report.duplicates},
    )


def check_locations(src: Path, dest: Path) -> None:
    """Refuse a DEST inside SRC (or SRC inside DEST): a rerun would take outputs for sources."""
    src_abs, dest_abs = src.resolve(), dest.resolve()
    if dest_abs.is_relative_to(src_abs) or src_abs.is_relative_to(dest_abs):
        raise UsageError(
            f"{dest}: the prepared folder must lie outside the source folder {src} (and the "
            f"source outside it), or a later run reads its own outputs back as sources; "
            f"choose another destination"
        )


def _previous_items(dest: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """The items of the manifests already in `dest`, by (split, name)."""
    items = {}
    for split in SPLITS:
        path = manifest_path(dest, split)
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        items |= {(split, item["name"]): item for item in manifest.get("items", [])}
    return items


def remove_stale_outputs(
    report: PrepareReport, previous: dict[tuple[str, str], dict[str, Any]]
) -> None:
    """Delete the outputs that the `previous` manifests listed and the new ones do not (files
    of an earlier run whose source is gone or moved), and temporaries that dead processes left
    under DEST/{split}/{hr,lr}. Nothing else is touched: a file this tool did not write stays.
    """
    listed = {
        item[key] for items in report.items.values() for item in items for key in ("hr", "lr")
    }
    earlier = {item.get(key) for item in previous.values() for key in ("hr", "lr")}
    for relative in sorted(p for p in earlier - listed if isinstance(p, str)):
        path = report.dest / relative
        inside = path.resolve().is_relative_to(report.dest.resolve())
        if inside and path.suffix == ".wav" and path.is_file():
            path.unlink()
            report.removed.append(relative)
    for split in SPLITS:
        for folder in ("hr", "lr"):
            for path in remove_stale_temporaries(report.dest / split / folder):
                report.removed.append(path.relative_to(report.dest).as_posix())


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

    Manifests are written (and stale outputs removed) only if at least one file could be
    prepared. `workers` processes (default: all cores) convert files in parallel; 1 converts in
    this process. Raises UsageError for bad settings or locations, FileNotFoundError for a
    missing `src`.
    """
    src, dest = Path(src), Path(dest)
    if min(valid_ratio, test_ratio) < 0 or valid_ratio + test_ratio >= 1:
        raise UsageError(
            f"valid_ratio {valid_ratio} and test_ratio {test_ratio} must be >= 0 and sum to < 1"
        )
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: source folder not found")
    check_locations(src, dest)
    musdb = is_musdb(src)
    if musdb:
        planned, failures = plan_musdb(src, valid_songs, seed), []
        settings: dict[str, Any] = {"valid_songs": valid_songs, "seed": seed}
    else:
        planned, failures = plan_folder(src, valid_ratio, test_ratio, seed)
        settings = {"valid_ratio": valid_ratio, "test_ratio": test_ratio, "seed": seed}
    settings["min_seconds"] = min_seconds
    workers = workers or os.cpu_count() or 1
    prints = _fingerprints(planned, dest, min(workers, max(len(planned), 1)), progress)
    planned, copies = keep_copies_together(planned, prints, src)
    sources, duplicates = _unique(planned)
    report = PrepareReport(dest, "musdb" if musdb else "folder", failures=failures + duplicates)
    report.duplicates = copies
    previous = _previous_items(dest)
    jobs = [(source, previous.get((source.split, source.name))) for source in sources]
    work = partial(_prepare_job, dest=dest, src_root=src, min_seconds=min_seconds)
    workers = min(workers, max(len(sources), 1))
    bar = tqdm(total=len(sources), desc=f"prepare {src}", unit="file", disable=not progress)
    with bar:
        for source, result in zip(sources, map_in_processes(work, jobs, workers), strict=True):
            bar.update()
            if isinstance(result, str):
                report.failures.append((str(source.path), result))
                continue
            report.reused += result.pop("reused")
            report.warnings += [(str(source.path), what) for what in result.pop("warnings")]
            report.items.setdefault(source.split, []).append(result)
    for items in report.items.values():
        items.sort(key=lambda item: item["name"])
    if report.prepared:
        write_manifests(report, src, settings)
        remove_stale_outputs(report, previous)
    return report


def _prepare_job(
    job: tuple[Source, dict | None], dest: Path, src_root: Path, min_seconds: float
) -> dict | str:
    return prepare_file(job[0], dest, src_root, min_seconds, previous=job[1])


def map_in_processes(work: Callable[[T], R], jobs: list[T], workers: int) -> Iterator[R]:
    """`work` over `jobs`, results in order, in `workers` processes (1: in this process)."""
    if workers == 1:
        yield from map(work, jobs)
        return
    with ProcessPoolExecutor(workers) as pool:
        yield from pool.map(work, jobs)
