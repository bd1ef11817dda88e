"""The networks of the web UI, loaded once and shared by the page's runs."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from realface.errors import ConfigError
from realface.ui.config import BASELINE, UIConfig

if TYPE_CHECKING:
    import torch

    from realface.pipeline import ApplyConfig, RealFace

__all__ = ["ModelStore"]


class ModelStore:
    """Loads G_real, the G_rendering checkpoints and LPIPS once and keeps them (thread-safe)."""

    def __init__(self, config: UIConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._nets: dict[str, Any] = {}
        self._device: torch.device | None = None

    @property
    def device(self) -> torch.device:
        if self._device is None:
            from realface.utils.device import resolve_device

            self._device = resolve_device(self.config.device)
        return self._device

    def rendering_choices(self) -> list[tuple[str, str]]:
        """(label, value) pairs for the page: the baseline and every offered checkpoint."""
        choices = [
            ("none: baseline mode (lower quality; fine-tune a G_rendering for best results)", BASELINE)
        ]
        seen = set()
        files = [Path(p) for p in self.config.renderings]
        if self.config.models_dir is not None and Path(self.config.models_dir).is_dir():
            for pattern in ("*.safetensors", "*.pkl"):
                files += sorted(Path(self.config.models_dir).glob(pattern))
        for f in files:
            value = os.path.abspath(f)
            if value not in seen:
                seen.add(value)
                choices.append((f.name, value))
        return choices

    def default_rendering(self) -> str:
        choices = self.rendering_choices()
        return choices[1][1] if len(choices) > 1 else BASELINE

    def check_rendering(self, value: str) -> Path | None:
        """The checkpoint for a page value; only the offered files are accepted."""
        if value == BASELINE:
            return None
        if value not in {v for _, v in self.rendering_choices()}:
            raise ConfigError(f"G_rendering {value!r} is not one of the offered checkpoints")
        return Path(value)

    def _get(self, key: str, load: Callable[[], Any]) -> Any:
        with self._lock:
            if key not in self._nets:
                self._nets[key] = load()
            return self._nets[key]

    def job(self, rendering: str, apply_config: ApplyConfig) -> RealFace:
        """A :class:`realface.pipeline.RealFace` for the chosen checkpoint (networks loaded once)."""
        from realface.checkpoints import load_generator
        from realface.nn.lpips import load_lpips_vgg
        from realface.pipeline import RealFace

        path = self.check_rendering(rendering)
        dev = self.device
        G_real = self._get("real", lambda: load_generator(self.config.real, device=dev))
        G_rendering = None
        if path is not None:
            G_rendering = self._get(f"rendering:{path}", lambda: load_generator(path, device=dev))
        lpips = self._get("lpips", lambda: load_lpips_vgg(device=dev, vgg_path=self.config.lpips_vgg))
        return RealFace(G_real, G_rendering, lpips, apply_config, device=dev)
