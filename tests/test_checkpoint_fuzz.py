"""Fuzzing the checkpoint loader: a seeded stream of damaged and hostile variants of valid
project checkpoints and of a release file (truncations, prefixes and suffixes, byte flips,
swapped, missing, compressed and oversize members, code-running pickles, a deflate bomb).
None may run code, end in anything but a CheckpointError, or take more than 1 GB of memory.

Every mutation kind runs on every valid file in each of `ROUNDS` rounds, each case drawing
its own variant (which bytes, which members, which payload), so that few cases cover every
kind. The valid files are the same bytes in every run (`save_checkpoint` is reproducible), so
a seed reproduces its cases. The cases run in a child process, so that its peak memory
(`VmHWM`) is theirs alone."""

from __future__ import annotations

import io
import json
import pickle
import random
import subprocess
import sys
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch

from aeromamba.checkpoint import (
    CheckpointError,
    build_generator,
    load_checkpoint,
    model_package,
    save_checkpoint,
)
from aeromamba.models import make_discriminator, make_generator
from tests.checkpoint_payloads import Payload, deflate_bomb, marker, peak_rss_kib, replace_member

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 4
SEED = 20240611

Mutation = Callable[[random.Random, bytes, Path], bytes]


def _members(data: bytes) -> list[tuple[zipfile.ZipInfo, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [(item, archive.read(item)) for item in archive.infolist()]


def _rezip(
    members: list[tuple[zipfile.ZipInfo, bytes]], deflate: frozenset[str] = frozenset()
) -> bytes:
    """An archive of `members`, stored, except those named in `deflate` (deflated)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for item, content in members:
            deflated = item.filename in deflate
            item.compress_type = zipfile.ZIP_DEFLATED if deflated else zipfile.ZIP_STORED
            archive.writestr(item, content, compresslevel=1 if deflated else None)
    return out.getvalue()


def truncate(rng: random.Random, data: bytes, folder: Path) -> bytes:
    return data[: rng.randrange(len(data))]


def prefix(rng: random.Random, data: bytes, folder: Path) -> bytes:
    head = rng.choice([rng.randbytes(rng.randrange(1, 64)), pickle.dumps(Payload(marker(folder)))])
    return head + data


def suffix(rng: random.Random, data: bytes, folder: Path) -> bytes:
    return data + rng.choice([rng.randbytes(rng.randrange(1, 64)), b"PK\x05\x06" + bytes(18)])


def flip_bytes(rng: random.Random, data: bytes, folder: Path) -> bytes:
    """A few random bytes changed where they change what is read: in data.pkl (first in the
    archive), in a member's local header, in the central directory and its end records."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        member = rng.choice(archive.infolist())
        directory = archive.start_dir
    local = member.header_offset + 30 + len(member.filename.encode())
    regions = [(0, min(len(data), 100_000)), (member.header_offset, local), (directory, len(data))]
    out = bytearray(data)
    for _ in range(rng.randrange(1, 9)):
        start, end = rng.choice(regions)
        out[rng.randrange(start, end)] = rng.randrange(256)
    return bytes(out)


def swap_members(rng: random.Random, data: bytes, folder: Path) -> bytes:
    members = _members(data)
    i, j = rng.sample(range(len(members)), 2)
    (a, x), (b, y) = members[i], members[j]
    members[i], members[j] = (a, y), (b, x)
    return _rezip(members)


def drop_member(rng: random.Random, data: bytes, folder: Path) -> bytes:
    members = _members(data)
    members.pop(rng.randrange(len(members)))
    return _rezip(members)


def compress(rng: random.Random, data: bytes, folder: Path) -> bytes:
    """Every member deflated, or one of them (data.pkl, a storage, a marker)."""
    members = _members(data)
    chosen = members if rng.random() < 0.25 else [rng.choice(members)]
    return _rezip(members, frozenset(item.filename for item, _ in chosen))


def oversize_member(rng: random.Random, data: bytes, folder: Path) -> bytes:
    """A member grown: data.pkl past the loader's cap, or a storage by a few bytes."""
    members = _members(data)
    index = rng.randrange(len(members))
    item, content = members[index]
    grown = content + bytes(5 << 20 if item.filename.endswith("data.pkl") else rng.randrange(1, 9))
    members[index] = (item, grown)
    return _rezip(members)


def payload_pickle(rng: random.Random, data: bytes, folder: Path) -> bytes:
    """data.pkl replaced by a pickle that runs code, alone or nested in a plausible package."""
    evil = Payload(marker(folder))
    content = rng.choice(
        [
            evil,
            {"format": "aeromamba", "generator": {"kwargs": {}, "state": {"w": evil}}},
            {"class": "src.models.aero.Aero", "kwargs": [evil], "state": {}},
            [[{"history": (evil,)}]],
        ]
    )
    return replace_member(data, "data.pkl", pickle.dumps(content, protocol=rng.choice([2, 4, 5])))


MUTATIONS: list[Mutation] = [
    truncate,
    prefix,
    suffix,
    flip_bytes,
    flip_bytes,
    swap_members,
    drop_member,
    compress,
    oversize_member,
    payload_pickle,
]


def _seeds(folder: Path, release: Path) -> list[bytes]:
    """Valid files: a project training checkpoint, a bare project model, a release model."""
    torch.manual_seed(0)
    generator = make_generator("aeromamba", channels=4)
    disc = make_discriminator(ndf=4, n_layers=2)
    optimizer = torch.optim.Adam(generator.parameters())
    generator(torch.randn(1, 1, 512)).abs().mean().backward()
    optimizer.step()
    training = folder / "training.pt"
    save_checkpoint(
        training,
        {
            "generator": model_package(generator),
            "discriminator": model_package(disc),
            "optimizers": {"generator": optimizer.state_dict()},
            "epoch": 1,
            "step": 1,
            "history": [{"valid_lsd": 1.0}],
            "config": {"dset": {"lr_sr": 11025}},
        },
    )
    bare = folder / "bare.pt"
    save_checkpoint(bare, {"generator": model_package(generator)})
    return [training.read_bytes(), bare.read_bytes(), release.read_bytes()]


def _load(path: Path, data: bytes) -> str:
    """ "loaded", "refused", or what else happened when `data` was loaded from `path`."""
    path.write_bytes(data)
    try:
        build_generator(load_checkpoint(path), source=path)
    except CheckpointError as err:
        message = str(err)
        if "\n" in message or "weights_only" in message:
            return f"message {message[:300]!r}"
        return "refused"
    except Exception as err:  # the fuzz records whatever escapes
        return f"{type(err).__name__}: {str(err)[:200]}"
    return "loaded"


def run_cases(folder: Path, release: Path, rounds: int, seed: int) -> dict:
    """Load every mutation of every valid file `rounds` times, and the deflate bomb; what
    happened (per kind, and what was unexpected), and the peak memory."""
    rng = random.Random(seed)
    seeds = _seeds(folder, release)
    path = folder / "case.th"
    results = [
        (mutation.__name__, _load(path, mutation(rng, data, folder)))
        for _ in range(rounds)
        for mutation in MUTATIONS
        for data in seeds
    ]
    results.append(("deflate_bomb", _load(path, deflate_bomb(2 << 30))))
    outcomes = Counter(result for _, result in results)
    unexpected = [f"{name}: {r}" for name, r in results if r not in ("loaded", "refused")]
    maxrss = peak_rss_kib()
    return {
        "seeds": [_load(path, data) for data in seeds],
        "kinds": Counter(name for name, _ in results),
        "outcomes": {k: outcomes[k] for k in ("loaded", "refused")},
        "unexpected": unexpected,
        "ran": marker(folder).exists(),
        "maxrss_mib": maxrss // 1024,
    }


def test_mutated_checkpoints_run_nothing_raise_only_checkpoint_errors(official_release, tmp_path):
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from tests.test_checkpoint_fuzz import run_cases\n"
        "print(json.dumps(run_cases(Path(sys.argv[1]), Path(sys.argv[2]), "
        "int(sys.argv[3]), int(sys.argv[4]))))\n"
    )
    args = [str(tmp_path), str(official_release / "generator_best.th"), str(ROUNDS), str(SEED)]
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["seeds"] == ["loaded"] * 3, report["seeds"]
    cases = ROUNDS * len(MUTATIONS) * 3
    expected = Counter(mutation.__name__ for mutation in MUTATIONS * ROUNDS * 3)
    assert report["kinds"] == {**expected, "deflate_bomb": 1}, report["kinds"]
    assert not report["ran"], "a mutated checkpoint ran its code"
    assert report["unexpected"] == [], report["unexpected"]
    assert report["outcomes"]["refused"] > cases // 2, report["outcomes"]
    assert report["maxrss_mib"] < 1024, report
