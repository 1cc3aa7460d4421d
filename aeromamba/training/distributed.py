"""The processes of a training: DistributedDataParallel set-up from torchrun's environment
(RANK, WORLD_SIZE, LOCAL_RANK), and the exclusive hold of a run directory by one training."""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from aeromamba.errors import UsageError

LOCK_NAME = "train.lock"


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def init_world(device: torch.device) -> World:
    """Join the process group when launched by torchrun (nccl on CUDA, gloo otherwise)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return world


def local_device(device: torch.device, world: World) -> torch.device:
    """One GPU per process under torchrun."""
    if device.type == "cuda" and world.distributed:
        torch.cuda.set_device(world.local_rank)
        return torch.device("cuda", world.local_rank)
    return device


def close_world(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def mean_across(value: float, world: World, device: torch.device) -> float:
    """Average a scalar over the processes (identity when alone)."""
    if not world.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.item() / world.size


class RunDirectoryBusy(UsageError):
    """Another process trains in the run directory; the message names it."""


@contextmanager
def hold_run_directory(run_dir: Path) -> Iterator[None]:
    """Hold `run_dir` for one training: an exclusive `flock` on its LOCK_NAME, which the OS
    releases when the process ends, however it ends. The file names the holder (pid, host,
    start time) while it is held; RunDirectoryBusy, naming the holder, when another holds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = " ".join(os.pread(fd, 512, 0).decode(errors="replace").split())
            raise RunDirectoryBusy(
                f"{run_dir}: another training runs in it ({holder or 'unknown process'}); "
                f"wait for it to end or choose another hydra.run.dir"
            ) from None
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        holder = f"pid {os.getpid()} on host {socket.gethostname()}, started {started}\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # held by no one: says no one
    finally:
        os.close(fd)
