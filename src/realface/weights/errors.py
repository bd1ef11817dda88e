"""Errors of the weights subsystem. All derive from :class:`realface.errors.WeightsError`, so the CLI
prints their one-line message instead of a traceback."""

from __future__ import annotations

from realface.errors import WeightsError

__all__ = [
    "WeightsError",
    "UnknownWeightError",
    "MissingWeightsError",
    "ManualDownloadRequired",
    "ChecksumError",
    "DownloadError",
    "WrongFileError",
]


class UnknownWeightError(WeightsError):
    """The id is not in the registry."""


class MissingWeightsError(WeightsError):
    """The file is not available locally and may not (or cannot) be downloaded now."""


class ManualDownloadRequired(MissingWeightsError):
    """The file is only published on a web page (Google Drive, Baidu): the user must fetch it by hand."""


class ChecksumError(WeightsError):
    """A file's size or sha256 is not the expected one."""


class DownloadError(WeightsError):
    """Every URL of a record failed (network errors, HTTP errors, retries exhausted)."""


class WrongFileError(ChecksumError):
    """A file without a published hash is not what its record says (format, size, network, resolution)."""
