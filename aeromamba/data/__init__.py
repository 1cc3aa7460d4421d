"""Data: synthetic music, corpus preparation (44.1 kHz / 11.025 kHz pairs) and datasets."""

from aeromamba.data.synthetic import music_clip

__all__ = ["music_clip"]
