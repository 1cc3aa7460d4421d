"""The CUDA inference scan: one Triton kernel, for GPUs without `mamba_ssm`'s fused kernels.

The PyTorch scan launches a few kernels per time step (a 10 s clip has 1724 steps in each of
eight Mamba blocks), so on a GPU it is bound by launch overhead. Here each program takes a
few (sequence, channel) rows through the whole sequence with their states in registers, as
the CPU's `native_scan` does: one launch per scan, nothing stored per step. Inference only
(no gradient flows through it). Without Triton, off CUDA, or with `AEROMAMBA_TRITON_SCAN=0`,
`triton_scan` returns None and the caller uses the PyTorch scan.
"""

from __future__ import annotations

import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs
    triton = None

BLOCK_D = 4  # channels per program: at one warp, two state values per thread


def triton_scan_available() -> bool:
    """Whether the Triton scan can run in this process (Triton importable, not switched off)."""
    return triton is not None and os.environ.get("AEROMAMBA_TRITON_SCAN", "1") != "0"


def triton_scan(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor
) -> torch.Tensor | None:
    """y_t = <C_t, h_t>, h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t u_t B_t on a CUDA GPU, or None where
    the kernel is unavailable or the inputs are not CUDA float32.

    u, delta (Δ, already positive) (batch, d_inner, L); A (d_inner, d_state); B, C
    (batch, d_state, L). Returns y (batch, d_inner, L).
    """
    tensors = (u, delta, A, B, C)
    if not triton_scan_available() or any(
        not t.is_cuda or t.dtype != torch.float32 for t in tensors
    ):
        return None
    return launch_scan(*tensors)


def launch_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    block_d: int = BLOCK_D,
) -> torch.Tensor:
    """Run the kernel on whatever device Triton targets (CPU tensors under TRITON_INTERPRET=1);
    `block_d` (a power of two) channels per program."""
    batch, d_inner, length = u.shape
    d_state = A.shape[1]
    u, delta, A, B, C = (t.contiguous() for t in (u, delta, A, B, C))
    y = torch.empty_like(u)
    grid = (batch, triton.cdiv(d_inner, block_d))
    _scan_kernel[grid](
        u,
        delta,
        A,
        B,
        C,
        y,
        d_inner,
        length,
        d_state,
        BLOCK_D=block_d,
        STATE=triton.next_power_of_2(d_state),
        num_warps=1,
    )
    return y


if triton is not None:

    @triton.jit
    def _scan_kernel(
        u_ptr,
        delta_ptr,
        A_ptr,
        B_ptr,
        C_ptr,
        y_ptr,
        d_inner,
        length,
        d_state,
        BLOCK_D: tl.constexpr,
        STATE: tl.constexpr,
    ):
        """Program (b, j): channels j·BLOCK_D … of sequence b, states padded to STATE lanes
        (padded lanes have A = B = C = 0, so their state stays 0 and adds nothing to y)."""
        b = tl.program_id(0).to(tl.int64)
        channels = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
        states = tl.arange(0, STATE)
        live = channels < d_inner
        lanes = states < d_state
        A = tl.load(
            A_ptr + channels[:, None] * d_state + states[None, :],
            mask=live[:, None] & lanes[None, :],
            other=0.0,
        )
        rows = (b * d_inner + channels) * length  # (b, channel, t = 0) of u, Δ and y
        columns = (b * d_state + states) * length  # (b, state, t = 0) of B and C
        h = tl.zeros((BLOCK_D, STATE), dtype=tl.float32)
        for t in range(length):
            u = tl.load(u_ptr + rows + t, mask=live, other=0.0)
            dt = tl.load(delta_ptr + rows + t, mask=live, other=0.0)
            Bt = tl.load(B_ptr + columns + t, mask=lanes, other=0.0)
            Ct = tl.load(C_ptr + columns + t, mask=lanes, other=0.0)
            # clamped as in the PyTorch scan: exp(-80) is already 0 to float32 precision
            decay = tl.exp(tl.maximum(dt[:, None] * A, -80.0))
            h = decay * h + (dt * u)[:, None] * Bt[None, :]
            tl.store(y_ptr + rows + t, tl.sum(h * Ct[None, :], axis=1), mask=live)
