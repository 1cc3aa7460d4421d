"""Train AEROMamba / AERO: `python train.py [experiment=aeromamba] [dset=musdb] [key=value ...]`.

Under `torchrun --nproc_per_node=N train.py ...` it trains with DistributedDataParallel.
The run directory (hydra.run.dir) holds checkpoint.pt, best.pt and history.json; running the
same command again resumes. One training at a time holds a run directory (its train.lock); a
run that starts afresh there (restart=true) first moves the previous run's files aside.
"""

from __future__ import annotations

import logging
import os
import random
import signal
from contextlib import nullcontext
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Dataset, Subset

from aeromamba.allocator import keep_freed_memory
from aeromamba.cli import Terminated, entry_point, fail
from aeromamba.data import PairedSegments, ensure_prepared
from aeromamba.devices import select_device
from aeromamba.errors import UsageError
from aeromamba.files import atomic_path
from aeromamba.models import Aero, MultiScaleDiscriminator
from aeromamba.summary import count_parameters, structure_summary
from aeromamba.training.config import check_config, train_config
from aeromamba.training.distributed import (
    close_world,
    hold_run_directory,
    init_world,
    local_device,
)
from aeromamba.training.logging import RunLogger
from aeromamba.training.solver import Solver

log = logging.getLogger("aeromamba.train")


def show(cfg: DictConfig) -> None:
    """Print each network's structure and parameter count."""
    experiment = OmegaConf.to_container(cfg.experiment, resolve=True)
    generator = Aero(**experiment["aero"])
    discriminator = MultiScaleDiscriminator(**experiment["discriminator"])
    print(f"experiment: {cfg.experiment.name}")
    print(structure_summary(generator))
    print(structure_summary(discriminator))
    print(f"generator parameters: {count_parameters(generator)}")
    print(f"discriminator parameters: {count_parameters(discriminator)}")


def _datasets(cfg: DictConfig, batch_size: int) -> tuple[PairedSegments, Dataset | None]:
    """The training segments and the validation items, checked to be usable."""
    dset, exp = cfg.dset, cfg.experiment
    rates = dict(lr_sr=exp.aero.lr_sr, hr_sr=exp.aero.hr_sr, min_dbfs=dset.min_dbfs, pad=True)
    train_set = PairedSegments(
        dset.root, dset.train, exp.segment, exp.stride, repeat=dset.repeat, **rates
    )
    valid_set = PairedSegments(dset.root, dset.valid, cfg.valid_segment, **rates)
    if len(train_set) < batch_size:
        raise UsageError(
            f"{dset.root}: {len(train_set)} training segment(s) of {exp.segment} s louder than "
            f"dset.min_dbfs={dset.min_dbfs}, fewer than one batch of {batch_size}; add data, "
            f"lower experiment.batch_size or dset.min_dbfs"
        )
    if len(valid_set) == 0:
        log.warning(
            "%s: the validation split '%s' has no item: no validation, and best.pt is not "
            "written (checkpoint.pt holds the latest weights)",
            dset.root,
            dset.valid,
        )
        return train_set, None
    if cfg.max_valid_items and len(valid_set) > cfg.max_valid_items:
        step = len(valid_set) / cfg.max_valid_items  # spread over the files, deterministic
        return train_set, Subset(valid_set, [int(i * step) for i in range(cfg.max_valid_items)])
    return train_set, valid_set


def record_config(cfg: DictConfig, run_dir: Path) -> None:
    """The run's composed config and command-line overrides, in `run_dir/.hydra` as Hydra names
    them; written here, once the run holds the directory, so that a refused second training
    never replaces the record of the one that runs."""
    overrides = OmegaConf.create(list(HydraConfig.get().overrides.task))
    for name, content in (("config.yaml", cfg), ("overrides.yaml", overrides)):
        with atomic_path(run_dir / ".hydra" / name) as tmp:
            OmegaConf.save(content, tmp)


def run(cfg: DictConfig, run_dir: Path) -> None:
    """Prepare the data if needed, build everything and train."""
    device = select_device(cfg.device)
    if cfg.keep_freed_memory:
        keep_freed_memory()
    world = init_world(device)
    device = local_device(device, world)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    dset, exp = cfg.dset, cfg.experiment
    if world.is_main:
        ensure_prepared(
            dset.source, dset.root, synthetic_minutes=dset.synthetic_minutes, seed=dset.seed
        )
    world.barrier()
    batch_size = exp.batch_size
    if cfg.batch_size_mode == "global":
        batch_size = max(1, batch_size // world.size)
    train_set, valid_set = _datasets(cfg, batch_size)
    experiment = OmegaConf.to_container(exp, resolve=True)
    full_config = OmegaConf.to_container(cfg, resolve=True)
    logger = RunLogger(cfg.wandb.mode, cfg.wandb.project, run_dir, full_config, world.is_main)
    try:
        solver = Solver(
            Aero(**experiment["aero"]),
            MultiScaleDiscriminator(**experiment["discriminator"]),
            train_set,
            valid_set,
            train_config(cfg, batch_size),
            run_dir,
            device,
            world,
            full_config,
            logger,
        )
        if world.is_main:
            log.info(
                "training %s on %s: %d segments, %d validation items, batch %d x %d "
                "process(es), device %s",
                exp.name,
                dset.name,
                len(train_set),
                len(valid_set) if valid_set is not None else 0,
                batch_size,
                world.size,
                device,
            )
        solver.train()
    finally:
        logger.close()
        close_world(world)


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
@entry_point
def main(cfg: DictConfig) -> None:
    if cfg.show:
        show(cfg)
        return
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    check_config(cfg, run_dir)
    first_process = int(os.environ.get("RANK", "0")) == 0  # torchrun's rank 0 holds the run
    try:
        with hold_run_directory(run_dir) if first_process else nullcontext():
            if first_process:
                record_config(cfg, run_dir)
            run(cfg, run_dir)
    except (KeyboardInterrupt, Terminated) as stop:
        checkpoint = run_dir / "checkpoint.pt"
        where = (
            f"the same command resumes from {checkpoint}"
            if checkpoint.is_file()
            else "no checkpoint was written yet"
        )
        signum = signal.SIGINT if isinstance(stop, KeyboardInterrupt) else signal.SIGTERM
        fail(f"{'interrupted' if signum == signal.SIGINT else 'terminated'}; {where}", 128 + signum)


if __name__ == "__main__":
    main()
