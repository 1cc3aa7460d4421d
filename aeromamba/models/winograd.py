"""3×3 convolution (stride 1, padding 1) by Winograd's minimal filtering F(2×2, 3×3).

A 2×2 output tile costs 16 multiplications per (input, output) channel pair instead of 36:
the overlapping 4×4 input tiles are transformed (Bᵀ d B), the 3×3 kernels too (G g Gᵀ), the 16
transformed planes are multiplied over the channels as 16 matrix products, and each tile is
folded back (Aᵀ m A). This is for CPU inference of the decoder's 3×3 convolutions, the largest
cost of the network there (see `use_winograd`); results match `F.conv2d` to float32 rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Output tiles are computed in blocks of at most this many transformed entries (128 MB of
# float32): the extra memory stays bounded whatever the input's length, and the matrix
# products stay large enough to run near full speed (smaller blocks measured slower).
_BLOCK_ENTRIES = 1 << 25
# Below this many input channels oneDNN's direct convolution is as fast (measured on AVX2).
MIN_CHANNELS = 128


def use_winograd(x: torch.Tensor, in_channels: int) -> bool:
    """Whether `winograd_conv3x3` is the faster path for this input: CPU, float32, no grad."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_grad_enabled()
        and in_channels >= MIN_CHANNELS
    )


def winograd_weight(weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """Transformed (out, in, 3, 3) kernels as (16, out, in), and the bias as (16, out, 1).

    The bias goes on plane (1, 1) alone: both rows of Aᵀ have a 1 there, so it reaches each of
    the four outputs of a tile once.
    """
    g = weight.new_tensor([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
    u = torch.einsum("ik,ockl,jl->ijoc", g, weight, g).reshape(16, *weight.shape[:2])
    planes_bias = weight.new_zeros(16, weight.shape[0], 1)
    if bias is not None:
        planes_bias[5, :, 0] = bias
    return u.contiguous(), planes_bias


def _input_transform(d: torch.Tensor, dim: int, out: torch.Tensor) -> None:
    """Bᵀ along `dim` for 4-wide tiles at stride 2: out[k] for k = 0..3, n tiles each."""
    n = (d.shape[dim] - 2) // 2

    def taps(start: int) -> torch.Tensor:
        return d.narrow(dim, start, 2 * n - 1).unfold(dim, 1, 2).squeeze(-1)

    d0, d1, d2, d3 = taps(0), taps(1), taps(2), taps(3)
    torch.sub(d0, d2, out=out[0])
    torch.add(d1, d2, out=out[1])
    torch.sub(d2, d1, out=out[2])
    torch.sub(d1, d3, out=out[3])


def winograd_conv3x3(x: torch.Tensor, u: torch.Tensor, planes_bias: torch.Tensor) -> torch.Tensor:
    """`F.conv2d(x, weight, bias, padding=1)` for (B, in, H, W) x, from `winograd_weight`."""
    batch, chin, rows, cols = x.shape
    chout = u.shape[1]
    tile_rows, tile_cols = (rows + 1) // 2, (cols + 1) // 2
    # zero padding of 1, plus 1 where H or W is odd so that the tiles cover it
    xp = F.pad(x, (1, 1 + cols % 2, 1, 1 + rows % 2)).transpose(0, 1)  # (in, B, H', W')
    y = x.new_empty(batch, chout, tile_rows, 2, tile_cols, 2)
    y_planes = y.transpose(0, 1)  # (out, B, tile rows, 2, tile cols, 2)
    step = max(1, _BLOCK_ENTRIES // (16 * chout * batch * tile_rows))
    for start in range(0, tile_cols, step):
        n = min(step, tile_cols - start)
        block = xp.narrow(3, 2 * start, 2 * n + 2)
        across = x.new_empty(4, chin, batch, xp.shape[2], n)
        _input_transform(block, 3, across)
        v = x.new_empty(4, 4, chin, batch, tile_rows, n)
        for j in range(4):
            _input_transform(across[j], 2, v[:, j])
        m = torch.baddbmm(planes_bias, u, v.view(16, chin, -1))
        m = m.view(4, 4, chout, batch, tile_rows, n)
        for r, t in enumerate((m[0] + m[1] + m[2], m[1] - m[2] - m[3])):
            out = y_planes[:, :, :, r, start : start + n]
            out[..., 0] = t[0] + t[1] + t[2]
            out[..., 1] = t[1] - t[2] - t[3]
    y = y.view(batch, chout, 2 * tile_rows, 2 * tile_cols)
    return y if (rows % 2, cols % 2) == (0, 0) else y[:, :, :rows, :cols].contiguous()
