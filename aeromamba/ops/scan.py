"""The selective scan of Mamba-1 and the causal convolution before it, behind one function
each: `mamba_ssm`/`causal_conv1d`'s fused CUDA kernels when installed, else the project's
Triton kernels on a GPU, the compiled C scan on the CPU, and a blocked PyTorch scan where
neither can run. All compute the mathematics of `aeromamba.ops.scan_ref.selective_scan_ref`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aeromamba.ops.native_scan import native_scan, native_scan_with_grad
from aeromamba.ops.triton_scan import triton_scan

try:  # the fused kernels need CUDA; they cannot even be imported on a CPU-only machine
    from causal_conv1d import causal_conv1d_fn
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
except Exception:  # ImportError, or an OSError/RuntimeError from a broken CUDA build
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

    On CUDA with `mamba_ssm` installed, its fused kernel runs it; else, on a GPU with Triton,
    the kernels of `triton_scan` run it, forward and backward. On the
    CPU, the compiled scan of `native_scan` runs it when it could be built, forward and
    backward. Otherwise the recurrence runs over time in blocks of `block` steps (see
    `_BlockScan`): memory does not grow with L beyond the inputs and outputs, and gradients
    recompute the states.
    """
    if u.is_cuda and fused_kernels_available():
        return selective_scan_fn(
            u,
            delta,
            A,
            B.contiguous(),
            C.contiguous(),
            D.float(),
            z=z.contiguous(),
            delta_bias=delta_bias.float(),
            delta_softplus=True,
        )
    if u.is_cuda:  # None where Triton is unavailable
        out = triton_scan(u, delta, A, B, C, D, z, delta_bias)
        if out is not None:
            return out
    dtype = u.dtype
    u, z = u.float(), z.float()
    delta = F.softplus(delta.float() + delta_bias.float()[:, None])
    A, B, C = A.float(), B.float(), C.float()
    D = D.float()
    with torch.autocast(u.device.type, enabled=False):  # the scan stays float32 under AMP
        if u.device.type == "cpu":  # one compiled kernel; None where it could not be built
            inputs = (u, delta, A, B, C, D, z)
            training = torch.is_grad_enabled() and any(t.requires_grad for t in inputs)
            gated = (native_scan_with_grad if training else native_scan)(*inputs)  # D u, gate
            if gated is not None:
                return gated.to(dtype)
        y = block_scan(u, delta, A, B, C, block)
    y = y + u * D[:, None]
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


# exp() of arguments below float32's range (≈ -87) takes a slow path (10× slower) for a result
# that is 0 to float32 precision; clamping the exponent of exp(Δ A) there changes nothing but
# the speed.
_MIN_LOG_DECAY = -80.0


