"""MelGAN multi-scale discriminator with weight-normalised convolutions.

Waveform (B, 1, L) → for each scale, the list of every layer's output (features); the last
entry of each list is that scale's score map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class WNConv1d(nn.Module):
    """Conv1d with weight normalisation, weight = g · v / ‖v‖ (norm over all but dim 0).

    The parameters are named `weight_g`, `weight_v` and `bias`, the layout of the MelGAN and
    AEROMamba checkpoints, so their state dicts load as they are.
    """

    def __init__(
        self,
        chin: int,
        chout: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
    ) -> None:
        super().__init__()
        self.stride, self.padding, self.groups = stride, padding, groups
        v = torch.randn(chout, chin // groups, kernel_size) * 0.02
        self.weight_v = nn.Parameter(v)
        self.weight_g = nn.Parameter(v.flatten(1).norm(dim=1).view(chout, 1, 1))
        self.bias = nn.Parameter(torch.zeros(chout))

    @property
    def weight(self) -> torch.Tensor:
        norm = self.weight_v.flatten(1).norm(dim=1).view(-1, 1, 1)
        return self.weight_g * self.weight_v / norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, self.weight, self.bias, self.stride, self.padding, groups=self.groups)


class NLayerDiscriminator(nn.Module):
    """One MelGAN discriminator: strided grouped convolutions, returns every layer's output."""

    def __init__(
        self, ndf: int, n_layers: int, downsampling_factor: int, max_channels: int = 1024
    ) -> None:
        super().__init__()
        stride = downsampling_factor
        layers = {
            "layer_0": nn.Sequential(nn.ReflectionPad1d(7), WNConv1d(1, ndf, 15), nn.LeakyReLU(0.2))
        }
        nf = ndf
        for n in range(1, n_layers + 1):
            nf_prev, nf = nf, min(nf * stride, max_channels)
            layers[f"layer_{n}"] = nn.Sequential(
                WNConv1d(nf_prev, nf, stride * 10 + 1, stride, stride * 5, groups=nf_prev // 4),
                nn.LeakyReLU(0.2),
            )
        nf_prev, nf = nf, min(nf * 2, max_channels)
        layers[f"layer_{n_layers + 1}"] = nn.Sequential(
            WNConv1d(nf_prev, nf, 5, padding=2), nn.LeakyReLU(0.2)
        )
        layers[f"layer_{n_layers + 2}"] = WNConv1d(nf, 1, 3, padding=1)
        self.model = nn.ModuleDict(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for layer in self.model.values():
            x = layer(x)
            features.append(x)
        return features


class MultiScaleDiscriminator(nn.Module):
    """`num_D` discriminators; copy k sees the waveform average-pooled k times.

    Channels grow ×downsampling_factor per layer up to `max_channels` (1024 in MelGAN).
    """

    def __init__(
        self,
        num_D: int = 3,
        ndf: int = 16,
        n_layers: int = 4,
        downsampling_factor: int = 4,
        max_channels: int = 1024,
    ) -> None:
        super().__init__()
        self.kwargs = dict(
            num_D=num_D,
            ndf=ndf,
            n_layers=n_layers,
            downsampling_factor=downsampling_factor,
            max_channels=max_channels,
        )
        self.model = nn.ModuleDict(
            {
                f"disc_{k}": NLayerDiscriminator(ndf, n_layers, downsampling_factor, max_channels)
                for k in range(num_D)
            }
        )
        self.downsample = nn.AvgPool1d(4, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        results = []
        for disc in self.model.values():
            results.append(disc(x))
            x = self.downsample(x)
        return results
