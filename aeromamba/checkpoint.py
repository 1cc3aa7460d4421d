"""Checkpoints: the project's own safe format, and import of the authors' release files.

The project's format is a dict of plain containers and tensors, written by `torch.save`:

    {"format": "aeromamba", "version": 1,
     "generator": {"kwargs": {...}, "state": state_dict},
     "discriminator": {"kwargs": {...}, "state": state_dict},      # optional
     "best": {"generator": state_dict, ...},                       # optional
     "optimizers": {...}, "epoch": int, "step": int, "history": [...],  # training only
     "config": {...}, "metadata": {...}}

A model is stored with the constructor arguments that rebuild it. The release's files
(`checkpoint.th` training packages, `*_best.th` single models) are pickles naming the classes of
its `src` package and OmegaConf containers.

`load_checkpoint` is the one reader of both. A file must be a zip archive from its first byte
to its last, with stored (uncompressed) members, as `torch.save` writes; anything else (legacy
and tar formats, bare pickles, data before or after the archive) is refused unread. Its
`data.pkl` (at most MAX_PICKLE_BYTES) is unpickled here, never by torch: an allow-list of plain
containers and tensors, whose storages are read from members of exactly the declared size; for
release files also the release's and OmegaConf's classes, as inert placeholders. No code from a
file runs, and memory stays bounded by the file's size.
"""

from __future__ import annotations

import inspect
import io
import math
import os
import pickle
import struct
import sys
import zipfile
from collections import OrderedDict, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn
from torch.distributions import Distribution

from aeromamba.errors import UsageError
from aeromamba.files import atomic_path
from aeromamba.models import Aero, MultiScaleDiscriminator

FORMAT = "aeromamba"
VERSION = 1
# What zipfile raises for damaged records: besides BadZipFile and short reads, fields it does
# not support (a flipped version or flag byte: NotImplementedError), names that do not decode
# (UnicodeDecodeError, a ValueError), offsets beyond a file position (OverflowError) and
# records that do not unpack (struct.error).
DAMAGED_ZIP = (
    zipfile.BadZipFile,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,
    OverflowError,
    struct.error,
)


class CheckpointError(UsageError):
    """A checkpoint that cannot be loaded; the message names the file and the reason."""


def save_checkpoint(path: str | os.PathLike, package: dict[str, Any]) -> None:
    """Write `package` (the project's format) atomically: temporary file, then rename. The
    same package gives the same bytes (torch.save names the archive's records after a file
    it is given by name, here the temporary's, so it gets a file object)."""
    package = {"format": FORMAT, "version": VERSION, **package}
    with atomic_path(path) as tmp, tmp.open("wb") as file:
        torch.save(package, file)


