"""AEROMamba: music audio super-resolution from 11.025 kHz to 44.1 kHz."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def upsample(
    audio: Any, sr: int, model: Any, options: Any = None, **overrides: Any
) -> tuple[Any, int]:
    """Upsample `audio` (soundfile's layout: (samples,) or (samples, channels), any rate) with
    a generator, as predict.py does by default (`aeromamba.options.InferenceOptions`, keyword
    `overrides` such as chunk=20); returns (audio at 44.1 kHz, 44100). A (channels, samples)
    array is refused: pass `audio.T`. See `aeromamba.enhance.upsample`."""
    from aeromamba.enhance import upsample as _upsample

    return _upsample(audio, sr, model, options, **overrides)
