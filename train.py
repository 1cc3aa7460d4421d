"""Train AEROMamba / AERO: `python train.py [experiment=aeromamba] [dset=musdb] [key=value ...]`.

Under `torchrun --nproc_per_node=N train.py ...` it trains with DistributedDataParallel.
The run directory (hydra.run.dir) holds checkpoint.pt, best.pt and history.json; running the
same command again resumes.
"""

from __future__ import annotations

import logging
import random
import sys
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Subset

from aeromamba.checkpoint import CheckpointError
from aeromamba.models import Aero, MultiScaleDiscriminator
from aeromamba.summary import count_parameters, structure_summary

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


def run(cfg: DictConfig) -> None:
    """Prepare the data if needed, build everything and train."""
    from aeromamba.allocator import keep_freed_memory
    from aeromamba.data import PairedSegments, ensure_prepared
    from aeromamba.devices import select_device
    from aeromamba.training.distributed import close_world, init_world, local_device
    from aeromamba.training.logging import RunLogger
    from aeromamba.training.solver import Solver, TrainConfig

    if cfg.keep_freed_memory:
        keep_freed_memory()
    device = select_device(cfg.device)
    world = init_world(device)
    device = local_device(device, world)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    dset, exp = cfg.dset, cfg.experiment
    if world.is_main:
        ensure_prepared(
            dset.source, dset.root, synthetic_minutes=dset.synthetic_minutes, seed=dset.seed
        )
    world.barrier()
    common = dict(lr_sr=dset.lr_sr, hr_sr=dset.hr_sr)
    train_set = PairedSegments(
        dset.root, dset.train, exp.segment, exp.stride, pad=True, min_power=dset.min_power, **common
    )
    valid_set = PairedSegments(
        dset.root,
        dset.valid,
        cfg.valid_segment,
        cfg.valid_segment,
        pad=True,
        min_power=dset.min_power,
        **common,
    )
    if len(train_set) == 0:
        raise SystemExit(
            f"{dset.root}: no training segment of {exp.segment} s with power above "
            f"dset.min_power={dset.min_power}; lower it or add data"
        )
    if cfg.max_valid_items and len(valid_set) > cfg.max_valid_items:
        step = len(valid_set) / cfg.max_valid_items  # spread over the files, deterministic
        valid_set = Subset(valid_set, [int(i * step) for i in range(cfg.max_valid_items)])
    batch_size = exp.batch_size
    if cfg.batch_size_mode == "global":
        batch_size = max(1, batch_size // world.size)
    experiment = OmegaConf.to_container(exp, resolve=True)
    full_config = OmegaConf.to_container(cfg, resolve=True)
    logger = RunLogger(cfg.wandb.mode, cfg.wandb.project, run_dir, full_config, world.is_main)
    try:
        solver = Solver(
            Aero(**experiment["aero"]),
            MultiScaleDiscriminator(**experiment["discriminator"]),
            train_set,
            valid_set if len(valid_set) else None,
            TrainConfig(
                epochs=cfg.epochs,
                batch_size=batch_size,
                lr=cfg.lr,
                beta1=cfg.beta1,
                beta2=cfg.beta2,
                adversarial=cfg.adversarial,
                lambda_features=cfg.lambda_features,
                eval_every=cfg.eval_every,
                valid_metric=cfg.valid_metric,
                max_steps_per_epoch=cfg.max_steps_per_epoch,
                num_workers=cfg.num_workers,
                amp=cfg.amp,
                seed=cfg.seed,
                restart=cfg.restart,
                continue_from=cfg.continue_from,
            ),
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
                len(valid_set),
                batch_size,
                world.size,
                device,
            )
        solver.train()
    finally:
        logger.close()
        close_world(world)


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    if cfg.show:
        show(cfg)
        return
    try:
        run(cfg)
    except CheckpointError as err:
        log.error("%s\nFix or remove the file, or pass restart=true to start again.", err)
        sys.exit(2)


if __name__ == "__main__":
    main()
