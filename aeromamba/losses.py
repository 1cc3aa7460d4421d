"""Training losses: multi-resolution STFT, multi-resolution log-mel, band envelope, hinge GAN
and feature matching.

Waveforms are (B, 1, L); discriminator outputs are, per scale, the list of every layer's
features, the last one being the score map.
"""

from __future__ import annotations

import math

import torch
from torch import nn

RESOLUTIONS = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))
# (n_fft = window, hop, mel bands) of the mel loss: three of the window lengths that HiFi-GAN and
# descript-audio-codec compare at, with bands growing with the window
MEL_RESOLUTIONS = ((512, 128, 40), (1024, 256, 80), (2048, 512, 160))


class MultiResolutionSTFTLoss(nn.Module):
    """0.5 · spectral convergence + 0.5 · L1 of log magnitudes, each averaged over the
    resolutions (n_fft, hop, win) with Hann windows.

    With `min_freq` > 0 (Hz, at sample rate `sr`) both terms see only the bins from
    `min_freq` up: the loss of the generated band alone.
    """

    def __init__(
        self,
        resolutions: tuple[tuple[int, int, int], ...] = RESOLUTIONS,
        sr: int = 44100,
        min_freq: float = 0.0,
    ) -> None:
        super().__init__()
        self.resolutions = resolutions
        self.first_bins = [math.ceil(min_freq * n_fft / sr) for n_fft, _, _ in resolutions]
        for index, (_, _, win) in enumerate(resolutions):
            self.register_buffer(f"window{index}", torch.hann_window(win), persistent=False)

    def _magnitude(self, x: torch.Tensor, index: int) -> torch.Tensor:
        n_fft, hop, win = self.resolutions[index]
        z = torch.stft(
            x.reshape(-1, x.shape[-1]),
            n_fft,
            hop,
            win,
            getattr(self, f"window{index}"),
            return_complex=True,
        )
        z = z[:, self.first_bins[index] :]
        return torch.sqrt(torch.clamp(z.real**2 + z.imag**2, min=1e-7))

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        sc = logmag = 0.0
        for index in range(len(self.resolutions)):
            est = self._magnitude(estimate.float(), index)
            ref = self._magnitude(target.float(), index)
            sc = sc + torch.linalg.norm(ref - est) / torch.linalg.norm(ref)
            logmag = logmag + (ref.log() - est.log()).abs().mean()
        count = len(self.resolutions)
        return 0.5 * sc / count + 0.5 * logmag / count


