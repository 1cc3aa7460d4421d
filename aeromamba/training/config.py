"""The training configuration checked as a whole before any work, and the solver's settings
read from it.

`check_config` collects every problem of a composed Hydra config (unknown choices, values out
of range, an unavailable device, a run directory that cannot be written) into one
`ConfigError`, so a typo fails in a second, not after an epoch.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from aeromamba.cli import device_option
from aeromamba.errors import UsageError
from aeromamba.files import atomic_path
from aeromamba.training.schedule import SCHEDULES

CHOICES = {
    "valid_metric": ("lsd", "lsd_hf", "paqm"),
    "lr_schedule": SCHEDULES,
    "amp": ("none", "bf16", "fp16"),
    "batch_size_mode": ("per_process", "global"),
    "wandb.mode": ("online", "offline", "disabled"),
}


class ConfigError(UsageError):
    """A configuration that cannot train; the message lists every problem, one per line."""


@dataclasses.dataclass
class TrainConfig:
    """The plain settings the solver needs: top-level keys of the Hydra config of the same
    names, plus the experiment's batch size (see `train_config`)."""

    epochs: int
    batch_size: int
    lr: float = 3e-4
    lr_schedule: str = "constant"
    lr_start: int = 0
    lr_period: int = 1
    lr_min: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    adversarial: bool = True
    adversarial_start: int = 0
    discriminator_warmup: int = 0
    lambda_adversarial: float = 1.0
    lambda_features: float = 100.0
    stft_min_freq: float = 0.0
    lambda_mel: float = 0.0
    lambda_envelope: float = 0.0
    ema_decay: float = 0.0
    eval_every: int = 1
    valid_metric: str = "lsd"
    max_steps_per_epoch: int | None = None
    num_workers: int = 2
    amp: str = "none"
    seed: int = 2036
    restart: bool = False
    continue_from: str | None = None


def train_config(cfg: DictConfig, batch_size: int) -> TrainConfig:
    """The solver's settings: every TrainConfig field from the config's key of the same name."""
    names = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "batch_size"]
    return TrainConfig(batch_size=batch_size, **{name: cfg[name] for name in names})


def _get(cfg: DictConfig, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = node[part]
    return node


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _positive(v: Any) -> bool:
    return _number(v) and v > 0


def _non_negative(v: Any) -> bool:
    return _number(v) and v >= 0


def _not_positive(v: Any) -> bool:
    return _number(v) and v <= 0


def _fraction(v: Any) -> bool:
    return _number(v) and 0 <= v < 1


def _int_from(low: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low


def _optional(rule: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or rule(v)


def _writable_problem(run_dir: Path) -> str | None:
    probe = run_dir / f".write_check.{os.getpid()}"  # one per process: DDP ranks check at once
    try:
        with atomic_path(probe) as tmp:
            tmp.write_text("ok\n")
        probe.unlink()
    except OSError as err:
        return f"run directory {run_dir} cannot be written ({err.strerror or err})"
    return None


def check_config(cfg: DictConfig, run_dir: Path | None = None) -> None:
    """Raise ConfigError naming every problem of the training config `cfg`, if any.

    With `run_dir`, also check that it can be created and written (a probe file is written
    atomically and removed).
    """
    problems = []
    for key, allowed in CHOICES.items():
        value = _get(cfg, key)
        if value not in allowed:
            problems.append(f"{key}={value}: must be one of {', '.join(allowed)}")
    exp, dset = cfg.experiment, cfg.dset
    rules: list[tuple[str, Any, Callable[[Any], bool], str]] = [
        ("epochs", cfg.epochs, _int_from(1), "a whole number >= 1"),
        ("lr", cfg.lr, _positive, "a positive number"),
        ("lr_start", cfg.lr_start, _int_from(0), "a whole number >= 0 (a step)"),
        ("lr_period", cfg.lr_period, _int_from(1), "a whole number >= 1 (steps)"),
        ("lr_min", cfg.lr_min, _non_negative, "a number >= 0"),
        ("beta1", cfg.beta1, _fraction, "in [0, 1)"),
        ("beta2", cfg.beta2, _fraction, "in [0, 1)"),
        ("lambda_adversarial", cfg.lambda_adversarial, _non_negative, "a number >= 0"),
        ("lambda_features", cfg.lambda_features, _non_negative, "a number >= 0"),
        ("stft_min_freq", cfg.stft_min_freq, _non_negative, "a number >= 0 (Hz)"),
        ("lambda_mel", cfg.lambda_mel, _non_negative, "a number >= 0"),
        ("lambda_envelope", cfg.lambda_envelope, _non_negative, "a number >= 0"),
        ("ema_decay", cfg.ema_decay, _fraction, "in [0, 1) (0: no moving average)"),
        ("adversarial_start", cfg.adversarial_start, _int_from(0), "a whole number >= 0"),
        ("discriminator_warmup", cfg.discriminator_warmup, _int_from(0), "a whole number >= 0"),
        ("eval_every", cfg.eval_every, _int_from(1), "a whole number >= 1"),
        ("num_workers", cfg.num_workers, _int_from(0), "a whole number >= 0"),
        ("max_steps_per_epoch", cfg.max_steps_per_epoch, _optional(_int_from(1)), "null or >= 1"),
        ("max_valid_items", cfg.max_valid_items, _optional(_int_from(1)), "null or >= 1"),
        ("valid_segment", cfg.valid_segment, _positive, "positive (seconds)"),
        ("experiment.batch_size", exp.batch_size, _int_from(1), "a whole number >= 1"),
        ("experiment.segment", exp.segment, _positive, "positive (seconds)"),
        ("experiment.stride", exp.stride, _optional(_positive), "null (the segment) or > 0 s"),
        ("dset.min_dbfs", dset.min_dbfs, _optional(_not_positive), "null or a level <= 0 dBFS"),
    ]
    rules += [
        (f"dset.repeat.{group}", times, _int_from(1), "a whole number >= 1")
        for group, times in dset.repeat.items()
    ]
    problems += [
        f"{key}={value}: must be {what}" for key, value, ok, what in rules if not ok(value)
    ]
    if cfg.continue_from and not Path(cfg.continue_from).is_file():
        problems.append(f"continue_from={cfg.continue_from}: no such file")
    try:
        device_option(str(cfg.device))
    except UsageError as err:
        problems.append(str(err))
    if not problems and run_dir is not None:
        if (writable := _writable_problem(Path(run_dir))) is not None:
            problems.append(writable)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
