"""The sequential reference of Mamba's selective scan, against which the fast scans are tested.

Plain PyTorch, one time step per iteration, in float64 for float64 inputs and float32 for any
other: slow but obviously right, and differentiable by autograd (so its gradients are the
reference too). The argument names and meaning follow `mamba_ssm`'s `selective_scan_ref`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def selective_scan_ref(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """Mamba's selective scan, computed step by step; returned in u's dtype.

    Shapes: u, delta, z (batch, d_inner, L); A (d_inner, d_state); B, C (batch, d_state, L);
    D, delta_bias (d_inner,). With Δ = delta + delta_bias, passed through softplus when
    `delta_softplus`:
        h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t u_t B_t  (h_0 = 0),   y_t = <C_t, h_t> + D u_t,
    and the result is y ⊙ SiLU(z), shape (batch, d_inner, L).
    """
    dtype = u.dtype
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    u, delta, A, B, C = (t.to(compute) for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.to(compute)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    decay = torch.exp(delta[..., None] * A[:, None, :])  # (batch, d_inner, L, d_state)
    drive = (delta * u)[..., None] * B.transpose(1, 2)[:, None]
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    # unbind, not indexing: the backward of x[:, :, t] would build a full-size zero tensor per step
    steps = zip(decay.unbind(2), drive.unbind(2), C.unbind(2), strict=True)
    for a, b, c in steps:
        h = a * h + b
        ys.append((h * c[:, None]).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + D.to(compute)[:, None] * u
    if z is not None:
        y = y * F.silu(z.to(compute))
    return y.to(dtype)
