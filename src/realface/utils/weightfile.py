"""Reading weight files written by other projects, without executing anything stored in them.

One module for every foreign file realface reads:

- :func:`read_state_dict`: a flat ``{name: tensor}`` state dict from a ``.safetensors`` file or a
  ``torch.save`` file (zip container or the legacy pickle format), the latter read with
  ``torch.load(weights_only=True)``. The format is taken from the file's first bytes
  (:func:`sniff_format`), not from its suffix.
- :func:`read_torch_object`: any object ``torch.load(weights_only=True)`` accepts (plain containers of
  tensors, numbers and strings), for files that are not a flat state dict (resume states).
- :class:`RestrictedUnpickler`: a :class:`pickle.Unpickler` that resolves only the globals of an
  allow-list given by the caller (StyleGAN2-ADA persistence pickles, Jittor weight files) and refuses
  everything else with :class:`~realface.errors.UnsafePickleError` before it can be called;
  :func:`pickle_failure` turns whatever a failed read raised into one error naming the file.
- :func:`check_state_dict`: keys and shapes of a state dict against those a module expects, with one
  error format (``<file>: not <what> (missing [...] (n), unexpected [...] (n), wrong shapes [...])``);
  :func:`state_dict_mismatch` is the same comparison returning the description.
- :func:`strip_prefix`: removes a key prefix such as ``module.`` (``DataParallel`` checkpoints).

Every error is a :class:`~realface.errors.CheckpointError` whose message starts with the file.
"""

from __future__ import annotations

import os
import pickle
import struct
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import torch

from realface.errors import CheckpointError, UnsafePickleError

__all__ = [
    "RestrictedUnpickler",
    "check_state_dict",
    "load_checked",
    "pickle_failure",
    "read_state_dict",
    "read_torch_object",
    "sniff_format",
    "state_dict_mismatch",
    "strip_prefix",
]


def sniff_format(path: str | os.PathLike) -> str | None:
    """``"pickle"``, ``"zip"``, ``"safetensors"`` or None, from the file's first 16 bytes."""
    with open(path, "rb") as f:
        head = f.read(16)
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 0 < n < 100_000_000 and head[8:9] == b"{":
            return "safetensors"
    return None


def _reason(exc: BaseException) -> str:
    """One line for an error of ``torch.load``: the weights-only loader's own reason when it refused the
    file (not its advice to load without ``weights_only``), else the first line of the message."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    if lines[0].startswith("Weights only load failed"):
        skip = ("Please file an issue", "Check the documentation")
        details = [
            ln.removeprefix("WeightsUnpickler error:").strip() for ln in lines[1:] if not ln.startswith(skip)
        ]
        details = [d for d in details if d]
        return "refused by the weights-only loader" + (f": {details[0]}" if details else "")
    return lines[0] if len(lines[0]) <= 300 else lines[0][:297] + "..."


def read_torch_object(path: str | os.PathLike, what: str = "file") -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``; any failure becomes one
    :class:`CheckpointError` ``"<path>: cannot read the <what> as a PyTorch file (<reason>)"``."""
    try:
        return torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except Exception as exc:  # noqa: BLE001 - every failure becomes one message naming the file
        raise CheckpointError(f"{path}: cannot read the {what} as a PyTorch file ({_reason(exc)})") from None


def read_state_dict(path: str | os.PathLike, what: str = "weights") -> dict[str, torch.Tensor]:
    """The ``{name: tensor}`` state dict of a ``.safetensors`` or ``torch.save`` file, on the CPU.

    Args:
        path: the file. safetensors is recognised by its header, anything else is read with
            ``torch.load(weights_only=True)`` (zip container or legacy pickle); nothing is executed.
        what: how error messages name the contents (``"FID Inception weights"``).

    Raises:
        CheckpointError: the file is missing or unreadable, or not a mapping of names to tensors; the
            message starts with ``path``.
    """
    path = Path(path)
    try:
        fmt = sniff_format(path)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a directory, expected a file of {what}") from None
    if fmt == "safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(os.fspath(path))
        except Exception as exc:  # noqa: BLE001 - every failure becomes one message naming the file
            raise CheckpointError(
                f"{path}: cannot read the {what} as a safetensors file ({_reason(exc)})"
            ) from None
    try:
        state = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one message naming the file
        raise CheckpointError(
            f"{path}: cannot read the {what} as a PyTorch state dict ({_reason(exc)})"
        ) from None
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: expected a state dict of {what}, got {type(state).__name__}")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(
            f"{path}: expected a state dict of {what} (names → tensors); entry {bad[0]!r} is "
            f"{type(state[bad[0]]).__name__}"
        )
    return dict(state)


