"""Options shared by several commands, declared once; defaults come from the library's configs.

:func:`config_option` declares an option whose default is a config dataclass field's default, so the
command line never restates a library default. :func:`make_config` builds a config and turns a
``ValueError`` from its checks into the one-line :class:`~realface.errors.ConfigError`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import typer

from realface.errors import ConfigError
from realface.face import BlendConfig, DetectConfig, MaskConfig
from realface.invert import InvertConfig
from realface.pipeline import ApplyConfig
from realface.utils.progress import progress_enabled

__all__ = [
    "BATCH_OPT",
    "COARSE_RESOLUTION_OPT",
    "COARSE_TO_FINE_OPT",
    "COLOR_CORRECT_OPT",
    "DEVICE_OPT",
    "EARLY_STOP_OPT",
    "FINE_STEPS_OPT",
    "LPIPS_VGG_OPT",
    "MASK_OPT",
    "MAX_PIXELS_HELP",
    "OPTIMIZE_NOISE_OPT",
    "PROGRESS_OPT",
    "SEED_OPT",
    "STEPS_OPT",
    "config_option",
    "default_of",
    "invert_config",
    "make_config",
    "mask_config",
]

T = TypeVar("T")


def default_of(config: type, name: str) -> Any:
    """The default value of field ``name`` of the dataclass ``config`` (a default factory is called).

    Raises:
        TypeError: ``config`` has no field ``name``, or the field has no default.
    """
    for f in dataclasses.fields(config):
        if f.name != name:
            continue
        if f.default is not dataclasses.MISSING:
            return f.default
        if f.default_factory is not dataclasses.MISSING:
            return f.default_factory()
        raise TypeError(f"{config.__name__}.{name} has no default")
    raise TypeError(f"{config.__name__} has no field {name!r}")


def config_option(config: type, name: str, *param_decls: str, **kwargs: Any) -> Any:
    """A ``typer.Option`` whose default is the default of ``config``'s field ``name``."""
    return typer.Option(default_of(config, name), *param_decls, **kwargs)


def make_config(config: type[T], /, **values: Any) -> T:
    """``config(**values)``, with a ``ValueError`` of its checks raised as a one-line ConfigError."""
    try:
        return config(**values)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _resolve_progress(value: bool | None) -> bool:
    return progress_enabled(value)


MAX_PIXELS_HELP = "Refuse images with more pixels than this (decompression-bomb guard)."

DEVICE_OPT = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto (cuda when available).")
PROGRESS_OPT = typer.Option(
    None,
    "--progress/--no-progress",
    callback=_resolve_progress,
    help="Progress bars (default: on when stderr is a terminal, off when TQDM_DISABLE is set or in logs).",
    show_default=False,
)
LPIPS_VGG_OPT = typer.Option(
    None, "--lpips-vgg", help="VGG16 state dict for LPIPS (default: the cached tv-vgg16)."
)

# The inversion (`realface apply` and `realface invert`): InvertConfig and ApplyConfig.
STEPS_OPT = config_option(InvertConfig, "steps", "--steps", help="Inversion steps per face.")
BATCH_OPT = config_option(
    ApplyConfig, "batch_size", "--batch", help="Faces inverted together (one forward pass)."
)
COARSE_TO_FINE_OPT = config_option(
    InvertConfig,
    "coarse_to_fine",
    "--coarse-to-fine/--full-resolution",
    help="Most steps at low resolution (much faster on CPU).",
)
COARSE_RESOLUTION_OPT = config_option(
    InvertConfig, "coarse_resolution", "--coarse-resolution", help="Resolution of the coarse steps."
)
FINE_STEPS_OPT = config_option(
    InvertConfig, "fine_steps", "--fine-steps", help="Full-resolution steps at the end (coarse-to-fine)."
)
EARLY_STOP_OPT = config_option(
    InvertConfig, "early_stop_patience", "--early-stop", help="Stop a face after N steps without improvement."
)
OPTIMIZE_NOISE_OPT = config_option(
    InvertConfig, "optimize_noise", "--optimize-noise/--no-optimize-noise", help="Also fit noise maps."
)
SEED_OPT = config_option(InvertConfig, "seed", "--seed", help="Seed of the inversion's random draws.")
PRECISION_OPT = config_option(
    InvertConfig,
    "precision",
    "--precision",
    help="fp32 (the reference), bf16, or auto: bf16 where the CPU has AVX512_BF16/AMX or the GPU has "
    "bf16, fp32 elsewhere.",
)
SPACE_OPT = config_option(
    InvertConfig,
    "space",
    "--space",
    help="w+ (one latent per synthesis layer, the paper's) or w (one latent broadcast to every layer, as "
    "the official projector).",
)

# Face detection, shared by `align` and `apply`.
DETECTOR_OPT = config_option(
    DetectConfig,
    "detector",
    "--detector",
    help="Face detector: blazeface (default), hog (dlib, CNN fallback) or cnn.",
)
THRESHOLD_OPT = config_option(
    DetectConfig,
    "threshold",
    "--threshold",
    help="Least detector score a face needs (default: the detector's own, 0.65 for blazeface, 0 for "
    "hog/cnn); weaker candidates are logged with their score.",
)
MIN_FACE_OPT = config_option(
    DetectConfig,
    "min_face_size",
    "--min-face-size",
    "--min-face",
    help="Ignore faces smaller than this (px).",
)

# Pasting a face back (`realface apply` and `realface paste`).
MASK_OPT = config_option(
    MaskConfig, "kind", "--mask", help="auto, landmarks or parsing (parsing needs bisenet-79999)."
)
COLOR_CORRECT_OPT = config_option(
    BlendConfig, "color_correct", "--color-correct/--no-color-correct", help="Lab colour match."
)


def invert_config(
    steps: int,
    seed: int,
    coarse_to_fine: bool,
    coarse_resolution: int,
    fine_steps: int,
    early_stop: int | None,
    noise: bool,
    precision: str = "fp32",
    space: str = "w+",
) -> InvertConfig:
    """The InvertConfig of the shared inversion options."""
    return make_config(
        InvertConfig,
        steps=steps,
        seed=seed,
        coarse_to_fine=coarse_to_fine,
        coarse_resolution=coarse_resolution,
        fine_steps=fine_steps,
        early_stop_patience=early_stop,
        optimize_noise=noise,
        precision=precision,
        space=space,
    )


def mask_config(kind: str) -> MaskConfig:
    """The MaskConfig of ``--mask``; a bad kind is a ConfigError naming ``--mask``."""
    try:
        return MaskConfig(kind=kind)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ConfigError(f"--mask: {exc}") from None
