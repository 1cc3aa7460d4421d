"""Solver.train_step shares its discriminator passes between its generator and discriminator
steps; the gradients it steps with are those of the plain recipe: a generator step (its loss
through the discriminator), then a discriminator step on the detached generated clips."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

from aeromamba.losses import (
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from aeromamba.models import make_discriminator, make_generator
from aeromamba.training.distributed import World
from aeromamba.training.solver import Solver, TrainConfig

NETWORKS = ("generator", "discriminator")


def small_solver(adversarial: bool, **settings: float) -> Solver:
    torch.manual_seed(0)
    return Solver(
        make_generator("aeromamba", channels=8),
        make_discriminator(ndf=4, max_channels=32),
        [],
        None,
        TrainConfig(epochs=1, batch_size=2, adversarial=adversarial, **settings),
        Path(tempfile.mkdtemp(prefix="aeromamba-step-")),
        torch.device("cpu"),
        World(),
        {},
        logger=None,
    )


def halves(features: list[list[torch.Tensor]]) -> tuple[list[list[torch.Tensor]], ...]:
    return tuple([[f.chunk(2)[i] for f in scale] for scale in features] for i in (0, 1))


def plain_step(solver: Solver, lr: torch.Tensor, hr: torch.Tensor) -> dict[str, float]:
    """The recipe written out: two discriminator passes, every backward pass complete."""
    g, d, cfg = solver.generator, solver.discriminator, solver.cfg
    fake = g(lr)
    loss = solver.stft_loss(fake, hr)
    stats = {"mrstft": loss.item()}
    if cfg.adversarial:
        real, fakes = halves(d(torch.cat([hr, fake])))
        adv = generator_adversarial_loss(fakes)
        feat = feature_matching_loss(real, fakes, cfg.lambda_features)
        loss = loss + adv + feat
        stats |= {"adversarial": adv.item(), "features": feat.item()}
    solver.opt_g.zero_grad()
    loss.backward()
    solver.opt_g.step()
    if cfg.adversarial:
        d_loss = discriminator_loss(*halves(d(torch.cat([hr, fake.detach()]))))
        solver.opt_d.zero_grad()
        d_loss.backward()
        solver.opt_d.step()
        stats["discriminator"] = d_loss.item()
    return stats


@pytest.mark.parametrize("adversarial", [True, False])
def test_train_step_computes_the_gradients_of_the_plain_recipe(adversarial):
    ours, plain = small_solver(adversarial), small_solver(adversarial)
    start = {n: [w.detach().clone() for w in getattr(ours, n).parameters()] for n in NETWORKS}
    g = torch.Generator().manual_seed(1)
    lr = torch.randn(2, 1, 2048, generator=g) * 0.1
    hr = torch.randn(2, 1, 8192, generator=g) * 0.1
    stats = ours.train_step(lr, hr)
    expected = plain_step(plain, lr, hr)
    for key, value in expected.items():
        assert stats[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
    assert stats["grad_norm_g"] > 0 and (not adversarial or stats["grad_norm_d"] > 0)
    # gradients, not weights, compared: Adam's first step is lr·sign(g), which turns the
    # rounding of a gradient near 0 (convolutions over 2 clips, not 4) into a full step
    for name in NETWORKS:
        weights = list(getattr(ours, name).named_parameters())
        for (key, value), other in zip(weights, getattr(plain, name).parameters(), strict=True):
            if value.grad is None or other.grad is None:
                assert value.grad is other.grad is None, f"{name}.{key}"
                continue
            scale = other.grad.abs().max().item()
            assert torch.allclose(value.grad, other.grad, rtol=1e-4, atol=1e-5 * scale), key
        moved = [not torch.equal(w, s) for (_, w), s in zip(weights, start[name], strict=True)]
        assert any(moved) == (name == "generator" or adversarial), name


def test_adversarial_schedule_stft_then_discriminator_warmup_then_gan():
    solver = small_solver(adversarial=True)
    solver.cfg.adversarial_start, solver.cfg.discriminator_warmup = 1, 1
    torch.manual_seed(1)
    lr, hr = torch.randn(2, 1, 2048) * 0.1, torch.randn(2, 1, 8192) * 0.1
    d_before = {k: v.clone() for k, v in solver.discriminator.state_dict().items()}
    seen = []
    for step in range(3):
        solver.step = step
        seen.append(sorted(solver.train_step(lr, hr)))
        d_now = solver.discriminator.state_dict()
        d_moved = any(not torch.equal(d_now[k], d_before[k]) for k in d_before)
        assert d_moved == (step >= 1), step  # the discriminator trains from adversarial_start
    assert seen[0] == ["grad_norm_g", "lr", "mrstft"]
    gan_terms = ["adversarial", "discriminator", "features", "grad_norm_d"]
    assert seen[1] == seen[2] == sorted(gan_terms + seen[0])  # the warm-up logs what they weigh


@pytest.mark.parametrize(
    ("start", "warmup", "weights", "ignored"),
    [
        (0, 1, {}, True),  # during the warm-up the generator ignores the discriminator
        (0, 0, {"lambda_adversarial": 0.0, "lambda_features": 0.0}, True),
        (0, 0, {"lambda_adversarial": 0.5}, False),
        (0, 0, {"lambda_features": 1.0}, False),
    ],
)
def test_generator_gradient_takes_the_gan_terms_only_when_due_and_weighted(
    start, warmup, weights, ignored
):
    gan, plain = small_solver(True, **weights), small_solver(False)
    gan.cfg.adversarial_start, gan.cfg.discriminator_warmup = start, warmup
    torch.manual_seed(1)
    lr, hr = torch.randn(2, 1, 2048) * 0.1, torch.randn(2, 1, 8192) * 0.1
    norms = [solver.train_step(lr, hr)["grad_norm_g"] for solver in (gan, plain)]
    assert (norms[0] == norms[1]) == ignored


def test_moving_average_follows_the_weights_and_survives_a_resume():
    solver = small_solver(adversarial=False)
    solver.cfg.ema_decay = 0.75
    solver.ema = {k: v.detach().clone() for k, v in solver.generator.state_dict().items()}
    before = {k: v.clone() for k, v in solver.generator.state_dict().items()}
    torch.manual_seed(1)
    lr, hr = torch.randn(2, 1, 2048) * 0.1, torch.randn(2, 1, 8192) * 0.1
    solver.train_step(lr, hr)
    after = solver.generator.state_dict()
    moved = [k for k, v in after.items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert moved, "the step changed the weights"
    for key in moved:
        torch.testing.assert_close(solver.ema[key], 0.75 * before[key] + 0.25 * after[key])
    with solver._ema_weights():
        torch.testing.assert_close(solver.generator.state_dict()[moved[0]], solver.ema[moved[0]])
    assert torch.equal(solver.generator.state_dict()[moved[0]], after[moved[0]]), "restored"
    solver._save_best("lsd_hf", 1.5, "ema")  # best.pt from the average, as train() may choose
    solver._save()
    resumed = Solver(
        make_generator("aeromamba", channels=8),
        make_discriminator(ndf=4, max_channels=32),
        [],
        None,
        TrainConfig(epochs=1, batch_size=2, adversarial=False, ema_decay=0.75),
        solver.run_dir,
        torch.device("cpu"),
        World(),
        {},
        logger=None,
    )
    for key in moved:
        torch.testing.assert_close(resumed.ema[key], solver.ema[key])
    assert resumed.best["weights"] == "ema" and resumed.best["value"] == 1.5
    torch.testing.assert_close(resumed.best["generator"][moved[0]], solver.ema[moved[0]])


@pytest.mark.parametrize("term", ["mel", "envelope"])
def test_an_extra_term_joins_the_generator_loss_only_when_weighted(term):
    plain, weighted = small_solver(False), small_solver(False, **{f"lambda_{term}": 2.0})
    torch.manual_seed(1)
    lr, hr = torch.randn(2, 1, 2048) * 0.1, torch.randn(2, 1, 8192) * 0.1
    stats = weighted.train_step(lr, hr)
    assert stats[term] > 0 and term not in plain.train_step(lr, hr)
    # the weighted loss moved the weights differently from the STFT loss alone
    after_plain, after_weighted = plain.generator.state_dict(), weighted.generator.state_dict()
    assert any(not torch.equal(after_plain[k], v) for k, v in after_weighted.items())


def test_each_step_takes_the_scheduled_rate_for_both_optimisers():
    solver = small_solver(True, lr=1e-3, lr_schedule="cosine", lr_start=1, lr_period=2)
    lr, hr = torch.randn(2, 1, 2048) * 0.1, torch.randn(2, 1, 8192) * 0.1
    rates = []
    for _ in range(4):
        rates.append(solver.train_step(lr, hr)["lr"])
        solver.step += 1
        groups = (*solver.opt_g.param_groups, *solver.opt_d.param_groups)
        assert {g["lr"] for g in groups} == {rates[-1]}
    assert rates == pytest.approx([1e-3, 1e-3, 5e-4, 0.0])
