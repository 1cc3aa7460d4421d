"""Building blocks of the AERO / AEROMamba generator: frequency transformation block, scaled
frequency embedding, Snake, LayerScale, BiLSTM, local attention and the DConv residual branch.

Shapes: B batch, C channels, F frequency rows, T frames.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from aeromamba.models.mamba import Mamba
from aeromamba.ops import PointwiseConv1d, PointwiseConv2d, conv_bn_relu


class ScaledEmbedding(nn.Module):
    """Embedding whose table is stored divided by `scale` (a larger effective learning rate).

    With `smooth`, the table starts as a normalised random walk over rows, so neighbouring
    frequency rows get similar embeddings.
    """

    def __init__(self, rows: int, dim: int, scale: float = 10.0, smooth: bool = True) -> None:
        super().__init__()
        self.embedding = nn.Embedding(rows, dim)
        if smooth:
            with torch.no_grad():
                walk = torch.randn(rows, dim).cumsum(dim=0)
                walk /= torch.arange(1, rows + 1).sqrt()[:, None]
                self.embedding.weight.copy_(walk)
        with torch.no_grad():
            self.embedding.weight /= scale
        self.scale = scale

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        return self.embedding(index) * self.scale


class FTB(nn.Module):
    """Frequency transformation block on (B, C, D, T): a per-frame channel gate, a learned
    linear map across the D frequency rows, and a 1×1 fusion with the input."""

    def __init__(self, input_dim: int, channels: int, r_channels: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(
            PointwiseConv2d(channels, r_channels), nn.BatchNorm2d(r_channels), nn.ReLU()
        )
        self.conv1d = nn.Sequential(
            nn.Conv1d(r_channels * input_dim, channels, 9, padding=4),
            nn.BatchNorm1d(channels),
            nn.ReLU(),
        )
        self.freq_fc = nn.Linear(input_dim, input_dim, bias=False)
        self.conv2 = nn.Sequential(
            PointwiseConv2d(2 * channels, channels), nn.BatchNorm2d(channels), nn.ReLU()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, rows, frames = x.shape
        gate = conv_bn_relu(self.conv1d, conv_bn_relu(self.conv1, x).reshape(batch, -1, frames))
        # freq_fc along the rows as a left product, one GEMM per (batch, channel) plane:
        # torch.matmul would transpose (B, C, D, T) to (B, C, T, D) and back (3x the time).
        gated = (x * gate.unsqueeze(2)).reshape(-1, rows, frames)
        weight = self.freq_fc.weight.to(gated.dtype).expand(gated.shape[0], -1, -1)
        mixed = torch.bmm(weight, gated).view_as(x)
        return conv_bn_relu(self.conv2, torch.cat([mixed, x], dim=1))


class Snake(nn.Module):
    """Snake activation x + sin²(a·x)/a with one learnable `a` per frequency row.

    Input: (B·F, C, T) sequences whose leading axis is batch-major, frequency-minor.
    """

    def __init__(self, freq_rows: int) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.distributions.Exponential(0.1).sample((freq_rows,)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.a.view(1, -1, 1, 1)
        y = x.view(-1, self.a.numel(), *x.shape[1:])  # (B, F, C, T), no copy
        return (y + torch.sin(a * y).pow(2) / a).view_as(x)


class LayerScale(nn.Module):
    """Per-channel learnable output scale on (N, C, T), initialised small."""

    def __init__(self, channels: int, init: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((channels,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale[:, None] * x


class BLSTM(nn.Module):
    """2-layer bidirectional LSTM with a linear projection and a skip, on (N, C, T).

    Sequences longer than `max_steps` are cut into overlapping frames (width max_steps,
    stride max_steps/2) run independently and stitched, keeping the centre of each.
    """

    def __init__(self, dim: int, layers: int = 2, max_steps: int = 200) -> None:
        super().__init__()
        self.max_steps = max_steps
        self.lstm = nn.LSTM(dim, dim, num_layers=layers, bidirectional=True)
        self.linear = nn.Linear(2 * dim, dim)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lstm(x.permute(2, 0, 1))[0]
        return self.linear(y).permute(1, 2, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, channels, length = x.shape
        if length <= self.max_steps:
            return self._run(x) + x
        width, stride = self.max_steps, self.max_steps // 2
        n_frames = math.ceil(length / stride)
        padded = F.pad(x, (0, (n_frames - 1) * stride + width - length))
        frames = padded.unfold(-1, width, stride)  # (N, C, frames, width)
        frames = frames.permute(0, 2, 1, 3).reshape(-1, channels, width)
        out = self._run(frames).reshape(n, n_frames, channels, width)
        keep = stride // 2
        pieces = [out[:, 0, :, : width - keep]]
        pieces += [out[:, k, :, keep : width - keep] for k in range(1, n_frames - 1)]
        pieces.append(out[:, -1, :, keep:])
        return torch.cat(pieces, dim=-1)[..., :length] + x


ATTENTION_BUDGET = 2**24  # score-matrix elements per query chunk of LocalAttention (64 MB)


class LocalAttention(nn.Module):
    """Multi-head attention over time with a learned, query-dependent distance decay, on
    (N, C, T); a frame never attends to itself."""

    def __init__(self, channels: int, heads: int = 4, ndecay: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.ndecay = ndecay
        self.content = PointwiseConv1d(channels, channels)
        self.query = PointwiseConv1d(channels, channels)
        self.key = PointwiseConv1d(channels, channels)
        self.query_decay = PointwiseConv1d(channels, heads * ndecay)
        with torch.no_grad():
            self.query_decay.weight *= 0.01
            self.query_decay.bias.fill_(-2.0)
        self.proj = PointwiseConv1d(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, channels, length = x.shape
        heads = self.heads
        queries = self.query(x).view(n, heads, -1, length) / math.sqrt(channels / heads)
        keys = self.key(x).view(n, heads, -1, length)
        content = self.content(x).view(n, heads, -1, length)
        # Σ_f -rate_f·|t - s|/sqrt(ndecay)·q_f(s) = -|t - s|·slope(s): one slope per query.
        rates = torch.arange(1, self.ndecay + 1, device=x.device, dtype=x.dtype)
        decay_q = torch.sigmoid(self.query_decay(x).view(n, heads, -1, length)) / 2
        slope = torch.einsum("f,bhfs->bhs", rates, decay_q) / math.sqrt(self.ndecay)
        steps = torch.arange(length, device=x.device, dtype=x.dtype)
        result = torch.empty_like(content)
        # Every query attends to all frames (quadratic time); taking the queries in chunks
        # bounds the score matrix at ATTENTION_BUDGET elements, so memory stays linear.
        chunk = max(1, ATTENTION_BUDGET // (n * heads * length))
        for s0 in range(0, length, chunk):
            s1 = min(s0 + chunk, length)
            scores = torch.einsum("bhct,bhcs->bhts", keys, queries[..., s0:s1])
            distance = (steps[:, None] - steps[None, s0:s1]).abs()  # (t, s)
            scores.addcmul_(distance, slope[:, :, None, s0:s1], value=-1.0)
            weights = torch.softmax(scores.masked_fill_(distance == 0, -100.0), dim=2)
            result[..., s0:s1] = torch.einsum("bhts,bhct->bhcs", weights, content)
        return x + self.proj(result.reshape(n, channels, length))


class DConv(nn.Module):
    """Residual branch of dilated 1-D convolutions along time, on (B, C, F, T).

    Each of `depth` layers: conv (C → C/compress, dilation 2^d) → GroupNorm → activation →
    [BiLSTM + local attention | Mamba] → 1×1 conv to 2C → GroupNorm → GLU → LayerScale,
    added to its input. Frequency rows are folded into the batch: every row is a sequence.

    `mamba` is "executed" (width C/compress, in the sequence path), "unused" (width C,
    registered but never called: the authors' release) or None.
    """

    def __init__(
        self,
        channels: int,
        freq_rows: int,
        compress: float = 4,
        depth: int = 2,
        init: float = 1e-3,
        act: str = "snake",
        lstm: bool = False,
        attn: bool = False,
        mamba: str | None = None,
        mamba_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        if mamba not in (None, "executed", "unused"):
            raise ValueError(f"mamba must be None, 'executed' or 'unused', got {mamba!r}")
        hidden = int(channels / compress)
        self.mamba_executed = mamba == "executed"
        self.layers = nn.ModuleList()
        for d in range(depth):
            dilation = 2**d
            layer = nn.ModuleDict(
                {
                    "conv1": nn.Sequential(
                        nn.Conv1d(channels, hidden, 3, dilation=dilation, padding=dilation),
                        nn.GroupNorm(1, hidden),
                    ),
                    "act": Snake(freq_rows) if act == "snake" else nn.GELU(),
                    "conv2": nn.Sequential(
                        PointwiseConv1d(hidden, 2 * channels),
                        nn.GroupNorm(1, 2 * channels),
                        nn.GLU(1),
                        LayerScale(channels, init),
                    ),
                }
            )
            if lstm:
                layer["lstm"] = BLSTM(hidden)
            if attn:
                layer["time_attn"] = LocalAttention(hidden)
            if mamba is not None:
                width = hidden if self.mamba_executed else channels
                layer["mamba"] = Mamba(width, **(mamba_kwargs or {}))
            self.layers.append(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, rows, frames = x.shape
        x = x.permute(0, 2, 1, 3).reshape(batch * rows, channels, frames)
        for layer in self.layers:
            y = layer["act"](layer["conv1"](x))
            if "lstm" in layer:
                y = layer["lstm"](y)
            if "time_attn" in layer:
                y = layer["time_attn"](y)
            if self.mamba_executed:
                y = layer["mamba"].forward_channels(y)
            x = x + layer["conv2"](y)
        return x.view(batch, rows, channels, frames).permute(0, 2, 1, 3)
