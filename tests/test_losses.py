"""Losses of spec section 9: MR-STFT, hinge GAN and feature matching."""

from __future__ import annotations

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