def strip_prefix(
    state: Mapping[str, torch.Tensor], prefixes: Iterable[str] = ("module.",)
) -> dict[str, torch.Tensor]:
    """``state`` with the first of ``prefixes`` that every key starts with removed from every key (the
    ``module.`` of a checkpoint saved from ``DataParallel``); unchanged when no prefix is shared."""
    for prefix in prefixes:
        if state and all(k.startswith(prefix) for k in state):
            return {k[len(prefix) :]: v for k, v in state.items()}
    return dict(state)


def state_dict_mismatch(
    expected: Mapping[str, torch.Tensor],
    given: Mapping[str, Any],
    optional: Callable[[str], bool] = lambda key: False,
) -> str | None:
    """None when ``given`` has exactly the keys and shapes of ``expected`` (keys for which ``optional``
    is true may be absent); otherwise ``"missing [...] (n), unexpected [...] (n), wrong shapes [...]"``
    (at most three names of each)."""
    missing = sorted(k for k in expected if k not in given and not optional(k))
    unexpected = sorted(k for k in given if k not in expected)
    wrong = [
        f"{k} {tuple(given[k].shape) if isinstance(given[k], torch.Tensor) else type(given[k]).__name__}"
        f" != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in given and (not isinstance(given[k], torch.Tensor) or tuple(given[k].shape) != tuple(v.shape))
    ]
    if not (missing or unexpected or wrong):
        return None
    return (
        f"missing {missing[:3]} ({len(missing)}), unexpected {unexpected[:3]} ({len(unexpected)}), "
        f"wrong shapes {wrong[:3]}"
    )


def _optional_counter(key: str) -> bool:
    return key.endswith("num_batches_tracked")


def check_state_dict(
    expected: Mapping[str, torch.Tensor],
    given: Mapping[str, Any],
    source: str,
    what: str,
    optional: Callable[[str], bool] = _optional_counter,
) -> None:
    """Raise :class:`CheckpointError` ``"<source>: not <what> (<mismatch>)"`` unless ``given`` holds the
    keys and shapes of ``expected`` (:func:`state_dict_mismatch`). By default BatchNorm
    ``num_batches_tracked`` counters may be absent (older PyTorch; unused in eval)."""
    problem = state_dict_mismatch(expected, given, optional)
    if problem:
        raise CheckpointError(f"{source}: not {what} ({problem})")


def load_checked(
    module: torch.nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str,
    what: str,
    optional: Callable[[str], bool] = _optional_counter,
) -> None:
    """:func:`check_state_dict` against ``module.state_dict()``, then copy ``state`` in with
    ``strict=True`` (absent optional keys keep the module's values)."""
    expected = module.state_dict()
    check_state_dict(expected, state, source, what, optional)
    full = {k: (state[k] if k in state else expected[k]) for k in expected}
    module.load_state_dict(full, strict=True)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals of ``allowed``; nothing else can be called.

    Args:
        file: the binary stream to read.
        allowed: ``{(module, name): object}``; a pickled reference to ``module.name`` resolves to
            ``object`` (usually a checked stand-in, never the original when that could run code).
        refusal: completes ``"refusing to load global 'module.name': <refusal>"``, the message of
            the :class:`UnsafePickleError` raised for every other global.
        kind: names the files in the refusal of persistent ids (``"Jittor weight files"``).
    """

    def __init__(
        self, file: IO[bytes], allowed: Mapping[tuple[str, str], Any], refusal: str, kind: str
    ) -> None:
        super().__init__(file)
        self._allowed = allowed
        self._refusal = refusal
        self._kind = kind

    def find_class(self, module: str, name: str) -> Any:
        obj = self._allowed.get((module, name))
        if obj is None:
            raise UnsafePickleError(f"refusing to load global '{module}.{name}': {self._refusal}")
        return obj

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"persistent ids are not used by {self._kind} (got {pid!r})")


def pickle_failure(path: Path, exc: BaseException, what: str, truncated: str) -> CheckpointError:
    """One :class:`CheckpointError` naming ``path`` for anything a restricted read raised: a
    :class:`CheckpointError` gets the path in front (its class, e.g. :class:`UnsafePickleError`, is
    kept), :class:`EOFError` becomes ``"<path>: <truncated>"``, anything else
    ``"<path>: not a readable <what> (<type>: <message>)"``."""
    if isinstance(exc, CheckpointError):
        exc.args = (f"{path}: {exc.args[0]}",)
        return exc
    if isinstance(exc, EOFError):
        return CheckpointError(f"{path}: {truncated}")
    return CheckpointError(f"{path}: not a readable {what} ({type(exc).__name__}: {exc})")
