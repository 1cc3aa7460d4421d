"""Losses of AERO and AEROMamba (Mandel et al. 2023; Abreu et al. 2024): MR-STFT, hinge GAN
(MelGAN, Kumar et al. 2019) and feature matching."""

from __future__ import annotations

import math

import pytest
import torch

from aeromamba.data.synthetic import music_clip
from aeromamba.losses import (
    MultiResolutionSTFTLoss,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from aeromamba.models import make_discriminator


@pytest.fixture(scope="module")
def target():
    return torch.from_numpy(music_clip(1.0, 44100, seed=3)).view(1, 1, -1)


def test_stft_loss_zero_for_identity_and_decreasing_towards_target(target):
    loss = MultiResolutionSTFTLoss()
    assert loss(target, target).item() < 1e-5
    noise = torch.randn_like(target) * target.std()
    values = [loss(target + a * noise, target).item() for a in (1.0, 0.3, 0.1, 0.03)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    assert values[-1] > 0


def test_stft_loss_matches_its_definition(target):
    est = target * 0.7 + 0.01 * torch.randn_like(target)
    sc = logmag = 0.0
    for n_fft, hop, win in ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240)):
        window = torch.hann_window(win)
        x, y = (
            torch.stft(s[:, 0], n_fft, hop, win, window, return_complex=True)
            .abs()
            .pow(2)
            .clamp(min=1e-7)
            .sqrt()
            for s in (est, target)
        )
        sc += torch.linalg.norm(y - x) / torch.linalg.norm(y)
        logmag += (y.log() - x.log()).abs().mean()
    expected = 0.5 * sc / 3 + 0.5 * logmag / 3
    assert MultiResolutionSTFTLoss()(est, target).item() == pytest.approx(expected.item(), 1e-5)


def test_stft_loss_from_min_freq_ignores_the_band_below(target):
    """Below `min_freq` a wrong estimate costs nothing; above it, as much as in the full loss."""
    sr, cut = 44100, 5000.0
    spectrum = torch.fft.rfft(target)
    freqs = torch.fft.rfftfreq(target.shape[-1], 1 / sr)
    low = torch.fft.irfft(spectrum * (freqs < cut - 600), n=target.shape[-1])
    high = target - low
    banded = MultiResolutionSTFTLoss(sr=sr, min_freq=cut)
    assert banded(high, target).item() < 0.02  # the low band missing (up to window leakage)
    assert MultiResolutionSTFTLoss()(high, target).item() > 10 * banded(high, target).item()
    assert banded(low, target).item() > 0.5  # the high band missing
    assert banded(0.5 * target, target).item() == pytest.approx(
        0.5 * 0.5 + 0.5 * math.log(2), rel=1e-3
    )  # a 6 dB error: spectral convergence 0.5, log distance ln 2, wherever they are seen


def test_hinge_losses_on_hand_made_scores():
    real = [[torch.tensor([2.0, 0.5])], [torch.tensor([1.0, -1.0])]]
    fake = [[torch.tensor([-2.0, 0.0])], [torch.tensor([0.5, -0.5])]]
    # scale 0: relu(1-2)=0, relu(1-.5)=.5 → .25; fake relu(1-2)=0, relu(1)=1 → .5
    # scale 1: real 0, 2 → 1; fake 1.5, .5 → 1
    assert discriminator_loss(real, fake).item() == pytest.approx(0.25 + 0.5 + 1 + 1)
    # generator: scale 0 relu(3)=3, relu(1)=1 → 2; scale 1 .5, 1.5 → 1
    assert generator_adversarial_loss(fake).item() == pytest.approx(3.0)


def test_feature_matching_weighting():
    disc = make_discriminator(ndf=4, n_layers=2)
    x = torch.randn(1, 1, 2048)
    real = disc(x)
    fake = [[f + 1.0 for f in scale] for scale in real]  # every feature off by exactly 1
    num_d, n_layers = 3, 2
    layers_compared = n_layers + 2  # every output but the score
    expected = 100 * num_d * layers_compared * (4 / (n_layers + 1)) / num_d
    assert feature_matching_loss(real, fake).item() == pytest.approx(expected, rel=1e-5)
    assert feature_matching_loss(real, real).item() == 0


