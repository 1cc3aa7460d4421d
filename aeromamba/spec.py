"""Complex spectrograms with torch.stft, normalised (scale 1/sqrt(n_fft)), centred, reflect-padded.

Shapes: waveforms (..., L); spectrograms (..., n_fft/2 + 1, T) complex.
"""

from __future__ import annotations

import torch


def spectro(x: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor) -> torch.Tensor:
    """STFT of (..., L); `window` may be shorter than n_fft (it is centred in the frame)."""
    shape = x.shape
    z = torch.stft(
        x.reshape(-1, shape[-1]),
        n_fft,
        hop,
        win_length=window.numel(),
        window=window,
        normalized=True,
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    return z.view(*shape[:-1], *z.shape[-2:])


def ispectro(z: torch.Tensor, hop: int, window: torch.Tensor, length: int) -> torch.Tensor:
    """Inverse of `spectro` for (..., n_fft/2 + 1, T) with n_fft = len(window); (..., length)."""
    shape = z.shape
    n_fft = 2 * (shape[-2] - 1)
    x = torch.istft(
        z.reshape(-1, *shape[-2:]),
        n_fft,
        hop,
        win_length=window.numel(),
        window=window,
        normalized=True,
        center=True,
        length=length,
    )
    return x.view(*shape[:-2], length)
