"""Checkpoints: the project's own safe format, and import of the authors' release files.

The project's format is a dict of plain containers and tensors, read with
`torch.load(weights_only=True)`:

    {"format": "aeromamba", "version": 1,
     "generator": {"kwargs": {...}, "state": state_dict},
     "discriminator": {"kwargs": {...}, "state": state_dict},      # optional
     "best": {"generator": state_dict, ...},                       # optional
     "optimizers": {...}, "epoch": int, "step": int, "history": [...],  # training only
     "config": {...}, "metadata": {...}}

A model is stored with the constructor arguments that rebuild it. The release's files
(`checkpoint.th` training packages, `*_best.th` single models) are pickles naming the classes of
its `src` package and OmegaConf containers; they are read with a restricted unpickler that
resolves only an allow-list, maps those classes to inert placeholders and never runs code
from the file.
"""

from __future__ import annotations

import inspect
import os
import pickle
import types
import zipfile
import zlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aeromamba.errors import UsageError
from aeromamba.files import atomic_path
from aeromamba.models import Aero, MultiScaleDiscriminator

FORMAT = "aeromamba"
VERSION = 1


class CheckpointError(UsageError, RuntimeError):
    """A checkpoint that cannot be loaded; the message names the file and the reason."""


def save_checkpoint(path: str | os.PathLike, package: dict[str, Any]) -> None:
    """Write `package` (the project's format) atomically: temporary file, then rename."""
    package = {"format": FORMAT, "version": VERSION, **package}
    with atomic_path(path) as tmp:
        torch.save(package, tmp)