def _time_major(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """(batch, channels, L) → contiguous (L, batch, channels): every time block is then one
    contiguous slice, read at full speed by the block's element-wise operations."""
    return [t.permute(2, 0, 1).contiguous() for t in tensors]


def _scan_block(decay: torch.Tensor, states: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """In place: states[t] ← decay[t] ⊙ states[t-1] + states[t], with states[-1] = h.

    decay, states: (T, batch, d_inner, d_state), time-major so each step is contiguous.
    """
    previous = h
    for a, x in zip(decay.unbind(0), states.unbind(0), strict=True):  # views made once
        x.addcmul_(a, previous)
        previous = x
    return states


def _block_states(
    drive: torch.Tensor,
    delta: torch.Tensor,
    B: torch.Tensor,
    A: torch.Tensor,
    h: torch.Tensor,
    decay: torch.Tensor,
    states: torch.Tensor,
) -> torch.Tensor:
    """The states h_t of one time block, written into the caller's buffers.

    drive = Δ u and Δ (T, batch, d_inner); B (T, batch, d_state); h the state before the
    block; decay, states (T, batch, d_inner, d_state) are overwritten with exp(Δ A) and h_t.
    Reusing the same buffers for every block keeps them in cache and spares the page
    faults of a fresh allocation per block (they cost more than the arithmetic).
    """
    torch.mul(delta[..., None], A, out=decay).clamp_(min=_MIN_LOG_DECAY).exp_()
    torch.mul(drive[..., None], B[:, :, None, :], out=states)
    return _scan_block(decay, states, h)


def _contract(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(T, batch, m, k) @ (T, batch, k) → (T, batch, m), one batched GEMV, no copies."""
    return torch.matmul(x, v[..., None])[..., 0]


class _BlockScan(torch.autograd.Function):
    """y_t = <C_t, h_t>, h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t u_t B_t, over blocks of time.

    Each block fills reused buffers (block, batch, d_inner, d_state) with its decays and
    inputs, runs the recurrence in place and contracts with C. The state entering each block
    is kept only when a gradient is wanted; the backward pass recomputes a block's states
    and runs the adjoint recurrence λ_t = C_t g_t + exp(Δ_{t+1} A) ⊙ λ_{t+1} backwards in
    the same way. Inputs: u, Δ (batch, d_inner, L); A (d_inner, d_state); B, C
    (batch, d_state, L).
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, block):  # autograd signature
        batch, d_inner, length = u.shape
        ut, dt, bt, ct = _time_major(u, delta, B, C)
        drive = dt * ut
        y = u.new_empty(length, batch, d_inner)
        decay = u.new_empty(min(block, length), batch, d_inner, A.shape[1])
        states = torch.empty_like(decay)
        h = u.new_zeros(batch, d_inner, A.shape[1])
        keep = any(ctx.needs_input_grad)
        starts = []
        for s in range(0, length, block):
            e = min(s + block, length)
            if keep:
                starts.append(h.clone())
            n = e - s
            _block_states(drive[s:e], dt[s:e], bt[s:e], A, h, decay[:n], states[:n])
            h.copy_(states[n - 1])
            # <C_t, h_t> as a multiply and a sum: faster than many tiny GEMVs; the block's
            # states are not needed afterwards
            torch.sum(states[:n].mul_(ct[s:e, :, None, :]), -1, out=y[s:e])
        if keep:  # the time-major copies, so the backward pass does not make them again
            ctx.save_for_backward(ut, dt, A, bt, ct, torch.stack(starts))
        ctx.block = block
        return y.permute(1, 2, 0)

    @staticmethod
    def backward(ctx, grad_y):
        ut, dt, A, bt, ct, starts = ctx.saved_tensors
        block = ctx.block
        length = ut.shape[0]
        (gt,) = _time_major(grad_y.float())
        drive = dt * ut
        grad_u, grad_delta = torch.empty_like(ut), torch.empty_like(dt)
        grad_B, grad_C = torch.empty_like(bt), torch.empty_like(ct)
        grad_A = torch.zeros_like(A)
        decay = ut.new_empty(min(block, length), *starts.shape[1:])
        states, adjoint, previous = (torch.empty_like(decay) for _ in range(3))
        carry = None  # exp(Δ_e A) ⊙ λ_e from the block after the current one
        for index in reversed(range(len(starts))):
            s = index * block
            e = min(s + block, length)
            n = e - s
            dec, sta, adj, prev = decay[:n], states[:n], adjoint[:n], previous[:n]
            _block_states(drive[s:e], dt[s:e], bt[s:e], A, starts[index], dec, sta)
            torch.mul(gt[s:e, ..., None], ct[s:e, :, None, :], out=adj)
            if carry is not None:
                adj[-1] += carry
            for t in range(n - 2, -1, -1):
                adj[t].addcmul_(dec[t + 1], adj[t + 1])
            carry = dec[0] * adj[0]
            prev[0].copy_(starts[index])
            prev[1:].copy_(sta[:-1])
            # d/d(Δ A) of the decay term (in `prev`'s buffer), then the input term Δ u B.
            grad_log_decay = prev.mul_(adj).mul_(dec)
            grad_A += torch.einsum("tbdn,tbd->dn", grad_log_decay, dt[s:e])
            grad_drive = _contract(adj, bt[s:e])
            grad_delta[s:e] = grad_log_decay.mul_(A).sum(-1) + grad_drive * ut[s:e]
            grad_u[s:e] = grad_drive * dt[s:e]
            grad_B[s:e] = _contract(adj.transpose(-1, -2), drive[s:e])
            grad_C[s:e] = _contract(sta.transpose(-1, -2), gt[s:e])
        to_input = lambda g: g.permute(1, 2, 0)  # noqa: E731
        return (
            to_input(grad_u),
            to_input(grad_delta),
            grad_A,
            to_input(grad_B),
            to_input(grad_C),
            None,
        )


def causal_conv1d_silu(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """SiLU(causal depthwise `conv`(x)) on (batch, channels, L) → the same shape: the fused
    `causal_conv1d` kernel on CUDA when installed, else the convolution (padded by
    kernel − 1 on both sides) cut to its first L outputs."""
    if x.is_cuda and fused_kernels_available():
        return causal_conv1d_fn(
            x.contiguous(), conv.weight.squeeze(1), conv.bias, activation="silu"
        )
    return F.silu(conv(x)[..., : x.shape[-1]])
