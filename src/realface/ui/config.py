"""The web UI's settings: how ``realface ui`` was started (:class:`UIConfig`) and the page's settings
for one run (:class:`Settings`), with the page's one-line error text."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from realface.errors import ConfigError, RealFaceError
from realface.face import BlendConfig, DetectConfig, MaskConfig
from realface.imageio import DEFAULT_MAX_PIXELS
from realface.invert import InvertConfig
from realface.precision import PRECISIONS

if TYPE_CHECKING:
    from realface.pipeline import ApplyConfig

__all__ = ["BASELINE", "OUTPUT_FORMATS", "Settings", "UIConfig", "readable_error"]

OUTPUT_FORMATS = ("input", "png", "jpg", "webp")
BASELINE = ""  # the rendering choice that means "no G_rendering: baseline mode"


def readable_error(exc: BaseException) -> str:
    """One line for the page: a :class:`RealFaceError`'s own message, else the type and message
    (the traceback goes to the server log, never to the page)."""
    if isinstance(exc, RealFaceError):
        return str(exc).strip() or f"{type(exc).__name__} (no message); see the server log"
    if isinstance(exc, MemoryError):
        return "out of memory: try fewer images at once or a smaller batch"
    text = str(exc).strip() or "no message"
    return f"unexpected error ({type(exc).__name__}: {text}); see the server log for details"


@dataclass(frozen=True)
class UIConfig:
    """How ``realface ui`` was started (each run's ``run.json`` records the G_real, G_rendering and
    device it used, with the full apply config).

    host/port: where the page is served (127.0.0.1: this machine only). workdir: the app's own
    folder; nothing outside it is served. real: G_real (file or weights id). renderings: G_rendering
    checkpoints offered in the page; models_dir: a folder whose ``*.safetensors``/``*.pkl`` files are
    offered too. lpips_vgg: VGG16 state dict for LPIPS (default: the cached ``tv-vgg16``).
    batch_root: the folder below which the batch tab may read and write (default: the current
    folder). max_upload_mb / max_pixels / max_images: limits on uploads. share: ask Gradio for a
    public link (off by default). batch_size: faces inverted together.
    """

    workdir: Path
    host: str = "127.0.0.1"
    port: int = 7860
    real: str = "sg2ada-ffhq1024"
    renderings: tuple[Path, ...] = ()
    models_dir: Path | None = None
    lpips_vgg: Path | None = None
    device: str = "auto"
    batch_root: Path | None = None
    max_upload_mb: int = 50
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_images: int = 16
    share: bool = False
    batch_size: int = 4

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ConfigError(f"--port must be in 1..65535, got {self.port}")
        for name in ("max_upload_mb", "max_pixels", "max_images", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")

    @property
    def is_local(self) -> bool:
        return self.host in ("127.0.0.1", "localhost", "::1")

    @property
    def batch_folder(self) -> Path:
        return Path(os.path.abspath(self.batch_root if self.batch_root is not None else os.getcwd()))


def _threshold(value: Any) -> float | None:
    """The page's threshold box: empty (or None) means the detector's default, else a number."""
    text = "" if value is None else str(value).strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"setting 'threshold' must be a number or empty, got {text!r}") from None


@dataclass(frozen=True)
class Settings:
    """The page's settings for one run (the same meaning as the ``realface apply`` options)."""

    rendering: str = BASELINE
    steps: int = InvertConfig.steps
    coarse_to_fine: bool = True  # unlike the command line: the page is for trying, often on a CPU
    coarse_resolution: int = InvertConfig.coarse_resolution
    fine_steps: int = InvertConfig.fine_steps
    precision: str = InvertConfig.precision
    mask: str = MaskConfig.kind
    feather: float = MaskConfig.feather
    color_correct: bool = BlendConfig.color_correct
    seed: int = InvertConfig.seed
    transfer_layers: str = ""  # W+ layers taken from the inversion, e.g. "0-7"; empty: all (the paper)
    out_format: str = "input"
    detector: str = DetectConfig.detector
    threshold: float | None = DetectConfig.threshold  # None: the detector's own default
    min_face_size: int = DetectConfig.min_face_size

    def __post_init__(self) -> None:
        if self.out_format not in OUTPUT_FORMATS:
            raise ConfigError(
                f"output format must be one of {', '.join(OUTPUT_FORMATS)}, got {self.out_format!r}"
            )
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not 0 <= self.feather <= 0.1:
            raise ConfigError(
                f"feather must be in [0, 0.1] (a fraction of the face size), got {self.feather}"
            )
        from realface.options import parse_layers

        parse_layers(self.transfer_layers, what="transfer layers")  # refused now, not in the job thread
        self.detect_config()  # likewise

    @classmethod
    def from_page(cls, **values: Any) -> Settings:
        """Settings from the page's widgets: numbers arrive as floats (or None when a box is empty); the
        threshold arrives as text, empty for the detector's default."""
        ints = ("steps", "coarse_resolution", "fine_steps", "seed", "min_face_size")
        clean: dict[str, Any] = {}
        for key, value in values.items():
            if key == "threshold":  # a text box; empty: the detector's default
                clean[key] = _threshold(value)
                continue
            if value is None:
                raise ConfigError(f"setting {key.replace('_', ' ')!r} is empty")
            if key in ints:
                if float(value) != int(value):
                    raise ConfigError(
                        f"setting {key.replace('_', ' ')!r} must be a whole number, got {value}"
                    )
                value = int(value)
            clean[key] = value
        return cls(**clean)

    def detect_config(self) -> DetectConfig:
        """The :class:`realface.face.DetectConfig` of the detection settings."""
        try:
            return DetectConfig(
                detector=self.detector,  # type: ignore[arg-type]
                threshold=None if self.threshold is None else float(self.threshold),
                min_face_size=int(self.min_face_size),
            )
        except ValueError as exc:
            raise ConfigError(f"detection: {exc}") from None

    def apply_config(self, batch_size: int, max_pixels: int, save_all: bool) -> ApplyConfig:
        """The :class:`realface.pipeline.ApplyConfig` of these settings. ``save_all``: also keep the
        aligned input, reconstruction, realistic face and latent of every face (the image tab)."""
        from realface.pipeline import ApplyConfig, SaveOptions, parse_layers

        try:
            mask = MaskConfig(kind=self.mask, feather=float(self.feather))  # type: ignore[arg-type]
        except ValueError as exc:
            raise ConfigError(f"mask: {exc}") from None
        # The command line refuses fine_steps > steps with coarse-to-fine; the page clamps instead.
        fine = min(self.fine_steps, self.steps) if self.coarse_to_fine else self.fine_steps
        return ApplyConfig(
            invert=InvertConfig(
                steps=self.steps,
                seed=self.seed,
                coarse_to_fine=self.coarse_to_fine,
                coarse_resolution=self.coarse_resolution,
                fine_steps=fine,
                precision=self.precision,
            ),
            detect=self.detect_config(),
            mask=mask,
            blend=BlendConfig(color_correct=self.color_correct),
            save=SaveOptions(aligned=save_all, reconstruction=save_all, realistic=save_all, latents=save_all),
            transfer_layers=parse_layers(self.transfer_layers),
            batch_size=batch_size,
            max_pixels=max_pixels,
        )

    def suffix(self) -> str | None:
        return None if self.out_format == "input" else "." + self.out_format
