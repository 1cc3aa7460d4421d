"""Inference options: one frozen object, validated once where it is made.

`InferenceOptions()` holds predict's defaults; `aeromamba.upsample`, `predict.py` and test.py's
"predict default" system all start from it, so the same call gives the same output.
Post-processing tuned for one model (`band_cap`) is not a global default: it lives in each
checkpoint's metadata (`POSTPROCESSING` keys; absent = off, as in the authors' release files)
and `for_model` reads it unless the caller overrides it.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from aeromamba.devices import AMP_DTYPES
from aeromamba.errors import UsageError

# Shortest chunk: the network is trained on 4 s segments and each pass has a fixed cost, so
# tiny chunks only multiply the passes (0.001 s took half an hour for a 2 s file).
MIN_CHUNK = 0.5
POSTPROCESSING = ("band_cap",)  # options a checkpoint's metadata may set for its model


class OptionError(UsageError):
    """An inference option out of its range (chunk, overlap, amp, format); names the option."""


@dataclass(frozen=True)
class InferenceOptions:
    """How a signal goes through the model (predict's defaults).

    chunk, overlap: seconds of model-rate input per pass and of cross-fade between passes.
    batch_size: rows per forward pass (max(1, batch_size // channels) chunks × channels).
    keep_band: measure where the input's real content stops and keep the input below it; the
        model's output (shaped to continue the input's top octave) only fills the band above.
    keep_lowband: without keep_band, take the band below lr_sr/2 from the input; both off is
        the paper's protocol (the network's whole band).
    band_cap: dB margin of `aeromamba.enhance.cap_band` on the generated band; None = off.
    amp: none, bf16 or fp16 autocast (`aeromamba.enhance.autocast`).
    """

    chunk: float = 10.0
    overlap: float = 1.0
    batch_size: int = 4
    keep_band: bool = True
    keep_lowband: bool = True
    band_cap: float | None = None
    amp: str = "none"

    def __post_init__(self) -> None:
        if not _is_number(self.chunk) or not self.chunk >= MIN_CHUNK:
            raise OptionError(f"chunk must be at least {MIN_CHUNK} s, got {self.chunk!r}")
        if not _is_number(self.overlap) or not self.overlap >= 0:
            raise OptionError(f"overlap must be at least 0 s, got {self.overlap!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int):
            raise OptionError(f"batch_size must be a whole number, got {self.batch_size!r}")
        if self.batch_size < 1:
            raise OptionError(f"batch_size must be at least 1, got {self.batch_size}")
        for name in ("keep_band", "keep_lowband"):
            if not isinstance(getattr(self, name), bool):
                raise OptionError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.band_cap is not None and not (
            _is_number(self.band_cap) and math.isfinite(self.band_cap)
        ):
            raise OptionError(
                f"band_cap must be a number of dB or null (off), got {self.band_cap!r}"
            )
        if self.amp != "none" and self.amp not in AMP_DTYPES:
            raise OptionError(f"amp must be none, bf16 or fp16, got {self.amp!r}")

    @classmethod
    def for_model(cls, model: nn.Module | None, **overrides: Any) -> InferenceOptions:
        """Predict's defaults with the model's post-processing (`postprocessing`, from its
        checkpoint), then `overrides` (option names as in the fields; unknown ones refused)."""
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise OptionError(f"unknown inference option(s) {', '.join(unknown)}")
        return cls(**{**postprocessing(model), **overrides})

    @classmethod
    def from_config(cls, model: nn.Module | None, config: Mapping[str, Any]) -> InferenceOptions:
        """`for_model` with the fields found in `config` (predict's and test.py's options):
        band_cap null there means the model's own, `off` means none."""
        fields = {f.name for f in dataclasses.fields(cls)}
        overrides = {key: config[key] for key in fields if key in config}
        if overrides.get("band_cap", 0.0) is None:
            del overrides["band_cap"]
        elif overrides.get("band_cap") == "off":
            overrides["band_cap"] = None
        return cls.for_model(model, **overrides)

    def replace(self, **changes: Any) -> InferenceOptions:
        """A copy with `changes`, validated again."""
        return dataclasses.replace(self, **changes)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def checkpoint_postprocessing(package: dict[str, Any]) -> dict[str, Any]:
    """The post-processing options a checkpoint package's metadata sets (`POSTPROCESSING`)."""
    metadata = package.get("metadata") or {}
    return {key: metadata[key] for key in POSTPROCESSING if key in metadata}


def postprocessing(model: nn.Module | None) -> dict[str, Any]:
    """The post-processing options attached to `model` by `load_model` ({} for any other)."""
    return dict(getattr(model, "postprocessing", {}))


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """The generator of a checkpoint, ready for inference, with its checkpoint's
    post-processing options attached (read by `InferenceOptions.for_model`)."""
    from aeromamba.checkpoint import build_generator, load_checkpoint

    package = load_checkpoint(path)
    model = build_generator(package, source=path).to(device)
    model.postprocessing = checkpoint_postprocessing(package)
    return model
