"""1×1 convolutions as batched matrix products.

On the CPU, oneDNN runs a 1×1 convolution of a plain (N, C, H, W) tensor through a reorder to
its blocked layout and back, up to 4× slower than one GEMM over the flattened positions (the
FTB's 96 → 48 fusion at 256 rows × 10 s: 0.20 s against 0.05 s). The modules here keep the
parameters, state-dict keys and `isinstance` of `nn.Conv1d` / `nn.Conv2d`.
"""

from __future__ import annotations

import torch
from torch import nn


def pointwise(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Apply a 1×1 convolution (out, in[, 1, 1]) along the channels of (B, in, *positions).

    One batched GEMM (bias folded in) whose output (B, out, *positions) is contiguous.
    """
    batch, positions = x.shape[0], x.shape[2:]
    w = weight.flatten(1).to(x.dtype).expand(batch, -1, -1)
    flat = x.reshape(batch, x.shape[1], -1)
    if bias is None:
        y = torch.bmm(w, flat)
    else:
        y = torch.baddbmm(bias.to(x.dtype)[:, None], w, flat)
    return y.view(batch, -1, *positions)


class _Pointwise:
    """Mixin before `nn.Conv1d`/`nn.Conv2d`: kernel size 1, computed by `pointwise`."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, 1, bias=bias)

    def _conv_forward(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        return pointwise(x, weight, bias)


class PointwiseConv1d(_Pointwise, nn.Conv1d):
    """`nn.Conv1d(in, out, 1)` computed as one GEMM."""


class PointwiseConv2d(_Pointwise, nn.Conv2d):
    """`nn.Conv2d(in, out, 1)` computed as one GEMM."""
