"""What every command-line entry point shares: how expected errors end the program.

An error the user can fix (`UsageError`, which `AudioError` and `CheckpointError` are, or an
`OSError` on a path they gave) prints one line `error: ...` on stderr and exits with status 2;
any other `AeromambaError` (a run that stopped, such as a diverged training) prints one line
and exits with status 1.
Ctrl-C exits with 130 and SIGTERM with 143, both after `finally` blocks have run, so a partial
output (see `aeromamba.files.atomic_path`) is removed. Any other exception is a bug and keeps
its traceback.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import signal
import sys
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

from aeromamba.errors import AeromambaError, UsageError

EXIT_RUN = 1
EXIT_USAGE = 2
DEVICES = "auto, cpu, cuda, cuda:N or mps"
VISQOL_HINT = 'pip install "aeromamba[eval]" (visqol-python; building it needs a C compiler)'

log = logging.getLogger("aeromamba")


class Terminated(BaseException):
    """SIGTERM, raised where the program is so that cleanup runs (not an `Exception`: nothing
    that reports per-item failures catches it)."""


def _terminate(signum: int, frame: Any) -> NoReturn:
    raise Terminated


def fail(message: str, status: int = EXIT_USAGE) -> NoReturn:
    """Print `error: message` on stderr and exit with `status`."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(status)


def os_error_message(err: OSError) -> str:
    """`PATH: reason` for an OSError (both paths for a rename), on one line."""
    reason = err.strerror or str(err)
    if err.filename is None:
        return reason
    paths = f"{err.filename} -> {err.filename2}" if err.filename2 else f"{err.filename}"
    return f"{paths}: {reason}"


def entry_point(main: Callable[..., int | None]) -> Callable[..., int | None]:
    """Run `main` with SIGTERM raising `Terminated`; turn expected errors into `fail` and a
    non-zero return value into the exit status. Goes under `@hydra.main` (Hydra would print a
    traceback for an exception that reaches it)."""

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> int | None:
        previous = signal.signal(signal.SIGTERM, _terminate)
        try:
            status = main(*args, **kwargs)
        except KeyboardInterrupt:
            fail("interrupted", 128 + signal.SIGINT)
        except Terminated:
            fail("terminated", 128 + signal.SIGTERM)
        except UsageError as err:
            fail(str(err))
        except AeromambaError as err:  # a run that stopped, not a setting to change
            fail(str(err), EXIT_RUN)
        except OSError as err:
            fail(os_error_message(err))
        finally:
            signal.signal(signal.SIGTERM, previous)
        if status:
            sys.exit(status)
        return status

    return wrapper


def device_option(name: str) -> Any:
    """The torch.device a `device=` option names, checked to be usable on this machine;
    UsageError for a name that is no device, a kind this program does not run on, or a
    device absent here."""
    import torch

    from aeromamba.devices import select_device

    if name == "auto":
        return select_device(name)
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise UsageError(f"device={name}: not a device name; use {DEVICES}") from err
    if device.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"device={name}: not supported; use {DEVICES}")
    absent = f"device={name}: not available here"
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise UsageError(f"{absent} ({count} CUDA devices); use {DEVICES}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"{absent} (no MPS device); use {DEVICES}")
    return device


def metrics_option(names: str | Iterable[str]) -> list[str]:
    """Metric names from a comma-separated string or a list, checked: at least one, all
    known (`aeromamba.evaluation.METRICS`), none twice; UsageError otherwise. ViSQOL is an
    optional dependency: without it `visqol` is dropped with a one-line warning saying how to
    add it (a UsageError when it was the only metric)."""
    from aeromamba.evaluation import METRICS

    items = names.split(",") if isinstance(names, str) else list(names)
    metrics = [str(m).strip() for m in items if str(m).strip()]
    if not metrics:
        raise UsageError(f"metrics: none given; choose from {', '.join(METRICS)}")
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise UsageError(f"metrics: unknown {', '.join(unknown)}; choose from {', '.join(METRICS)}")
    twice = sorted({m for m in metrics if metrics.count(m) > 1})
    if twice:
        raise UsageError(f"metrics: {', '.join(twice)} given twice")
    if "visqol" in metrics and importlib.util.find_spec("visqol") is None:
        metrics.remove("visqol")
        if not metrics:
            raise UsageError(f"metrics: visqol is not installed; {VISQOL_HINT}")
        log.warning("ViSQOL skipped (not installed); to add it: %s", VISQOL_HINT)
    return metrics