def model_package(model: nn.Module) -> dict[str, Any]:
    """{"kwargs", "state"} of a project model, enough to rebuild it."""
    return {"kwargs": dict(model.kwargs), "state": model.state_dict()}


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint of either format and return it in the project's format.

    Raises CheckpointError, in one line naming the file, for a missing, truncated, corrupt or
    malformed file, and for one that references anything outside the allow-list.
    """
    path = _existing_file(path)
    raw, release = _read(path)
    if release:
        return convert_release(raw, source=path)
    return _checked_package(raw, path)


def build_generator(
    package: dict[str, Any], which: str = "best", source: str | os.PathLike | None = None
) -> Aero:
    """The generator of a checkpoint package, in eval mode on the CPU.

    `which` is "best" (the best state when the package has one, else the last) or "last";
    `source` names the file in messages.
    """
    where = source or "checkpoint"
    spec = _model_spec(package, "generator", where)
    best = package.get("best")
    state = spec["state"]
    if which == "best" and isinstance(best, dict) and "generator" in best:
        state = best["generator"]
    return _build(Aero, spec["kwargs"], state, f"{where}: generator").eval()


def build_discriminator(
    package: dict[str, Any], source: str | os.PathLike | None = None
) -> MultiScaleDiscriminator:
    """The discriminator stored in a training checkpoint package."""
    where = source or "checkpoint"
    spec = _model_spec(package, "discriminator", where)
    return _build(MultiScaleDiscriminator, spec["kwargs"], spec["state"], f"{where}: discriminator")


def load_generator(
    path: str | os.PathLike, device: str | torch.device = "cpu", which: str = "best"
) -> Aero:
    """Load a generator from a project or release checkpoint, ready for inference."""
    return build_generator(load_checkpoint(path), which, source=path).to(device)


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
    raw, release = _read(src)
    if not release:
        raise CheckpointError(f"{src}: not a release checkpoint (no `src.models` classes)")
    package = convert_release(raw, source=src)
    save_checkpoint(dest, {k: v for k, v in package.items() if k not in ("format", "version")})
    return package


# --- building networks from stored arguments -------------------------------------------------


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return (lines[0] if lines else type(err).__name__)[:200]


def _is_state(value: Any) -> bool:
    """Whether `value` is a state dict: names → tensors."""
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()
    )


def _model_spec(package: Any, name: str, source: str | os.PathLike) -> dict[str, Any]:
    """`package[name]`, checked to be {"kwargs": dict, "state": state dict}."""
    spec = package.get(name) if isinstance(package, dict) else None
    if not (
        isinstance(spec, dict)
        and isinstance(spec.get("kwargs"), dict)
        and all(isinstance(k, str) for k in spec["kwargs"])
        and _is_state(spec.get("state"))
    ):
        raise CheckpointError(
            f"{source}: its {name} entry is not {{'kwargs': arguments, 'state': tensors}}"
        )
    return spec


@contextmanager
def _on_meta_device() -> Iterator[None]:
    """New tensors are shapes without memory (distribution checks, which read values, off)."""
    validate = Distribution._validate_args
    Distribution.set_default_validate_args(False)
    try:
        with torch.device("meta"):
            yield
    finally:
        Distribution.set_default_validate_args(validate)


def _check_state(state: dict[str, torch.Tensor], shapes: dict[str, tuple], label: str) -> None:
    """CheckpointError unless `state` has exactly the tensors `shapes` describes."""
    missing = sorted(shapes.keys() - state.keys())
    unexpected = sorted(state.keys() - shapes.keys())
    wrong = [k for k in shapes if k in state and tuple(state[k].shape) != shapes[k]]
    problems = [
        f"{what} {names[:3]}{' ...' if len(names) > 3 else ''}"
        for what, names in (("missing", missing), ("unexpected", unexpected))
        if names
    ]
    if wrong:
        key = wrong[0]
        problems.append(
            f"{len(wrong)} of other shapes ({key}: {tuple(state[key].shape)} stored, "
            f"{shapes[key]} expected)"
        )
    if problems:
        raise CheckpointError(f"{label}: weights do not fit its arguments: {'; '.join(problems)}")


def _build(cls: type[nn.Module], kwargs: dict[str, Any], state: Any, label: str) -> Any:
    """`cls(**kwargs)` with `state` loaded, in one-line CheckpointErrors when they do not fit.

    The network is first built on the meta device, so arguments that describe a huge network
    are refused by the shapes of the stored weights before anything is allocated.
    """
    unknown = sorted(set(kwargs) - set(inspect.signature(cls).parameters))
    if unknown:
        raise CheckpointError(f"{label}: unknown constructor arguments {unknown}")
    if not _is_state(state):
        raise CheckpointError(f"{label}: its state is not a dict of tensors")
    try:
        with _on_meta_device():
            shapes = {k: tuple(v.shape) for k, v in cls(**kwargs).state_dict().items()}
    except Exception as err:  # whatever the constructor raises, the stored arguments caused it
        raise CheckpointError(
            f"{label}: its arguments do not build a network ({_first_line(err)})"
        ) from err
    _check_state(state, shapes, label)
    model = cls(**kwargs)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{label}: weights do not load ({_first_line(err)})") from err
    return model


def _checked_package(raw: Any, path: Path) -> dict[str, Any]:
    """`raw` if it is a package of the project's format whose parts have the right types."""
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an AEROMamba checkpoint (no 'format' marker)")
    version = raw.get("version", 0)
    if not isinstance(version, int):
        raise CheckpointError(f"{path}: its version {version!r:.40} is not a number")
    if version > VERSION:
        raise CheckpointError(f"{path}: written by a newer version ({version})")
    for name in ("generator", "discriminator"):
        if name == "generator" or name in raw:
            _model_spec(raw, name, path)
    best = raw.get("best", {})
    networks = ("generator", "discriminator")
    if not (isinstance(best, dict) and all(_is_state(best[k]) for k in networks if k in best)):
        raise CheckpointError(f"{path}: its 'best' entry does not hold state dicts")
    if "ema" in raw and not _is_state(raw["ema"]):
        raise CheckpointError(f"{path}: its 'ema' entry is not a state dict")
    for key, kind in _PACKAGE_TYPES.items():
        if key in raw and not isinstance(raw[key], kind):
            raise CheckpointError(f"{path}: its {key!r} entry is not a {kind.__name__}")
    return raw