def model_package(model: nn.Module) -> dict[str, Any]:
    """{"kwargs", "state"} of a project model, enough to rebuild it."""
    return {"kwargs": dict(model.kwargs), "state": model.state_dict()}


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint of either format and return it in the project's format.

    Raises CheckpointError for a missing, truncated or corrupt file, and for a release file
    that references anything outside the allow-list.
    """
    path = _existing_file(path)
    if _is_release_file(path):
        return convert_release(_load_release(path), source=path)
    try:
        package = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused, the file holds objects other than tensors and plain containers "
            f"({err})"
        ) from err
    except Exception as err:  # zip/EOF errors of a truncated file vary
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({err})") from err
    if not isinstance(package, dict) or package.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an AEROMamba checkpoint (no 'format' marker)")
    if package.get("version", 0) > VERSION:
        raise CheckpointError(f"{path}: written by a newer version ({package['version']})")
    return package


def build_generator(package: dict[str, Any], which: str = "best") -> Aero:
    """The generator of a checkpoint package, in eval mode on the CPU.

    `which` is "best" (the best state when the package has one, else the last) or "last".
    """
    spec = package["generator"]
    model = Aero(**spec["kwargs"])
    state = spec["state"]
    if which == "best" and "generator" in package.get("best", {}):
        state = package["best"]["generator"]
    model.load_state_dict(state)
    return model.eval()


def build_discriminator(package: dict[str, Any]) -> MultiScaleDiscriminator:
    """The discriminator stored in a training checkpoint package."""
    spec = package["discriminator"]
    model = MultiScaleDiscriminator(**spec["kwargs"])
    model.load_state_dict(spec["state"])
    return model


def load_generator(
    path: str | os.PathLike, device: str | torch.device = "cpu", which: str = "best"
) -> Aero:
    """Load a generator from a project or release checkpoint, ready for inference."""
    return build_generator(load_checkpoint(path), which).to(device)


def import_official(
    src: str | os.PathLike, dest: str | os.PathLike, overwrite: bool = False
) -> dict[str, Any]:
    """Convert a release checkpoint into the project's format at `dest`; returns the package.

    `dest` is never the release file itself, and an existing `dest` is replaced only with
    `overwrite`; CheckpointError otherwise, before anything is read.
    """
    src, dest = _existing_file(src), Path(dest)
    if dest.exists() and os.path.samefile(src, dest):
        raise CheckpointError(f"{src}: the output would overwrite the release file")
    if dest.is_dir():
        raise CheckpointError(f"{dest}: is a folder; give the output file's name")
    if dest.exists() and not overwrite:
        raise CheckpointError(f"{dest}: exists; pass --overwrite to replace it")
    if not _is_release_file(src):
        raise CheckpointError(f"{src}: not a release checkpoint (no `src.models` classes)")
    package = convert_release(_load_release(src), source=src)
    save_checkpoint(dest, {k: v for k, v in package.items() if k not in ("format", "version")})
    return package


# --- the release's files ---------------------------------------------------------------------

# Generator arguments of the release that this project has no switch for: they must hold the
# value the paper used (anything else describes a network this project does not build).
_RELEASE_FIXED = {
    "in_channels": 1,
    "out_channels": 1,
    "cac": True,
    "rewrite": True,
    "hybrid": False,
    "hybrid_old": False,
    "dconv_mode": 1,
    "spec_upsample": True,
}
# Release arguments with no effect on the network as configured by the paper's settings.
_RELEASE_INERT = {"end_iters", "freq_ends", "debug"}


class _Placeholder:
    """Inert stand-in for a class of the release or of OmegaConf: it only keeps its state."""

    qualname = "?"

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _placeholder(module: str, name: str) -> type:
    return type(name, (_Placeholder,), {"qualname": f"{module}.{name}"})


_TYPING_ANY = object()
_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): __import__("collections").OrderedDict,
    ("collections", "defaultdict"): __import__("collections").defaultdict,
    ("builtins", "dict"): dict,
    ("builtins", "list"): list,
    ("builtins", "tuple"): tuple,
    ("builtins", "set"): set,
    ("builtins", "int"): int,
    ("builtins", "float"): float,
    ("builtins", "bool"): bool,
    ("builtins", "str"): str,
    ("builtins", "NoneType"): type(None),
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch", "Size"): torch.Size,
    ("typing", "Any"): _TYPING_ANY,
}
_SAFE_GLOBALS.update(
    {("torch", name): getattr(torch, name) for name in dir(torch) if name.endswith("Storage")}
)
_PLACEHOLDER_MODULES = ("src.models.", "omegaconf.")


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only `_SAFE_GLOBALS`; release and OmegaConf classes become placeholders."""

    def find_class(self, module: str, name: str) -> Any:
        module = {"__builtin__": "builtins"}.get(module, module)
        if name == "long" and module == "builtins":
            return int
        if (module, name) in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[(module, name)]
        if module.startswith(_PLACEHOLDER_MODULES):
            return _placeholder(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: not on the allow-list of checkpoint contents"
        )


_restricted_pickle = types.ModuleType("aeromamba_restricted_pickle")
_restricted_pickle.Unpickler = _RestrictedUnpickler  # type: ignore[attr-defined]
_restricted_pickle.load = pickle.load  # type: ignore[attr-defined]


