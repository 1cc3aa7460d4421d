"""Train AEROMamba / AERO: `python train.py [experiment=aeromamba] [dset=musdb] [key=value ...]`."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from aeromamba.models import Aero, MultiScaleDiscriminator
from aeromamba.summary import count_parameters, structure_summary


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


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    if cfg.show:
        show(cfg)
        return
    raise SystemExit("training is not implemented yet; use show=true to inspect the networks")


if __name__ == "__main__":
    main()
