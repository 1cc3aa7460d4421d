"""AEROMamba: music audio super-resolution from 11.025 kHz to 44.1 kHz."""

__version__ = "0.1.0"