def _existing_file(path: str | os.PathLike) -> Path:
    """`path` as a Path; CheckpointError when it is missing or a folder."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    return path


def _is_release_file(path: Path) -> bool:
    """Whether the pickle inside `path` names classes of the release's `src` package.

    A file that starts as a zip archive (as every checkpoint since PyTorch 1.6) but cannot be
    read as one was cut short or damaged: CheckpointError, not "some other format".
    """
    with path.open("rb") as file:
        zipped = file.read(4) == b"PK\x03\x04"
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("data.pkl")]
            data = archive.read(names[0]) if names else b""
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as err:
        if zipped:
            raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({err})") from err
        return False
    return b"src.models" in data


def _load_release(path: Path) -> dict[str, Any]:
    try:
        return torch.load(
            path, map_location="cpu", pickle_module=_restricted_pickle, weights_only=False
        )
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"{path}: {err}") from err
    except Exception as err:  # zip/EOF errors of a truncated file vary
        raise CheckpointError(f"{path}: truncated or corrupt release checkpoint ({err})") from err


def _plain(value: Any) -> Any:
    """Placeholders of OmegaConf containers/nodes → plain dicts, lists and values."""
    if isinstance(value, _Placeholder):
        state = getattr(value, "state", {})
        if "_content" in state:
            return _plain(state["_content"])
        if "_val" in state:
            return _plain(state["_val"])
        raise CheckpointError(f"unexpected object {value.qualname} in a release checkpoint")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _generator_kwargs(release_kwargs: dict[str, Any], source: Path) -> dict[str, Any]:
    """Map the release's `Aero` constructor arguments to this project's `Aero`."""
    kwargs = _plain(release_kwargs)
    for key, expected in _RELEASE_FIXED.items():
        if key in kwargs and kwargs.pop(key) != expected:
            raise CheckpointError(
                f"{source}: generator argument {key}={release_kwargs[key]!r} is not supported "
                f"(only {expected!r})"
            )
    for key in _RELEASE_INERT:
        kwargs.pop(key, None)
    kwargs.setdefault("dconv_mamba", 4)  # AERO's own release had no Mamba argument
    kwargs["mamba_executed"] = False  # the release builds Mamba and never calls it
    known = set(inspect.signature(Aero).parameters)
    unknown = set(kwargs) - known
    if unknown:
        raise CheckpointError(
            f"{source}: unknown generator arguments {sorted(unknown)}; cannot rebuild the model"
        )
    return kwargs


def _release_model(entry: Any, expected: str, source: Path) -> dict[str, Any]:
    if not isinstance(entry, dict) or "state" not in entry or "kwargs" not in entry:
        raise CheckpointError(f"{source}: expected a serialised model with class/kwargs/state")
    cls = entry.get("class")
    qualname = cls.qualname if isinstance(cls, type) and issubclass(cls, _Placeholder) else cls
    if qualname != expected:
        raise CheckpointError(f"{source}: expected a {expected} model, found {qualname}")
    if entry.get("args"):
        raise CheckpointError(f"{source}: positional constructor arguments are not supported")
    return entry


def convert_release(raw: dict[str, Any], source: Path) -> dict[str, Any]:
    """A loaded release file (training package or single model) in the project's format."""
    training = "models" in raw
    gen = _release_model(
        raw["models"]["generator"] if training else raw, "src.models.aero.Aero", source
    )
    package: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "generator": {
            "kwargs": _generator_kwargs(gen["kwargs"], source),
            "state": dict(gen["state"]),
        },
        "metadata": {"source": str(source), "origin": "authors' release"},
    }
    if not training:
        return package
    disc = raw["models"].get("msd_melgan")
    if disc is not None:
        disc = _release_model(disc, "src.models.discriminators.Discriminator", source)
        state = dict(disc["state"])
        kwargs = _plain(disc["kwargs"])
        # The release caps the width below MelGAN's 1024 for narrow discriminators; read the
        # cap off the widest layer rather than guess the rule.
        kwargs["max_channels"] = max(t.shape[0] for k, t in state.items() if k.endswith("weight_v"))
        package["discriminator"] = {"kwargs": kwargs, "state": state}
    best = raw.get("best_states") or {}
    package["best"] = {
        name: dict(best[key])
        for name, key in (("generator", "generator"), ("discriminator", "msd_melgan"))
        if key in best
    }
    optimizers = raw.get("optimizers") or {}
    package["optimizers"] = {
        name: optimizers[key]
        for name, key in (("generator", "optimizer"), ("discriminator", "disc_optimizer"))
        if key in optimizers
    }
    package["history"] = _plain(raw.get("history", []))
    package["epoch"] = len(package["history"])
    if "args" in raw:
        package["config"] = _plain(raw["args"])
    return package
