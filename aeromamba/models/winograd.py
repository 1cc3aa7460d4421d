"""3×3 convolution (stride 1, padding 1) by Winograd's minimal filtering F(4×4, 3×3).

A 4×4 output tile costs 36 multiplications per (input, output) channel pair instead of 144.
The overlapping 6×6 input tiles are transformed (Bᵀ d B), the 3×3 kernels too (G g Gᵀ); the 36
transformed planes are multiplied over the channels as 36 matrix products, and each tile is
folded back (Aᵀ m A). Both tile transforms are one small matrix product each (Kronecker
products of the 1-D transforms). Matrices from Lavin & Gray, "Fast Algorithms for
Convolutional Neural Networks" (2016), interpolation points 0, ±1, ±2, ∞.

This serves CPU inference of the decoder's 3×3 convolutions, the largest cost of the network
there (see `use_winograd`). The results match `F.conv2d` to about 1e-5 of the output's scale.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

_BT = torch.tensor(
    [
        [4, 0, -5, 0, 1, 0],
        [0, -4, -4, 1, 1, 0],
        [0, 4, -4, -1, 1, 0],
        [0, -2, -1, 2, 1, 0],
        [0, 2, -1, -2, 1, 0],
        [0, 4, 0, -5, 0, 1],
    ],
    dtype=torch.float64,
)
_G = torch.tensor(
    [
        [1 / 4, 0, 0],
        [-1 / 6, -1 / 6, -1 / 6],
        [-1 / 6, 1 / 6, -1 / 6],
        [1 / 24, 1 / 12, 1 / 6],
        [1 / 24, -1 / 12, 1 / 6],
        [0, 0, 1],
    ],
    dtype=torch.float64,
)
_AT = torch.tensor(
    [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
    dtype=torch.float64,
)
_TILE, _OUT = 6, 4  # input and output tile sides
_BIAS_PLANE = 1 * _TILE + 1  # column 1 of Aᵀ is all ones: a bias there reaches every output

# Output tiles are computed in blocks of at most this many transformed entries (128 MB of
# float32): the extra memory stays bounded whatever the input's length, and the matrix
# products stay large enough to run near full speed (smaller blocks measured slower).
_BLOCK_ENTRIES = 1 << 25
# Below this many input channels oneDNN's direct convolution is as fast (measured on AVX2:
# even at 96 channels × 64 rows, faster at 48).
MIN_CHANNELS = 128


class WinogradKernel(NamedTuple):
    """A 3×3 convolution's weights in the transformed domain, with the tile transforms."""

    weight: torch.Tensor  # (36, out, in): G g Gᵀ per plane
    bias: torch.Tensor  # (36, out, 1), zero except on `_BIAS_PLANE`
    input_transform: torch.Tensor  # (36, 36): Bᵀ ⊗ Bᵀ
    output_transform: torch.Tensor  # (16, 36): Aᵀ ⊗ Aᵀ


def use_winograd(x: torch.Tensor, in_channels: int) -> bool:
    """Whether `winograd_conv3x3` is the faster path for this input: CPU, float32, no grad."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_grad_enabled()
        and in_channels >= MIN_CHANNELS
    )


def winograd_weight(weight: torch.Tensor, bias: torch.Tensor | None) -> WinogradKernel:
    """Transform (out, in, 3, 3) kernels and their bias. The kernels are transformed in
    float64, a few output channels at a time: precise, and with little memory beside the
    result (4× the kernels' size)."""
    out_channels, in_channels = weight.shape[:2]
    g = _G.to(weight.device)
    planes = weight.new_empty(_TILE, _TILE, out_channels, in_channels)
    for start in range(0, out_channels, 64):
        piece = weight[start : start + 64].double()
        planes[:, :, start : start + 64] = torch.einsum("ik,ockl,jl->ijoc", g, piece, g)
    planes_bias = weight.new_zeros(_TILE * _TILE, out_channels, 1)
    if bias is not None:
        planes_bias[_BIAS_PLANE, :, 0] = bias
    return WinogradKernel(
        planes.view(_TILE * _TILE, out_channels, in_channels),
        planes_bias,
        torch.kron(_BT, _BT).to(weight),
        torch.kron(_AT, _AT).to(weight),
    )


def winograd_conv3x3(x: torch.Tensor, kernel: WinogradKernel) -> torch.Tensor:
    """`F.conv2d(x, weight, bias, padding=1)` for (B, in, H, W) x, from `winograd_weight`."""
    batch, chin, rows, cols = x.shape
    chout = kernel.weight.shape[1]
    tile_rows, tile_cols = -(-rows // _OUT), -(-cols // _OUT)
    # zero padding of 1, and more at the bottom/right so that whole tiles cover the input
    pad = (1, 1 + _OUT * tile_cols - cols, 1, 1 + _OUT * tile_rows - rows)
    xp = F.pad(x, pad).transpose(0, 1)  # (in, B, H', W')
    s_in, s_batch, s_row, s_col = xp.stride()
    y = x.new_empty(batch, chout, tile_rows, _OUT, tile_cols, _OUT)
    step = max(1, _BLOCK_ENTRIES // (_TILE * _TILE * chout * batch * tile_rows))
    for start in range(0, tile_cols, step):
        n = min(step, tile_cols - start)
        tiles = xp.as_strided(  # (6, 6, in, B, tile rows, n): overlapping views, no copy yet
            (_TILE, _TILE, chin, batch, tile_rows, n),
            (s_row, s_col, s_in, s_batch, _OUT * s_row, _OUT * s_col),
            xp.storage_offset() + _OUT * start * s_col,
        )
        v = (kernel.input_transform @ tiles.reshape(_TILE * _TILE, -1)).view(_TILE**2, chin, -1)
        m = torch.baddbmm(kernel.bias, kernel.weight, v)  # (36, out, B·tile rows·n)
        out = kernel.output_transform @ m.view(_TILE * _TILE, -1)
        out = out.view(_OUT, _OUT, chout, batch, tile_rows, n).permute(3, 2, 4, 0, 5, 1)
        y[:, :, :, :, start : start + n].copy_(out)
    y = y.view(batch, chout, _OUT * tile_rows, _OUT * tile_cols)
    return y if y.shape[2:] == x.shape[2:] else y[:, :, :rows, :cols].contiguous()
