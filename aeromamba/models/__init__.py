"""Generators (AERO, AEROMamba) and the MelGAN discriminator, built from `conf/experiment/`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from aeromamba.models.aero import Aero
from aeromamba.models.discriminator import MultiScaleDiscriminator
from aeromamba.models.mamba import Mamba

CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"
VARIANTS = ("aero", "aeromamba", "aeromamba_official")

__all__ = [
    "Aero",
    "Mamba",
    "MultiScaleDiscriminator",
    "VARIANTS",
    "experiment_config",
    "make_discriminator",
    "make_generator",
]


def experiment_config(variant: str = "aeromamba") -> dict[str, Any]:
    """The experiment config `conf/experiment/<variant>.yaml` as a plain dict."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    path = CONFIG_DIR / "experiment" / f"{variant}.yaml"
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)  # type: ignore[return-value]


def make_generator(variant: str = "aeromamba", **overrides: Any) -> Aero:
    """The generator of `variant` with the paper's hyper-parameters, updated by `overrides`
    (e.g. `channels=8` for a small test model)."""
    kwargs = experiment_config(variant)["aero"]
    unknown = set(overrides) - set(kwargs)
    if unknown:
        raise TypeError(f"unknown generator arguments: {', '.join(sorted(unknown))}")
    return Aero(**{**kwargs, **overrides})


def make_discriminator(**overrides: Any) -> MultiScaleDiscriminator:
    """The MelGAN multi-scale discriminator (num_D 3, ndf 16, n_layers 4, factor 4)."""
    return MultiScaleDiscriminator(**{**experiment_config()["discriminator"], **overrides})