_PACKAGE_TYPES = {
    "optimizers": dict,
    "epoch": int,
    "step": int,
    "history": list,
    "config": dict,
    "metadata": dict,
}


# --- reading a file: a zip archive, an allow-list unpickler ----------------------------------

# The largest data.pkl read: a real one is about 100 kB. Unpickling may cost some 80 bytes of
# memory per byte of pickle (an empty dict is one byte of pickle), so this bounds memory too.
MAX_PICKLE_BYTES = 4 << 20

_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")


def _existing_file(path: str | os.PathLike) -> Path:
    """`path` as a Path; CheckpointError when it is missing or a folder."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    return path


def _directory_ends_file(tail: bytes, size: int) -> bool:
    """Whether the zip records at the end of a file of `size` bytes (`tail` holds its last
    bytes) place the central directory right before them: no comment, and no data before the
    archive or after it."""
    if len(tail) < _EOCD.size:
        return False
    signature, *_, cd_size, cd_offset, comment = _EOCD.unpack(tail[-_EOCD.size :])
    if signature != b"PK\x05\x06" or comment:
        return False
    directory_end = size - _EOCD.size
    locator = tail[-_EOCD.size - _ZIP64_LOCATOR.size : -_EOCD.size]
    if locator[:4] == b"PK\x06\x07":
        record = tail[: -_EOCD.size - _ZIP64_LOCATOR.size][-_ZIP64_EOCD.size :]
        if len(locator) != _ZIP64_LOCATOR.size or len(record) != _ZIP64_EOCD.size:
            return False
        directory_end -= _ZIP64_LOCATOR.size + _ZIP64_EOCD.size
        declared_at = _ZIP64_LOCATOR.unpack(locator)[2]
        signature, length, *_, cd_size, cd_offset = _ZIP64_EOCD.unpack(record)
        if signature != b"PK\x06\x06" or length != _ZIP64_EOCD.size - 12:
            return False
        if declared_at != directory_end:
            return False
    return cd_offset + cd_size == directory_end


def _check_layout(path: Path, file: BinaryIO) -> int:
    """The size of `file`; CheckpointError unless it is a zip archive from its first byte to
    its last, as torch.save writes."""
    size = os.fstat(file.fileno()).st_size
    if file.read(4) != b"PK\x03\x04":
        raise CheckpointError(
            f"{path}: not a checkpoint: a checkpoint is a zip archive from its first byte, as "
            f"torch.save writes; refused unread"
        )
    tail = _EOCD.size + _ZIP64_LOCATOR.size + _ZIP64_EOCD.size
    file.seek(max(0, size - tail))
    if not _directory_ends_file(file.read(tail), size):
        raise CheckpointError(
            f"{path}: truncated or corrupt checkpoint (its zip directory does not end the file: "
            f"cut short, or data added before or after the archive)"
        )
    return size


def _read(path: Path) -> tuple[Any, bool]:
    """The unpickled content of the checkpoint `path`, and whether it is a release file."""
    with path.open("rb") as file:
        size = _check_layout(path, file)
        try:
            archive = zipfile.ZipFile(file)
        except DAMAGED_ZIP as err:
            raise CheckpointError(
                f"{path}: truncated or corrupt checkpoint ({_first_line(err)})"
            ) from err
        with archive:
            return _Archive(path, archive, size).load()


class _StorageKind:
    """What a pickle gets for a storage class (`torch.FloatStorage`): its dtype, not callable."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


