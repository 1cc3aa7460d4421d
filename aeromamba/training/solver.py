"""The GAN training loop: one generator step then one discriminator step per batch, a
checkpoint every epoch (atomic), validation every `eval_every` epochs, resume on restart.

The solver orchestrates; losses live in `aeromamba.losses`, metrics in `aeromamba.metrics`,
checkpoint files in `aeromamba.checkpoint`, data in `aeromamba.data`.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from aeromamba.checkpoint import (
    CheckpointError,
    load_checkpoint,
    model_package,
    save_checkpoint,
)
from aeromamba.devices import AMP_DTYPES
from aeromamba.errors import RunError
from aeromamba.files import atomic_path, remove_stale_temporaries
from aeromamba.losses import (
    BandEnvelopeLoss,
    MultiResolutionMelLoss,
    MultiResolutionSTFTLoss,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from aeromamba.models import Aero, MultiScaleDiscriminator
from aeromamba.training.config import TrainConfig
from aeromamba.training.distributed import World, mean_across
from aeromamba.training.logging import RunLogger
from aeromamba.training.schedule import learning_rate

log = logging.getLogger("aeromamba.train")


class NonFiniteLossError(RunError):
    """A loss became NaN/Inf; training stops before any checkpoint is written."""


class Solver:
    """Trains `generator` against `discriminator` on `train_set`, validating on `valid_set`."""

    def __init__(
        self,
        generator: Aero,
        discriminator: MultiScaleDiscriminator,
        train_set: torch.utils.data.Dataset,
        valid_set: torch.utils.data.Dataset | None,
        cfg: TrainConfig,
        run_dir: Path,
        device: torch.device,
        world: World,
        full_config: dict[str, Any],
        logger: RunLogger,
    ) -> None:
        self.cfg, self.run_dir, self.device, self.world = cfg, run_dir, device, world
        self.full_config, self.logger = full_config, logger
        self.generator = generator.to(device)
        self.discriminator = discriminator.to(device)
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), cfg.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), cfg.lr, betas=betas)
        self.stft_loss = MultiResolutionSTFTLoss(sr=generator.hr_sr, min_freq=cfg.stft_min_freq)
        self.stft_loss.to(device)
        self.mel_loss = (
            MultiResolutionMelLoss(generator.hr_sr).to(device) if cfg.lambda_mel else None
        )
        self.envelope_loss = (
            BandEnvelopeLoss(generator.hr_sr).to(device) if cfg.lambda_envelope else None
        )
        self.ema: dict[str, torch.Tensor] | None = None  # the moving average, when ema_decay > 0
        self.train_set, self.valid_set = train_set, valid_set
        self.epoch, self.step = 0, 0
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {}
        self.checkpoint_path = run_dir / "checkpoint.pt"
        self.best_path = run_dir / "best.pt"
        self.history_path = run_dir / "history.json"
        self.amp_dtype = AMP_DTYPES.get(cfg.amp) if device.type == "cuda" else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self._resume()
        if cfg.ema_decay and self.ema is None:
            self.ema = {k: v.detach().clone() for k, v in self.generator.state_dict().items()}
        self.g_model, self.d_model = self.generator, self.discriminator
        if world.distributed:
            ids = [device.index] if device.type == "cuda" else None
            # the release's variant registers Mamba blocks it never calls
            unused = not self.generator.kwargs["mamba_executed"]
            self.g_model = DistributedDataParallel(
                self.generator, device_ids=ids, find_unused_parameters=unused
            )
            self.d_model = DistributedDataParallel(self.discriminator, device_ids=ids)

    # --- state -------------------------------------------------------------------------

    def _resume(self) -> None:
        """Continue this run's checkpoint, or start from `continue_from`, or from scratch.

        A run that does not resume sets the previous run's files aside (`_set_aside`), after
        reading `continue_from`, which may be one of them.
        """
        if self.world.is_main:
            remove_stale_temporaries(self.run_dir)  # left by a save that was killed
        if self.checkpoint_path.exists() and not self.cfg.restart:
            try:
                package = load_checkpoint(self.checkpoint_path)
            except CheckpointError as err:
                keep = (
                    f"restart=true continue_from={self.best_path} starts again from the best "
                    f"weights, restart=true alone from scratch"
                    if self.best_path.is_file()
                    else "restart=true starts again from scratch"
                )
                raise CheckpointError(
                    f"{err}; {keep} (this run's files are set aside, not deleted)"
                ) from err
            self._check_models(package, self.checkpoint_path, "restart=true, or another run dir")
            self._load(package, full=True)
            self._warn_other_corpus(package.get("config"))
            log.info(
                "resuming %s after epoch %d (step %d)", self.checkpoint_path, self.epoch, self.step
            )
            return
        package = None
        if self.cfg.continue_from:
            package = load_checkpoint(self.cfg.continue_from)
            self._check_models(package, self.cfg.continue_from, "the experiment it was made with")
        self.world.barrier()  # every process has read continue_from before it may move
        if self.world.is_main:
            self._set_aside()
        if package is not None:
            self._load(package, full=False)
            log.info("starting from the weights of %s", self.cfg.continue_from)

    def _set_aside(self) -> None:
        """Move the previous run's checkpoint, best model and history, if any, into a new
        folder `previous_<date>-<time>` of the run directory, named in the log: a run that
        starts afresh never replaces them."""
        previous = [
            p for p in (self.checkpoint_path, self.best_path, self.history_path) if p.exists()
        ]
        if not previous:
            return
        stamp = time.strftime("%Y%m%d-%H%M%S")
        folder = self.run_dir / f"previous_{stamp}"
        number = 1
        while True:
            try:
                folder.mkdir()
                break
            except FileExistsError:
                number += 1
                folder = self.run_dir / f"previous_{stamp}_{number}"
        for path in previous:
            path.rename(folder / path.name)
        names = ", ".join(path.name for path in previous)
        log.warning("starting afresh: the previous run's %s moved to %s", names, folder)

    def _warn_other_corpus(self, saved_config: Any) -> None:
        """Warn when the resumed checkpoint was trained on another corpus than configured."""
        keys = ("name", "root", "train")
        saved = saved_config.get("dset") if isinstance(saved_config, dict) else None
        ours = self.full_config.get("dset")
        if not isinstance(saved, dict) or not isinstance(ours, dict):
            return
        before, now = ({k: d.get(k) for k in keys} for d in (saved, ours))
        if before != now:
            log.warning(
                "resuming %s, trained on dset %s, on another corpus: dset %s",
                self.checkpoint_path,
                before,
                now,
            )

    def _check_models(self, package: dict[str, Any], path: Path | str, way_out: str) -> None:
        """Raise CheckpointError, in one line, if `package` holds other networks than ours."""
        for name, model in (("generator", self.generator), ("discriminator", self.discriminator)):
            if name not in package:
                continue
            saved = _with_defaults(model, package[name].get("kwargs", {}))
            ours = _with_defaults(model, model.kwargs)
            differ = sorted(k for k in saved.keys() | ours.keys() if saved.get(k) != ours.get(k))
            if differ:
                what = ", ".join(f"{k} {saved.get(k)} there, {ours.get(k)} here" for k in differ)
                raise CheckpointError(
                    f"{path}: its {name} differs from the configured one ({what}); "
                    f"use the same experiment settings or {way_out}"
                )

    def _load(self, package: dict[str, Any], full: bool) -> None:
        try:
            self.generator.load_state_dict(package["generator"]["state"])
            if "discriminator" in package:
                self.discriminator.load_state_dict(package["discriminator"]["state"])
        except RuntimeError as err:  # same settings, other tensors: a foreign or edited file
            first = str(err).strip().splitlines()[-1].strip()
            raise CheckpointError(f"weights do not fit the configured networks ({first})") from err
        optimizers = package.get("optimizers", {})
        try:
            if "generator" in optimizers:
                self.opt_g.load_state_dict(optimizers["generator"])
            if "discriminator" in optimizers:
                self.opt_d.load_state_dict(optimizers["discriminator"])
        except (ValueError, KeyError) as err:
            if full:
                raise CheckpointError(f"optimiser state does not fit the models: {err}") from err
            log.warning("optimiser state not reused (%s); starting Adam afresh", err)
        if full:
            self.epoch = package["epoch"]
            self.step = package["step"]
            self.history = package["history"]
            self.best = package.get("best", {})
            if self.cfg.ema_decay and "ema" in package:
                self.ema = {k: v.to(self.device) for k, v in package["ema"].items()}

    def _save(self) -> None:
        if not self.world.is_main:
            return
        save_checkpoint(
            self.checkpoint_path,
            {
                "generator": model_package(self.generator),
                "discriminator": model_package(self.discriminator),
                "optimizers": {
                    "generator": self.opt_g.state_dict(),
                    "discriminator": self.opt_d.state_dict(),
                },
                "epoch": self.epoch,
                "step": self.step,
                "history": self.history,
                "best": self.best,
                **({"ema": self.ema} if self.ema is not None else {}),
                "config": self.full_config,
                "metadata": {"saved": time.strftime("%Y-%m-%d %H:%M:%S")},
            },
        )
        with atomic_path(self.history_path) as tmp:
            tmp.write_text(json.dumps(self.history, indent=2))

    def _save_best(self, metric: str, value: float, weights: str) -> None:
        """Keep the generator's `weights` ("raw" or "ema") as the best, in memory and best.pt."""
        state = self.ema if weights == "ema" else self.generator.state_dict()
        self.best = {
            "generator": {k: v.detach().clone().cpu() for k, v in state.items()},
            "metric": metric,
            "value": value,
            "weights": weights,
            "epoch": self.epoch,
        }
        if self.world.is_main:
            save_checkpoint(
                self.best_path,
                {
                    "generator": {
                        "kwargs": dict(self.generator.kwargs),
                        "state": self.best["generator"],
                    },
                    "config": self.full_config,
                    "metadata": {
                        "epoch": self.epoch,
                        "step": self.step,
                        metric: value,
                        "weights": weights,
                    },
                },
            )

    # --- loop --------------------------------------------------------------------------

    def train(self) -> list[dict[str, Any]]:
        """Run the remaining epochs; returns the history."""
        while self.epoch < self.cfg.epochs:
            start, cpu_start = time.time(), _cpu_seconds()
            train_stats = self._train_epoch()
            self.epoch += 1
            entry: dict[str, Any] = {"epoch": self.epoch, "step": self.step, "train": train_stats}
            if self.valid_set is not None and self.epoch % self.cfg.eval_every == 0:
                entry["valid"] = self.validate()
                candidates = {"raw": entry["valid"][self.cfg.valid_metric]}
                if self.ema is not None:
                    with self._ema_weights():
                        entry["valid_ema"] = self.validate()
                    candidates["ema"] = entry["valid_ema"][self.cfg.valid_metric]
                weights, value = min(candidates.items(), key=lambda item: item[1])
                if self.best.get("metric") != self.cfg.valid_metric:  # none yet, or another
                    self.best = {}
                if not self.best or value < self.best["value"]:  # lower is better (LSD, PAQM)
                    self._save_best(self.cfg.valid_metric, value, weights)
                    entry["best"] = weights
            entry["seconds"] = time.time() - start
            entry["cpu_seconds"] = _cpu_seconds() - cpu_start  # this process and its loaders
            self.history.append(entry)
            self._save()
            if self.world.is_main:
                self.logger.epoch(entry, self.step)
        return self.history

    def _loader(self) -> DataLoader:
        sampler = None
        if self.world.distributed:
            sampler = DistributedSampler(
                self.train_set, self.world.size, self.world.rank, shuffle=True, seed=self.cfg.seed
            )
            sampler.set_epoch(self.epoch)
        generator = torch.Generator().manual_seed(self.cfg.seed + self.epoch)
        return DataLoader(
            self.train_set,
            self.cfg.batch_size,
            shuffle=sampler is None,
            sampler=sampler,
            generator=generator,
            drop_last=True,
            num_workers=self.cfg.num_workers,
            pin_memory=self.device.type == "cuda",
        )

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast("cuda", dtype=self.amp_dtype)

    def _check(self, name: str, value: torch.Tensor) -> None:
        if torch.isfinite(value):
            return
        last = (
            f"the last good one is {self.checkpoint_path} (epoch {self.epoch})"
            if self.checkpoint_path.is_file()
            else "none was written yet"
        )
        raise NonFiniteLossError(
            f"{name} loss is {value.item()} at step {self.step} (epoch {self.epoch + 1}); "
            f"stopping without writing a checkpoint ({last}); lower lr or try amp=none"
        )

    def _train_epoch(self) -> dict[str, float]:
        self.generator.train()
        self.discriminator.train()
        loader = self._loader()
        total = len(loader)
        if self.cfg.max_steps_per_epoch:
            total = min(total, self.cfg.max_steps_per_epoch)
        if total == 0:
            raise RuntimeError("no training batch: the training set is smaller than a batch")
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}  # the GAN terms exist only from `adversarial_start` on
        bar = tqdm(
            loader,
            total=total,
            desc=f"epoch {self.epoch + 1}/{self.cfg.epochs}",
            disable=not self.world.is_main,
            leave=False,
        )
        for index, (lr, hr) in enumerate(bar):
            if index >= total:
                break
            stats = self.train_step(lr.to(self.device), hr.to(self.device))
            self.step += 1
            for key, value in stats.items():
                sums[key] = sums.get(key, 0.0) + value
                counts[key] = counts.get(key, 0) + 1
            bar.set_postfix(mrstft=f"{stats['mrstft']:.3f}")
            if self.world.is_main:
                self.logger.step(stats, self.step)
        return {k: mean_across(v / counts[k], self.world, self.device) for k, v in sums.items()}

    def train_step(self, lr: torch.Tensor, hr: torch.Tensor) -> dict[str, float]:
        """One generator step, then one discriminator step, on a batch (lr, hr).

        Before step `adversarial_start` the generator learns from the STFT loss alone and the
        discriminator not at all; for `discriminator_warmup` steps after it the discriminator
        learns while the generator still ignores it (a fresh discriminator's gradients would
        only damage a trained generator).

        The discriminator's parameters do not change during the generator step, and its
        step sees the same real and generated clips, so one discriminator forward pass over
        the real and one over the generated clips serve both steps: their hinge loss is the
        D step's loss exactly. Each backward pass reaches only its own network's parameters
        (`inputs=`): the discriminator's weight gradients are not computed for the
        generator's loss, nor the generator's for the discriminator's loss, which therefore
        sees `fake` as detached; and the generator's pass goes back through D(fake) alone
        (the real features enter its loss detached).
        """
        cfg = self.cfg
        rate = learning_rate(
            self.step, cfg.lr, cfg.lr_schedule, cfg.lr_start, cfg.lr_period, cfg.lr_min
        )
        for group in (*self.opt_g.param_groups, *self.opt_d.param_groups):
            group["lr"] = rate
        stats: dict[str, float] = {"lr": rate}
        gan = self.cfg.adversarial and self.step >= self.cfg.adversarial_start
        g_gan = gan and self.step >= self.cfg.adversarial_start + self.cfg.discriminator_warmup
        with self._autocast():
            fake = self.g_model(lr)
            loss = self.stft_loss(fake, hr)
            stats["mrstft"] = loss.item()
            if self.mel_loss is not None:
                mel = self.mel_loss(fake, hr)
                loss = loss + self.cfg.lambda_mel * mel
                stats["mel"] = mel.item()
            if self.envelope_loss is not None:
                envelope = self.envelope_loss(fake, hr)
                loss = loss + self.cfg.lambda_envelope * envelope
                stats["envelope"] = envelope.item()
            if gan:  # during the warm-up the discriminator learns on its own
                real_feats = self.d_model(hr)
                fake_feats = self.d_model(fake if g_gan else fake.detach())
                d_loss = discriminator_loss(real_feats, fake_feats)
            if gan:  # logged during the warm-up too: what the terms would weigh
                adv = generator_adversarial_loss(fake_feats)
                feat = feature_matching_loss(real_feats, fake_feats, self.cfg.lambda_features)
                stats["adversarial"], stats["features"] = adv.item(), feat.item()
            if g_gan:
                loss = loss + self.cfg.lambda_adversarial * adv + feat
        self._check("generator", loss)
        if gan:
            self._check("discriminator", d_loss)
            # first, keeping the graph: the generator's pass below then frees all of it
            self.opt_d.zero_grad(set_to_none=True)
            self._backward(d_loss, self.discriminator, retain_graph=g_gan)
        self.opt_g.zero_grad(set_to_none=True)
        self._backward(loss, self.generator)
        self.scaler.unscale_(self.opt_g)
        stats["grad_norm_g"] = _grad_norm(self.generator)
        self.scaler.step(self.opt_g)
        if gan:
            self.scaler.unscale_(self.opt_d)
            stats["grad_norm_d"] = _grad_norm(self.discriminator)
            self.scaler.step(self.opt_d)
            stats["discriminator"] = d_loss.item()
        self.scaler.update()
        self._update_ema()
        return stats

    @torch.no_grad()
    def _update_ema(self) -> None:
        """ema ← decay · ema + (1 − decay) · weights, for floating tensors; others are copied."""
        if self.ema is None:
            return
        for key, value in self.generator.state_dict().items():
            if value.is_floating_point():
                self.ema[key].lerp_(value.detach(), 1.0 - self.cfg.ema_decay)
            else:
                self.ema[key].copy_(value)

    @contextmanager
    def _ema_weights(self) -> Iterator[None]:
        """The generator holds the moving average inside the block, its own weights after."""
        own = {k: v.detach().clone() for k, v in self.generator.state_dict().items()}
        self.generator.load_state_dict(self.ema)
        try:
            yield
        finally:
            self.generator.load_state_dict(own)

    def _backward(
        self, loss: torch.Tensor, model: torch.nn.Module, retain_graph: bool = False
    ) -> None:
        """Gradients of the (scaled) `loss` into `model`'s parameters alone."""
        params = [p for p in model.parameters() if p.requires_grad]
        self.scaler.scale(loss).backward(inputs=params, retain_graph=retain_graph)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """LSD (full, high and low band), PAQM and the generated band's level error and envelope
        spread (`aeromamba.metrics.band_level.KEYS`) of the generator on the validation items;
        a value undefined for an item (silent segment) is left out of its mean."""
        from aeromamba.metrics.band_level import KEYS, band_level
        from aeromamba.metrics.lsd import lsd_bands
        from aeromamba.metrics.paqm import PAQM

        self.generator.eval()
        indices = range(self.world.rank, len(self.valid_set), self.world.size)
        sums: dict[str, float] = {}
        count = 0
        paqm = PAQM(self.generator.hr_sr, dtype=torch.float32)
        for index in tqdm(indices, desc="validation", leave=False, disable=not self.world.is_main):
            lr, hr = self.valid_set[index]
            estimate = self.generator(lr[None].to(self.device))[0, 0].float().cpu()
            reference = hr[0]
            scores = {
                k: float(v)
                for k, v in lsd_bands(estimate, reference, sr=self.generator.hr_sr).items()
            }
            try:
                scores["paqm"] = float(paqm(estimate, reference))
            except ValueError:  # a silent validation segment has no PAQM frame
                scores["paqm"] = math.nan
            scores |= band_level(estimate, reference, self.generator.hr_sr)
            for key, value in scores.items():
                if math.isfinite(value):
                    sums[key] = sums.get(key, 0.0) + value
                    sums[f"_n_{key}"] = sums.get(f"_n_{key}", 0) + 1
            count += 1
        keys = ("lsd", "lsd_hf", "lsd_lf", "paqm", *KEYS)
        result = {}
        for key in keys:
            total = mean_across(sums.get(key, 0.0), self.world, self.device)
            n = mean_across(sums.get(f"_n_{key}", 0), self.world, self.device)
            result[key] = total / n if n else math.nan
        self.generator.train()
        return result


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process and its finished children (data loaders)."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _with_defaults(model: torch.nn.Module, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The constructor arguments of `model`'s class: its defaults updated with `kwargs`."""
    parameters = inspect.signature(type(model).__init__).parameters.values()
    defaults = {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}
    merged = defaults | dict(kwargs)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in merged.items()}


def _grad_norm(model: torch.nn.Module) -> float:
    grads = [p.grad.detach().norm() for p in model.parameters() if p.grad is not None]
    return torch.stack(grads).norm().item() if grads else 0.0
