"""Mamba's selective scan as two Triton kernels, forward and backward, for GPUs without
`mamba_ssm`'s fused kernels: the CUDA scan of inference and of training.

The PyTorch scan launches a few kernels per time step, so on a GPU it is bound by launch
overhead. Here each program takes BLOCK_D channels of one sequence through the whole sequence,
CHUNK steps at a time: a chunk's decays exp(Δ A) and inputs Δ u B fill a (BLOCK_D, d_state,
CHUNK) tile, loaded along time (contiguous, so coalesced), and one associative scan of the
pairs (a, b) ∘ (a', b') = (a a', a' b + b') gives the chunk's states from the state entering
it. Softplus(Δ + bias), D u and the gate SiLU(z) are applied in the same pass, in float32
whatever the inputs' dtype.

For training, the forward pass stores only the state entering each chunk, (batch, d_inner,
L / CHUNK, d_state); the backward kernel walks the chunks in reverse, recomputes a chunk's
states from its stored boundary and runs the adjoint recurrence
    λ_t = C_t g_t + exp(Δ_{t+1} A) ⊙ λ_{t+1}
as a reverse scan of the same pairs. Gradients of u, Δ, z are written per step, those of B and C
per block of channels (buffers d_inner / BLOCK_D times B's size, summed afterwards), those of
A, D and the bias of Δ accumulated in registers over the chunks. Memory grows with the inputs,
not with the states of every step.

Without Triton, off CUDA, or with `AEROMAMBA_TRITON_SCAN=0`, `triton_scan` returns None and the
caller uses another scan. Under TRITON_INTERPRET=1 the kernels run on CPU tensors (the tests).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs
    triton = None


@dataclass(frozen=True)
class Tile:
    """The work of one program: `block_d` channels, `chunk` time steps at a time (powers of
    two; one state per chunk is kept for the backward pass), on `num_warps` warps."""

    block_d: int = 4
    chunk: int = 64
    num_warps: int = 4


def triton_scan_available() -> bool:
    """Whether the Triton scan can run in this process (Triton importable, not switched off)."""
    return triton is not None and os.environ.get("AEROMAMBA_TRITON_SCAN", "1") != "0"


def triton_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    z: torch.Tensor,
    delta_bias: torch.Tensor,
) -> torch.Tensor | None:
    """Mamba's gated scan with softplus(delta + delta_bias) on a CUDA GPU (see
    `selective_scan_triton`), differentiable; None where Triton is unavailable or switched off,
    or the inputs are not on CUDA."""
    if not triton_scan_available() or not u.is_cuda:
        return None
    return selective_scan_triton(u, delta, A, B, C, D, z, delta_bias, delta_softplus=True)


def selective_scan_triton(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    tile: Tile = Tile(),
) -> torch.Tensor:
    """The selective scan of `aeromamba.ops.scan_ref.selective_scan_ref` (same arguments and
    shapes) on whatever device Triton targets, differentiable in every tensor argument.

    Computed in float32 (inputs are cast, so under autocast too); returned in u's dtype.
    `tile` sets the work of one program.
    """
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    dtype = u.dtype
    tensors = [None if t is None else t.float() for t in (u, delta, A, B, C, D, z, delta_bias)]
    # the boundary states are stored only for a backward pass to come
    keep = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    out = _SelectiveScan.apply(*tensors, delta_softplus, tile, keep)
    return out.to(dtype)


def _check_shapes(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
) -> None:
    """ValueError naming the first argument whose shape does not fit u's (batch, d_inner, L)."""
    batch, d_inner, length = u.shape
    d_state = A.shape[-1]
    wanted = {
        "delta": (delta, (batch, d_inner, length)),
        "A": (A, (d_inner, d_state)),
        "B": (B, (batch, d_state, length)),
        "C": (C, (batch, d_state, length)),
        "D": (D, (d_inner,)),
        "z": (z, (batch, d_inner, length)),
        "delta_bias": (delta_bias, (d_inner,)),
    }
    for name, (tensor, shape) in wanted.items():
        if tensor is not None and tuple(tensor.shape) != shape:
            raise ValueError(
                f"selective_scan_triton: {name} has shape {tuple(tensor.shape)}, expected {shape} "
                f"for u of shape {tuple(u.shape)}"
            )