class _Archive:
    """The members of a torch.save archive, checked and read within limits: members are stored
    (not compressed), unique, no larger than the file, and each tensor's storage holds exactly
    the bytes its reference in the pickle declares."""

    def __init__(self, path: Path, archive: zipfile.ZipFile, size: int) -> None:
        self.path, self.archive = path, archive
        infos = archive.infolist()
        self.infos = {info.filename: info for info in infos}
        if len(self.infos) != len(infos):
            raise CheckpointError(f"{path}: corrupt checkpoint (a member appears twice)")
        records = [n for n in self.infos if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(records) != 1:
            raise CheckpointError(f"{path}: not a checkpoint (no single data.pkl in the archive)")
        self.record = records[0]
        self.prefix = self.record[: -len("data.pkl")]
        for info in infos:
            if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 1:
                raise CheckpointError(
                    f"{path}: member {info.filename} is compressed or encrypted; torch.save "
                    f"stores members as they are; refused"
                )
        if any(i.compress_size != i.file_size for i in infos) or (
            sum(i.file_size for i in infos) > size
        ):
            raise CheckpointError(
                f"{path}: corrupt checkpoint (its members declare more bytes than the file holds)"
            )
        if self.infos[self.record].file_size > MAX_PICKLE_BYTES:
            raise CheckpointError(
                f"{path}: refused, its data.pkl is larger than {MAX_PICKLE_BYTES >> 20} MiB"
            )
        self.storages: dict[str, tuple[torch.dtype, torch.Tensor]] = {}

    def read(self, name: str) -> bytes:
        try:
            return self.archive.read(self.infos[name])
        except DAMAGED_ZIP as err:
            raise CheckpointError(
                f"{self.path}: truncated or corrupt checkpoint ({name}: {_first_line(err)})"
            ) from err

    def load(self) -> tuple[Any, bool]:
        """The unpickled data.pkl, and whether it is a release file (names `src.models`)."""
        order = self.prefix + "byteorder"
        if order in self.infos and self.read(order) != sys.byteorder.encode():
            raise CheckpointError(f"{self.path}: written with another byte order; not supported")
        data = self.read(self.record)
        release = b"src.models" in data
        try:
            return _Unpickler(data, self, release).load(), release
        except CheckpointError:
            raise
        except pickle.UnpicklingError as err:
            raise CheckpointError(f"{self.path}: refused, {_first_line(err)}") from err
        except Exception as err:  # whatever malformed data makes the unpickler raise
            raise CheckpointError(
                f"{self.path}: truncated or corrupt checkpoint (data.pkl: {_first_line(err)})"
            ) from err

    def storage(self, pid: Any) -> torch.Tensor:
        """The flat tensor of a persistent id ("storage", kind, key, location, numel)."""
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected reference {str(pid)[:40]!r}")
        _, kind, key, _, numel = pid
        if not (isinstance(kind, _StorageKind) and isinstance(key, str) and _count(numel)):
            raise pickle.UnpicklingError("malformed storage reference")
        if key in self.storages:
            dtype, flat = self.storages[key]
            if dtype != kind.dtype or flat.numel() != numel:
                raise pickle.UnpicklingError(f"storage {key} referenced with two layouts")
            return flat
        name = f"{self.prefix}data/{key}"
        declared = numel * kind.dtype.itemsize
        if name not in self.infos or self.infos[name].file_size != declared:
            stored = f"{self.infos[name].file_size} bytes" if name in self.infos else "nothing"
            raise CheckpointError(
                f"{self.path}: corrupt checkpoint (storage {key[:20]} holds {stored}, its "
                f"reference declares {declared} bytes)"
            )
        raw = bytearray(self.read(name))
        flat = torch.frombuffer(raw, dtype=kind.dtype) if raw else torch.empty(0, dtype=kind.dtype)
        self.storages[key] = (kind.dtype, flat)
        return flat


def _count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _rebuild_tensor(
    flat: Any,
    offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any,
    hooks: Any,
    metadata: Any = None,
) -> torch.Tensor:
    """A tensor saved by torch.save: a view of a stored flat tensor that stays inside it."""
    if not (
        isinstance(flat, torch.Tensor)
        and _count(offset)
        and isinstance(size, tuple)
        and isinstance(stride, tuple)
        and len(size) == len(stride)
        and all(map(_count, size + stride))
        and isinstance(requires_grad, bool)
        and not hooks
        and not metadata
    ):
        raise pickle.UnpicklingError("malformed tensor")
    numel = math.prod(size)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if numel and (numel > flat.numel() or last >= flat.numel()):
        raise pickle.UnpicklingError("a tensor reaches outside its storage")
    return flat.as_strided(size, stride, offset).requires_grad_(requires_grad)


def _rebuild_parameter(data: Any, requires_grad: Any, hooks: Any) -> nn.Parameter:
    if not (isinstance(data, torch.Tensor) and isinstance(requires_grad, bool) and not hooks):
        raise pickle.UnpicklingError("malformed parameter")
    return nn.Parameter(data, requires_grad)


class _Placeholder:
    """Inert stand-in for a class of the release or of OmegaConf: it only keeps its state."""

    qualname = "?"

    def __setstate__(self, state: Any) -> None:
        self.state = state


_TYPING_ANY = object()
_STORAGE_DTYPES = {
    "Float": torch.float32,
    "Double": torch.float64,
    "Half": torch.float16,
    "BFloat16": torch.bfloat16,
    "ComplexFloat": torch.complex64,
    "ComplexDouble": torch.complex128,
    "Long": torch.int64,
    "Int": torch.int32,
    "Short": torch.int16,
    "Char": torch.int8,
    "Byte": torch.uint8,
    "Bool": torch.bool,
}
_PLAIN_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    **{("builtins", t.__name__): t for t in (dict, list, tuple, set, frozenset, int, float, bool)},
    ("builtins", "str"): str,
    ("torch", "Size"): torch.Size,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", f"{name}Storage"): _StorageKind(dtype) for name, dtype in _STORAGE_DTYPES.items()},
}
_RELEASE_GLOBALS: dict[tuple[str, str], Any] = {
    **_PLAIN_GLOBALS,
    ("builtins", "long"): int,
    ("collections", "defaultdict"): defaultdict,
    ("typing", "Any"): _TYPING_ANY,
}
_PLACEHOLDER_MODULES = ("src.models.", "omegaconf.")


