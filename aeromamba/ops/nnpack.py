"""3×3 convolutions through NNPACK for CPU inference.

NNPACK (built into PyTorch's CPU wheels) computes a 3×3 convolution by Winograd's minimal
filtering F(6×6, 3×3): 64 multiplications per 6×6 output tile and channel pair instead of 324,
in hand-written AVX2 / NEON kernels. PyTorch itself only picks NNPACK for batches of 16 or
more, so the decoder's 3×3 convolutions call it directly: on the 2-core Zen 3 the decoder's
shapes for 10 s of audio run 2–3× faster than oneDNN's direct convolution
(`scripts/benchmarks/conv3x3.py`). Results match `F.conv2d` to about 1e-5 of the output's
scale. `torch.backends.nnpack.set_flags(False)` turns it off.
"""

from __future__ import annotations

import logging
from functools import cache

import torch
import torch.nn.functional as F

log = logging.getLogger("aeromamba.nnpack")


def use_nnpack(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether `conv3x3` serves `F.conv2d(x, weight, padding=1)`: CPU, float32, no gradient
    wanted, 3×3 kernels, and NNPACK present and switched on."""
    return (
        x.device.type == "cpu"
        and x.dtype == weight.dtype == torch.float32
        and weight.shape[-2:] == (3, 3)
        and not torch.is_grad_enabled()
        and torch._C._get_nnpack_enabled()
        and torch.backends.nnpack.is_available()  # also initialises NNPACK: calls fail before
    )


def nnpack_conv3x3(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """`F.conv2d(x, weight, bias, padding=1)` by NNPACK, one batch item at a time: its batched
    algorithm is slower than oneDNN (batch 4 × 192 channels × 16 rows × 10 s: 2.1 s vs 1.1 s).
    Should NNPACK refuse (it reports only a status), `F.conv2d` computes it instead, with a
    warning the first time each failure is seen."""
    try:
        items = [torch._nnpack_spatial_convolution(i, weight, bias, [1, 1]) for i in x.split(1)]
    except RuntimeError as err:
        _warn_once(f"NNPACK failed ({err}); F.conv2d computes the convolutions it refuses")
        return F.conv2d(x, weight, bias, padding=1)
    return items[0] if len(items) == 1 else torch.cat(items)


@cache
def _warn_once(message: str) -> None:
    log.warning(message)