def launch_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    block_d: int = Tile.block_d,
) -> torch.Tensor:
    """The bare recurrence y_t = <C_t, h_t> (no D, no gate, Δ given), forward only: u, delta
    (batch, d_inner, L), A (d_inner, d_state), B, C (batch, d_state, L), float32."""
    tensors = [t.contiguous() for t in (u, delta, A, B, C)]
    out, _ = _forward(*tensors, None, None, None, False, Tile(block_d=block_d), False)
    return out


def _forward(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    softplus: bool,
    tile: Tile,
    save_states: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Launch the forward kernel on contiguous float32 tensors; returns (out, boundary states
    (batch, d_inner, chunks, d_state) or None)."""
    batch, d_inner, length = u.shape
    d_state = A.shape[1]
    chunks = triton.cdiv(length, tile.chunk)
    out = torch.empty_like(u)
    states = u.new_empty(batch, d_inner, chunks, d_state) if save_states else None
    _forward_kernel[(batch, triton.cdiv(d_inner, tile.block_d))](
        u,
        delta,
        A,
        B,
        C,
        _or_dummy(D, u),
        _or_dummy(z, u),
        _or_dummy(delta_bias, u),
        out,
        _or_dummy(states, u),
        d_inner,
        length,
        d_state,
        chunks,
        HAS_D=D is not None,
        HAS_Z=z is not None,
        HAS_BIAS=delta_bias is not None,
        SOFTPLUS=softplus,
        SAVE_STATES=save_states,
        BLOCK_D=tile.block_d,
        STATE=triton.next_power_of_2(d_state),
        CHUNK=tile.chunk,
        num_warps=tile.num_warps,
    )
    return out, states


def _or_dummy(t: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """A pointer for an absent argument (never read: its HAS_ flag is off)."""
    return like if t is None else t


class _SelectiveScan(torch.autograd.Function):
    """The Triton scan with its recomputing backward pass; float32 tensors in and out."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, softplus, tile, keep):
        u, delta, A, B, C = (t.contiguous() for t in (u, delta, A, B, C))
        D, z, delta_bias = (None if t is None else t.contiguous() for t in (D, z, delta_bias))
        out, states = _forward(
            u, delta, A, B, C, D, z, delta_bias, softplus, tile, save_states=keep
        )
        if keep:
            ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, states)
            ctx.softplus, ctx.tile = softplus, tile
        return out

    @staticmethod
    def backward(ctx, grad_out):
        u, delta, A, B, C, D, z, delta_bias, states = ctx.saved_tensors
        batch, d_inner, length = u.shape
        d_state = A.shape[1]
        tile = ctx.tile
        blocks = triton.cdiv(d_inner, tile.block_d)
        grad_u, grad_delta = torch.empty_like(u), torch.empty_like(u)
        grad_z = None if z is None else torch.empty_like(z)
        # per sequence (A, D, bias) or per block of channels (B, C): summed below
        grad_A = u.new_empty(batch, d_inner, d_state)
        grad_D, grad_bias = u.new_empty(batch, d_inner), u.new_empty(batch, d_inner)
        grad_B, grad_C = (u.new_empty(batch, blocks, d_state, length) for _ in range(2))
        _backward_kernel[(batch, blocks)](
            u,
            delta,
            A,
            B,
            C,
            _or_dummy(D, u),
            _or_dummy(z, u),
            _or_dummy(delta_bias, u),
            states,
            grad_out.float().contiguous(),
            grad_u,
            grad_delta,
            _or_dummy(grad_z, u),
            grad_A,
            grad_B,
            grad_C,
            grad_D,
            grad_bias,
            d_inner,
            length,
            d_state,
            states.shape[2],
            blocks,
            HAS_D=D is not None,
            HAS_Z=z is not None,
            HAS_BIAS=delta_bias is not None,
            SOFTPLUS=ctx.softplus,
            BLOCK_D=tile.block_d,
            STATE=triton.next_power_of_2(d_state),
            CHUNK=tile.chunk,
            num_warps=tile.num_warps,
        )
        return (
            grad_u,
            grad_delta,
            grad_A.sum(0),
            grad_B.sum(1),
            grad_C.sum(1),
            None if D is None else grad_D.sum(0),
            grad_z,
            None if delta_bias is None else grad_bias.sum(0),
            None,
            None,
            None,
        )


