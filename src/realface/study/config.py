"""How ``realface study serve`` is started (kept apart from the page, so the command line reads its
defaults without importing the web code)."""

from __future__ import annotations

from dataclasses import dataclass

from realface.errors import ConfigError

__all__ = ["ServeConfig"]


@dataclass(frozen=True)
class ServeConfig:
    """Where the study page is served: ``host`` (127.0.0.1: this machine only) and ``port``."""

    host: str = "127.0.0.1"
    port: int = 7861

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ConfigError(f"--port must be in 1..65535, got {self.port}")
