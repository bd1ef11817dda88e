"""When to draw progress bars: one rule for the command line, the page and the library."""

from __future__ import annotations

import os
import sys
from typing import TextIO

__all__ = ["progress_enabled"]

_FALSE = {"", "0", "false", "no", "off"}


def progress_enabled(requested: bool | None = None, stream: TextIO | None = None) -> bool:
    """Whether to draw progress bars.

    An explicit request (``--progress`` / ``--no-progress``, ``True`` / ``False``) decides. Otherwise
    bars are off when ``TQDM_DISABLE`` is set to a true value (``1``, ``true``, ...), and otherwise on
    only when ``stream`` (default: stderr, where tqdm draws) is a terminal, so logs of batch jobs and CI
    runs hold no bar fragments.
    """
    if requested is not None:
        return bool(requested)
    if os.environ.get("TQDM_DISABLE", "").strip().lower() not in _FALSE:
        return False
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False
