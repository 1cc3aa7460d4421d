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
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from aeromamba.audio import check_audio, resample
from aeromamba.data.bandwidth import MAX_CHANNELS, measure_bandwidth
from aeromamba.devices import AMP_DTYPES
from aeromamba.devices import select_device as select_device  # part of this module's API
from aeromamba.errors import UsageError
from aeromamba.options import MIN_CHUNK as MIN_CHUNK  # part of this module's API
from aeromamba.options import InferenceOptions, OptionError

log = logging.getLogger("aeromamba.inference")
MIN_SECONDS = 0.01  # shorter inputs are refused: too little to resample or listen to
HIGH_BAND_WARNING = 1e-4  # fraction of energy above lr_sr/2 (−40 dB) that deserves a warning
CROSSOVER_START = 0.88  # cap_band: the generated band starts here (× lr_sr/2), below the crossover
CAP_FFT = 2048  # cap_band's and replicate_band's STFT size at hr_sr (46 ms at 44.1 kHz)
CROSSOVER_WIDTH = 600.0  # Hz of raised-cosine transition below the kept band's top
REPLICA_SMOOTH = 0.1  # seconds over which replicate_band follows the input's level
REPLICA_OFFSET = -12.0  # dB: the replicated band starts this far below the top octave's line
REPLICA_STEEPER = 2.0  # the top octave's slope (dB per octave) extended this many times over
REPLICA_FADE = (16000.0, 18000.0)  # Hz: the replicated band fades out (raised cosine) over this
GUARD_HZ = 300.0  # the kept band ends this far below the measured cutoff (its transition)
PASSTHROUGH_HZ = 19500.0  # content reaching this far is left as it is


def _fade(length: int, device: torch.device) -> torch.Tensor:
    """sin² ramp from 0 to 1 over `length` samples; its complement cos² = 1 − ramp."""
    t = (torch.arange(length, device=device, dtype=torch.float32) + 0.5) / length
    return torch.sin(0.5 * math.pi * t) ** 2