def mel_filterbank(n_fft: int, n_mels: int, sr: int) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters, equally spaced on the HTK mel scale from 0 Hz
    to sr / 2, each of unit peak."""

    def mel(hz: torch.Tensor) -> torch.Tensor:
        return 2595.0 * torch.log10(1.0 + hz / 700.0)

    top = mel(torch.tensor(sr / 2, dtype=torch.float64))
    edges = 700.0 * (10.0 ** (torch.linspace(0.0, float(top), n_mels + 2) / 2595.0) - 1.0)
    bins = torch.linspace(0.0, sr / 2, n_fft // 2 + 1, dtype=torch.float64)
    low, centre, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - low) / (centre - low)
    falling = (high - bins) / (high - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0).float()


class MultiResolutionMelLoss(nn.Module):
    """Mean over resolutions of the L1 distance between log10 mel spectrograms (magnitudes).

    Every mel band weighs the same whatever its energy, so a band 10 dB too quiet costs as much
    where the music is dark as where it is bright (unlike spectral convergence, which the loud
    low bands dominate).
    """

    def __init__(self, sr: int, resolutions: tuple[tuple[int, int, int], ...] = MEL_RESOLUTIONS):
        super().__init__()
        self.resolutions = resolutions
        for index, (n_fft, _, n_mels) in enumerate(resolutions):
            self.register_buffer(f"window{index}", torch.hann_window(n_fft), persistent=False)
            self.register_buffer(
                f"filters{index}", mel_filterbank(n_fft, n_mels, sr), persistent=False
            )

    def _log_mel(self, x: torch.Tensor, index: int) -> torch.Tensor:
        n_fft, hop, _ = self.resolutions[index]
        z = torch.stft(
            x.reshape(-1, x.shape[-1]).float(),
            n_fft,
            hop,
            n_fft,
            getattr(self, f"window{index}"),
            return_complex=True,
        )
        mel = getattr(self, f"filters{index}") @ z.abs()
        return torch.log10(torch.clamp(mel, min=1e-5))

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = sum(
            (self._log_mel(estimate, i) - self._log_mel(target, i)).abs().mean()
            for i in range(len(self.resolutions))
        )
        return total / len(self.resolutions)


#: Edges (Hz) of the bands of the band envelope loss: the high band of an 11,025 Hz input,
#: 5.5-20 kHz, in eight bands about a third of an octave wide at the bottom.
ENVELOPE_EDGES = (11025 / 2, 7000.0, 8500.0, 10000.0, 12000.0, 14000.0, 16000.0, 18000.0, 20000.0)


class BandEnvelopeLoss(nn.Module):
    """Level and envelope of the high band, in log10 power (1 = 10 dB), estimate against target.

    One STFT (n_fft 1024, hop 256, Hann); a band's power in a frame is the mean |X|² over its
    bins (`ENVELOPE_EDGES`). Per clip and band: |log10 of the mean power over frames| error (the
    long-term level, as the `band_level` metric measures it) plus the mean over frames of
    |log10 frame power| error (the envelope). Powers are averaged over bins before the log,
    so a noise-like band has no log-domain bias toward dull, and every band weighs alike
    however quiet it is.
    """

    def __init__(self, sr: int, n_fft: int = 1024, hop: int = 256, floor: float = 1e-9) -> None:
        super().__init__()
        self.n_fft, self.hop, self.floor = n_fft, hop, floor
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        freqs = torch.arange(n_fft // 2 + 1) * (sr / n_fft)
        edges = torch.tensor(ENVELOPE_EDGES)
        member = (freqs[None] > edges[:-1, None]) & (freqs[None] <= edges[1:, None])
        if not member.any(dim=1).all():
            raise ValueError(f"a band of {ENVELOPE_EDGES} has no STFT bin at {sr} Hz")
        averaging = member.float() / member.sum(dim=1, keepdim=True)
        self.register_buffer("averaging", averaging, persistent=False)

    def _band_power(self, x: torch.Tensor) -> torch.Tensor:
        """(clips, bands, frames) mean power per bin of each band."""
        z = torch.stft(
            x.reshape(-1, x.shape[-1]).float(),
            self.n_fft,
            self.hop,
            self.n_fft,
            self.window,
            return_complex=True,
        )
        return self.averaging @ (z.real.square() + z.imag.square())

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        est, ref = self._band_power(estimate), self._band_power(target)
        level = (est.mean(-1) + self.floor).log10() - (ref.mean(-1) + self.floor).log10()
        envelope = (est + self.floor).log10() - (ref + self.floor).log10()
        return level.abs().mean() + envelope.abs().mean()


def discriminator_loss(
    real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]
) -> torch.Tensor:
    """Hinge: Σ_scales mean(relu(1 − D(real))) + mean(relu(1 + D(fake)))."""
    return sum(
        torch.relu(1 - r[-1]).mean() + torch.relu(1 + f[-1]).mean()
        for r, f in zip(real, fake, strict=True)
    )


def generator_adversarial_loss(fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Hinge: Σ_scales mean(relu(1 − D(fake)))."""
    return sum(torch.relu(1 - f[-1]).mean() for f in fake)


def feature_matching_loss(
    real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]], weight: float = 100.0
) -> torch.Tensor:
    """λ · Σ over scales and layers but the last of L1(fake, real.detach()), each term weighted
    (4 / (n_layers + 1)) · (1 / num_D); n_layers + 1 = the layers before the score."""
    num_d = len(real)
    total = 0.0
    for r, f in zip(real, fake, strict=True):
        layer_weight = 4.0 / (len(r) - 2) / num_d
        for rl, fl in zip(r[:-1], f[:-1], strict=True):
            total = total + layer_weight * (fl - rl.detach()).abs().mean()
    return weight * total
