"""Mamba-1 block (selective state-space model) with the parameter names of `mamba_ssm`'s `Mamba`.

in_proj → (x, z); x → causal depthwise convolution, SiLU; x → (Δ, B, C); the selective scan
y = SSM(x; Δ, A, B, C) + D x, gated by SiLU(z); out_proj. The kernels that compute the
convolution and the scan (fused CUDA, Triton, C, PyTorch) are chosen in `aeromamba.ops`; a
state dict loads whichever runs: the parameters are the same.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from aeromamba.ops import causal_conv1d_silu, pointwise, selective_scan


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
        """(batch, L, d_model) → (batch, L, d_model), the layout of `mamba_ssm`."""
        return self.forward_channels(hidden.transpose(1, 2)).transpose(1, 2)

    def forward_channels(self, hidden: torch.Tensor) -> torch.Tensor:
        """(batch, d_model, L) → (batch, d_model, L), contiguous: the layout of the DConv
        branch and of the fused kernels, so no transposes are needed on either side."""
        xz = pointwise(hidden, self.in_proj.weight, None)  # (batch, 2·d_inner, L)
        x, z = xz.chunk(2, dim=1)
        x = causal_conv1d_silu(x, self.conv1d)
        dt, B, C = pointwise(x, self.x_proj.weight, None).split(
            [self.dt_rank, self.d_state, self.d_state], dim=1
        )
        delta = pointwise(dt, self.dt_proj.weight, None)  # bias is added inside the scan
        A = -torch.exp(self.A_log.float())
        y = selective_scan(x, delta, A, B, C, self.D, z, self.dt_proj.bias)
        return pointwise(y, self.out_proj.weight, None)
