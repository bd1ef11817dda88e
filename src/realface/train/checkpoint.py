"""Reading a training checkpoint (``checkpoints/ckpt-<nimg>/``) as untrusted data.

A checkpoint folder holds ``networks.safetensors`` (G, G_ema and D, read by
:func:`realface.checkpoints.read_network_records` with its schema checks), ``state.json`` (counters,
config, optimiser hyper-parameters, data-loader position) and ``state.safetensors`` (loss and ADA
state, RNG states, optimiser moments, loader tensors). :func:`read_checkpoint` checks all three
against their schema before any of it reaches the trainer, and every problem becomes one
:class:`~realface.errors.CheckpointError` that names the file; when an earlier checkpoint of the same
run is intact, the message names it and the command that resumes from it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from realface.errors import CheckpointError

__all__ = ["Checkpoint", "read_checkpoint", "NETWORKS", "CKPT_RE"]

CKPT_RE = re.compile(r"^ckpt-(\d{9})$")
NETWORKS = {"G": "Generator", "G_ema": "Generator", "D": "Discriminator"}
MAX_STATE_JSON = 64 << 20
MAX_STATE_DEPTH = 32
_COUNTERS = ("cur_nimg", "cur_tick", "batch_idx")
_OPT_KEY = re.compile(r"^(opt_G|opt_D)\.(\d{1,6})\.([A-Za-z_]{1,32})$")


@dataclass
class Checkpoint:
    """A checked checkpoint: its folder, network records, ``state.json`` and the state tensors."""

    path: Path
    records: dict[str, Any]
    state: dict[str, Any]
    tensors: dict[str, torch.Tensor]


def _problem(where: Path, text: str) -> CheckpointError:
    return CheckpointError(f"{where}: {text}")


def _depth_ok(obj: Any, limit: int) -> bool:
    stack = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > limit:
                return False
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))
    return True


def _tensor_refs(obj: Any) -> list[str]:
    """The ``{"__tensor__": name}`` references in the loader state (iteratively)."""
    refs, stack = [], [obj]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            if set(value) == {"__tensor__"}:
                refs.append(value["__tensor__"])
            else:
                stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return refs


def _read_state_json(path: Path) -> dict[str, Any]:
    try:
        size = path.stat().st_size
        if size > MAX_STATE_JSON:
            raise _problem(path, f"is {size >> 20} MiB, far larger than a training state")
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise _problem(path, f"cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise _problem(path, "is not UTF-8 JSON text (damaged?)") from None
    if not text.strip():
        raise _problem(path, "is empty (the checkpoint was not written completely)")
    try:
        state = json.loads(text)
    except RecursionError:
        raise _problem(path, "is nested too deeply to be a training state") from None
    except ValueError as exc:
        raise _problem(path, f"is not valid JSON ({exc})") from None
    if not isinstance(state, dict):
        raise _problem(path, f"must hold a JSON object, got {type(state).__name__}")
    if not _depth_ok(state, MAX_STATE_DEPTH):
        raise _problem(path, f"is nested more than {MAX_STATE_DEPTH} levels deep")
    missing = [k for k in (*_COUNTERS, "config", "opt_G", "opt_D") if k not in state]
    if missing:
        raise _problem(path, f"lacks the key(s) {', '.join(missing)}")
    for key in _COUNTERS:
        v = state[key]
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**53:
            raise _problem(path, f"{key} must be a non-negative integer, got {v!r:.40}")
    if not isinstance(state["config"], dict):
        raise _problem(path, "config must be an object")
    for key in ("opt_G", "opt_D"):
        groups = state[key]
        if not isinstance(groups, list) or not groups or not all(isinstance(g, dict) for g in groups):
            raise _problem(path, f"{key} must be a non-empty list of optimiser parameter groups")
        for g in groups:
            betas = g.get("betas")
            if betas is not None and (not isinstance(betas, list) or len(betas) != 2):
                raise _problem(path, f"{key}: betas must be a pair of numbers")
            for name in ("lr", "eps", "weight_decay"):
                v = g.get(name)
                if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                    raise _problem(path, f"{key}: {name} must be a number, got {v!r:.40}")
    loader = state.get("loader")
    if loader is not None and not isinstance(loader, dict):
        raise _problem(path, "loader must be an object or null")
    return state


def _read_state_tensors(path: Path, state: dict[str, Any], json_path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        size = path.stat().st_size
    except OSError as exc:
        raise _problem(path, f"cannot be read ({exc.strerror or exc})") from None
    if size == 0:
        raise _problem(path, "is empty (0 bytes; the checkpoint was not written completely)")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise _problem(path, f"is truncated or corrupt ({str(exc)[:200]})") from None
    for key in ("pl_mean", "rng_cpu"):
        if key not in tensors:
            raise _problem(path, f"lacks the tensor '{key}'")
    if tensors["pl_mean"].numel() != 1 or not tensors["pl_mean"].is_floating_point():
        raise _problem(path, "pl_mean must be one floating-point value")
    for key in ("augment_p",):
        if key in tensors and tensors[key].numel() != 1:
            raise _problem(path, f"{key} must be one value")
    expected_rng = torch.get_rng_state()
    rng = tensors["rng_cpu"]
    if rng.dtype != torch.uint8 or tuple(rng.shape) != tuple(expected_rng.shape):
        raise _problem(path, f"rng_cpu must be a uint8 tensor of shape {tuple(expected_rng.shape)}")
    for key in tensors:
        if key.startswith(("opt_G.", "opt_D.")) and not _OPT_KEY.match(key):
            raise _problem(path, f"unexpected optimiser tensor name {key[:80]!r}")
    missing = [r for r in _tensor_refs(state.get("loader")) if not isinstance(r, str) or r not in tensors]
    if missing:
        raise _problem(json_path, f"refers to loader tensor(s) missing from {path.name}: {missing[:3]}")
    return tensors


def _read(ckpt: Path) -> Checkpoint:
    from realface.checkpoints import read_network_records

    for name in ("networks.safetensors", "state.json", "state.safetensors"):
        if not (ckpt / name).is_file():
            raise _problem(ckpt / name, "is missing (the checkpoint is incomplete)")
    net_path = ckpt / "networks.safetensors"
    records = read_network_records(net_path, cache=False)
    for name, cls in NETWORKS.items():
        if name not in records:
            raise _problem(net_path, f"has no network {name}")
        if records[name].class_name != cls:
            raise _problem(net_path, f"network {name} is a {records[name].class_name}, expected a {cls}")
    state = _read_state_json(ckpt / "state.json")
    tensors = _read_state_tensors(ckpt / "state.safetensors", state, ckpt / "state.json")
    return Checkpoint(ckpt, records, state, tensors)


def _earlier(ckpt: Path) -> list[Path]:
    """Checkpoints of the same run older than ``ckpt``, newest first."""
    if ckpt.parent.name != "checkpoints" or not CKPT_RE.match(ckpt.name):
        return []
    return sorted(
        (p for p in ckpt.parent.iterdir() if CKPT_RE.match(p.name) and p.name < ckpt.name and p.is_dir()),
        reverse=True,
    )


def read_checkpoint(ckpt: str | Path) -> Checkpoint:
    """Read and check one checkpoint folder; :class:`CheckpointError` naming the broken file.

    If it is broken and an earlier checkpoint of the same run reads cleanly, the message offers that one.
    """
    ckpt = Path(ckpt)
    try:
        return _read(ckpt)
    except CheckpointError as exc:
        message = str(exc)
        for prev in _earlier(ckpt):
            try:
                _read(prev)
            except CheckpointError:
                continue
            run = ckpt.parent.parent
            message += (
                f"; the previous intact checkpoint is {prev.name}; resume from it with "
                f"`realface train ... --resume {prev} --out {run}`"
            )
            break
        raise CheckpointError(message) from None


def check_matches(ckpt: Checkpoint, networks: Mapping[str, torch.nn.Module]) -> None:
    """The checkpoint's networks have exactly the tensors (names, shapes) of this run's networks."""
    net_path = ckpt.path / "networks.safetensors"
    for name, net in networks.items():
        have = ckpt.records[name].state_dict
        want = net.state_dict()
        if set(have) != set(want):
            diff = sorted(set(have) ^ set(want))
            raise _problem(net_path, f"network {name} does not match this run's {name} (tensors {diff[:3]})")
        for key, t in want.items():
            if tuple(have[key].shape) != tuple(t.shape):
                raise _problem(
                    net_path,
                    f"network {name} tensor {key} has shape {tuple(have[key].shape)}, this run's has {tuple(t.shape)}",
                )
