"""Atomic file writing: every output of the project goes to a temporary name, then is renamed.

A temporary is named `.{name}.{host}.{pid}.{random}.tmp`, beside its destination: a process
killed before it could delete one (SIGKILL, a power cut) leaves it there, and a later run on
the same host recognises it as stale, its process being gone, and removes it.
"""

from __future__ import annotations

import errno
import glob
import os
import re
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[^.]+\.tmp$")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def is_stale_temporary(path: Path) -> bool:
    """Whether `path` is a temporary of `atomic_path` left by a process of this host that no
    longer runs (one of another host, or of a running process, is never stale)."""
    match = _TEMPORARY.match(path.name)
    return bool(match and match["host"] == HOST and not _running(int(match["pid"])))


def remove_stale_temporaries(folder: str | os.PathLike, pattern: str = ".*.tmp") -> list[Path]:
    """Delete the stale temporaries in `folder` whose names match the glob `pattern`
    ("**/.*.tmp" for the whole tree); returns what was deleted."""
    removed = []
    for path in Path(folder).glob(pattern):
        if path.is_file() and is_stale_temporary(path):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`, else delete it.

    The parent folder is created if needed, so a reader never sees a half-written file. Stale
    temporaries of the same destination are removed first.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError as err:  # a file where the folder should be
        raise NotADirectoryError(
            errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path.parent)
        ) from err
    remove_stale_temporaries(path.parent, f".{glob.escape(path.name)}.*.tmp")
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{HOST}.{os.getpid()}.", suffix=".tmp", dir=path.parent
    )
    tmp_path = Path(tmp)
    try:  # from the temporary's creation on, so that an interruption never leaves it behind
        os.close(fd)
        tmp_path.chmod(0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)
