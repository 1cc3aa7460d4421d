"""Training losses: multi-resolution STFT, hinge GAN and feature matching (spec section 9).

Waveforms are (B, 1, L); discriminator outputs are, per scale, the list of every layer's
features, the last one being the score map.
"""

from __future__ import annotations

import torch
from torch import nn

RESOLUTIONS = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))


class MultiResolutionSTFTLoss(nn.Module):
    """0.5 · spectral convergence + 0.5 · L1 of log magnitudes, each averaged over the
    resolutions (n_fft, hop, win) with Hann windows."""

    def __init__(self, resolutions: tuple[tuple[int, int, int], ...] = RESOLUTIONS) -> None:
        super().__init__()
        self.resolutions = resolutions
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
