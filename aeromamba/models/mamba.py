"""Mamba-1 block (selective state-space model) with the parameter names of `mamba_ssm`'s `Mamba`.

One module, two executions of the same mathematics:
- on CUDA, when `mamba_ssm` and `causal_conv1d` are installed, their fused kernels;
- everywhere else `selective_scan`, a portable PyTorch scan computed in float32.
A state dict saved from either path loads on the other: the parameters are the same.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

try:  # the fused kernels need CUDA; they cannot even be imported on a CPU-only machine
    from causal_conv1d import causal_conv1d_fn
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
except Exception:  # noqa: BLE001 - ImportError, or an OSError/RuntimeError from a broken CUDA build
    causal_conv1d_fn = None
    selective_scan_fn = None


def fused_kernels_available() -> bool:
    """Whether the `mamba_ssm`/`causal_conv1d` CUDA kernels were imported."""
    return selective_scan_fn is not None and causal_conv1d_fn is not None


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    z: torch.Tensor,
    delta_bias: torch.Tensor,
    block: int = 16,
) -> torch.Tensor:
    """Portable selective scan, computed in float32 whatever the input dtype.

    Shapes: u, delta, z (batch, d_inner, L); A (d_inner, d_state); B, C (batch, d_state, L);
    D, delta_bias (d_inner,). With Δ = softplus(delta + delta_bias):
        h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t u_t,   y_t = <C_t, h_t> + D u_t,
    and the result is y ⊙ SiLU(z), returned in u's dtype, shape (batch, d_inner, L).

    The recurrence runs over time in blocks of `block` steps (see `_BlockScan`): memory does
    not grow with L beyond the inputs and outputs, and gradients recompute the states.
    """
    dtype = u.dtype
    u, z = u.float(), z.float()
    delta = F.softplus(delta.float() + delta_bias.float()[:, None])
    with torch.autocast(u.device.type, enabled=False):  # the scan stays float32 under AMP
        y = block_scan(u, delta, A.float(), B.float(), C.float(), block)
    y = y + u * D.float()[:, None]
    return (y * F.silu(z)).to(dtype)


def block_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    block: int = 16,
) -> torch.Tensor:
    """The core recurrence y_t = <C_t, h_t>, h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t u_t B_t.

    u, delta (Δ, already positive) (batch, d_inner, L); A (d_inner, d_state);
    B, C (batch, d_state, L); float32. Returns y (batch, d_inner, L).
    """
    return _BlockScan.apply(u, delta, A, B, C, block)


def _scan_block(decay: torch.Tensor, states: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """In place: states[t] ← decay[t] ⊙ states[t-1] + states[t], with states[-1] = h.

    decay, states: (T, batch, d_inner, d_state), time-major so each step is contiguous.
    """
    states[0].addcmul_(decay[0], h)
    for t in range(1, states.shape[0]):
        states[t].addcmul_(decay[t], states[t - 1])
    return states


class _BlockScan(torch.autograd.Function):
    """y_t = <C_t, h_t>, h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t u_t B_t, over blocks of time.

    Each block builds its decays and inputs (block, batch, d_inner, d_state), runs the
    recurrence in place and contracts with C; only the state entering each block is kept
    for the backward pass, which recomputes a block's states and runs the adjoint
    recurrence λ_t = C_t g_t + exp(Δ_{t+1} A) ⊙ λ_{t+1} backwards in the same way.
    Inputs: u, Δ (batch, d_inner, L); A (d_inner, d_state); B, C (batch, d_state, L).
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, block):  # noqa: ANN001, ANN205 - autograd signature
        batch, d_inner, length = u.shape
        ut, dt = u.permute(2, 0, 1), delta.permute(2, 0, 1)  # (L, batch, d_inner) views
        bt, ct = B.permute(2, 0, 1), C.permute(2, 0, 1)  # (L, batch, d_state)
        y = u.new_empty(length, batch, d_inner)
        h = u.new_zeros(batch, d_inner, A.shape[1])
        starts = []
        for s in range(0, length, block):
            e = min(s + block, length)
            starts.append(h)
            decay = torch.exp(dt[s:e, ..., None] * A)
            states = (dt[s:e] * ut[s:e])[..., None] * bt[s:e, :, None, :]
            h = _scan_block(decay, states, h)[-1].clone()
            y[s:e] = torch.einsum("tbdn,tbn->tbd", states, ct[s:e])
        if any(ctx.needs_input_grad):
            ctx.save_for_backward(u, delta, A, B, C, torch.stack(starts))
        ctx.block = block
        return y.permute(1, 2, 0)

    @staticmethod
    def backward(ctx, grad_y):  # noqa: ANN001, ANN205
        u, delta, A, B, C, starts = ctx.saved_tensors
        block = ctx.block
        length = u.shape[-1]
        ut, dt = u.permute(2, 0, 1), delta.permute(2, 0, 1)
        bt, ct = B.permute(2, 0, 1), C.permute(2, 0, 1)
        gt = grad_y.float().permute(2, 0, 1)
        grad_u, grad_delta = torch.empty_like(ut), torch.empty_like(dt)
        grad_B, grad_C = torch.empty_like(bt), torch.empty_like(ct)
        grad_A = torch.zeros_like(A)
        carry = None  # exp(Δ_e A) ⊙ λ_e from the block after the current one
        for index in reversed(range(len(starts))):
            s = index * block
            e = min(s + block, length)
            decay = torch.exp(dt[s:e, ..., None] * A)
            drive = (dt[s:e] * ut[s:e])[..., None]  # (T, batch, d_inner, 1)
            states = drive * bt[s:e, :, None, :]
            _scan_block(decay, states, starts[index])
            adjoint = gt[s:e, ..., None] * ct[s:e, :, None, :]
            if carry is not None:
                adjoint[-1] += carry
            for t in range(e - s - 2, -1, -1):
                adjoint[t].addcmul_(decay[t + 1], adjoint[t + 1])
            carry = decay[0] * adjoint[0]
            previous = torch.cat([starts[index][None], states[:-1]])
            # d/d(Δ A) of the decay term, then the input term Δ u B.
            grad_log_decay = adjoint * previous * decay
            grad_A += torch.einsum("tbdn,tbd->dn", grad_log_decay, dt[s:e])
            grad_drive = torch.einsum("tbdn,tbn->tbd", adjoint, bt[s:e])
            grad_delta[s:e] = (grad_log_decay * A).sum(-1) + grad_drive * ut[s:e]
            grad_u[s:e] = grad_drive * dt[s:e]
            grad_B[s:e] = torch.einsum("tbdn,tbd->tbn", adjoint, drive[..., 0])
            grad_C[s:e] = torch.einsum("tbdn,tbd->tbn", states, gt[s:e])
        to_input = lambda g: g.permute(1, 2, 0)  # noqa: E731
        return (
            to_input(grad_u),
            to_input(grad_delta),
            grad_A,
            to_input(grad_B),
            to_input(grad_C),
            None,
        )


