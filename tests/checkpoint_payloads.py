"""Hostile checkpoint files for the loader's tests: code-running pickles in every format torch
can write or read, and archives crafted to exhaust memory."""

from __future__ import annotations

import io
import os
import pickle
import resource
import struct
import sys
import tarfile
import types
import zipfile
import zlib
from pathlib import Path
from typing import Any

import torch

from aeromamba.checkpoint import model_package, save_checkpoint
from aeromamba.models import make_generator

MARKER = "RAN"


class Payload:
    """Unpickled by an unrestricted unpickler, it creates the marker file `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch '{self.path}'",))


def marker(folder: Path) -> Path:
    return folder / MARKER


def project_package() -> dict[str, Any]:
    """A small valid package of the project's format (what `save_checkpoint` gets)."""
    return {"generator": model_package(make_generator("aeromamba", channels=4))}


def write_project_checkpoint(path: Path) -> Path:
    save_checkpoint(path, project_package())
    return path


def _torch_bytes(obj: Any, **kwargs: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, **kwargs)
    return buffer.getvalue()


def _tar(member_data: bytes) -> bytes:
    """The layout of torch's oldest (tar) format, each member a pickle that runs the payload."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("sys_info", "pickle", "storages", "tensors"):
            info = tarfile.TarInfo(name)
            info.size = len(member_data)
            tar.addfile(info, io.BytesIO(member_data))
    return buffer.getvalue()


def replace_member(data: bytes, suffix: str, content: bytes) -> bytes:
    """The zip archive `data` with the member ending in `suffix` replaced by `content`."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as zin, zipfile.ZipFile(out, "w") as zout:
        for item in zin.infolist():
            zout.writestr(item, content if item.filename.endswith(suffix) else zin.read(item))
    return out.getvalue()


def hostile_files(folder: Path, release: Path | None) -> dict[str, bytes]:
    """name → file content; loading any of them with an unrestricted unpickler creates
    `marker(folder)`."""
    evil = Payload(marker(folder))
    package = {"format": "aeromamba", "version": 1, **project_package()}
    valid = write_project_checkpoint(folder / "valid.pt").read_bytes()
    files = {
        "zip": _torch_bytes({"format": "aeromamba", "x": evil}),
        "legacy": _torch_bytes(evil, _use_new_zipfile_serialization=False),
        "legacy_nested": _torch_bytes(
            {**package, "config": [evil]}, _use_new_zipfile_serialization=False
        ),
        "raw_pickle": pickle.dumps(evil, protocol=2),
        "raw_pickle_release_like": pickle.dumps({"class": evil, "src.models.aero": 1}),
        "pickle_then_zip": pickle.dumps(evil, protocol=2) + valid,
        "zip_then_pickle": valid + pickle.dumps(evil, protocol=2),
        "tar": _tar(pickle.dumps(evil, protocol=2)),
        "nested_dict": _torch_bytes({**package, "config": {"a": {"b": evil}}}),
        "nested_list": _torch_bytes({**package, "history": [{"loss": 1.0}, [evil]]}),
        "nested_state": _torch_bytes(
            {**package, "generator": {"kwargs": {}, "state": {"w": evil}}}
        ),
    }
    if release is not None:
        data = release.read_bytes()
        files["release_pickle_then_zip"] = pickle.dumps(evil, protocol=2) + data
        files["release_zip_then_pickle"] = data + pickle.dumps(evil, protocol=2)
        files["release_nested"] = replace_member(
            data, "data.pkl", pickle.dumps({"class": "src.models.aero.Aero", "kwargs": [evil]})
        )
    return files


def _zip(members: list[tuple[str, int, bytes, int, int]]) -> bytes:
    """A zip archive from (name, method, stored bytes, inflated size, crc) entries."""
    local, central = bytearray(), bytearray()
    for name, method, data, size, crc in members:
        fields = struct.pack("<HHHHHIII", 20, 0, method, 0, 33, crc, len(data), size)
        encoded = name.encode()
        central += (
            b"PK\x01\x02"
            + struct.pack("<H", 20)
            + fields
            + struct.pack("<HHHHHII", len(encoded), 0, 0, 0, 0, 0, len(local))
            + encoded
        )
        local += b"PK\x03\x04" + fields + struct.pack("<HH", len(encoded), 0) + encoded + data
    end = struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central), len(local), 0
    )
    return bytes(local + central + end)


def deflate_bomb(inflated: int = 2 << 30) -> bytes:
    """A zip of about a thousandth of `inflated` bytes whose `data.pkl` inflates to `inflated`
    zero bytes (a multiple of 16 MiB), with correct sizes and CRC."""
    chunk = b"\0" * (1 << 24)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    count = inflated // len(chunk)
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(chunk, crc)
    stream = block * count + zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    order = b"little"
    return _zip(
        [
            ("archive/data.pkl", zipfile.ZIP_DEFLATED, stream, count * len(chunk), crc),
            ("archive/byteorder", zipfile.ZIP_STORED, order, len(order), zlib.crc32(order)),
        ]
    )


def fake_release_class(monkeypatch: Any, module: str, name: str) -> type:
    """A class that pickles as the release's `module.name` (registered for this test only)."""
    cls = type(name, (), {"__module__": module})
    parts = module.split(".")
    for index in range(1, len(parts) + 1):
        monkeypatch.setitem(
            sys.modules, ".".join(parts[:index]), types.ModuleType(parts[index - 1])
        )
    setattr(sys.modules[module], name, cls)
    return cls


def peak_rss_kib() -> int:
    """This process's peak resident memory. Linux's `ru_maxrss` keeps the peak of the process
    that forked it (across exec); `VmHWM` is this program's own."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
