"""Every command-line default that feeds a config is that config's own default (nothing restated)."""

from __future__ import annotations

import dataclasses
import importlib
import inspect

import pytest
import typer.main

import realface.cli as cli
from realface.data import BuildConfig, FetchConfig
from realface.face import AlignConfig, BlendConfig, DetectConfig, MaskConfig
from realface.invert import InvertConfig
from realface.metrics.consistency import ConsistencyConfig
from realface.metrics.fid import FIDConfig, GeneratorSamplingConfig
from realface.metrics.identity import IdentityConfig
from realface.metrics.similarity import SimilarityConfig
from realface.pipeline import ApplyConfig, RealFace, SaveOptions
from realface.sampling import SampleConfig
from realface.ui.config import UIConfig

# The command modules whose options are checked here.
MODULES = {f"realface.cli.{m}" for m in ("apply", "face", "eval", "networks", "dataset", "weights", "ui")}

_INVERT = {
    "steps": (InvertConfig, "steps"),
    "coarse_to_fine": (InvertConfig, "coarse_to_fine"),
    "coarse_resolution": (InvertConfig, "coarse_resolution"),
    "fine_steps": (InvertConfig, "fine_steps"),
    "early_stop": (InvertConfig, "early_stop_patience"),
    "optimize_noise": (InvertConfig, "optimize_noise"),
    "seed": (InvertConfig, "seed"),
    "precision": (InvertConfig, "precision"),
    "space": (InvertConfig, "space"),
    "batch": (ApplyConfig, "batch_size"),
}

# command -> {parameter: (config dataclass, field)}
SOURCES: dict[str, dict[str, tuple[type, str]]] = {
    "apply": {
        **_INVERT,
        "face_index": (ApplyConfig, "face_index"),
        "detector": (DetectConfig, "detector"),
        "min_face_size": (DetectConfig, "min_face_size"),
        "max_pixels": (ApplyConfig, "max_pixels"),
        "mask": (MaskConfig, "kind"),
        "color_correct": (BlendConfig, "color_correct"),
        "save_aligned": (SaveOptions, "aligned"),
        "save_reconstruction": (SaveOptions, "reconstruction"),
        "save_realistic": (SaveOptions, "realistic"),
        "save_latents": (SaveOptions, "latents"),
        "sheet": (SaveOptions, "sheet"),
    },
    "invert": dict(_INVERT),
    "align": {
        "size": (AlignConfig, "output_size"),
        "detector": (DetectConfig, "detector"),
        "min_face_size": (DetectConfig, "min_face_size"),
        "upsample": (DetectConfig, "upsample"),
        "cnn": (DetectConfig, "cnn_fallback"),
    },
    "paste": {"mask": (MaskConfig, "kind"), "color_correct": (BlendConfig, "color_correct")},
    "generate": {
        "trunc": (SampleConfig, "truncation_psi"),
        "trunc_cutoff": (SampleConfig, "truncation_cutoff"),
        "noise_mode": (SampleConfig, "noise_mode"),
        "class_idx": (SampleConfig, "class_idx"),
    },
    "eval fid": {
        "num": (GeneratorSamplingConfig, "num"),
        "seed0": (GeneratorSamplingConfig, "seed0"),
        "trunc": (GeneratorSamplingConfig, "truncation_psi"),
        "noise_mode": (GeneratorSamplingConfig, "noise_mode"),
        "batch": (FIDConfig, "batch_size"),
        "device": (FIDConfig, "device"),
    },
    "eval identity": {
        "threshold": (IdentityConfig, "threshold"),
        "min_face": (IdentityConfig, "min_face_size"),
        "model": (IdentityConfig, "model"),
    },
    "eval similarity": {
        "size": (SimilarityConfig, "size"),
        "batch": (SimilarityConfig, "batch_size"),
        "device": (SimilarityConfig, "device"),
    },
    "eval consistency": {
        "num": (ConsistencyConfig, "num"),
        "seed": (ConsistencyConfig, "seed0"),
        "trunc": (ConsistencyConfig, "truncation_psi"),
        "noise_mode": (ConsistencyConfig, "noise_mode"),
        "batch": (ConsistencyConfig, "batch_size"),
    },
    "dataset build": {
        "size": (BuildConfig, "size"),
        "min_face_size": (BuildConfig, "min_face_size"),
        "blur_threshold": (BuildConfig, "blur_threshold"),
        "max_yaw": (BuildConfig, "max_yaw"),
        "max_pitch": (BuildConfig, "max_pitch"),
        "dup_distance": (BuildConfig, "dup_distance"),
        "max_pixels": (BuildConfig, "max_pixels"),
        "cnn": (BuildConfig, "cnn_fallback"),
        "keep_downloads": (BuildConfig, "keep_downloads"),
        "workers": (FetchConfig, "workers"),
        "rate": (FetchConfig, "rate_per_host"),
        "timeout": (FetchConfig, "timeout"),
        "retries": (FetchConfig, "retries"),
    },
    "ui": {
        "host": (UIConfig, "host"),
        "port": (UIConfig, "port"),
        "real": (UIConfig, "real"),
        "device": (UIConfig, "device"),
        "batch": (UIConfig, "batch_size"),
        "max_upload_mb": (UIConfig, "max_upload_mb"),
        "max_pixels": (UIConfig, "max_pixels"),
        "max_images": (UIConfig, "max_images"),
        "share": (UIConfig, "share"),
    },
}