def crossover(
    estimate: torch.Tensor,
    lowband: torch.Tensor,
    sr: int,
    cutoff: float,
    width: float = CROSSOVER_WIDTH,
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
    power = _smoothed_power(spec, max(1, round(smooth * sr / hop)))
    freqs = torch.fft.rfftfreq(n_fft, 1 / sr, device=audio.device)
    edge = CROSSOVER_START * cutoff
    top = _level(power, freqs, cutoff / 2, edge)
    slope = (top - _level(power, freqs, cutoff / 4, cutoff / 2)).clamp(max=0)
    generated = freqs >= edge
    octaves = torch.log2(freqs[generated] / (0.75 * edge))[None, :, None]
    excess = 10 * torch.log10(power[:, generated] + 1e-12) - (top + slope * octaves + margin_db)
    gain = torch.ones_like(power)
    gain[:, generated] = 10 ** (-excess.clamp(min=0) / 20)
    return torch.istft(spec * gain, n_fft, hop, window=window, length=audio.shape[-1])


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


def chunk_plan(
    length: int, sr: int, chunk: float, overlap: float
) -> tuple[int, int, list[tuple[int, int]]]:
    """Split `length` samples at `sr` into chunks of `chunk` seconds overlapping by `overlap`
    seconds (at most half a chunk); returns (chunk samples, overlap samples, windows). Window
    (start, skip): the chunk reads [start, start + size) and its first `skip` samples of output
    are dropped. Chunks follow each other every size − overlap samples; the last one reads the
    signal's last `size` samples (real context, not zero padding) and skips what its
    predecessor covers. A signal that fits in one chunk is one chunk of its own length."""
    size = max(1, round(chunk * sr))
    if length <= size:
        return length, 0, [(0, 0)]
    lap = min(round(overlap * sr), size // 2)
    starts = range(0, length - lap, size - lap)
    return size, lap, [(min(s, length - size), s - min(s, length - size)) for s in starts]


def replicate_band(highres: torch.Tensor, sr: int, cutoff: float) -> torch.Tensor:
    """Spectral band replication: `highres` ((C, L) at `sr`) kept whole, and added above
    `cutoff` (a `CROSSOVER_WIDTH` fade-in) the input's own top band shifted up (by whole
    multiples of 4 bins, so that the STFT's phases stay coherent at a hop of a quarter frame),
    shaped per frame (`REPLICA_SMOOTH` seconds) to the level its top octave predicts
    (`top_octave_target`) and faded out over `REPLICA_FADE`, above which mastered music holds
    next to nothing."""
    n_fft, hop = CAP_FFT, CAP_FFT // 4
    window = torch.hann_window(n_fft, device=highres.device)
    spec = torch.stft(highres, n_fft, hop, window=window, pad_mode="constant", return_complex=True)
    freqs = torch.fft.rfftfreq(n_fft, 1 / sr, device=highres.device)
    edge = cutoff - CROSSOVER_WIDTH
    shift = max(4, round(cutoff / 2 / (sr / n_fft) / 4) * 4)
    replica = spec.clone()
    for index in range(int(torch.searchsorted(freqs, edge)), len(freqs)):
        replica[:, index] = replica[:, index - shift]  # copies of copies above 2·shift
    frames = max(1, round(REPLICA_SMOOTH * sr / hop))
    power_in, power_out = (_smoothed_power(x, frames) for x in (spec, replica))
    gain = torch.ones_like(power_out)
    for low, high in _third_octaves(edge, sr / 2):
        band = (freqs >= low) & (freqs < high)
        target = top_octave_target(power_in, freqs, cutoff, math.sqrt(low * high))
        gain[:, band] = 10 ** ((target - _level(power_out, freqs, low, high)) / 20)
    fade_start, fade_end = REPLICA_FADE
    position = ((freqs - fade_start) / (fade_end - fade_start)).clamp(0, 1)
    gain = gain * torch.cos(0.5 * math.pi * position)[:, None] ** 2
    extended = torch.istft(replica * gain, n_fft, hop, window=window, length=highres.shape[-1])
    above = crossover(extended, torch.zeros_like(extended), sr, cutoff + CROSSOVER_WIDTH)
    return highres + above


def _smoothed_power(spec: torch.Tensor, frames: int) -> torch.Tensor:
    """|spec|² averaged over `frames` STFT frames (centred)."""
    power = nn.functional.avg_pool1d(
        spec.abs() ** 2, frames, 1, frames // 2, count_include_pad=False
    )
    return power[..., : spec.shape[-1]]


def _level(power: torch.Tensor, freqs: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """(C, 1, T) dB: mean power of the bins in [low, high)."""
    return 10 * torch.log10(power[:, (freqs >= low) & (freqs < high)].mean(1, True) + 1e-12)


def _third_octaves(low: float, high: float) -> Iterator[tuple[float, float]]:
    """Third-octave bands from `low` to `high` (the last one includes `high`)."""
    while low < high:
        yield low, min(low * 2 ** (1 / 3), high + 1)
        low *= 2 ** (1 / 3)


def top_octave_target(
    power: torch.Tensor, freqs: torch.Tensor, cutoff: float, freq: float
) -> torch.Tensor:
    """(C, 1, T) dB per bin at `freq` that the top octave below the crossover predicts: its
    level, `REPLICA_OFFSET` lower, extended with `REPLICA_STEEPER` times its slope in dB per
    octave (from [cutoff/4, cutoff/2) to [cutoff/2, cutoff − CROSSOVER_WIDTH)), never rising.
    Measured on produced recordings, music falls faster above a lossy cutoff than its top
    octave does, and a fill quieter than the truth costs less than a louder one."""
    edge = cutoff - CROSSOVER_WIDTH
    top = _level(power, freqs, cutoff / 2, edge)
    slope = (top - _level(power, freqs, cutoff / 4, cutoff / 2)).clamp(max=0)
    octaves = math.log2(freq / math.sqrt(cutoff / 2 * edge))
    return top + REPLICA_OFFSET + REPLICA_STEEPER * slope * octaves


def iter_enhance(
    model: nn.Module,
    lr: torch.Tensor,
    options: InferenceOptions | None = None,
    highres: torch.Tensor | None = None,
    cutoff: float | None = None,
) -> Iterator[torch.Tensor]:
    """Yield the output for `lr` (C, L) at `model.lr_sr` chunk by chunk, in order: the (C, ·)
    blocks concatenate to (C, scale·L) at `model.hr_sr`. `options` None: predict's defaults
    with the model's post-processing (`InferenceOptions.for_model`).

    With `options.keep_band`, `highres` (the input at hr_sr, (C, scale·L)) is kept below
    `cutoff` (Hz, see `kept_band`): for a cutoff above lr_sr/2 the band above is replicated
    from the input's top octave (`replicate_band`) and the model is not run; else the model's
    output takes over above lr_sr/2. Without `highres`, the band below lr_sr/2 is `lr`
    soxr-upsampled. Chunks of all channels are batched: max(1, batch_size // C) chunks × C
    rows per pass."""
    options = options or InferenceOptions.for_model(model)
    if not options.keep_band:
        highres, cutoff = None, None
    channels, length = lr.shape
    scale = model.hr_sr // model.lr_sr
    size, lap, windows = chunk_plan(length, model.lr_sr, options.chunk, options.overlap)
    hop = size - lap
    device = model_device(model)
    split = CROSSOVER_START * model.lr_sr / 2  # where the generated band starts
    pending: torch.Tensor | None = None  # the previous chunk's output over the overlap
    per_pass = max(1, options.batch_size // channels)
    stds = None  # each channel's level in the whole signal, for a model that takes it
    if hasattr(model, "input_std"):
        stds = model.input_std(lr[:, None].to(device))
    for first in range(0, len(windows), per_pass):
        group = windows[first : first + per_pass]
        batch = torch.cat([lr[:, s : s + size] for s, _ in group]).to(device)  # (chunks·C, size)
        high = None
        if highres is not None:
            high = torch.cat([highres[:, scale * s : scale * (s + size)] for s, _ in group])
        rows = None if stds is None else stds.repeat(len(group))
        out = _process(model, batch, rows, high, cutoff, options)
        for index, (_, skip) in enumerate(group, start=first):
            y = out[(index - first) * channels : (index - first + 1) * channels, scale * skip :]
            if pending is not None:
                y[:, : scale * lap] = crossfade(pending, y[:, : scale * lap], model.hr_sr, split)
            if index == len(windows) - 1:
                yield y.cpu()
            else:
                pending = y[:, scale * hop :] if lap else None
                yield y[:, : scale * hop].cpu()


def crossfade(tail: torch.Tensor, head: torch.Tensor, sr: int, split: float) -> torch.Tensor:
    """Join two renderings (C, n) of the same stretch of signal, `tail` fading out and `head`
    fading in, at constant power in each band below and above `split` Hz.

    Where two chunks overlap, the band the model generates differs between them (each saw
    other context), so amplitude-complementary fades, right for identical content, would lose
    up to 3 dB of it halfway. Per band, the head's gain is a = sin(πt/2) and the tail's
    b = −ρa + √(1 − a²(1 − ρ²)), with ρ ∈ [0, 1] the renderings' correlation there:
    a + b = 1 for identical content (ρ = 1), a² + b² = 1 for unrelated content (ρ = 0), and
    a² + b² + 2ρab = 1, the power of the sum, in between."""
    n = tail.shape[-1]
    freqs = torch.fft.rfftfreq(n, 1 / sr, device=tail.device)
    spectra = torch.fft.rfft(torch.stack([tail, head]).double())
    a = torch.sin(0.5 * math.pi * (torch.arange(n, device=tail.device) + 0.5) / n).double()
    joined = torch.zeros_like(tail, dtype=torch.float64)
    for band in (freqs < split, freqs >= split):
        old, new = torch.fft.irfft(spectra * band, n=n)
        energy = (old.square().sum(-1) * new.square().sum(-1)).sqrt()
        rho = ((old * new).sum(-1) / energy.clamp(min=1e-30)).clamp(0, 1)[:, None]
        b = -rho * a + torch.sqrt(1 - a.square() * (1 - rho.square()))
        joined += b * old + a * new
    return joined.to(tail.dtype)


def _process(
    model: nn.Module,
    batch: torch.Tensor,
    stds: torch.Tensor | None,
    highres: torch.Tensor | None,
    cutoff: float | None,
    options: InferenceOptions,
) -> torch.Tensor:
    """The output of one batch of chunks (rows, size) at lr_sr: (rows, scale·size) at hr_sr;
    `stds` (rows,): each row's signal's `input_std`, or None."""
    top = model.lr_sr / 2 if cutoff is None else max(cutoff, model.lr_sr / 2)
    if highres is not None and top > model.lr_sr / 2:
        return replicate_band(highres.to(batch.device), model.hr_sr, top)
    with autocast(batch.device, options.amp):
        kwargs = {} if stds is None else {"input_std": stds}
        out = model(batch[:, None], **kwargs)[:, 0].float()
    if options.keep_band or options.keep_lowband:
        lowband = highres
        if lowband is None:
            lowband = torch.from_numpy(resample(batch.cpu().numpy(), model.lr_sr, model.hr_sr))
        out = crossover(out, lowband.to(out.device)[..., : out.shape[-1]], model.hr_sr, top)
    if options.band_cap is not None:
        out = cap_band(out, model.hr_sr, top, options.band_cap)
    return out


def enhance(
    model: nn.Module, lr: torch.Tensor, options: InferenceOptions | None = None
) -> torch.Tensor:
    """(C, L) or (B, 1, L) at model.lr_sr → (C, scale·L) or (B, 1, scale·L) at model.hr_sr,
    chunked and overlap-added (see `iter_enhance`; the input's own band is lr_sr/2)."""
    if lr.dim() == 3 and lr.shape[1] == 1:
        return enhance(model, lr[:, 0], options)[:, None]
    if lr.dim() != 2:
        raise ValueError(f"expected (C, L) or (B, 1, L), got {tuple(lr.shape)}")
    with torch.inference_mode():
        return torch.cat(list(iter_enhance(model, lr, options)), dim=-1)


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


@dataclass(frozen=True)
class BandPlan:
    """What happens to one input's band: `cutoff` (Hz) where its measured content stops (None:
    not measured, keep_band off) and `top` (Hz) where the kept input band ends."""

    cutoff: float | None
    top: float
    lr_sr: int

    @property
    def passthrough(self) -> bool:
        """Content reaching PASSTHROUGH_HZ: nothing is missing, the input is left as it is."""
        return self.cutoff is not None and self.cutoff >= PASSTHROUGH_HZ

    def describe(self) -> str:
        """One phrase for the file's line: the measured cutoff and what was generated."""
        measured = "" if self.cutoff is None else f"content to {self.cutoff / 1000:.1f} kHz, "
        if self.passthrough:
            return f"{measured}passed through unchanged (nothing above is missing)"
        if self.top > self.lr_sr / 2:
            how = "replicated from its top octave"
        else:
            how = "generated by the model"
        return f"{measured}input kept below {self.top / 1000:.1f} kHz, band above {how}"


def plan_band(audio: np.ndarray, sr: int, lr_sr: int, options: InferenceOptions) -> BandPlan:
    """Measure (with keep_band) where the content of `audio` ((C, N) at `sr`) stops
    (`aeromamba.data.bandwidth.measure_bandwidth`) and where its kept band ends: GUARD_HZ
    below that (the cut's own transition), never below lr_sr/2 (the model's input band)."""
    if not options.keep_band:
        return BandPlan(None, lr_sr / 2, lr_sr)
    cutoff = measure_bandwidth(audio, sr)
    return BandPlan(cutoff, max(cutoff - GUARD_HZ, lr_sr / 2), lr_sr)


def channels_first(audio: np.ndarray) -> np.ndarray:
    """soundfile's (samples,) or (samples, channels) as (channels, samples) float32; a layout
    that reads as (channels, samples) is refused with how to pass it."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        return audio[None]
    if audio.ndim != 2:
        raise UsageError(f"audio must be (samples,) or (samples, channels), got {audio.shape}")
    if audio.shape[1] > audio.shape[0] or audio.shape[1] > MAX_CHANNELS:
        raise UsageError(
            f"audio of shape {audio.shape} reads as (channels, samples): pass audio.T "
            "(the layout is soundfile's, (samples, channels))"
        )
    return np.ascontiguousarray(audio.T)


def enhance_signal(
    model: nn.Module, lr: torch.Tensor, audio: np.ndarray, sr: int, options: InferenceOptions
) -> tuple[BandPlan, Iterator[torch.Tensor]]:
    """The plan for one input and its output blocks (as `iter_enhance`): `lr` (C, L) at
    model.lr_sr and `audio` (C, N), the same input at its own rate `sr` (read only with
    keep_band). Content reaching PASSTHROUGH_HZ comes back soxr-resampled, as one block."""
    plan = plan_band(audio, sr, model.lr_sr, options)
    if not options.keep_band:
        return plan, iter_enhance(model, lr, options)
    scale = model.hr_sr // model.lr_sr
    highres = torch.from_numpy(_fit(resample(audio, sr, model.hr_sr), scale * lr.shape[-1]))
    if plan.passthrough:
        return plan, iter([highres])
    return plan, iter_enhance(model, lr, options, highres, plan.top)


def upsample(
    audio: np.ndarray,
    sr: int,
    model: nn.Module,
    options: InferenceOptions | None = None,
    **overrides,
) -> tuple[np.ndarray, int]:
    """Upsample `audio` (soundfile's layout: (samples,) or (samples, channels), any rate) with
    `model`, as predict does: `options` (default `InferenceOptions.for_model(model)`) with
    keyword `overrides`. Returns (audio at model.hr_sr in the same layout, round(samples ·
    hr_sr / sr) samples, model.hr_sr)."""
    options = (options or InferenceOptions.for_model(model)).replace(**overrides)
    audio2d = channels_first(audio)
    check_audio(audio2d, "input", min_samples=max(2, round(MIN_SECONDS * sr)))
    if not options.keep_band:
        above, total = band_energy(audio2d, sr, model.lr_sr / 2)
        warn_discarded("input", above / (total or 1.0), model.lr_sr)
    lr = torch.from_numpy(resample(audio2d, sr, model.lr_sr))
    with torch.inference_mode():
        plan, blocks = enhance_signal(model, lr, audio2d, sr, options)
        out = torch.cat(list(blocks), dim=-1).numpy()
    log.info("input: %s", plan.describe())
    out = _fit(out, round(audio2d.shape[-1] * model.hr_sr / sr))
    return (out[0] if np.ndim(audio) == 1 else out.T), model.hr_sr
