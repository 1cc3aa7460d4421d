"""AEROMamba: music audio super-resolution from 11.025 kHz to 44.1 kHz.

`upsample(audio, sr)` upsamples an array with the model bundled in the package
(`load_pretrained()`, the file `PRETRAINED`); the `aeromamba` command (`python -m aeromamba`)
does the same for files and folders.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

__version__ = "0.1.0"

PRETRAINED = Path(__file__).resolve().parent / "pretrained" / "aeromamba.pt"


def load_pretrained(device: Any = "cpu") -> Any:
    """The bundled generator (`PRETRAINED`) on `device`, in eval mode, with its checkpoint's
    post-processing defaults attached (see `aeromamba.options.load_model`)."""
    from aeromamba.options import load_model

    return load_model(PRETRAINED, device)


@functools.cache
def _bundled_model() -> Any:
    """The bundled generator on the CPU, loaded once for `upsample` calls without a model."""
    return load_pretrained()


def upsample(
    audio: Any, sr: int, model: Any = None, options: Any = None, **overrides: Any
) -> tuple[Any, int]:
    """Upsample `audio` (soundfile's layout: (samples,) or (samples, channels), any rate) with
    a generator (default: the bundled one), as the `aeromamba` command does by default
    (`aeromamba.options.InferenceOptions`, keyword `overrides` such as chunk=20); returns
    (audio at 44.1 kHz, 44100). A (channels, samples) array is refused: pass `audio.T`. See
    `aeromamba.enhance.upsample`."""
    from aeromamba.enhance import upsample as _upsample

    return _upsample(audio, sr, _bundled_model() if model is None else model, options, **overrides)
