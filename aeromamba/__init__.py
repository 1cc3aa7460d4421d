"""AEROMamba: music audio super-resolution from 11.025 kHz to 44.1 kHz."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def upsample(audio: Any, sr: int, model: Any, **kwargs: Any) -> tuple[Any, int]:
    """Upsample `audio` ((samples,) or (channels, samples) at any rate) with a generator;
    returns (audio at 44.1 kHz, 44100). See `aeromamba.enhance.upsample`."""
    from aeromamba.enhance import upsample as _upsample

    return _upsample(audio, sr, model, **kwargs)
