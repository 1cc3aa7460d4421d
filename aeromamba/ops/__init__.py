"""The kernels behind the networks, one function per operation; `aeromamba/models` calls these
and nothing lower. Each fast path computes what its reference computes, as the tests check.

- `selective_scan` (Mamba's scan): `mamba_ssm`'s fused CUDA kernel when installed, the
  project's Triton kernels on a GPU (`triton_scan`), a C kernel on the CPU (`native_scan`),
  a blocked PyTorch scan elsewhere; reference: `selective_scan_ref` (`scan_ref`).
- `causal_conv1d_silu`: `causal_conv1d`'s fused kernel or `nn.Conv1d`.
- `conv2d` (NNPACK for 3×3 CPU inference, `nnpack`), `conv_transpose_frames`,
  `conv_bn_relu` (batch norm folded in eval mode): `conv`.
- `pointwise`, `PointwiseConv1d`, `PointwiseConv2d`: 1×1 convolutions as one GEMM.
"""

from aeromamba.ops.conv import conv2d, conv_bn_relu, conv_transpose_frames
from aeromamba.ops.pointwise import PointwiseConv1d, PointwiseConv2d, pointwise
from aeromamba.ops.scan import causal_conv1d_silu, fused_kernels_available, selective_scan
from aeromamba.ops.scan_ref import selective_scan_ref

__all__ = [
    "PointwiseConv1d",
    "PointwiseConv2d",
    "causal_conv1d_silu",
    "conv2d",
    "conv_bn_relu",
    "conv_transpose_frames",
    "fused_kernels_available",
    "pointwise",
    "selective_scan",
    "selective_scan_ref",
]
