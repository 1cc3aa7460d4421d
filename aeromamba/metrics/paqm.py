"""PAQM, the Perceptual Audio Quality Measure (Beerends & Stemerdink 1992), as the project
computes it (`docs/metrics.md`, PAQM): it follows the implementation behind the
AEROMamba(-PAQM) authors' numbers, including its slips (sign-flipped outer-ear table with a
6.4 kHz node of -1 dB, the epsilon added to the reference, the non-monotonic release MOS map).

Both signals become an internal representation: 40 ms Hann frames (50 % overlap) -> 2048-point
power spectrum -> 0.2 Bark bands -> outer-ear gain -> forward masking over frames -> level
dependent spreading over bands -> compressed loudness. The test's loudness is scaled to the
reference per frame in three Bark regions, the absolute difference is summed over bands and the
mean over frames is the score P. **Lower is better**; identical signals give P ~ 1e-9.

Argument order is always (test, reference): the test is the one that gets scaled.

API
    paqm(test, reference, sr=44100, mode="native", name=None) -> float
        One clip, (samples,). `mode="release"` analyses 48 kHz audio with the 44.1 kHz
        constants as the AEROMamba-PAQM release does (44.1 kHz input is resampled first).
    PAQM(sr=44100, mode="native")(test, reference) -> tensor (...)
        Batched, (..., samples) -> (...); every table is built once per instance and device.
    PAQM.details / paqm_details -> PAQMDetails(p, frame_scores (..., M), disturbance (..., B, M))
    mos_release(p), mos_corrected(p): the two MOS maps of `docs/metrics.md` (higher is better).

Shapes: M = floor((L - N_w) / H) + 1 frames, B = ceil(z(fs / 2) / 0.2) bands (99 x 129 for
2 s at 44.1 kHz). Frames where the test (or reference) has exactly zero time-spread power in
some band are NaN and skipped, as in the reference implementation.

Numerics: where the reference rounds to float32 and its stage checkpoints show it, the tables
do the same: the Hann window (torch's float32 `hann_window`), the band centres and edges, the
Bark positions of the outer-ear nodes and the ISO 226 contour. Each moves P by < 1e-5, but the
stage checkpoints by up to 16 % (band 100 of a sine sits on the window's rounding floor, lifted
by the outer-ear gain). The signal path is float64 unless `PAQM(dtype=torch.float32)`.

Speed: test and reference go through one batched pass; the forward-masking recursion is linear
in S^0.6 and runs as a log-depth scan over frames; the spreading below a masker is one matrix
product and above it (level dependent) a table of powers built by doubling. A 10 s clip at
44.1 kHz takes ~25 ms on 2 CPU cores in float64 (~16 ms in float32).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, NamedTuple

import numpy as np
import soxr
import torch
from scipy.interpolate import CubicSpline, PchipInterpolator

__all__ = [
    "PAQM",
    "PAQMDetails",
    "BandTables",
    "band_tables",
    "mos_corrected",
    "mos_release",
    "paqm",
    "paqm_details",
]

Mode = Literal["native", "release"]
ArrayLike = np.ndarray | torch.Tensor

#: Added to every reference sample (float32 machine epsilon), as the reference implementation does.
REFERENCE_EPS = float(np.finfo(np.float32).eps)
N_FFT = 2048
BARK_STEP = 0.2
#: Compression of the time spreading (on power) and of the frequency spreading (on amplitude).
ALPHA = 0.6
BETA = 0.8
#: Spreading slopes in dB/Bark: below the masker, and 22 + 230 / f - 0.2 L above it.
SLOPE_BELOW = 31.0
SLOPE_ABOVE = 22.0
SLOPE_ABOVE_HZ = 230.0
SLOPE_ABOVE_LEVEL = 0.2
#: Zwicker's loudness form with Schwell factor 0.5 and exponent 0.04.
SCHWELL = 0.5
GAMMA = 0.04
THRESHOLD_PHON = 3.539
#: Upper Bark edges of the scaling regions (0, 2], (2, 22], (22, inf).
REGION_EDGES_BARK = (2.0, 22.0)
#: The release scores 48 kHz audio with an analyser built for 44.1 kHz.
RELEASE_SR = 48000
RELEASE_ANALYSIS_SR = 44100

# (Hz, dB). 6400 Hz is -1 in the reference (a slip for -1.64); kept, as its scores depend on it.
_OUTER_EAR = (
    (100, 0.0), (200, 0.0), (500, 0.0), (1000, 0.0), (1720, 1.27), (2000, 2.68),
    (3150, 6.73), (5000, 3.04), (6400, -1.0), (10000, -7.5), (12000, -14.9),
)  # fmt: skip
# (Hz, seconds): forward-masking decay time constants.
_DECAY = ((25.4, 0.300), (63.7, 0.100), (184.5, 0.030), (562.2, 0.010), (3272.8, 0.003))
# ISO 226:2003 table: (Hz, alpha_f, L_U dB, T_f dB).
_ISO226 = (
    (20, .532, -31.6, 78.5), (25, .506, -27.2, 68.7), (31.5, .480, -23.0, 59.5),
    (40, .455, -19.1, 51.1), (50, .432, -15.9, 44.0), (63, .409, -13.0, 37.5),
    (80, .387, -10.3, 31.5), (100, .367, -8.1, 26.5), (125, .349, -6.2, 22.1),
    (160, .330, -4.5, 17.9), (200, .315, -3.1, 14.4), (250, .301, -2.0, 11.4),
    (315, .288, -1.1, 8.6), (400, .276, -0.4, 6.2), (500, .267, 0.0, 4.4),
    (630, .259, 0.3, 3.0), (800, .253, 0.5, 2.2), (1000, .250, 0.0, 2.4),
    (1250, .246, -2.7, 3.5), (1600, .244, -4.1, 1.7), (2000, .243, -1.0, -1.3),
    (2500, .243, 1.7, -4.2), (3150, .243, 2.5, -6.0), (4000, .242, 1.2, -5.4),
    (5000, .242, -2.1, -1.5), (6300, .245, -7.1, 6.0), (8000, .254, -11.2, 12.6),
    (10000, .271, -10.7, 13.9), (12500, .301, -3.1, 12.3),
)  # fmt: skip

# Waveform samples per block of rows analysed together (~100 s of audio, ~200 MB at peak).
_ROW_BLOCK_SAMPLES = 1 << 22
# Values per block of the frequency spreading's buffer (B x 2B per frame): 4 MB of float64.
_SPREAD_BLOCK_VALUES = 1 << 19


def hz_to_bark(f: np.ndarray | float) -> np.ndarray:
    """z(f) = 6 asinh(f / 600)."""
    return 6.0 * np.arcsinh(np.asarray(f, dtype=np.float64) / 600.0)


def bark_to_hz(z: np.ndarray | float) -> np.ndarray:
    """f(z) = 600 sinh(z / 6)."""
    return 600.0 * np.sinh(np.asarray(z, dtype=np.float64) / 6.0)


def _where(name: str | None) -> str:
    return f" ({name})" if name else ""


@dataclass(frozen=True, eq=False)
class BandTables:
    """Everything PAQM needs that does not depend on the signal, for one analysis rate `fs`.

    Arrays are float64 numpy, one value per band (B,) unless noted.
    """

    fs: float
    n_window: int  # N_w = floor(0.04 fs)
    n_overlap: int  # N_o = floor(N_w / 2)
    hop: int  # H = N_w - N_o
    centres_bark: np.ndarray
    centres_hz: np.ndarray
    lo_hz: np.ndarray
    hi_hz: np.ndarray
    bin_band: np.ndarray  # (N_FFT // 2 + 1,) band index of every bin (-1: none)
    bin_counts: np.ndarray  # bins per band
    transfer_db: np.ndarray  # outer-to-inner-ear gain
    threshold_db: np.ndarray  # hearing threshold (ISO 226 at 3.539 phon)
    tau: np.ndarray  # forward-masking time constant, seconds
    decay: np.ndarray  # a = exp(-dt / tau) per frame
    region: np.ndarray  # scaling region 0, 1, 2 of each band

    @property
    def n_bands(self) -> int:
        return len(self.centres_bark)

    @property
    def gain(self) -> np.ndarray:
        return 10.0 ** (self.transfer_db / 10.0)

    @property
    def e0(self) -> np.ndarray:
        """Threshold excitation E0 = 10^(T / 10) G (no spreading)."""
        return 10.0 ** (self.threshold_db / 10.0) * self.gain

    @property
    def e0_db(self) -> np.ndarray:
        return self.threshold_db + self.transfer_db

    def n_frames(self, n_samples: int) -> int:
        return (n_samples - self.n_window) // self.hop + 1


def _iso226_threshold() -> tuple[np.ndarray, np.ndarray]:
    """The 3.539 phon contour at the 29 ISO 226 frequencies: (Hz, dB).

    Evaluated in float32 like the reference: the spline's extrapolation to 21.7 kHz amplifies
    the rounding to 130.8306 dB (the reference's value) where float64 gives 130.8288.
    """
    columns = zip(*_ISO226, strict=True)
    f, alpha, l_u, t_f = (torch.tensor(col, dtype=torch.float32) for col in columns)
    phon = torch.tensor(THRESHOLD_PHON, dtype=torch.float32)
    a_f = 4.47e-3 * (10 ** (0.025 * phon) - 1.15) + (0.4 * 10 ** ((t_f + l_u) / 10 - 9)) ** alpha
    threshold = (10 / alpha) * torch.log10(a_f) - l_u + 94
    return f.double().numpy(), threshold.double().numpy()


def _float32_geometry(n_bands: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Band centres (Bark) and edges (Hz) built in float32 as the reference does, as float64.

    Float64 geometry would move P by < 1e-5; float32 keeps the band widths,
    and so the stage checkpoints, within ~1e-7 of the reference instead of ~1e-5.
    """
    half = torch.tensor(BARK_STEP / 2, dtype=torch.float32)
    centres = half + torch.tensor(BARK_STEP, dtype=torch.float32) * torch.arange(
        n_bands, dtype=torch.float32
    )

    def to_hz(z: torch.Tensor) -> np.ndarray:
        return (600.0 * torch.sinh(z / 6.0)).double().numpy()

    return centres.double().numpy(), to_hz(centres - half), to_hz(centres + half)


@lru_cache(maxsize=8)
def band_tables(fs: float) -> BandTables:
    """Build (once per rate) and validate the band geometry and per-band tables for `fs`.

    Raises ValueError when the frame does not fit the 2048-point FFT or a band holds no bin
    (e.g. fs = 48000, band 7): the reference implementation would return NaN there.
    """
    fs = float(fs)
    if not math.isfinite(fs) or fs <= 0:
        raise ValueError(f"PAQM: sample rate must be a positive number, got {fs}")
    # round() first so that 0.04 * fs landing a hair under an integer does not lose a sample
    n_window = math.floor(round(0.04 * fs, 9))
    n_overlap = n_window // 2
    if not 2 <= n_window <= N_FFT:
        raise ValueError(
            f"PAQM: a 40 ms frame at {fs:g} Hz is {n_window} samples; it must fit the "
            f"{N_FFT}-point FFT (fs between 50 Hz and {N_FFT / 0.04:g} Hz)"
        )
    n_bands = math.ceil(float(hz_to_bark(fs / 2)) / BARK_STEP)
    centres_bark, lo_hz, hi_hz = _float32_geometry(n_bands)
    bins_hz = np.arange(N_FFT // 2 + 1) * (fs / N_FFT)
    bin_band = np.searchsorted(hi_hz, bins_hz, side="right")
    bin_band[bin_band >= n_bands] = -1
    bin_counts = np.bincount(bin_band[bin_band >= 0], minlength=n_bands)
    empty = np.flatnonzero(bin_counts == 0)
    if empty.size:
        listed = ", ".join(f"{i} ({lo_hz[i]:.1f}-{hi_hz[i]:.1f} Hz)" for i in empty[:5])
        raise ValueError(
            f"PAQM: at fs = {fs:g} Hz the {N_FFT}-point FFT leaves {empty.size} of the {n_bands} "
            f"Bark bands without a bin: {listed}; the score would be NaN. Analyse 44.1 kHz "
            f"audio natively, or 48 kHz audio with mode='release'"
        )
    centres_hz = bark_to_hz(centres_bark)

    node_hz, node_db = (np.array(col, dtype=np.float64) for col in zip(*_OUTER_EAR, strict=True))
    # Nodes in float32 Bark as in the reference: the extrapolation to +93 dB at the top band
    # turns that rounding into a 6e-5 change of the gain that dominates leakage-level bands.
    node_bark = (6.0 * torch.asinh(torch.from_numpy(node_hz).float() / 600.0)).double().numpy()
    # the reference fits the negated table (a gain that dips near 3 kHz), not the table itself
    transfer_db = CubicSpline(node_bark, -node_db)(centres_bark)

    iso_hz, iso_db = _iso226_threshold()
    threshold_db = CubicSpline(iso_hz, iso_db)(centres_hz)

    tau_hz, tau_s = (np.array(col, dtype=np.float64) for col in zip(*_DECAY, strict=True))
    tau = np.where(centres_hz > tau_hz[-1], tau_s[-1], PchipInterpolator(tau_hz, tau_s)(centres_hz))
    decay = np.exp(-(n_overlap / fs) / tau)

    region = np.searchsorted(np.array(REGION_EDGES_BARK), centres_bark, side="left")
    return BandTables(
        fs=fs,
        n_window=n_window,
        n_overlap=n_overlap,
        hop=n_window - n_overlap,
        centres_bark=centres_bark,
        centres_hz=centres_hz,
        lo_hz=lo_hz,
        hi_hz=hi_hz,
        bin_band=bin_band,
        bin_counts=bin_counts,
        transfer_db=transfer_db,
        threshold_db=threshold_db,
        tau=tau,
        decay=decay,
        region=region,
    )


class _Kernels(NamedTuple):
    """`BandTables` turned into tensors on one device and dtype."""

    window: torch.Tensor  # (N_w,) symmetric Hann
    bin_band: torch.Tensor  # (K,) band of each of the first K bins (the rest are in none)
    band_scale: torch.Tensor  # (B,) Hz per Bark over the number of member bins
    gain: torch.Tensor  # (B,)
    decay_pow: torch.Tensor  # (B,) a^alpha: the recursion is linear in S^alpha
    below: torch.Tensor  # (B_j, B_i) spread of a unit masker j down to band i < j, else 0
    step_base: torch.Tensor  # (B,) 10^(-0.04 dz (22 + 230 / f_j)): level-free part of a step
    e0: torch.Tensor  # (B,)
    loudness_scale: torch.Tensor  # (B,) (E0 / s)^gamma
    regions: torch.Tensor  # (B, 3) one-hot scaling region


def _reference_window(n: int) -> np.ndarray:
    """Symmetric Hann as the reference builds it: torch's float32 `hann_window`, on the CPU.

    Its float32 rounding is a noise floor ~200 dB under a sine's peak, but the top bands see it
    through the +93 dB outer-ear gain: the reference's stage checkpoint at band 100 (sine,
    1.6006e-9) is only met with this window (an exact float64 Hann gives 1.374e-9). P moves < 1e-5.
    """
    return torch.hann_window(n, periodic=False, dtype=torch.float32).double().numpy()


def _kernels(tables: BandTables, device: torch.device, dtype: torch.dtype) -> _Kernels:
    n_bands = tables.n_bands
    # band 0 starts at 0 Hz, so only bins at the very top can lie outside every band
    n_member = int(np.count_nonzero(tables.bin_band >= 0))
    assert np.all(tables.bin_band[:n_member] >= 0)

    # A spread level M in dB enters the excitation as (10^(M/10))^(beta/2) = 10^(0.04 M).
    # z_i - z_j = 0.2 (i - j) exactly, as the centres are defined (the float32 centres
    # would add ~1e-6 of noise to the far terms; the checkpoints agree better without it).
    per_db = BETA / 2 / 10.0
    index = np.arange(n_bands)
    dz = BARK_STEP * (index[None, :] - index[:, None])  # [j, i] = z_i - z_j
    below = np.where(dz < 0, 10.0 ** (per_db * SLOPE_BELOW * np.minimum(dz, 0.0)), 0.0)
    slope_base = SLOPE_ABOVE + SLOPE_ABOVE_HZ / tables.centres_hz

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)

    e0 = tables.e0
    return _Kernels(
        window=t(_reference_window(tables.n_window)),
        bin_band=torch.as_tensor(tables.bin_band[:n_member], device=device),
        band_scale=t((tables.hi_hz - tables.lo_hz) / BARK_STEP / tables.bin_counts),
        gain=t(tables.gain),
        decay_pow=t(tables.decay**ALPHA),
        below=t(below),
        step_base=t(10.0 ** (-per_db * BARK_STEP * slope_base)),
        e0=t(e0),
        loudness_scale=t((e0 / SCHWELL) ** GAMMA),
        regions=t(np.eye(3)[tables.region]),
    )


def _time_spread(power: torch.Tensor, decay_pow: torch.Tensor) -> torch.Tensor:
    """Forward masking S[t] = ((a S[t-1])^alpha + P[t]^alpha)^(1/alpha) over frames.

    (..., M, B) -> (..., M, B). Raised to alpha the recursion is the linear u[t] = a^alpha
    u[t-1] + P[t]^alpha, so it runs as a log-depth prefix scan instead of M sequential steps.
    """
    u = power.pow(ALPHA)
    coeff = decay_pow
    shift = 1
    while shift < u.shape[-2]:
        nxt = u.clone()
        nxt[..., shift:, :] += coeff * u[..., :-shift, :]
        u = nxt
        coeff = coeff * coeff  # a^(alpha 2^k); underflow to 0 is the right limit
        shift *= 2
    return u.pow(1.0 / ALPHA)


def _excitation(spread: torch.Tensor, k: _Kernels) -> tuple[torch.Tensor, torch.Tensor]:
    """Simultaneous masking E_i = (sum_j 10^(0.04 M_ij))^(2/beta), per frame.

    (..., M, B) -> (E (..., M, B), dead (..., M)): `dead` marks frames with a band of zero
    spread power, where the reference's level is -inf and its arithmetic gives NaN.
    """
    shape = spread.shape
    flat = spread.reshape(-1, shape[-1])
    zero = flat == 0
    log_s = torch.log(torch.where(zero, torch.ones_like(flat), flat))
    # The masker's term in its own band is 10^(0.04 L_j) = S_j^(beta/2). Each 0.2 Bark above
    # it multiplies the term by 10^(-0.04 * 0.2 s_j), s_j = 22 + 230/f_j - 0.2 L_j, that is
    # by step_base_j * 10^(0.0016 L_j) = step_base_j * S_j^0.016.
    own = torch.exp((BETA / 2) * log_s)
    step = k.step_base * torch.exp((BETA / 2 * BARK_STEP * SLOPE_ABOVE_LEVEL) * log_s)
    # below the masker the slope is fixed: one matrix product covers every j > i
    total = torch.matmul(own, k.below)
    total += _spread_upwards(own, step)
    return total.pow_(2.0 / BETA).reshape(shape), zero.any(-1).reshape(shape[:-1])


def _spread_upwards(own: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """sum over j <= i of own_j * step_j^(i - j): (F, B), (F, B) -> (F, B).

    Every masker has its own level-dependent decay, so this is B^2 / 2 terms per frame; they
    are built by repeated doubling (multiplications, not exp) in a buffer whose row j holds
    own_j step_j^d for d = 0..B-1 followed by B zeros. Read with a row stride of 2B - 1, the
    same buffer is the matrix [j, i] = own_j step_j^(i - j) for i >= j and 0 for i < j (the
    zeros of row j - 1), so the sum over j is one reduction.
    """
    n_frames, n_bands = own.shape
    out = torch.empty_like(own)
    block = max(1, _SPREAD_BLOCK_VALUES // (2 * n_bands * n_bands))
    buffer = own.new_zeros((min(block, n_frames), n_bands, 2 * n_bands))
    # step^(2^k), k = 0, 1, ...: the factor that extends d = 0..2^k - 1 to d = 0..2^(k+1) - 1
    doublings = [step]
    while 2 ** len(doublings) < n_bands:
        doublings.append(doublings[-1].square())
    for start in range(0, n_frames, block):
        stop = min(start + block, n_frames)
        terms = buffer[: stop - start]
        terms[:, :, 0] = own[start:stop]
        filled = 1
        for factor in doublings:
            width = min(filled, n_bands - filled)
            torch.mul(
                terms[:, :, :width],
                factor[start:stop, :, None],
                out=terms[:, :, filled : filled + width],
            )
            filled += width
        skewed = terms.as_strided(
            (stop - start, n_bands, n_bands), (2 * n_bands**2, 2 * n_bands - 1, 1)
        )
        torch.sum(skewed, dim=1, out=out[start:stop])
    return out


def _loudness(excitation: torch.Tensor, k: _Kernels) -> torch.Tensor:
    """N = (E0/s)^g ((1 - s + s E/E0)^g - 1), clipped at 0; (..., M, B) -> (..., M, B)."""
    # expm1/log1p keep the near-threshold bands accurate (x^0.04 - 1 cancels for x ~ 1)
    inner = torch.log1p(SCHWELL * (excitation / k.e0 - 1.0))
    return (k.loudness_scale * torch.expm1(GAMMA * inner)).clamp_min_(0.0)


def _representation(
    x: torch.Tensor, tables: BandTables, k: _Kernels, stages: bool = False
) -> tuple[torch.Tensor, torch.Tensor] | dict[str, torch.Tensor]:
    """(R, L) waveforms -> loudness N (R, M, B) and dead frames (R, M); with `stages`, a dict of
    every intermediate (R, M, B) instead."""
    frames = x.unfold(-1, tables.n_window, tables.hop) * k.window
    spectrum = torch.fft.rfft(frames, n=N_FFT)
    power = spectrum.real.square() + spectrum.imag.square()
    # a scatter-add over the bins is 5x faster than a product with the sparse bin-band matrix
    band_power = power.new_zeros((*power.shape[:-1], len(k.band_scale)))
    band_power.index_add_(-1, k.bin_band, power[..., : len(k.bin_band)]).mul_(k.band_scale)
    transferred = band_power * k.gain
    spread = _time_spread(transferred, k.decay_pow)
    excitation, dead = _excitation(spread, k)
    loudness = _loudness(excitation, k)
    if stages:
        return {
            "power_spectrum": power,
            "band_power": band_power,
            "transfer": transferred,
            "time_spread": spread,
            "excitation": excitation,
            "loudness": loudness,
        }
    return loudness, dead


class PAQMDetails(NamedTuple):
    """PAQM with its frame-level detail; leading dims are those of the input batch.

    p: (...) mean noise disturbance over the frames that are numbers (lower is better).
    frame_scores: (..., M) d[t] = sum over bands of D; NaN for skipped frames.
    disturbance: (..., B, M) D_i[t] = |scaled test loudness - reference loudness|.
    """

    p: torch.Tensor
    frame_scores: torch.Tensor
    disturbance: torch.Tensor


class PAQM:
    """Batched PAQM with every signal-independent table built once.

    `sr` is the rate of the audio handed in. `mode="native"` analyses at `sr`;
    `mode="release"` resamples to 48 kHz (soxr VHQ, unless `sr` is 48000) and analyses with the
    44.1 kHz constants, as the AEROMamba-PAQM release does. Computation is in `dtype` (float64
    by default; float32 moves the check values by < 1e-5 relative and lifts identity scores
    to ~4e-5) on the input's device. Not differentiable: it runs under `torch.no_grad`.
    """

    def __init__(
        self, sr: float = 44100, mode: Mode = "native", dtype: torch.dtype = torch.float64
    ) -> None:
        if mode not in ("native", "release"):
            raise ValueError(f"PAQM: mode must be 'native' or 'release', got {mode!r}")
        if not dtype.is_floating_point:
            raise ValueError(f"PAQM: dtype must be a floating dtype, got {dtype}")
        self.sr = sr
        self.mode = mode
        self.dtype = dtype
        self.analysis_sr = RELEASE_ANALYSIS_SR if mode == "release" else sr
        self.tables = band_tables(self.analysis_sr)
        self._by_device: dict[torch.device, _Kernels] = {}

    def __repr__(self) -> str:
        return f"PAQM(sr={self.sr}, mode={self.mode!r}, dtype={self.dtype})"

    def kernels(self, device: torch.device | str = "cpu") -> _Kernels:
        """The tables as tensors on `device`, built on first use."""
        device = torch.device(device)
        if device not in self._by_device:
            self._by_device[device] = _kernels(self.tables, device, self.dtype)
        return self._by_device[device]

    def __call__(
        self, test: ArrayLike, reference: ArrayLike, *, name: str | None = None
    ) -> torch.Tensor:
        """P per row: test and reference (..., samples) -> (...)."""
        return self.details(test, reference, name=name).p

    @torch.no_grad()
    def details(
        self, test: ArrayLike, reference: ArrayLike, *, name: str | None = None
    ) -> PAQMDetails:
        """P with frame scores and the disturbance matrix; see `PAQMDetails` for shapes."""
        y, x, lead = self._prepare(test, reference, name)
        rows = y.shape[0]
        k = self.kernels(y.device)
        # both signals in one pass halves the per-operation overhead; blocks of rows bound the
        # memory of the frames and spectra (~20 MB per 10 s row in float64)
        both = torch.cat((y, x + REFERENCE_EPS))
        step = max(1, _ROW_BLOCK_SAMPLES // both.shape[-1])
        parts = [
            _representation(both[start : start + step], self.tables, k)
            for start in range(0, both.shape[0], step)
        ]
        loudness = torch.cat([part[0] for part in parts])
        dead = torch.cat([part[1] for part in parts])
        n_test, n_ref = loudness[:rows], loudness[rows:]
        dead = dead[:rows] | dead[rows:]
        n_test_sum = torch.matmul(n_test, k.regions)
        n_ref_sum = torch.matmul(n_ref, k.regions)
        factor = n_ref_sum / torch.where(n_test_sum == 0, torch.ones_like(n_test_sum), n_test_sum)
        disturbance = (torch.matmul(factor, k.regions.T) * n_test - n_ref).abs_()
        disturbance[dead] = torch.nan
        frame_scores = disturbance.sum(-1)
        empty = dead.all(-1)
        if empty.any():
            which = "" if rows == 1 else f" in row(s) {torch.nonzero(empty)[:, 0].tolist()}"
            raise ValueError(
                f"PAQM{_where(name)}: every frame of the test{which} has a band with zero "
                f"time-spread power (digital silence), so no frame is left to score"
            )
        p = torch.nanmean(frame_scores, dim=-1)
        n_frames = frame_scores.shape[-1]
        return PAQMDetails(
            p=p.reshape(lead),
            frame_scores=frame_scores.reshape(*lead, n_frames),
            disturbance=disturbance.transpose(-1, -2).reshape(*lead, self.tables.n_bands, -1),
        )

    def _prepare(
        self, test: ArrayLike, reference: ArrayLike, name: str | None
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
        """Validate; return test and reference as (R, L) in the compute dtype, and lead dims."""
        where = _where(name)
        device = next(
            (a.device for a in (test, reference) if isinstance(a, torch.Tensor)),
            torch.device("cpu"),
        )
        signals = []
        for label, a in (("test", test), ("reference", reference)):
            if not isinstance(a, np.ndarray | torch.Tensor):
                raise TypeError(
                    f"PAQM{where}: {label} must be a numpy array or torch tensor, "
                    f"got {type(a).__name__}"
                )
            # read-only arrays (memory-mapped audio) are copied: torch cannot wrap them
            t = (
                torch.as_tensor(a if a.flags.writeable else a.copy())
                if isinstance(a, np.ndarray)
                else a.detach()
            )
            if not t.is_floating_point():
                raise TypeError(f"PAQM{where}: {label} must be floating point, got {t.dtype}")
            if t.ndim == 0:
                raise ValueError(f"PAQM{where}: {label} must have a samples axis, got a scalar")
            signals.append(t)
        y, x = signals
        if y.shape != x.shape:
            raise ValueError(
                f"PAQM{where}: test and reference differ in shape: {tuple(y.shape)} vs "
                f"{tuple(x.shape)} (lengths {y.shape[-1]} vs {x.shape[-1]} samples)"
            )
        for label, t in (("test", y), ("reference", x)):
            finite = torch.isfinite(t)
            if not bool(finite.all()):
                raise ValueError(
                    f"PAQM{where}: {label} contains {int((~finite).sum())} NaN/Inf samples"
                )
        lead = tuple(y.shape[:-1])
        y = y.reshape(-1, y.shape[-1]).to(device=device, dtype=self.dtype)
        x = x.reshape(-1, x.shape[-1]).to(device=device, dtype=self.dtype)
        if self.mode == "release" and self.sr != RELEASE_SR:
            y, x = (self._resample(t) for t in (y, x))
        if y.shape[-1] < self.tables.n_window:
            raise ValueError(
                f"PAQM{where}: clip of {y.shape[-1]} samples is shorter than one "
                f"{self.tables.n_window}-sample frame (40 ms at {self.tables.fs:g} Hz)"
            )
        return y, x, lead

    def _resample(self, t: torch.Tensor) -> torch.Tensor:
        # soxr takes (samples, channels): every row is one channel
        rows = np.ascontiguousarray(t.cpu().numpy().T)
        out = soxr.resample(rows, self.sr, RELEASE_SR, quality="VHQ")
        return torch.from_numpy(np.ascontiguousarray(out.T)).to(device=t.device, dtype=t.dtype)


@lru_cache(maxsize=8)
def _analyser(sr: float, mode: Mode) -> PAQM:
    return PAQM(sr, mode)


def paqm_details(
    test: ArrayLike,
    reference: ArrayLike,
    sr: float = 44100,
    mode: Mode = "native",
    *,
    name: str | None = None,
) -> PAQMDetails:
    """`PAQM(sr, mode).details` with a shared analyser: for (samples,) input p is 0-d,
    frame_scores (M,), disturbance (B, M)."""
    return _analyser(sr, mode).details(test, reference, name=name)


def paqm(
    test: ArrayLike,
    reference: ArrayLike,
    sr: float = 44100,
    mode: Mode = "native",
    *,
    name: str | None = None,
) -> float:
    """PAQM score P of one clip (lower is better): test and reference (samples,) at `sr`.

    `mode="native"` analyses at `sr`; `mode="release"` scores like the AEROMamba-PAQM release
    (48 kHz audio, 44.1 kHz constants; other rates are resampled to 48 kHz with soxr VHQ).
    Raises ValueError for a clip shorter than one frame, a rate that leaves a band without a
    bin, a length mismatch, non-finite samples or a test with no scorable frame; `name` (e.g.
    the file) is quoted in the message.
    """
    if isinstance(test, np.ndarray | torch.Tensor) and test.ndim != 1:
        raise ValueError(
            f"PAQM{_where(name)}: paqm() scores one mono clip (samples,), got shape "
            f"{tuple(test.shape)}; use PAQM(...) for batches"
        )
    return float(paqm_details(test, reference, sr, mode, name=name).p)


def _stages(x: ArrayLike, sr: float = 44100) -> dict[str, np.ndarray]:
    """Every intermediate of one signal analysed as a test (no epsilon), float64: the bin
    power_spectrum (N_FFT/2+1, M), then (B, M) band_power (step 3), transfer (4),
    time_spread (5), excitation (6) and loudness (7)."""
    tables = band_tables(sr)
    signal = torch.tensor(np.asarray(x, dtype=np.float64)).reshape(1, -1)
    with torch.no_grad():
        out = _representation(signal, tables, _kernels(tables, signal.device, torch.float64), True)
    return {key: value[0].T.numpy() for key, value in out.items()}


def _mos(exponent: np.ndarray) -> float | np.ndarray:
    mos = 0.999 + 4.0 / (1.0 + np.exp(exponent))
    return float(mos) if np.ndim(mos) == 0 else mos


def mos_release(p: float | np.ndarray) -> float | np.ndarray:
    """MOS of the release: 0.999 + 4 / (1 + exp(3.0495 + 3.4806 x + 0.4769 x^2)), x = log10 P.

    Not monotonic (peaks at 4.857 for P = 2.24e-4); use only next to the authors' numbers.
    """
    with np.errstate(divide="ignore", over="ignore"):  # P = 0 maps to the 0.999 limit
        x = np.log10(np.asarray(p, dtype=np.float64))
        return _mos(3.0495 + 3.4806 * x + 0.4769 * x * x)


def mos_corrected(p: float | np.ndarray) -> float | np.ndarray:
    """torchpaqm's corrected MOS: 0.999 + 4 / (1 + exp(2.5524 + 2.4136 log10(P + 1e-10))),
    monotonic, in (0.999, 4.999)."""
    x = np.log10(np.asarray(p, dtype=np.float64) + 1e-10)
    return _mos(2.5524 + 2.4136 * x)
