"""The model over a whole signal, in bounded memory: chunks, batching, overlap-add.

Long signals go through the model in chunks (`chunk` seconds, overlapping by `overlap`) that
are batched, and are overlap-added with complementary sin²/cos² fades whose sum is exactly 1,
so chunk boundaries add nothing. `keep_lowband` takes the band below lr_sr/2 from the input
(soxr-upsampled) through a raised-cosine crossover. `upsample` takes audio of any rate and
channel count; `enhance` a tensor at the model's rate. File batch jobs: `aeromamba.inference`.

Input rules: at least `MIN_SECONDS` of audio (and 2 samples), finite samples. Inputs with more
than `HIGH_BAND_WARNING` of their energy above lr_sr/2 get a warning, since the resampling to
lr_sr discards that band.
"""

import contextlib
import logging
import math
import os
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from aeromamba.audio import check_audio, resample
from aeromamba.devices import AMP_DTYPES
from aeromamba.devices import select_device as select_device  # part of this module's API
from aeromamba.errors import UsageError

log = logging.getLogger("aeromamba.inference")
MIN_SECONDS = 0.01  # shorter inputs are refused: too little to resample or listen to
# Shortest chunk: the network is trained on 4 s segments and each pass has a fixed cost, so
# tiny chunks only multiply the passes (0.001 s took half an hour for a 2 s file).
MIN_CHUNK = 0.5
HIGH_BAND_WARNING = 1e-4  # fraction of energy above lr_sr/2 (−40 dB) that deserves a warning
CROSSOVER_START = 0.88  # cap_band: the generated band starts here (× lr_sr/2), below the crossover
CAP_FFT = 2048  # cap_band's STFT size at hr_sr (46 ms at 44.1 kHz)


def _fade(length: int, device: torch.device) -> torch.Tensor:
    """sin² ramp from 0 to 1 over `length` samples; its complement cos² = 1 − ramp."""
    t = (torch.arange(length, device=device, dtype=torch.float32) + 0.5) / length
    return torch.sin(0.5 * math.pi * t) ** 2


def crossover(
    estimate: torch.Tensor, lowband: torch.Tensor, sr: int, cutoff: float, width: float = 600.0
) -> torch.Tensor:
    """Take the band below `cutoff` from `lowband` and the rest from `estimate` (both
    (..., L) at `sr`), with a raised-cosine transition of `width` Hz ending at `cutoff`."""
    freqs = torch.fft.rfftfreq(estimate.shape[-1], 1 / sr, device=estimate.device)
    position = ((cutoff - freqs) / width).clamp(0, 1)  # 1 below cutoff − width, 0 above
    low = torch.sin(0.5 * math.pi * position) ** 2
    mixed = low * torch.fft.rfft(lowband) + (1 - low) * torch.fft.rfft(estimate)
    return torch.fft.irfft(mixed, n=estimate.shape[-1])


