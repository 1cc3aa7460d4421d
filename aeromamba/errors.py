"""The project's exceptions: one tree, single inheritance, rooted at `AeromambaError`.

- `UsageError`: a problem the user can fix (a bad file, setting or folder); the message names
  the file or option and what to do. Its kinds are defined beside the code that raises them:
  `aeromamba.audio.AudioError`, `aeromamba.checkpoint.CheckpointError`,
  `aeromamba.options.OptionError`, `aeromamba.training.config.ConfigError`,
  `aeromamba.data.dataset.ManifestError` and `NonFiniteAudioError`,
  `aeromamba.training.distributed.RunDirectoryBusy`, and `CorpusError` below for the corpus
  builders (`aeromamba_corpora`).
- `RunError`: a run that cannot go on although its settings were accepted, such as a training
  that diverged (`aeromamba.training.solver.NonFiniteLossError`).

Entry points (`aeromamba.cli.entry_point`) print either kind as one line instead of a
traceback (status 2 for a `UsageError`, 1 for a `RunError`); any other exception is a bug and
keeps its traceback.
"""

from __future__ import annotations


class AeromambaError(Exception):
    """An expected failure of this project; its message is one line meant for the user."""


class UsageError(AeromambaError):
    """A problem with the user's input or settings; the message names the file or key and what
    to do."""


class CorpusError(UsageError):
    """A corpus builder's input that cannot be used: a catalogue, package, score or source
    folder; the message names it and the problem."""


class CatalogueError(CorpusError):
    """A corpus catalogue (YAML) entry that cannot be used; names the file and the entry."""


class RunError(AeromambaError):
    """A run that stopped although its settings were accepted (for example, it diverged)."""
