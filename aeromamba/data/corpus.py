"""Make sure a prepared corpus exists: prepare it from its source, generating synthetic music
first when a config asks for it and no source exists."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from aeromamba.data.prepare import SPLITS, is_prepared, manifest_path, prepare_corpus
from aeromamba.data.synthetic import write_synthetic_corpus
from aeromamba.errors import UsageError

log = logging.getLogger(__name__)


def ensure_prepared(
    source: str | os.PathLike | None,
    root: str | os.PathLike,
    *,
    synthetic_minutes: float | None = None,
    seed: int = 0,
    workers: int | None = None,
) -> None:
    """Make sure `root` holds a prepared corpus; prepare it from `source` if it does not.

    With `synthetic_minutes` set and `source` missing, the synthetic corpus is first generated
    into `source` (see `aeromamba.data.synthetic.write_synthetic_corpus`). `seed` seeds the
    split draws and the synthetic corpus. With a dset config `cfg`: ensure_prepared(cfg.source,
    cfg.root, synthetic_minutes=cfg.synthetic_minutes, seed=cfg.seed). Raises
    FileNotFoundError when `root` is not prepared and nothing can prepare it, ValueError for a
    `root` inside `source`, UsageError when preparing yields no file.
    """
    root = Path(root)
    if is_prepared(root):
        return
    wanted = ", ".join(manifest_path(root, split).name for split in SPLITS)
    if source is None:
        raise FileNotFoundError(
            f"{root}: not a prepared corpus (missing {wanted}) and no source folder is set; "
            f"run `python scripts/prepare_data.py SRC {root}` or set dset.source"
        )
    source = Path(source)
    if not source.exists():
        if synthetic_minutes is None:
            raise FileNotFoundError(
                f"{root}: not a prepared corpus (missing {wanted}) and the source folder "
                f"{source} does not exist"
            )
        log.info("generating %.1f min of synthetic music into %s", synthetic_minutes, source)
        write_synthetic_corpus(source, synthetic_minutes, seed=seed, workers=workers)
    log.info("preparing %s into %s", source, root)
    report = prepare_corpus(source, root, workers=workers, seed=seed)
    noteworthy = report.failures or report.warnings or report.empty_splits
    log.log(logging.WARNING if noteworthy else logging.INFO, "%s", report.summary())
    if not report.prepared:
        raise UsageError(f"{root}: nothing could be prepared from {source}\n{report.summary()}")
