"""`realface` commands of this group (registered on import)."""

from realface.cli import app  # noqa: F401
