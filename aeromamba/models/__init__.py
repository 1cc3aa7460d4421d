"""Generators (AERO, AEROMamba) and the MelGAN discriminator, built from the variant presets
`aeromamba/presets/` (installed with the package; Hydra's `conf/experiment/` compose them)."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from omegaconf import DictConfig, OmegaConf

from aeromamba.models.aero import Aero
from aeromamba.models.discriminator import MultiScaleDiscriminator
from aeromamba.models.mamba import Mamba

PRESETS = files("aeromamba") / "presets"
BASE = "base"  # the settings the variants share
VARIANTS = tuple(
    sorted(
        p.name[:-5]
        for p in PRESETS.iterdir()
        if p.name.endswith(".yaml") and p.name != f"{BASE}.yaml"
    )
)

__all__ = [
    "Aero",
    "Mamba",
    "MultiScaleDiscriminator",
    "VARIANTS",
    "experiment_config",
    "make_discriminator",
    "make_generator",
]


def _preset(name: str) -> DictConfig:
    return OmegaConf.create((PRESETS / f"{name}.yaml").read_text(encoding="utf-8"))


def experiment_config(variant: str = "aeromamba") -> dict[str, Any]:
    """The experiment settings of `variant` as a plain dict: `presets/base.yaml` updated by
    `presets/<variant>.yaml`, as `python train.py experiment=<variant>` composes them."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    base = _preset(BASE)
    OmegaConf.set_struct(base, True)  # a variant's key missing from the base is a typo
    merged = OmegaConf.merge(base, _preset(variant))
    return OmegaConf.to_container(merged, resolve=True)  # type: ignore[return-value]


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
