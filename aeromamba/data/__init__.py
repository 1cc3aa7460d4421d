"""Data: synthetic music, corpus preparation (44.1 kHz / 11.025 kHz pairs) and datasets."""

from aeromamba.data.corpus import ensure_prepared
from aeromamba.data.dataset import PairedSegments, segment_starts
from aeromamba.data.prepare import (
    HR_SR,
    LR_SR,
    SPLITS,
    PrepareReport,
    is_prepared,
    manifest_path,
    prepare_corpus,
)
from aeromamba.data.synthetic import music_clip, write_synthetic_corpus

__all__ = [
    "HR_SR",
    "LR_SR",
    "SPLITS",
    "PairedSegments",
    "PrepareReport",
    "ensure_prepared",
    "is_prepared",
    "manifest_path",
    "music_clip",
    "prepare_corpus",
    "segment_starts",
    "write_synthetic_corpus",
]