def cap_band(
    audio: torch.Tensor, sr: int, cutoff: float, margin_db: float = 0.0, smooth: float = 1.0
) -> torch.Tensor:
    """Attenuate what `audio` ((C, L) at `sr`) holds above the crossover (0.88·`cutoff`, the
    input's band edge) to the level its top octave predicts; nothing is raised.

    Per STFT frame (powers averaged over `smooth` seconds), the slope in dB per octave from
    [cutoff/4, cutoff/2) to [cutoff/2, 0.88·cutoff), never rising, is extended over the
    generated band from the centre of the top octave, `margin_db` above it. Measured on the
    campaign's valid split, predict's ViSQOL rose on dark material (where the network fills
    the band with a flat, too loud tail) and held elsewhere; see docs/design.md.
    """
    n_fft, hop = CAP_FFT, CAP_FFT // 4
    window = torch.hann_window(n_fft, device=audio.device)
    # zero padding at the ends (reflection needs more than n_fft/2 samples: short inputs exist)
    spec = torch.stft(audio, n_fft, hop, window=window, pad_mode="constant", return_complex=True)
    power = spec.abs() ** 2
    frames = max(1, round(smooth * sr / hop))
    power = nn.functional.avg_pool1d(power, frames, 1, frames // 2, count_include_pad=False)
    power = power[..., : spec.shape[-1]]
    freqs = torch.fft.rfftfreq(n_fft, 1 / sr, device=audio.device)
    edge = CROSSOVER_START * cutoff

    def level(low: float, high: float) -> torch.Tensor:  # (C, 1, T) dB
        return 10 * torch.log10(power[:, (freqs >= low) & (freqs < high)].mean(1, True) + 1e-12)

    top = level(cutoff / 2, edge)
    slope = (top - level(cutoff / 4, cutoff / 2)).clamp(max=0)
    generated = freqs >= edge
    octaves = torch.log2(freqs[generated] / (0.75 * edge))[None, :, None]
    excess = 10 * torch.log10(power[:, generated] + 1e-12) - (top + slope * octaves + margin_db)
    gain = torch.ones_like(power)
    gain[:, generated] = 10 ** (-excess.clamp(min=0) / 20)
    return torch.istft(spec * gain, n_fft, hop, window=window, length=audio.shape[-1])


class OptionError(UsageError, ValueError):
    """An inference option out of its range (chunk, overlap, amp, format); names the option."""


def model_device(model: nn.Module) -> torch.device:
    """Where the model's parameters are (the CPU for a model without any)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def cpu_has_native(amp: str) -> bool:
    """Whether this CPU computes `amp` (bf16 or fp16) natively: bf16 with AVX512-BF16 or AMX,
    fp16 with AMX-FP16. Elsewhere oneDNN and MKL fall back to reference kernels: on an AVX2
    AMD EPYC a bf16 3×3 convolution took 100× and a bf16 GEMM 400× the float32 time. A
    PyTorch too old to tell counts as native (nothing is refused on a guess)."""

    def has(feature: str) -> bool:
        probe = getattr(torch.cpu, f"_is_{feature}_supported", None)
        return probe is None or bool(probe())

    if amp == "bf16":
        return has("avx512_bf16") or has("amx_tile")
    return amp == "fp16" and has("amx_fp16")


def check_amp(amp: str, device: torch.device | None = None) -> None:
    """Raise ValueError unless `amp` is none, bf16 or fp16 and, on a CPU `device`, one this
    CPU computes natively (`cpu_has_native`)."""
    if amp != "none" and amp not in AMP_DTYPES:
        raise OptionError(f"amp must be none, bf16 or fp16, got {amp!r}")
    if amp != "none" and device is not None and device.type == "cpu" and not cpu_has_native(amp):
        needs = "AVX512-BF16 or AMX" if amp == "bf16" else "AMX-FP16"
        raise OptionError(
            f"amp={amp} needs a CPU with {needs}; this one "
            f"({torch.backends.cpu.get_cpu_capability()}) would emulate {amp}, about 100x "
            "slower than float32: use amp=none"
        )


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """Mixed precision for inference: `amp` none, bf16 or fp16. Convolutions and matrix
    products then run in that type (the Mamba scan stays float32). On a CPU with AVX512-BF16
    or AMX, bf16 about halves the time of the convolutions; results differ slightly from
    float32 (0.4% relative on the bundled model). A CPU without native support is refused."""
    check_amp(amp, device)
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AMP_DTYPES[amp])


def try_compile(model: nn.Module, chunk: float) -> nn.Module:
    """`torch.compile` the model, checked on one chunk-sized input; the eager model when
    compilation fails (no compiler, unsupported operator, ...)."""
    try:
        compiled = torch.compile(model)
        device = model_device(model)
        with torch.inference_mode():
            compiled(torch.zeros(1, 1, max(1, round(chunk * model.lr_sr)), device=device))
        return compiled
    except Exception as err:  # any failure means: run eagerly
        log.warning("torch.compile failed (%s); running eagerly", err)
        return model


def check_chunking(chunk: float, overlap: float) -> None:
    """OptionError unless chunk >= MIN_CHUNK seconds and overlap >= 0 seconds."""
    if not chunk >= MIN_CHUNK:  # also refuses NaN
        raise OptionError(f"chunk must be at least {MIN_CHUNK} s, got {chunk}")
    if not overlap >= 0:
        raise OptionError(f"overlap must be at least 0 s, got {overlap}")


def check_band_cap(band_cap: float | None) -> None:
    """OptionError unless `band_cap` is None (off) or a finite number of dB."""
    if band_cap is not None and not (
        isinstance(band_cap, (int, float)) and math.isfinite(band_cap)
    ):
        raise OptionError(f"band_cap must be a number of dB or null (off), got {band_cap!r}")


def chunk_plan(length: int, sr: int, chunk: float, overlap: float) -> tuple[int, int, list[int]]:
    """Split `length` samples at `sr` into chunks of `chunk` seconds overlapping by `overlap`
    seconds (at most half a chunk); returns (chunk samples, overlap samples, chunk starts).
    A signal that fits in one chunk is one chunk of its own length. See `check_chunking`."""
    check_chunking(chunk, overlap)
    size = max(1, round(chunk * sr))
    if length <= size:
        return length, 0, [0]
    lap = min(round(overlap * sr), size // 2)
    hop = size - lap
    return size, lap, list(range(0, length - lap, hop))


def iter_enhance(
    model: nn.Module,
    lr: torch.Tensor,
    chunk: float = 10.0,
    overlap: float = 1.0,
    batch_size: int = 4,
    keep_lowband: bool = False,
    amp: str = "none",
    band_cap: float | None = None,
) -> Iterator[torch.Tensor]:
    """Yield the model's output for `lr` (C, L) at `model.lr_sr` chunk by chunk, in order:
    the (C, ·) blocks concatenate to (C, scale·L) at `model.hr_sr`. Chunks of all channels
    are batched together: max(1, batch_size // C) chunks × C rows per forward pass. `amp` =
    bf16/fp16 runs the model under autocast (see `autocast`). `band_cap` (dB, None: off) limits
    the generated band of each chunk with `cap_band`."""
    channels, length = lr.shape
    scale = model.hr_sr // model.lr_sr
    size, lap, starts = chunk_plan(length, model.lr_sr, chunk, overlap)
    hop = size - lap
    device = model_device(model)
    fade_in = _fade(scale * lap, device)
    pending: torch.Tensor | None = None  # the faded-out tail of the previous chunk
    per_pass = max(1, batch_size // channels)
    for first in range(0, len(starts), per_pass):
        group = starts[first : first + per_pass]
        pieces = [
            torch.nn.functional.pad(lr[:, s : s + size], (0, max(0, s + size - length)))
            for s in group
        ]
        batch = torch.cat(pieces).to(device)[:, None]  # (chunks·C, 1, size)
        with autocast(device, amp):
            out = model(batch)[:, 0].float()
        if keep_lowband:
            lowband = torch.from_numpy(
                resample(batch[:, 0].cpu().numpy(), model.lr_sr, model.hr_sr)
            ).to(device)[..., : out.shape[-1]]
            out = crossover(out, lowband, model.hr_sr, model.lr_sr / 2)
        if band_cap is not None:
            out = cap_band(out, model.hr_sr, model.lr_sr / 2, band_cap)
        for index, start in enumerate(group, start=first):
            y = out[(index - first) * channels : (index - first + 1) * channels]
            if pending is not None:
                y[:, : scale * lap] = y[:, : scale * lap] * fade_in + pending
            if index == len(starts) - 1:
                yield y[:, : scale * (length - start)].cpu()
            else:
                pending = y[:, scale * hop :] * (1 - fade_in) if lap else None
                yield y[:, : scale * hop].cpu()


def enhance(model: nn.Module, lr: torch.Tensor, **kwargs) -> torch.Tensor:
    """(C, L) or (B, 1, L) at model.lr_sr → (C, scale·L) or (B, 1, scale·L) at model.hr_sr,
    chunked and overlap-added (keyword arguments of `iter_enhance`)."""
    if lr.dim() == 3 and lr.shape[1] == 1:
        return enhance(model, lr[:, 0], **kwargs)[:, None]
    if lr.dim() != 2:
        raise ValueError(f"expected (C, L) or (B, 1, L), got {tuple(lr.shape)}")
    with torch.inference_mode():
        return torch.cat(list(iter_enhance(model, lr, **kwargs)), dim=-1)


def band_energy(audio: np.ndarray, sr: int, cutoff: float) -> tuple[float, float]:
    """(energy above `cutoff` Hz, total energy) of (C, N), from one rfft per channel."""
    spectrum = np.abs(np.fft.rfft(audio, axis=-1)) ** 2
    freqs = np.fft.rfftfreq(audio.shape[-1], 1 / sr)
    return float(spectrum[..., freqs > cutoff].sum()), float(spectrum.sum())


def warn_discarded(name: str | os.PathLike, fraction: float, lr_sr: int) -> None:
    """Log a warning when `fraction` (of the energy above lr_sr/2) exceeds HIGH_BAND_WARNING."""
    if fraction > HIGH_BAND_WARNING:
        log.warning(
            "%s: %.1f%% of its energy is above %g Hz and is discarded by the resampling to %d Hz",
            name,
            100 * fraction,
            lr_sr / 2,
            lr_sr,
        )


def _fit(audio: np.ndarray, length: int) -> np.ndarray:
    """Crop or zero-pad (C, N) to `length` samples (resamplers round lengths)."""
    return np.pad(audio[:, :length], ((0, 0), (0, max(0, length - audio.shape[-1]))))


def upsample(audio: np.ndarray, sr: int, model: nn.Module, **kwargs) -> tuple[np.ndarray, int]:
    """Upsample `audio` ((samples,) or (channels, samples), any rate) with `model` (keyword
    arguments of `iter_enhance`); returns (audio at model.hr_sr with the same layout and
    round(samples · hr_sr / sr) samples, model.hr_sr)."""
    audio = np.asarray(audio, dtype=np.float32)
    mono = audio.ndim == 1
    audio2d = audio[None] if mono else audio
    check_audio(audio2d, "input", min_samples=max(2, round(MIN_SECONDS * sr)))
    above, total = band_energy(audio2d, sr, model.lr_sr / 2)
    warn_discarded("input", above / (total or 1.0), model.lr_sr)
    lr = torch.from_numpy(resample(audio2d, sr, model.lr_sr))
    out = _fit(enhance(model, lr, **kwargs).numpy(), round(audio2d.shape[-1] * model.hr_sr / sr))
    return (out[0] if mono else out), model.hr_sr