class _Unpickler(pickle._Unpickler):  # type: ignore[name-defined]
    """Python's own unpickler (its memo is a dict: a crafted memo index allocates nothing),
    resolving only an allow-list: plain containers and tensors, whose storages come from the
    archive; for release files also OmegaConf's and the release's classes, as inert
    placeholders. Objects get a state only where torch.save gives one."""

    dispatch = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]

    def __init__(self, data: bytes, archive: _Archive, release: bool) -> None:
        super().__init__(io.BytesIO(data))
        self.archive, self.release = archive, release
        self.placeholders: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> Any:
        module = "builtins" if module == "__builtin__" else module
        found = (_RELEASE_GLOBALS if self.release else _PLAIN_GLOBALS).get((module, name))
        if found is not None:
            return found
        if self.release and module.startswith(_PLACEHOLDER_MODULES):
            key = (module, name)
            if key not in self.placeholders:
                qualname = f"{module}.{name}"
                self.placeholders[key] = type(name, (_Placeholder,), {"qualname": qualname})
            return self.placeholders[key]
        raise pickle.UnpicklingError(
            f"{module}.{name} is not on the allow-list of checkpoint contents"[:200]
        )

    def persistent_load(self, pid: Any) -> torch.Tensor:
        return self.archive.storage(pid)

    def _load_build(self) -> None:
        state = self.stack.pop()
        target = self.stack[-1]
        if isinstance(target, _Placeholder):
            target.__setstate__(state)
        elif (
            type(target) is OrderedDict and isinstance(state, dict) and set(state) <= {"_metadata"}
        ):
            target.__dict__.update(state)  # a state dict's module versions
        else:
            raise pickle.UnpicklingError(f"refusing to set the state of a {type(target).__name__}")

    dispatch[pickle.BUILD[0]] = _load_build


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


def _plain(value: Any, source: Path) -> Any:
    """Placeholders of OmegaConf containers/nodes → plain dicts, lists and values."""
    if isinstance(value, _Placeholder):
        state = getattr(value, "state", None)
        for key in ("_content", "_val"):
            if isinstance(state, dict) and key in state:
                return _plain(state[key], source)
        raise CheckpointError(f"{source}: unexpected object {value.qualname} in a release file")
    if isinstance(value, dict):
        return {k: _plain(v, source) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, source) for v in value]
    return value


def _release_part(
    raw: dict[str, Any], key: str, kind: type, source: Path, plain: bool = True
) -> Any:
    """`raw[key]` (as plain containers if `plain`), an empty `kind` when absent;
    CheckpointError unless it is a `kind`."""
    value = raw.get(key)
    if value is None:
        value = kind()
    elif plain:
        value = _plain(value, source)
    if not isinstance(value, kind):
        raise CheckpointError(f"{source}: its {key!r} entry is not a {kind.__name__}")
    return value


