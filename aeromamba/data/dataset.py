"""Aligned (low, high) resolution segments of a prepared corpus (see `aeromamba.data.prepare`).

Segments are read from disk item by item (soundfile start/frames), never whole files or the
whole corpus. The optional power filter needs a pass over the corpus; it is made once, file by
file, and cached beside the manifest as `{split}.segments.json`, keyed by the settings and the
manifest's SHA-256.
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
from aeromamba.files import atomic_path

log = logging.getLogger(__name__)


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
        raw = path.read_bytes()
        manifest = json.loads(raw)
        if (manifest["lr_sr"], manifest["hr_sr"]) != (lr_sr, hr_sr):
            raise ValueError(
                f"{path}: prepared at {manifest['lr_sr']} / {manifest['hr_sr']} Hz, "
                f"asked for {lr_sr} / {hr_sr} Hz"
            )
        if hr_sr % lr_sr:
            raise ValueError(f"hr_sr {hr_sr} is not a multiple of lr_sr {lr_sr}")
        self.lr_sr, self.hr_sr, self.ratio = lr_sr, hr_sr, hr_sr // lr_sr
        self.files = sorted(manifest["items"], key=lambda item: item["name"])
        for item in self.files:
            for key in ("lr", "hr"):
                if not (self.root / item[key]).is_file():
                    raise FileNotFoundError(
                        f"{self.root / item[key]}: listed in {path} but missing; prepare the "
                        f"corpus again (python scripts/prepare_data.py SRC {self.root})"
                    )
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

    def _lengths(self, file: int) -> tuple[int, int]:
        """Samples to read (low, high) for `file`: the segment, or the whole low-res file."""
        frames = self.segment or self.files[file]["lr_length"]
        return frames, frames * self.ratio

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        file, start = self.index[index]
        item = self.files[file]
        lr_frames, hr_frames = self._lengths(file)
        lr = read_frames(self.root / item["lr"], start, lr_frames)
        hr = read_frames(self.root / item["hr"], start * self.ratio, hr_frames)
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
        hr = read_frames(self.root / self.files[file]["hr"], start * self.ratio, hr_frames)
        power = float(np.dot(hr.astype(np.float64), hr)) / hr.size
        return 10 * math.log10(power) if power > 0 else -math.inf

    def _filtered(self, manifest: Path, raw: bytes, settings: dict[str, Any]) -> list:
        """The index without segments below `min_dbfs`, from the cache or computed and cached.

        The cache holds the kept segments of each settings key for one manifest content.
        """
        cache_path = manifest.with_name(f"{manifest.stem}.segments.json")
        digest = hashlib.sha256(raw).hexdigest()
        key = json.dumps(settings, sort_keys=True)
        cache: dict[str, Any] = {"manifest_sha256": digest, "filters": {}}
        if cache_path.is_file():
            stored = json.loads(cache_path.read_text())
            if stored.get("manifest_sha256") == digest:
                cache = stored
        if key in cache["filters"]:
            return [tuple(entry) for entry in cache["filters"][key]]
        log.info("measuring segment power of %s (cached in %s)", manifest, cache_path)
        kept = [(f, s) for f, s in self.index if self._level(f, s) >= settings["min_dbfs"]]
        cache["filters"][key] = kept
        try:
            with atomic_path(cache_path) as tmp:
                tmp.write_text(json.dumps(cache) + "\n")
        except OSError as err:  # a read-only corpus still works, it just measures every time
            log.warning("%s: cannot write the segment cache (%s)", cache_path, err)
        return kept