if triton is not None:

    @triton.jit
    def _compose(a1, b1, a2, b2):
        """The affine map h ↦ a2 (a1 h + b1) + b2: (a1, b1) acts first, then (a2, b2)."""
        return a1 * a2, b1 * a2 + b2

    @triton.jit
    def _softplus(x):
        """log(1 + e^x), exact for small e^x (Goldberg's correction of log(1 + w)); x above 20
        passes through, as in PyTorch and mamba_ssm."""
        w = tl.exp(tl.minimum(x, 20.0))
        v = 1.0 + w
        rounded = v - 1.0  # w as 1 + w kept it; 0 where w is below float32's resolution at 1
        log1p = tl.where(
            rounded == 0.0, w, tl.log(v) * (w / tl.where(rounded == 0.0, 1.0, rounded))
        )
        return tl.where(x > 20.0, x, log1p)

    @triton.jit
    def _chunk_delta(delta_ptr, rows, t, cell, bias, SOFTPLUS: tl.constexpr):
        """(Δ before softplus, Δ) of a (BLOCK_D, CHUNK) tile; Δ is 0 outside the data, so the
        padding has decay 1 and input 0 and carries the state through unchanged."""
        x = tl.load(delta_ptr + rows[:, None] + t[None, :], mask=cell, other=0.0) + bias[:, None]
        dt = x
        if SOFTPLUS:
            dt = _softplus(x)
        return x, tl.where(cell, dt, 0.0)

    @triton.jit
    def _channel_vectors(
        bias_ptr,
        D_ptr,
        channels,
        live,
        HAS_BIAS: tl.constexpr,
        HAS_D: tl.constexpr,
        BLOCK_D: tl.constexpr,
    ):
        """The bias of Δ and D of the program's channels, zeros where absent."""
        bias = tl.zeros((BLOCK_D,), dtype=tl.float32)
        D = tl.zeros((BLOCK_D,), dtype=tl.float32)
        if HAS_BIAS:
            bias = tl.load(bias_ptr + channels, mask=live, other=0.0)
        if HAS_D:
            D = tl.load(D_ptr + channels, mask=live, other=0.0)
        return bias, D

    @triton.jit
    def _chunk_states(dt, u, A, Bt, h0):
        """Decays exp(Δ A), inputs Δ u B and states h of one chunk, (BLOCK_D, STATE, CHUNK),
        from the state h0 (BLOCK_D, STATE) entering it."""
        decay = tl.exp(dt[:, None, :] * A[:, :, None])
        drive = (dt * u)[:, None, :] * Bt[None, :, :]
        gain, offset = tl.associative_scan((decay, drive), axis=2, combine_fn=_compose)
        return decay, drive, gain * h0[:, :, None] + offset

    @triton.jit
    def _forward_kernel(
        u_ptr,
        delta_ptr,
        A_ptr,
        B_ptr,
        C_ptr,
        D_ptr,
        z_ptr,
        bias_ptr,
        out_ptr,
        states_ptr,
        d_inner,
        length,
        d_state,
        chunks,
        HAS_D: tl.constexpr,
        HAS_Z: tl.constexpr,
        HAS_BIAS: tl.constexpr,
        SOFTPLUS: tl.constexpr,
        SAVE_STATES: tl.constexpr,
        BLOCK_D: tl.constexpr,
        STATE: tl.constexpr,
        CHUNK: tl.constexpr,
    ):
        """Program (b, j): channels j·BLOCK_D … of sequence b, states padded to STATE lanes
        (padded lanes and channels have A = B = C = Δ = 0 and stay 0)."""
        b = tl.program_id(0).to(tl.int64)
        channels = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
        lanes = tl.arange(0, STATE)
        steps = tl.arange(0, CHUNK)
        live, used = channels < d_inner, lanes < d_state
        square = live[:, None] & used[None, :]
        A = tl.load(A_ptr + channels[:, None] * d_state + lanes[None, :], mask=square, other=0.0)
        bias, D = _channel_vectors(bias_ptr, D_ptr, channels, live, HAS_BIAS, HAS_D, BLOCK_D)
        rows = (b * d_inner + channels) * length  # (b, channel, t = 0) of u, Δ, z and out
        columns = (b * d_state + lanes) * length  # (b, lane, t = 0) of B and C
        boundary = (b * d_inner + channels)[:, None] * chunks * d_state + lanes[None, :]
        h = tl.zeros((BLOCK_D, STATE), dtype=tl.float32)
        for c in range(chunks):
            t = c * CHUNK + steps
            inside = t < length
            cell = live[:, None] & inside[None, :]
            if SAVE_STATES:
                tl.store(states_ptr + boundary + c * d_state, h, mask=square)
            u = tl.load(u_ptr + rows[:, None] + t[None, :], mask=cell, other=0.0)
            band = used[:, None] & inside[None, :]
            Bt = tl.load(B_ptr + columns[:, None] + t[None, :], mask=band, other=0.0)
            Ct = tl.load(C_ptr + columns[:, None] + t[None, :], mask=band, other=0.0)
            _, dt = _chunk_delta(delta_ptr, rows, t, cell, bias, SOFTPLUS)
            _, _, hs = _chunk_states(dt, u, A, Bt, h)
            h = tl.sum(tl.where(steps == CHUNK - 1, hs, 0.0), axis=2)
            y = tl.sum(hs * Ct[None, :, :], axis=1) + D[:, None] * u
            if HAS_Z:
                z = tl.load(z_ptr + rows[:, None] + t[None, :], mask=cell, other=0.0)
                y = y * z * tl.sigmoid(z)
            tl.store(out_ptr + rows[:, None] + t[None, :], y, mask=cell)

    @triton.jit
    def _backward_kernel(
        u_ptr,
        delta_ptr,
        A_ptr,
        B_ptr,
        C_ptr,
        D_ptr,
        z_ptr,
        bias_ptr,
        states_ptr,
        grad_out_ptr,
        grad_u_ptr,
        grad_delta_ptr,
        grad_z_ptr,
        grad_A_ptr,
        grad_B_ptr,
        grad_C_ptr,
        grad_D_ptr,
        grad_bias_ptr,
        d_inner,
        length,
        d_state,
        chunks,
        blocks,
        HAS_D: tl.constexpr,
        HAS_Z: tl.constexpr,
        HAS_BIAS: tl.constexpr,
        SOFTPLUS: tl.constexpr,
        BLOCK_D: tl.constexpr,
        STATE: tl.constexpr,
        CHUNK: tl.constexpr,
    ):
        """Program (b, j) as in the forward kernel, over the chunks from last to first.
        B's and C's gradients are written per block j, (batch, blocks, d_state, L); A's, D's
        and the bias's per sequence b."""
        b = tl.program_id(0).to(tl.int64)
        block = tl.program_id(1)
        channels = block * BLOCK_D + tl.arange(0, BLOCK_D)
        lanes = tl.arange(0, STATE)
        steps = tl.arange(0, CHUNK)
        live, used = channels < d_inner, lanes < d_state
        square = live[:, None] & used[None, :]
        A = tl.load(A_ptr + channels[:, None] * d_state + lanes[None, :], mask=square, other=0.0)
        bias, D = _channel_vectors(bias_ptr, D_ptr, channels, live, HAS_BIAS, HAS_D, BLOCK_D)
        rows = (b * d_inner + channels) * length
        columns = (b * d_state + lanes) * length
        partials = ((b * blocks + block) * d_state + lanes) * length  # rows of B's, C's grads
        boundary = (b * d_inner + channels)[:, None] * chunks * d_state + lanes[None, :]
        carry = tl.zeros((BLOCK_D, STATE), dtype=tl.float32)  # exp(Δ A) λ at the next chunk
        grad_A = tl.zeros((BLOCK_D, STATE), dtype=tl.float32)
        grad_D = tl.zeros((BLOCK_D,), dtype=tl.float32)
        grad_bias = tl.zeros((BLOCK_D,), dtype=tl.float32)
        for k in range(chunks):
            c = chunks - 1 - k
            t = c * CHUNK + steps
            inside = t < length
            cell = live[:, None] & inside[None, :]
            band = used[:, None] & inside[None, :]
            here = rows[:, None] + t[None, :]
            u = tl.load(u_ptr + here, mask=cell, other=0.0)
            Bt = tl.load(B_ptr + columns[:, None] + t[None, :], mask=band, other=0.0)
            Ct = tl.load(C_ptr + columns[:, None] + t[None, :], mask=band, other=0.0)
            x, dt = _chunk_delta(delta_ptr, rows, t, cell, bias, SOFTPLUS)
            h0 = tl.load(states_ptr + boundary + c * d_state, mask=square, other=0.0)
            decay, drive, hs = _chunk_states(dt, u, A, Bt, h0)
            g = tl.load(grad_out_ptr + here, mask=cell, other=0.0)
            if HAS_Z:
                z = tl.load(z_ptr + here, mask=cell, other=0.0)
                gate = tl.sigmoid(z)
                y = tl.sum(hs * Ct[None, :, :], axis=1) + D[:, None] * u
                # d SiLU(z)/dz = σ(z) (1 + z (1 - σ(z)))
                tl.store(grad_z_ptr + here, g * y * gate * (1.0 + z * (1.0 - gate)), mask=cell)
                g = g * z * gate
            grad_D += tl.sum(g * u, axis=1)
            # λ_t = C_t g_t + exp(Δ_{t+1} A) λ_{t+1}; the last step of the chunk takes the
            # carry from the next chunk instead (its own next decay is then never used)
            _, dt_next = _chunk_delta(
                delta_ptr, rows, t + 1, live[:, None] & (t + 1 < length)[None, :], bias, SOFTPLUS
            )
            decay_next = tl.exp(dt_next[:, None, :] * A[:, :, None])
            source = Ct[None, :, :] * g[:, None, :]
            source += tl.where(steps == CHUNK - 1, carry[:, :, None], 0.0)
            _, adjoint = tl.associative_scan(
                (decay_next, source), axis=2, combine_fn=_compose, reverse=True
            )
            carry = tl.sum(tl.where(steps == 0, decay * adjoint, 0.0), axis=2)
            # d/d(Δ A) of exp(Δ A) h_{t-1} is λ_t exp(Δ_t A) h_{t-1} = λ_t (h_t - Δ_t u_t B_t)
            grad_log_decay = adjoint * (hs - drive)
            grad_A += tl.sum(grad_log_decay * dt[:, None, :], axis=2)
            grad_drive = tl.sum(adjoint * Bt[None, :, :], axis=1)  # ∂/∂(Δ u), (BLOCK_D, CHUNK)
            grad_dt = tl.sum(grad_log_decay * A[:, :, None], axis=1) + grad_drive * u
            if SOFTPLUS:
                grad_dt = tl.where(x > 20.0, grad_dt, grad_dt * tl.sigmoid(x))
            grad_dt = tl.where(cell, grad_dt, 0.0)
            grad_bias += tl.sum(grad_dt, axis=1)
            tl.store(grad_u_ptr + here, grad_drive * dt + g * D[:, None], mask=cell)
            tl.store(grad_delta_ptr + here, grad_dt, mask=cell)
            grad_B = tl.sum(adjoint * (dt * u)[:, None, :], axis=0)
            grad_C = tl.sum(hs * g[:, None, :], axis=0)
            tl.store(grad_B_ptr + partials[:, None] + t[None, :], grad_B, mask=band)
            tl.store(grad_C_ptr + partials[:, None] + t[None, :], grad_C, mask=band)
        per_channel = (b * d_inner + channels) * d_state
        tl.store(grad_A_ptr + per_channel[:, None] + lanes[None, :], grad_A, mask=square)
        tl.store(grad_D_ptr + b * d_inner + channels, grad_D, mask=live)
        tl.store(grad_bias_ptr + b * d_inner + channels, grad_bias, mask=live)
