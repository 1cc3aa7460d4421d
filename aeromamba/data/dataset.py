"""Aligned (low, high) resolution segments of a prepared corpus (see `aeromamba.data.prepare`).

Segments are read from disk item by item (soundfile start/frames), never whole files or the
whole corpus. The optional power filter needs a pass over the corpus; it is made once, file by
file, and cached beside the manifest as `{split}.segments.json`, keyed by the settings and the
manifest's SHA-256.

Manifests are not trusted: every listed file must lie inside the corpus (links resolved), and
its rate and length must be those the manifest states, read from the file's header; a problem
is one line naming the manifest and the item (`ManifestError`). NaN or Inf samples are named
with their file when met (`NonFiniteAudioError`), rather than surfacing as a NaN loss.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from aeromamba.audio import AudioError
from aeromamba.data.prepare import manifest_path
from aeromamba.errors import UsageError
from aeromamba.files import atomic_path

log = logging.getLogger(__name__)
ITEM_KEYS = {"name": str, "lr": str, "hr": str, "lr_length": int, "hr_length": int}


class ManifestError(UsageError):
    """A manifest that cannot be trusted: one line naming it, the item and the problem."""


class NonFiniteAudioError(UsageError):
    """NaN or Inf samples in a corpus file.

    One line even when a DataLoader worker raised it: the main process raises it again with
    the worker's traceback as its message, whose last line is the original one.
    """

    def __init__(self, message: str) -> None:
        if "\nOriginal Traceback" in message:
            last = message.rstrip().splitlines()[-1]
            message = last.partition(": ")[2] or last
        super().__init__(message)


def _prepare_again(root: Path) -> str:
    return f"prepare the corpus again (python scripts/prepare_data.py SRC {root})"


def read_manifest(path: Path) -> tuple[dict[str, Any], bytes]:
    """The manifest at `path` and its bytes; ManifestError for damaged JSON or missing keys."""
    raw = path.read_bytes()
    again = _prepare_again(path.parent)
    try:
        manifest = json.loads(raw)
    except ValueError as err:
        raise ManifestError(f"{path}: not a readable manifest ({err}); {again}") from err
    if not isinstance(manifest, dict):
        raise ManifestError(f"{path}: not a manifest (no JSON object); {again}")
    missing = [key for key in ("lr_sr", "hr_sr", "items") if key not in manifest]
    if missing or not isinstance(manifest["items"], list):
        what = f"no {', '.join(missing)}" if missing else "items is not a list"
        raise ManifestError(f"{path}: not a manifest ({what}); {again}")
    return manifest, raw


def _finite(audio: np.ndarray, path: Path, start: int, rate: int) -> np.ndarray:
    """`audio` (read from `path` at sample `start`) if all finite; NonFiniteAudioError else."""
    bad = np.flatnonzero(~np.isfinite(audio))
    if bad.size:
        raise NonFiniteAudioError(
            f"{path}: NaN or Inf samples ({bad.size}, the first at {(start + bad[0]) / rate:.2f} "
            f"s); prepare it again from a finite source, or remove its item from the manifest"
        )
    return audio


def segment_starts(length: int, segment: int, stride: int, pad: bool) -> range:
    """Start samples of the segments of a file of `length` samples.

    With `pad`, segments start every `stride` samples until one reaches the end (the last is
    zero-padded, a file shorter than `segment` gives one); without, only full segments count.
    """
    if not pad:
        return range(0, max(length - segment + 1, 0), stride)
    count = 1 if length <= segment else 1 + math.ceil((length - segment) / stride)
    return range(0, min(count, math.ceil(length / stride)) * stride, stride)


def read_frames(path: Path, start: int, frames: int) -> np.ndarray:
    """`frames` samples of `path` from `start`, channels averaged, zeros past the end: (frames,)
    float32."""
    try:
        data = sf.read(
            str(path), frames=frames, start=start, dtype="float32", always_2d=True, fill_value=0.0
        )[0]
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioError(f"{path}: cannot read {frames} frames from {start} ({err})") from err
    return data.mean(axis=1)


class PairedSegments(Dataset):
    """(lr, hr) segments of split `split` of the prepared corpus at `root`.

    Items are float32 tensors shaped (1, S) and (1, S·hr_sr/lr_sr) with S = round(segment·lr_sr),
    so the high-resolution length is exactly hr_sr/lr_sr times the low one. Segments start every
    `stride` seconds (default: `segment`); with `pad` file ends are zero-padded, else partial
    segments are dropped. `segment=None` gives whole files (then batch size 1, or equal lengths).
    `min_dbfs` drops segments (or whole files) whose high-resolution RMS level
    10·log10(mean(x²)) is below it, in dB relative to full scale; zero padding counts as
    silence. Being a mean, it does not depend on the segment length: the paper's rule
    sum(x²)/hr_sr >= 1e-3 on 4 s segments is mean(x²) >= 2.5e-4, i.e. -36 dBFS.
    `repeat` maps a group (kind of music, see `aeromamba.data.prepare`) to how many times each
    of its segments is listed: oversampling of a kind the corpus holds little of.
    Files are taken in sorted name order.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        segment: float | None,
        stride: float | None = None,
        lr_sr: int = 11025,
        hr_sr: int = 44100,
        pad: bool = True,
        min_dbfs: float | None = None,
        repeat: Mapping[str, int] | None = None,
    ) -> None:
        self.root = Path(root)
        path = manifest_path(self.root, split)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: manifest of split '{split}' not found")
        manifest, raw = read_manifest(path)
        if (manifest["lr_sr"], manifest["hr_sr"]) != (lr_sr, hr_sr):
            raise ManifestError(
                f"{path}: prepared at {manifest['lr_sr']} / {manifest['hr_sr']} Hz, "
                f"asked for {lr_sr} / {hr_sr} Hz"
            )
        if hr_sr % lr_sr:
            raise ValueError(f"hr_sr {hr_sr} is not a multiple of lr_sr {lr_sr}")
        self.lr_sr, self.hr_sr, self.ratio = lr_sr, hr_sr, hr_sr // lr_sr
        self.manifest = path
        for number, item in enumerate(manifest["items"], 1):
            self._check_item(item, f"{path}: item {number}")
        self.files = sorted(manifest["items"], key=lambda item: item["name"])
        self.segment = None if segment is None else round(segment * lr_sr)
        self.stride = None if segment is None else round((stride or segment) * lr_sr)
        self.index: list[tuple[int, int]] = []  # (file, start in low-resolution samples)
        for i, item in enumerate(self.files):
            if self.segment is None:
                self.index.append((i, 0))
            else:
                starts = segment_starts(item["lr_length"], self.segment, self.stride, pad)
                self.index += [(i, start) for start in starts]
        if min_dbfs is not None:
            settings = {"segment": self.segment, "stride": self.stride, "pad": pad}
            self.index = self._filtered(path, raw, settings | {"min_dbfs": min_dbfs})
        if repeat:
            times = [int(repeat.get(item.get("group", ""), 1)) for item in self.files]
            self.index = [entry for entry in self.index for _ in range(times[entry[0]])]

    def __len__(self) -> int:
        return len(self.index)

    def _check_item(self, item: Any, where: str) -> None:
        """ManifestError unless `item` has its keys, and its files lie inside the corpus with
        the rates and lengths it states."""
        again = _prepare_again(self.root)
        if not isinstance(item, dict):
            raise ManifestError(f"{where}: not a JSON object; {again}")
        if isinstance(item.get("name"), str):
            where = f"{where} ('{item['name']}')"
        for key, kind in ITEM_KEYS.items():
            value = item.get(key)
            if not isinstance(value, kind) or isinstance(value, bool):
                problem = "missing" if key not in item else f"{value!r}, not a {kind.__name__}"
                raise ManifestError(f"{where}: {key} {problem}; {again}")
        if item["hr_length"] != item["lr_length"] * self.ratio:
            raise ManifestError(
                f"{where}: hr_length {item['hr_length']} is not {self.ratio} x lr_length "
                f"{item['lr_length']}; {again}"
            )
        inside = self.root.resolve()
        for key, rate in (("lr", self.lr_sr), ("hr", self.hr_sr)):
            path = self.root / item[key]
            if not path.resolve().is_relative_to(inside):
                raise ManifestError(
                    f"{where}: {key} {item[key]} lies outside the corpus {self.root}; a manifest "
                    f"lists only files of its corpus"
                )
            if not path.is_file():
                raise ManifestError(f"{where}: {path} is missing; {again}")
            try:
                info = sf.info(str(path))
            except (sf.LibsndfileError, RuntimeError) as err:
                raise ManifestError(f"{where}: {path} is not readable audio ({err})") from err
            length = item[f"{key}_length"]
            if (info.samplerate, info.frames) != (rate, length):
                raise ManifestError(
                    f"{where}: {path} holds {info.frames} samples at {info.samplerate} Hz, the "
                    f"manifest says {key}_length {length} at {rate} Hz; {again}"
                )

    def _lengths(self, file: int) -> tuple[int, int]:
        """Samples to read (low, high) for `file`: the segment, or the whole low-res file."""
        frames = self.segment or self.files[file]["lr_length"]
        return frames, frames * self.ratio

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        file, start = self.index[index]
        item = self.files[file]
        lr_frames, hr_frames = self._lengths(file)
        lr_path, hr_path = self.root / item["lr"], self.root / item["hr"]
        lr = _finite(read_frames(lr_path, start, lr_frames), lr_path, start, self.lr_sr)
        hr_start = start * self.ratio
        hr = _finite(read_frames(hr_path, hr_start, hr_frames), hr_path, hr_start, self.hr_sr)
        return torch.from_numpy(lr)[None], torch.from_numpy(hr)[None]

    def describe(self, index: int) -> tuple[str, float]:
        """(item name, start in seconds) of segment `index`, for evaluation reports."""
        file, start = self.index[index]
        return self.files[file]["name"], start / self.lr_sr

    def group(self, index: int) -> str:
        """The group (kind of material) of segment `index`'s file; "" when it has none."""
        return self.files[self.index[index][0]].get("group", "")

    def _level(self, file: int, start: int) -> float:
        """High-resolution RMS level (dBFS, -inf for silence) of the segment at low-res sample
        `start`."""
        _, hr_frames = self._lengths(file)
        path, hr_start = self.root / self.files[file]["hr"], start * self.ratio
        hr = _finite(read_frames(path, hr_start, hr_frames), path, hr_start, self.hr_sr)
        power = float(np.dot(hr.astype(np.float64), hr)) / hr.size
        return 10 * math.log10(power) if power > 0 else -math.inf

    def _filtered(self, manifest: Path, raw: bytes, settings: dict[str, Any]) -> list:
        """The index without segments below `min_dbfs`, from the cache or computed and cached.

        The cache holds the kept segments of each settings key for one manifest content.
        """
        cache_path = manifest.with_name(f"{manifest.stem}.segments.json")
        digest = hashlib.sha256(raw).hexdigest()
        key = json.dumps(settings, sort_keys=True)
        cache = self._read_cache(cache_path, digest)
        kept = self._cached(cache["filters"].get(key))
        if kept is not None:
            return kept
        log.info("measuring segment power of %s (cached in %s)", manifest, cache_path)
        kept = [(f, s) for f, s in self.index if self._level(f, s) >= settings["min_dbfs"]]
        cache["filters"][key] = kept
        try:
            with atomic_path(cache_path) as tmp:
                tmp.write_text(json.dumps(cache) + "\n")
        except OSError as err:  # a read-only corpus still works, it just measures every time
            log.warning("%s: cannot write the segment cache (%s)", cache_path, err)
        return kept

    @staticmethod
    def _read_cache(path: Path, digest: str) -> dict[str, Any]:
        """The segment cache at `path` if it belongs to the manifest of SHA-256 `digest`, else
        an empty one (a damaged cache is measured anew, with a warning)."""
        empty: dict[str, Any] = {"manifest_sha256": digest, "filters": {}}
        if not path.is_file():
            return empty
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            log.warning("%s: damaged segment cache, measured anew (%s)", path, err)
            return empty
        if not isinstance(stored, dict) or not isinstance(stored.get("filters"), dict):
            log.warning("%s: not a segment cache, measured anew", path)
            return empty
        return stored if stored.get("manifest_sha256") == digest else empty

    def _cached(self, entries: Any) -> list[tuple[int, int]] | None:
        """A cached filter's segments, or None when absent or not segments of this index."""
        if not isinstance(entries, list):
            return None
        known = set(self.index)
        try:
            kept = [(int(f), int(s)) for f, s in entries]
        except (TypeError, ValueError):
            return None
        return kept if set(kept) <= known else None