# Options with a default that no config holds: switches of the command itself, or an inverted field.
NOT_CONFIG = {
    "apply": {"real", "device", "stop_on_error", "dry_run"},
    "invert": {"device"},
    "align": {"exact", "max_pixels"},
    "paste": {"max_pixels"},
    "generate": {"seeds", "grid", "device"},
    "eval fid": {"no_cache"},
    "eval consistency": {"device", "dry_run"},
    "dataset build": {"overwrite", "images_from", "dry_run"},
    "dataset presets": {"as_json"},
    "weights list": {"as_json"},
    "weights fetch": {"all_", "dry_run"},
    "weights path": {"fetch"},
    "weights import": {"link"},
}


def _field_default(config: type, name: str):
    (f,) = [f for f in dataclasses.fields(config) if f.name == name]
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    assert f.default is not dataclasses.MISSING, f"{config.__name__}.{name} has no default"
    return f.default


def _commands() -> dict[str, object]:
    for module in cli._COMMAND_MODULES:
        importlib.import_module(f"realface.cli.{module}")
    found: dict[str, object] = {}

    def walk(cmd, path: list[str]) -> None:
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])
        elif cmd.callback.__module__ in MODULES:
            found[" ".join(path)] = cmd

    walk(typer.main.get_command(cli.app), [])
    return found


COMMANDS = _commands()


def test_every_command_of_these_modules_is_covered():
    assert set(SOURCES) <= set(COMMANDS)
    assert {"apply", "invert", "align", "paste", "generate", "ui", "eval fid", "dataset build"} <= set(
        COMMANDS
    )


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_defaults_are_the_config_defaults(name: str):
    sources = SOURCES.get(name, {})
    options = {p.name: p for p in COMMANDS[name].params if p.param_type_name == "option"}
    assert set(sources) <= set(options), f"{name}: options missing: {set(sources) - set(options)}"
    for param, (config, field) in sources.items():
        expected = _field_default(config, field)
        got = options[param].default
        assert got == expected and type(got) is type(expected), (
            f"{name} --{param}: default {got!r}, but {config.__name__}.{field} is {expected!r}"
        )
    for param, option in options.items():
        if option.default is None or param in sources or param == "progress":
            continue
        assert param in NOT_CONFIG.get(name, set()), (
            f"{name} --{param}: default {option.default!r} comes from no config; take it from one "
            "or list the option in NOT_CONFIG"
        )


def test_apply_real_is_the_library_default():
    expected = inspect.signature(RealFace.from_weights).parameters["real"].default
    options = {p.name: p for p in COMMANDS["apply"].params}
    assert options["real"].default == expected


def test_shown_in_help():
    """The defaults are displayed by --help (not hidden behind a dynamic default)."""
    from typer.testing import CliRunner

    result = CliRunner().invoke(cli.app, ["invert", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert f"[default: {InvertConfig().steps}]" in result.output
    assert f"[default: {InvertConfig().coarse_resolution}]" in result.output
