"""The one exception type for problems a user can fix (a bad file, setting or folder).

Entry points print its message as one line and exit non-zero instead of a traceback; any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class UsageError(ValueError):
    """A problem with the user's input or settings; the message names the file or key and what
    to do."""