class Mamba(nn.Module):
    """Mamba-1 block on (batch, L, d_model) → (batch, L, d_model).

    Parameter names and shapes follow `mamba_ssm.modules.mamba_simple.Mamba`: `in_proj`,
    `conv1d` (depthwise, causal), `x_proj`, `dt_proj`, `A_log`, `D`, `out_proj`.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.d_state = d_state
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv1d = nn.Conv1d(
            self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1
        )
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.A_log = nn.Parameter(
            torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(self.d_inner, 1)
        )
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

        # Mamba's Δ initialisation: softplus(bias) log-uniform in [dt_min, dt_max].
        bound = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -bound, bound)
        dt = torch.exp(
            torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        ).clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse of softplus

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        length = hidden.shape[1]
        xz = self.in_proj(hidden).transpose(1, 2)  # (batch, 2·d_inner, L)
        x, z = xz.chunk(2, dim=1)
        A = -torch.exp(self.A_log.float())
        fused = fused_kernels_available() and hidden.is_cuda
        if fused:
            x = causal_conv1d_fn(
                x.contiguous(), self.conv1d.weight.squeeze(1), self.conv1d.bias, activation="silu"
            )
        else:
            x = F.silu(self.conv1d(x)[..., :length])
        dt, B, C = self.x_proj(x.transpose(1, 2)).split(
            [self.dt_rank, self.d_state, self.d_state], dim=-1
        )
        delta = (dt @ self.dt_proj.weight.T).transpose(1, 2)  # bias is added inside the scan
        B = B.transpose(1, 2).contiguous()
        C = C.transpose(1, 2).contiguous()
        if fused:
            y = selective_scan_fn(
                x,
                delta,
                A,
                B,
                C,
                self.D.float(),
                z=z,
                delta_bias=self.dt_proj.bias.float(),
                delta_softplus=True,
            )
        else:
            y = selective_scan(x, delta, A, B, C, self.D, z, self.dt_proj.bias)
        return self.out_proj(y.transpose(1, 2))
