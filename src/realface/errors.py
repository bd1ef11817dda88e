"""Exceptions that carry a message a user can act on.

Every error that the library raises on purpose derives from :class:`RealFaceError`. The command
line and the web UI print its message (no traceback) and exit with a non-zero status.
"""

from __future__ import annotations


class RealFaceError(Exception):
    """Base class: the message says what was wrong, with which file or value, and what to do."""


class CheckpointError(RealFaceError):
    """A network file could not be read: wrong format, corrupt, or refused as unsafe."""


class UnsafePickleError(CheckpointError):
    """A pickle asked for a Python global that is not on the allow-list; nothing was executed."""


class WeightsError(RealFaceError):
    """An external weight file is missing, corrupt or could not be fetched."""


class ImageError(RealFaceError):
    """An input image could not be decoded or is outside the accepted limits."""


class FaceError(RealFaceError):
    """No usable face was found (none detected, too small, or the requested index is absent)."""


class ConfigError(RealFaceError):
    """A combination of options is invalid.

    ``field``: the config field at fault (e.g. ``"fine_steps"``), so that the command line can name
    its option (``--fine-steps``); None when no single field is to blame.
    """

    def __init__(self, *args: object, field: str | None = None) -> None:
        super().__init__(*args)
        self.field = field


class Cancelled(KeyboardInterrupt):
    """A job was stopped at the user's request (the web UI's Cancel button).

    It derives from :class:`KeyboardInterrupt` on purpose: everything that handles Ctrl-C handles a
    cancel the same way. The catalogue runner stops between manifest records, the interrupted image
    keeps its ``started`` record and runs again on the next run, and no partial output is left.
    """
