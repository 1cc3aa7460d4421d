"""The AERO spectral U-Net generator and its AEROMamba variants (one implementation).

Waveform (B, 1, L) at lr_sr → complex STFT as 2 channels (B, 2, 256, T) → encoder along
frequency (256 → 64 → 16 → 8 → 4 rows) → decoder fed only by the skips → (B, 2, 256, T) at the
output resolution → inverse STFT → waveform (B, 1, 4L) at hr_sr.

The variant lives in the DConv branch of the encoder layers (see `conf/experiment/`):
`aero` has BiLSTM + local attention from layer `dconv_lstm`/`dconv_time_attn` on;
`aeromamba` runs a Mamba block from layer `dconv_mamba` on; `aeromamba_official` builds a
wider Mamba that is never called (`mamba_executed=False`), as the authors' release does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from aeromamba.models.layers import FTB, DConv, ScaledEmbedding
from aeromamba.ops import PointwiseConv2d, conv2d, conv_transpose_frames
from aeromamba.spec import ispectro, spectro


def _norm(use: bool, groups: int, channels: int) -> nn.Module:
    return nn.GroupNorm(groups, channels) if use else nn.Identity()


class EncoderLayer(nn.Module):
    """One encoder level on (B, chin, F, T) → (B, chout, F/stride, T)."""

    def __init__(
        self,
        chin: int,
        chout: int,
        freq_rows: int,
        kernel_size: int,
        stride: int,
        norm: bool,
        norm_groups: int,
        context: int,
        freq_attn: bool,
        pre_conv_from: int | None,
        dconv_kwargs: dict,
    ) -> None:
        super().__init__()
        if pre_conv_from is not None:
            self.pre_conv = PointwiseConv2d(pre_conv_from, chin)
        self.freq_attn_block = FTB(freq_rows, chin) if freq_attn else None
        pad = (kernel_size - stride) // 2
        self.conv = nn.Conv2d(chin, chout, (kernel_size, 1), (stride, 1), (pad, 0))
        self.norm1 = _norm(norm, norm_groups, chout)
        self.dconv = DConv(chout, freq_rows // stride, **dconv_kwargs)
        self.rewrite = (
            PointwiseConv2d(chout, 2 * chout)
            if context == 0
            else nn.Conv2d(chout, 2 * chout, 1 + 2 * context, 1, context)
        )
        self.norm2 = _norm(norm, norm_groups, 2 * chout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "pre_conv"):
            x = self.pre_conv(x)
        if self.freq_attn_block is not None:
            x = self.freq_attn_block(x)
        x = F.gelu(self.norm1(self.conv(x)))
        x = self.dconv(x)
        return F.glu(self.norm2(self.rewrite(x)), dim=1)


class DecoderLayer(nn.Module):
    """One decoder level: concat(x, skip) (B, chin, F, T) → (B, chout, F·stride, T)."""

    def __init__(
        self,
        chin: int,
        chout: int,
        kernel_size: int,
        stride: int,
        norm: bool,
        norm_groups: int,
        context: int,
        last: bool,
    ) -> None:
        super().__init__()
        self.pad = (kernel_size - stride) // 2
        self.last = last
        self.conv_tr = nn.ConvTranspose2d(chin, chout, (kernel_size, 1), (stride, 1))
        self.norm2 = _norm(norm, norm_groups, chout)
        self.rewrite = nn.Conv2d(chin, 2 * chin, 1 + 2 * context, 1, context)
        self.norm1 = _norm(norm, norm_groups, 2 * chin)

    def forward(self, x: torch.Tensor | None, skip: torch.Tensor) -> torch.Tensor:
        """`x` None stands for zeros (the deepest layer): the rewrite then convolves the skip
        with its half of the weights alone, the same result at half the cost."""
        weight = self.rewrite.weight
        if x is None:
            weight, x = weight[:, skip.shape[1] :], skip
        else:
            x = torch.cat([x, skip], dim=1)
        x = conv2d(x, weight, self.rewrite.bias, self.rewrite.padding)
        x = F.glu(self.norm1(x), dim=1)
        x = self.norm2(conv_transpose_frames(self.conv_tr, x))
        x = x[:, :, self.pad : x.shape[2] - self.pad]
        return x if self.last else F.gelu(x)


class Aero(nn.Module):
    """AERO / AEROMamba generator: (B, 1, L) at `lr_sr` → (B, 1, L·hr_sr/lr_sr) at `hr_sr`.

    Constructor arguments are the keys of `experiment.aero` in `conf/experiment/*.yaml`.
    """

    def __init__(
        self,
        channels: int = 48,
        growth: float = 2,
        nfft: int = 512,
        hop_length: int = 256,
        kernel_size: int = 8,
        strides: Sequence[int] = (4, 4, 2, 2),
        context: int = 1,
        context_enc: int = 0,
        freq_emb: float = 0.2,
        emb_scale: float = 10,
        emb_smooth: bool = True,
        enc_freq_attn: int = 0,
        norm_starts: int = 2,
        norm_groups: int = 4,
        dconv_depth: int = 2,
        dconv_comp: float = 4,
        dconv_init: float = 1e-3,
        dconv_lstm: int = 4,
        dconv_time_attn: int = 4,
        dconv_mamba: int = 0,
        mamba_executed: bool = True,
        mamba_d_state: int = 16,
        mamba_d_conv: int = 4,
        mamba_expand: int = 2,
        act_func: str = "snake",
        rescale: float = 0.1,
        lr_sr: int = 11025,
        hr_sr: int = 44100,
    ) -> None:
        kwargs = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        super().__init__()
        self.kwargs = {**kwargs, "strides": list(strides)}  # what rebuilds this model
        if hr_sr % lr_sr:
            raise ValueError(f"hr_sr ({hr_sr}) must be a multiple of lr_sr ({lr_sr})")
        self.lr_sr, self.hr_sr = lr_sr, hr_sr
        self.scale = hr_sr // lr_sr
        if nfft % self.scale or hop_length % self.scale:
            raise ValueError(f"nfft and hop_length must be multiples of the scale {self.scale}")
        self.nfft = nfft
        self.hop_length = hop_length
        self.in_hop = hop_length // self.scale
        self.freq_emb_scale = freq_emb
        # Windows are buffers (not in the state dict) so they follow .to() and are built once.
        self.register_buffer("in_window", torch.hann_window(nfft // self.scale), persistent=False)
        self.register_buffer("out_window", torch.hann_window(nfft), persistent=False)

        self.encoder = nn.ModuleList()
        self.decoder = nn.ModuleList()
        chin, chout = 2, channels
        rows = nfft // 2
        self.freq_emb = None
        for index, stride in enumerate(strides):
            norm = index >= norm_starts
            dconv_kwargs = dict(
                compress=dconv_comp,
                depth=dconv_depth,
                init=dconv_init,
                act=act_func,
                lstm=index >= dconv_lstm,
                attn=index >= dconv_time_attn,
                mamba=(
                    None if index < dconv_mamba else ("executed" if mamba_executed else "unused")
                ),
                mamba_kwargs=dict(d_state=mamba_d_state, d_conv=mamba_d_conv, expand=mamba_expand),
            )
            enc_in = channels if index == 0 else chin
            self.encoder.append(
                EncoderLayer(
                    enc_in,
                    chout,
                    rows,
                    kernel_size,
                    stride,
                    norm,
                    norm_groups,
                    context_enc,
                    freq_attn=index >= enc_freq_attn,
                    pre_conv_from=chin if index == 0 else None,
                    dconv_kwargs=dconv_kwargs,
                )
            )
            self.decoder.insert(
                0,
                DecoderLayer(
                    2 * chout,
                    chin,
                    kernel_size,
                    stride,
                    norm,
                    norm_groups,
                    context,
                    last=index == 0,
                ),
            )
            rows //= stride
            if index == 0 and freq_emb:
                self.freq_emb = ScaledEmbedding(rows, chout, emb_scale, emb_smooth)
            chin, chout = chout, int(growth * chout)

        if rescale:
            self._rescale_convs(rescale)

    @torch.no_grad()
    def _rescale_convs(self, reference: float) -> None:
        """The release's initialisation: shrink every 1-D (transposed) conv by sqrt(std/ref)."""
        for module in self.modules():
            if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
                factor = (module.weight.std() / reference) ** 0.5
                module.weight /= factor
                if module.bias is not None:
                    module.bias /= factor

    def check_input(self, lr: torch.Tensor, sr: int | None = None) -> None:
        """Raise ValueError unless `lr` is a (B, 1, L ≥ 1) waveform at `lr_sr`."""
        if sr is not None and sr != self.lr_sr:
            raise ValueError(f"the model expects {self.lr_sr} Hz input, got {sr} Hz")
        if lr.dim() != 3 or lr.shape[1] != 1 or lr.shape[-1] < 1:
            raise ValueError(
                f"expected a mono waveform batch (B, 1, L) with L >= 1, got {tuple(lr.shape)}"
            )
        if not lr.is_floating_point():
            raise ValueError(f"expected a floating-point waveform, got {lr.dtype}")

    def _spectrogram(self, lr: torch.Tensor) -> torch.Tensor:
        """(B, 1, L) → (B, 2, F, T): real and imaginary parts of the input's STFT."""
        length = lr.shape[-1]
        # Right-pad to whole hops; very short clips also get enough frames for the
        # reflect padding of the centred STFT.
        padded = max(-(-length // self.in_hop) * self.in_hop, self.nfft // 2 + self.in_hop)
        x = F.pad(lr, (0, padded - length))
        z = spectro(x, self.nfft, self.in_hop, self.in_window)[..., :-1, :]  # (B, 1, F, T)
        return torch.view_as_real(z).permute(0, 1, 4, 2, 3).flatten(1, 2)

    def input_std(self, lr: torch.Tensor, block: int = 2**20) -> torch.Tensor:
        """(B,) standard deviation of the spectrogram values of whole signals (B, 1, L), the
        scale `forward` normalises by, computed `block` samples at a time.

        Passed to `forward` for every chunk of a long signal, it makes the network see each
        chunk at the level it has in the signal, not at its own: the output no longer depends
        on where chunk boundaries fall."""
        total = squares = count = 0.0
        for start in range(0, lr.shape[-1], block):
            x = self._spectrogram(lr[..., start : start + block]).double()
            total = total + x.sum(dim=(1, 2, 3))
            squares = squares + x.square().sum(dim=(1, 2, 3))
            count += x[0].numel()
        mean = total / count
        return (squares / count - mean.square()).clamp(min=0).sqrt().float()

    def forward(
        self, lr: torch.Tensor, sr: int | None = None, input_std: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, 1, L) at lr_sr → (B, 1, scale·L) at hr_sr; `sr`, if given, is checked.

        The spectrogram is normalised to zero mean and unit deviation per row, or divided by
        `input_std` ((B,), see `input_std`) when given."""
        self.check_input(lr, sr)
        batch, length = lr.shape[0], lr.shape[-1]
        x = self._spectrogram(lr)
        if input_std is None:
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            std = x.std(dim=(1, 2, 3), keepdim=True)
        else:
            mean = torch.zeros(batch, 1, 1, 1, dtype=x.dtype, device=x.device)
            std = input_std.to(x.dtype).reshape(batch, 1, 1, 1)
        x = (x - mean) / (1e-5 + std)

        skips = []
        for index, encode in enumerate(self.encoder):
            x = encode(x)
            if index == 0 and self.freq_emb is not None:
                rows = torch.arange(x.shape[-2], device=x.device)
                emb = self.freq_emb(rows).t()[None, :, :, None]
                x = x + self.freq_emb_scale * emb
            skips.append(x)
        x = None  # the decoder starts from zeros: everything arrives through the skips
        for decode in self.decoder:
            x = decode(x, skips.pop())

        x = x * std + mean
        x = x.view(batch, 1, 2, *x.shape[-2:]).permute(0, 1, 3, 4, 2)
        z = torch.view_as_complex(x.contiguous())
        z = F.pad(z, (0, 0, 0, 1))  # the Nyquist row
        return ispectro(z, self.hop_length, self.out_window, self.scale * length)