def test_mel_filterbank_covers_the_band_with_unit_peaks():
    from aeromamba.losses import mel_filterbank

    filters = mel_filterbank(2048, 160, 44100)
    assert filters.shape == (160, 1025)
    assert torch.all(filters.amax(dim=1) > 0.3), "every band holds a bin near its peak"
    centres = filters.argmax(dim=1)
    covered = filters.sum(dim=0)[centres[0] : centres[-1] + 1]
    assert torch.all(covered > 0.99), "adjacent triangles add up to one between the centres"
    assert torch.all(centres[1:] >= centres[:-1]), "bands rise in frequency"


def test_mel_loss_weighs_a_level_error_alike_in_quiet_and_loud_bands():
    from aeromamba.losses import MultiResolutionMelLoss, mel_filterbank

    sr = 44100
    torch.manual_seed(0)
    noise = torch.randn(1, 1, sr)
    spectrum = torch.fft.rfft(noise)
    freqs = torch.fft.rfftfreq(sr, 1 / sr)
    dark = torch.where(freqs > 8000, 0.01, 1.0)  # a high band 40 dB below the low one
    reference = torch.fft.irfft(spectrum * dark, n=sr)
    quieter_high = torch.fft.irfft(spectrum * dark * torch.where(freqs > 8000, 0.5, 1.0), n=sr)
    quieter_low = torch.fft.irfft(spectrum * dark * torch.where(freqs <= 8000, 0.5, 1.0), n=sr)
    mel, stft = MultiResolutionMelLoss(sr), MultiResolutionSTFTLoss()
    assert mel(reference, reference) == 0
    # -6 dB costs log10(2) in each mel band it touches, in the quiet high band as in the loud low
    top = mel_filterbank(2048, 160, sr).argmax(dim=1) * sr / 2048 > 8000
    high, low = mel(quieter_high, reference), mel(quieter_low, reference)
    assert high / top.float().mean() == pytest.approx(math.log10(2), rel=0.15)
    assert low / (~top).float().mean() == pytest.approx(math.log10(2), rel=0.15)
    # while the STFT loss, whose spectral convergence the loud bands drive, weighs a bin of the
    # quiet band far less than one of the loud band
    share = (freqs > 8000).float().mean()
    assert stft(quieter_high, reference) / share < 0.5 * stft(quieter_low, reference) / (1 - share)


def _shaped(noise: torch.Tensor, gain) -> torch.Tensor:
    """`noise` with its spectrum multiplied by gain(freqs)."""
    freqs = torch.fft.rfftfreq(noise.shape[-1], 1 / 44100)
    return torch.fft.irfft(torch.fft.rfft(noise) * gain(freqs), n=noise.shape[-1])


def test_envelope_loss_costs_a_high_band_level_error_in_log_power():
    from aeromamba.losses import ENVELOPE_EDGES, BandEnvelopeLoss

    torch.manual_seed(0)
    loss = BandEnvelopeLoss(44100)
    dark = _shaped(torch.randn(2, 1, 44100), lambda f: torch.where(f > 5000, 0.01, 1.0))
    assert loss(dark, dark).item() < 1e-6
    # the whole high band 6 dB low: log10(4) on the level and on every frame
    dull = _shaped(dark, lambda f: torch.where(f > 5000, 0.5, 1.0))
    assert loss(dull, dark).item() == pytest.approx(2 * math.log10(4), rel=0.03)
    # one band of eight 6 dB low costs an eighth of it, even 40 dB under the low band
    band = (ENVELOPE_EDGES[3], ENVELOPE_EDGES[4])
    one = _shaped(dark, lambda f: torch.where((f > band[0]) & (f <= band[1]), 0.5, 1.0))
    assert loss(one, dark).item() == pytest.approx(2 * math.log10(4) / 8, rel=0.1)
    # the input's own band is not its business
    low = _shaped(dark, lambda f: torch.where(f < 5000, 0.5, 1.0))
    assert loss(low, dark).item() < 0.02


def test_envelope_loss_is_least_at_the_right_level_for_unpredictable_noise():
    from aeromamba.losses import BandEnvelopeLoss

    torch.manual_seed(1)
    loss = BandEnvelopeLoss(44100)
    target, other = torch.randn(4, 1, 44100), torch.randn(4, 1, 44100)
    costs = {g: loss(g * other, target).item() for g in (0.5, 0.7, 0.85, 1.0, 1.2, 1.4, 2.0)}
    assert min(costs, key=costs.get) == 1.0, costs
    # and it follows the target's envelope: a band that swells is cheaper matched than flat
    swell = torch.linspace(0.2, 1.0, 44100)
    assert loss(other * swell, target * swell) < 0.5 * loss(other * swell.mean(), target * swell)