def _generator_kwargs(release_kwargs: Any, source: Path) -> dict[str, Any]:
    """Map the release's `Aero` constructor arguments to this project's `Aero`."""
    kwargs = _plain(release_kwargs, source)
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"{source}: the generator's arguments are not a dict")
    for key, expected in _RELEASE_FIXED.items():
        value = kwargs.pop(key, expected)
        if type(value) is not type(expected) or value != expected:
            raise CheckpointError(
                f"{source}: generator argument {key}={str(value)[:40]} is not supported "
                f"(only {expected!r})"
            )
    for key in _RELEASE_INERT:
        kwargs.pop(key, None)
    kwargs.setdefault("dconv_mamba", 4)  # AERO's own release had no Mamba argument
    kwargs["mamba_executed"] = False  # the release builds Mamba and never calls it
    known = set(inspect.signature(Aero).parameters)
    unknown = set(map(str, kwargs)) - known
    if unknown:
        raise CheckpointError(
            f"{source}: unknown generator arguments {sorted(unknown)}; cannot rebuild the model"
        )
    return kwargs


def _release_model(entry: Any, expected: str, source: Path) -> dict[str, Any]:
    """A serialised model of the release ({"class", "args", "kwargs", "state"}), checked."""
    if not isinstance(entry, dict) or "state" not in entry or "kwargs" not in entry:
        raise CheckpointError(f"{source}: expected a serialised model with class/kwargs/state")
    cls = entry.get("class")
    qualname = cls.qualname if isinstance(cls, type) and issubclass(cls, _Placeholder) else cls
    if not isinstance(qualname, str) or qualname != expected:
        raise CheckpointError(f"{source}: expected a {expected} model, found {str(qualname)[:60]}")
    args = entry.get("args")
    if not (args is None or isinstance(args, (list, tuple)) and not args):
        raise CheckpointError(f"{source}: positional constructor arguments are not supported")
    if not _is_state(entry["state"]):
        raise CheckpointError(f"{source}: the {expected} state is not a dict of tensors")
    return entry


def _discriminator(entry: Any, source: Path) -> dict[str, Any]:
    """The release's discriminator in the project's format."""
    disc = _release_model(entry, "src.models.discriminators.Discriminator", source)
    state = dict(disc["state"])
    kwargs = _plain(disc["kwargs"], source)
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"{source}: the discriminator's arguments are not a dict")
    # The release caps the width below MelGAN's 1024 for narrow discriminators; read the cap
    # off the widest layer rather than guess the rule.
    widths = [t.shape[0] for k, t in state.items() if k.endswith("weight_v") and t.dim()]
    if not widths:
        raise CheckpointError(f"{source}: the discriminator's state has no weight_v layers")
    kwargs["max_channels"] = max(widths)
    return {"kwargs": kwargs, "state": state}


def convert_release(raw: Any, source: Path) -> dict[str, Any]:
    """A loaded release file (training package or single model) in the project's format."""
    if not isinstance(raw, dict):
        raise CheckpointError(f"{source}: not a release checkpoint (not a dict)")
    training = "models" in raw
    models = raw["models"] if training else {"generator": raw}
    if not isinstance(models, dict) or "generator" not in models:
        raise CheckpointError(f"{source}: its 'models' entry holds no generator")
    gen = _release_model(models["generator"], "src.models.aero.Aero", source)
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
    if models.get("msd_melgan") is not None:
        package["discriminator"] = _discriminator(models["msd_melgan"], source)
    best = _release_part(raw, "best_states", dict, source, plain=False)
    optimizers = _release_part(raw, "optimizers", dict, source, plain=False)
    package["best"] = {
        name: best[key]
        for name, key in (("generator", "generator"), ("discriminator", "msd_melgan"))
        if key in best
    }
    package["optimizers"] = {
        name: optimizers[key]
        for name, key in (("generator", "optimizer"), ("discriminator", "disc_optimizer"))
        if key in optimizers
    }
    package["history"] = _release_part(raw, "history", list, source)
    package["epoch"] = len(package["history"])
    if "args" in raw:
        package["config"] = _release_part(raw, "args", dict, source)
    return _checked_package(package, source)
