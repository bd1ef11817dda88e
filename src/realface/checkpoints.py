"""Reading and writing network files.

Two formats are understood:

1. **Official StyleGAN2-ADA network pickles** (``network-snapshot-*.pkl``, ``ffhq.pkl``): a dict with
   ``G``, ``D``, ``G_ema`` (``torch_utils.persistence`` objects), ``augment_pipe`` and
   ``training_set_kwargs``. Unpickling them the normal way executes Python source stored in the file.
   :func:`read_official_pickle` never does: a restricted unpickler resolves only an allow-list of
   globals (reference/stylegan2-ada.md §A1), replaces the persistence reconstructor by a stub that just
   keeps the pickled ``meta`` dict, loads every inner tensor-storage blob with
   ``torch.load(weights_only=True)``, and refuses anything else with :class:`UnsafePickleError` before
   it can run. The architecture comes from each network's pickled ``_init_kwargs``.
2. **realface safetensors**: one ``.safetensors`` file holding one or more networks. Tensor names are
   ``<network>.<state_dict key>`` (e.g. ``G_ema.synthesis.b4.const``); the header metadata holds
   ``format = "realface.networks"``, a format ``version`` and ``networks``: a JSON object mapping each
   network name to ``{"class": ..., "init_kwargs": {...}}``. Saving and loading round-trips exactly.

Public entry points: :func:`load_generator`, :func:`load_discriminator`, :func:`load_networks`,
:func:`save_networks`, :func:`convert_pickle`.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import pickle
import re
import struct
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file as _st_load_file
from safetensors.torch import save_file as _st_save_file

from realface.errors import CheckpointError, UnsafePickleError
from realface.nn.arch import ArchError, check_depth, check_init_kwargs
from realface.nn.stylegan2 import Discriminator, Generator
from realface.utils.fs import atomic_path
from realface.utils.weightfile import RestrictedUnpickler, pickle_failure, state_dict_mismatch

__all__ = [
    "NetworkRecord",
    "read_official_pickle",
    "load_networks",
    "load_generator",
    "load_discriminator",
    "save_networks",
    "convert_pickle",
    "detect_format",
]

log = logging.getLogger(__name__)

FORMAT_NAME = "realface.networks"
FORMAT_VERSION = "1"
NETWORK_CLASSES: dict[str, type[torch.nn.Module]] = {"Generator": Generator, "Discriminator": Discriminator}
_PICKLE_NETWORK_KEYS = ("G", "D", "G_ema")
#: A declared architecture may hold at most this many values more than the file's tensors before
#: it is refused unbuilt (the exact tensor names and shapes are compared once it is built).
SIZE_SLACK = 1.5
SIZE_ALLOWANCE = 1 << 16
MAX_MODULE_DEPTH = 16
MAX_NETWORKS_HEADER = 1 << 20  # bytes of the 'networks' JSON (a real one is about 1 kB)


# --------------------------------------------------------------------------------------------------
# Restricted unpickling of official pickles


@dataclass
class _PersistentStub:
    """Stands in for a ``torch_utils.persistence`` object: keeps its pickled ``meta`` and runs nothing."""

    meta: dict

    @property
    def class_name(self) -> str:
        return str(self.meta.get("class_name"))

    @property
    def state(self) -> dict:
        return self.meta["state"]


def _reconstruct_persistent_obj(meta: Any) -> _PersistentStub:
    if not isinstance(meta, dict) or meta.get("type") != "class" or "state" not in meta:
        raise UnsafePickleError(f"not a StyleGAN2-ADA persistence record (got {type(meta).__name__})")
    if not isinstance(meta["state"], dict):
        raise CheckpointError(
            f"a persistence record's state must be a dict, got {type(meta['state']).__name__}"
        )
    if not isinstance(meta.get("class_name"), str):
        raise CheckpointError("a persistence record has no class name")
    return _PersistentStub(meta)


class _EasyDict(dict):
    """Plain-dict stand-in for ``dnnlib.util.EasyDict``."""


def _load_storage_bytes(data: bytes) -> Any:
    """Tensor storage blobs inside persistence pickles: legacy ``torch.save`` data, loaded without code."""
    if not isinstance(data, (bytes, bytearray)):
        raise UnsafePickleError(f"tensor storage blob must be bytes, got {type(data).__name__}")
    try:
        return torch.load(io.BytesIO(data), weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafePickleError(
            f"a tensor storage blob was refused by the weights-only loader: {exc}"
        ) from exc


def _numpy_scalar(dtype: np.dtype, data: bytes | None = None) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafePickleError(
            f"numpy scalar of dtype {dtype!r} is not allowed (object dtypes can hold code)"
        )
    if not isinstance(data, (bytes, bytearray)):
        raise UnsafePickleError("numpy scalar without raw bytes is not allowed")
    return np.frombuffer(bytes(data), dtype=dtype, count=1)[0]


def _codecs_encode(obj: str, encoding: str = "utf-8") -> bytes:
    if encoding.lower().replace("_", "-") not in ("latin1", "latin-1", "utf-8", "utf8"):
        raise UnsafePickleError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return obj.encode(encoding)


def _rebuild_parameter(
    data: torch.Tensor, requires_grad: bool, backward_hooks: Any, *args: Any
) -> torch.Tensor:
    # Parameters become plain tensors; hooks and extra state are dropped (no callables are honoured).
    return data.detach()


_TORCH_DTYPES = {
    name
    for name in (
        "float16",
        "float32",
        "float64",
        "bfloat16",
        "half",
        "float",
        "double",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "bool",
        "long",
        "int",
    )
}

# (module, name) -> object. Nothing else resolves.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("dnnlib", "EasyDict"): _EasyDict,
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "set"): set,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_bytes,
    ("torch", "Size"): torch.Size,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _codecs_encode,
}


_ALLOWED_GLOBALS.update({("torch", name): getattr(torch, name) for name in sorted(_TORCH_DTYPES)})

_REFUSAL = (
    "it is not on realface's allow-list for StyleGAN2-ADA network pickles, and loading it could execute code"
)


def _network_unpickler(file: IO[bytes]) -> RestrictedUnpickler:
    """The restricted unpickler of official network pickles: :data:`_ALLOWED_GLOBALS` only."""
    return RestrictedUnpickler(file, _ALLOWED_GLOBALS, _REFUSAL, "network pickles")


def _plain(obj: Any) -> Any:
    """EasyDicts/OrderedDicts/numpy scalars -> JSON-friendly Python values."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _state_part(state: dict, key: str, where: str) -> Mapping:
    part = state.get(key)
    if part is None:
        return {}
    if not isinstance(part, Mapping) or not all(isinstance(k, str) for k in part):
        raise CheckpointError(f"{where}{key} must be a dict keyed by name, got {type(part).__name__}")
    return part


def _stub_state_dict(stub: _PersistentStub) -> dict[str, torch.Tensor]:
    """Parameters, persistent buffers and children of a stub tree, in ``Module.state_dict()`` order.

    Walked with an explicit stack (pre-order, like ``state_dict()``), so hostile nesting cannot
    exhaust the interpreter's stack; every entry's type is checked.
    """
    out: dict[str, torch.Tensor] = OrderedDict()
    stack: list[tuple[_PersistentStub, str, int]] = [(stub, "", 0)]
    while stack:
        node, prefix, depth = stack.pop()
        where = f"module '{prefix[:-1]}': " if prefix else ""
        if depth > MAX_MODULE_DEPTH:
            raise CheckpointError(f"{where}modules are nested more than {MAX_MODULE_DEPTH} levels deep")
        state = node.state
        for name, p in _state_part(state, "_parameters", where).items():
            if p is None:
                continue
            if not isinstance(p, torch.Tensor):
                raise CheckpointError(f"{where}parameter '{name}' is {type(p).__name__}, not a tensor")
            out[prefix + name] = p.detach()
        non_persistent = state.get("_non_persistent_buffers_set") or set()
        if not isinstance(non_persistent, (set, frozenset)) or not all(
            isinstance(n, str) for n in non_persistent
        ):
            raise CheckpointError(f"{where}_non_persistent_buffers_set must be a set of names")
        for name, b in _state_part(state, "_buffers", where).items():
            if b is None or name in non_persistent:
                continue
            if not isinstance(b, torch.Tensor):
                raise CheckpointError(f"{where}buffer '{name}' is {type(b).__name__}, not a tensor")
            out[prefix + name] = b.detach()
        children = []
        for name, child in _state_part(state, "_modules", where).items():
            if child is None:
                continue
            if not isinstance(child, _PersistentStub):
                raise CheckpointError(f"module '{prefix}{name}' is not a StyleGAN2-ADA persistent object")
            children.append((child, prefix + name + ".", depth + 1))
        stack.extend(reversed(children))
    return out


def _numel(tensors: Mapping[str, Any]) -> int:
    return sum(math.prod(t) if isinstance(t, tuple) else t.numel() for t in tensors.values())


def check_network_config(class_name: Any, init_kwargs: Any, file_numel: int, where: str) -> None:
    """Schema of a declared network, and its size against the ``file_numel`` values the file holds.

    Raises :class:`CheckpointError` starting with ``where`` (the file and network) before anything
    is allocated: a few bytes of metadata cannot make realface build a network of gigabytes.
    """
    try:
        declared = check_init_kwargs(class_name, init_kwargs)
    except ArchError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    if declared > SIZE_SLACK * file_numel + SIZE_ALLOWANCE:
        raise CheckpointError(
            f"{where}: the declared {class_name} has {declared:,} values ({declared * 4 / 2**20:,.1f} MiB "
            f"as float32) but the file holds only {file_numel:,} values for it; refusing to build it"
        )


@dataclass
class NetworkRecord:
    """One network read from a file: its class, constructor kwargs and state dict (no code run)."""

    class_name: str
    init_kwargs: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    extra: dict[str, Any] = field(default_factory=dict)
    source: str = "network"

    def build(self, device: torch.device | str = "cpu") -> torch.nn.Module:
        cls = NETWORK_CLASSES.get(self.class_name)
        if cls is None:
            raise CheckpointError(f"cannot build a network of class {self.class_name!r}")
        check_network_config(self.class_name, self.init_kwargs, _numel(self.state_dict), self.source)
        try:
            net = cls(**self.init_kwargs)
        except TypeError as exc:
            raise CheckpointError(
                f"unsupported {self.class_name} configuration {self.init_kwargs}: {exc}"
            ) from exc
        problem = state_dict_mismatch(net.state_dict(), self.state_dict)
        if problem:
            raise CheckpointError(
                f"{self.source}: {self.class_name} tensors do not match its configuration ({problem})"
            )
        net.load_state_dict(self.state_dict, strict=True)
        return net.eval().requires_grad_(False).to(device)


def read_official_pickle(path: str | os.PathLike) -> dict[str, Any]:
    """Read an official StyleGAN2-ADA pickle without executing anything from it.

    Returns a dict with ``networks``: ``{"G" | "D" | "G_ema": NetworkRecord}`` for each network
    present, ``augment_pipe``: its state dict (or None) and ``training_set_kwargs`` (plain dict or
    None). Raises :class:`UnsafePickleError` for any global outside the allow-list and
    :class:`CheckpointError` for truncated or malformed files.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = _network_unpickler(f).load()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except Exception as exc:  # noqa: BLE001 - every failure becomes a CheckpointError naming the file
        raise pickle_failure(
            path,
            exc,
            "StyleGAN2-ADA network pickle",
            "the file ends early (truncated download?); fetch it again",
        ) from exc
    if not isinstance(data, dict):
        raise CheckpointError(
            f"{path}: expected a dict of networks at the top level, got {type(data).__name__}"
        )
    networks: dict[str, NetworkRecord] = {}
    for key in _PICKLE_NETWORK_KEYS:
        stub = data.get(key)
        if stub is None:
            continue
        if not isinstance(stub, _PersistentStub):
            raise CheckpointError(f"{path}: entry '{key}' is not a StyleGAN2-ADA network")
        if stub.class_name not in NETWORK_CLASSES:
            raise CheckpointError(f"{path}: entry '{key}' has unsupported class {stub.class_name!r}")
        where = f"{path}: network '{key}'"
        init_args = stub.state.get("_init_args") or ()
        if not isinstance(init_args, (tuple, list)):
            raise CheckpointError(f"{where}: _init_args must be a tuple, got {type(init_args).__name__}")
        if len(init_args):
            raise CheckpointError(f"{where} was built with {len(init_args)} positional argument(s)")
        raw_kwargs = stub.state.get("_init_kwargs") or {}
        try:
            check_depth(raw_kwargs, 8, "_init_kwargs")
        except ArchError as exc:
            raise CheckpointError(f"{where}: {exc}") from None
        init_kwargs = _plain(raw_kwargs)
        try:
            state_dict = _stub_state_dict(stub)
        except CheckpointError as exc:
            raise CheckpointError(f"{where}: {exc}") from None
        check_network_config(stub.class_name, init_kwargs, _numel(state_dict), where)
        networks[key] = NetworkRecord(
            class_name=stub.class_name, init_kwargs=init_kwargs, state_dict=state_dict, source=where
        )
    if not networks:
        raise CheckpointError(f"{path}: contains none of the networks {_PICKLE_NETWORK_KEYS}")
    pipe = data.get("augment_pipe")
    training_set_kwargs = data.get("training_set_kwargs")
    try:
        check_depth(training_set_kwargs, 8, "training_set_kwargs")
        pipe_state = _stub_state_dict(pipe) if isinstance(pipe, _PersistentStub) else None
    except (ArchError, CheckpointError) as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    return {
        "networks": networks,
        "augment_pipe": pipe_state,
        "training_set_kwargs": _plain(training_set_kwargs),
    }


# --------------------------------------------------------------------------------------------------
# realface safetensors format


def detect_format(path: str | os.PathLike) -> str:
    """'pickle' or 'safetensors', from the file's first bytes; CheckpointError otherwise."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CheckpointError(
            f"{path}: is a directory, expected a network file (.pkl or .safetensors)"
        ) from None
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 0 < n < 100_000_000 and head[8:9] == b"{":
            return "safetensors"
    if head[:2] == b"PK":
        raise CheckpointError(
            f"{path}: is a zip archive (a torch.save file?); realface reads StyleGAN2-ADA .pkl network pickles "
            "and realface .safetensors files"
        )
    raise CheckpointError(
        f"{path}: unrecognised network file (expected a StyleGAN2-ADA .pkl or a realface .safetensors)"
    )


def save_networks(
    networks: Mapping[str, torch.nn.Module],
    path: str | os.PathLike,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write networks (name -> Generator/Discriminator) to one safetensors file, atomically."""
    tensors: dict[str, torch.Tensor] = {}
    header: dict[str, Any] = {}
    for name, net in networks.items():
        cls = type(net).__name__
        if cls not in NETWORK_CLASSES or not hasattr(net, "init_kwargs"):
            raise CheckpointError(f"cannot save network '{name}' of type {cls}")
        if "." in name:
            raise ValueError(f"network names may not contain '.', got {name!r}")
        header[name] = {"class": cls, "init_kwargs": _plain(net.init_kwargs)}
        for key, t in net.state_dict().items():
            tensors[f"{name}.{key}"] = t.detach().to("cpu").contiguous().clone()
    meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "networks": json.dumps(header, sort_keys=True)}
    for k, v in (metadata or {}).items():
        if k in meta:
            raise ValueError(f"metadata key {k!r} is reserved")
        meta[k] = str(v)
    with atomic_path(path) as tmp:
        _st_save_file(tensors, str(tmp), metadata=meta)
    return Path(path)


_NETWORK_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def _networks_header(path: Path, text: Any) -> dict[str, dict[str, Any]]:
    """The ``networks`` header, checked: an object of at most 16 ``name -> {class, init_kwargs}``."""
    if not isinstance(text, str):
        raise CheckpointError(f"{path}: has no 'networks' header (not a realface network file)")
    if len(text) > MAX_NETWORKS_HEADER:
        raise CheckpointError(f"{path}: the 'networks' header is larger than {MAX_NETWORKS_HEADER >> 10} kB")
    try:
        header = json.loads(text)
    except RecursionError:
        raise CheckpointError(f"{path}: the 'networks' header is nested too deeply") from None
    except ValueError as exc:
        raise CheckpointError(f"{path}: malformed 'networks' header ({exc})") from None
    if not isinstance(header, dict):
        raise CheckpointError(
            f"{path}: the 'networks' header must be a JSON object of networks, got {type(header).__name__}"
        )
    if not header or len(header) > 16:
        raise CheckpointError(f"{path}: the 'networks' header lists {len(header)} networks (1..16 expected)")
    for name, info in header.items():
        if not _NETWORK_NAME.match(name):
            raise CheckpointError(f"{path}: network name {name[:80]!r} is not a plain identifier")
        where = f"{path}: network '{name}'"
        if not isinstance(info, dict):
            raise CheckpointError(f"{where}: must be an object with 'class' and 'init_kwargs'")
        for key in ("class", "init_kwargs"):
            if key not in info:
                raise CheckpointError(f"{where}: lacks the required key '{key}'")
        unknown = sorted(set(info) - {"class", "init_kwargs"})
        if unknown:
            raise CheckpointError(f"{where}: unknown key(s) {unknown[:5]}")
        if not isinstance(info["init_kwargs"], dict):
            raise CheckpointError(f"{where}: init_kwargs must be an object")
        try:
            check_depth(info["init_kwargs"], 8, "init_kwargs")
        except ArchError as exc:
            raise CheckpointError(f"{where}: {exc}") from None
    return header


def _read_safetensors(path: Path) -> dict[str, NetworkRecord]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: corrupt or truncated safetensors file ({exc})") from exc
    if meta.get("format") != FORMAT_NAME:
        raise CheckpointError(
            f"{path}: a safetensors file, but not a realface network file (no '{FORMAT_NAME}' header)"
        )
    if meta.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: realface network format version {meta.get('version')!r} is not supported"
        )
    header = _networks_header(path, meta.get("networks"))
    for name, info in header.items():
        prefix = name + "."
        held = {k: s for k, s in shapes.items() if k.startswith(prefix)}
        check_network_config(info["class"], info["init_kwargs"], _numel(held), f"{path}: network '{name}'")
    try:
        tensors = _st_load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: corrupt or truncated safetensors file ({exc})") from exc
    records = {}
    for name, info in header.items():
        prefix = name + "."
        sd = OrderedDict((k[len(prefix) :], v) for k, v in tensors.items() if k.startswith(prefix))
        records[name] = NetworkRecord(
            class_name=info["class"],
            init_kwargs=info["init_kwargs"],
            state_dict=sd,
            source=f"{path}: network '{name}'",
        )
    return records


CONVERTER_TAG = f"rf{FORMAT_VERSION}"


def resolve_network_path(path_or_id: str | os.PathLike, download: bool = True) -> Path:
    """A file path as given, or the verified cached file of a registry id such as ``sg2ada-ffhq1024``."""
    path = Path(path_or_id).expanduser()
    if path.exists():
        return path
    from realface.weights import REGISTRY, weight_path

    if str(path_or_id) in REGISTRY:
        return weight_path(str(path_or_id), download=download)
    raise CheckpointError(f"{path}: no such file (and not a known weights id; see `realface weights list`)")


def read_network_records(path: str | os.PathLike, cache: bool = True) -> dict[str, NetworkRecord]:
    """All networks in a file of either format (or a registry id), as records (nothing built yet).

    With ``cache`` an official pickle is converted once to realface safetensors, keyed by the pickle's
    sha256 in the weights cache (``converted/`` or ``weights/<id>/derived/``), and later calls read the
    converted file. If the cache cannot be written the pickle is read directly.
    """
    path = resolve_network_path(path)
    fmt = detect_format(path)
    if fmt == "safetensors":
        return _read_safetensors(path)
    if cache:
        from realface.errors import WeightsError
        from realface.weights import converted_generator_path

        try:
            converted = converted_generator_path(path, _convert_all, tag=CONVERTER_TAG)
        except (WeightsError, OSError) as exc:
            log.warning("could not cache the conversion of %s (%s); reading the pickle directly", path, exc)
        else:
            return _read_safetensors(converted)
    return read_official_pickle(path)["networks"]


def load_networks(
    path: str | os.PathLike, device: torch.device | str = "cpu", cache: bool = True
) -> dict[str, torch.nn.Module]:
    """Every network in the file, built, in eval mode with gradients off."""
    return {name: rec.build(device) for name, rec in read_network_records(path, cache=cache).items()}


def _pick(
    records: dict[str, NetworkRecord], path: Path, class_name: str, prefer: tuple[str, ...]
) -> NetworkRecord:
    for name in prefer:
        if name in records and records[name].class_name == class_name:
            return records[name]
    found = [n for n, r in records.items() if r.class_name == class_name]
    if len(found) == 1:
        return records[found[0]]
    raise CheckpointError(
        f"{path}: no {class_name} found (networks in file: {', '.join(f'{n}:{r.class_name}' for n, r in records.items())})"
    )


def load_generator(
    path: str | os.PathLike,
    device: torch.device | str = "cpu",
    which: str | None = None,
    cache: bool = True,
) -> Generator:
    """Load a generator from an official ``.pkl``, a realface ``.safetensors`` file or a weights id.

    ``which`` names the network (``"G_ema"``, the default for inference, or ``"G"``). The result is in
    eval mode with ``requires_grad`` off; call ``.train()`` / ``.requires_grad_(True)`` to fine-tune.
    ``cache``: convert an official pickle once and load the cached safetensors afterwards.
    """
    path = Path(path)
    records = read_network_records(path, cache=cache)
    if which is not None:
        if which not in records:
            raise CheckpointError(f"{path}: has no network '{which}' (found {sorted(records)})")
        rec = records[which]
    else:
        rec = _pick(records, path, "Generator", ("G_ema", "G"))
    return rec.build(device)  # type: ignore[return-value]


def load_discriminator(
    path: str | os.PathLike, device: torch.device | str = "cpu", cache: bool = True
) -> Discriminator:
    """Load the discriminator ``D`` from an official ``.pkl``, a realface ``.safetensors`` file or a weights id."""
    path = Path(path)
    records = read_network_records(path, cache=cache)
    return _pick(records, path, "Discriminator", ("D",)).build(device)  # type: ignore[return-value]


def convert_pickle(
    src: str | os.PathLike, dst: str | os.PathLike, only: tuple[str, ...] | None = None
) -> Path:
    """Convert an official StyleGAN2-ADA pickle to realface safetensors (all networks, or ``only``).

    The source is never modified; the destination is written atomically. Tensors are copied bit for bit.
    """
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise CheckpointError(f"{dst}: refusing to overwrite the source file")
    data = read_official_pickle(src)
    records = data["networks"]
    names = only or tuple(records)
    missing = [n for n in names if n not in records]
    if missing:
        raise CheckpointError(f"{src}: has no network(s) {missing} (found {sorted(records)})")
    nets = {n: records[n].build("cpu") for n in names}
    extra = {"source_file": src.name}
    if data["training_set_kwargs"] is not None:
        extra["training_set_kwargs"] = json.dumps(data["training_set_kwargs"], sort_keys=True, default=str)
    save_networks(nets, dst, metadata=extra)
    log.info("converted %s -> %s (%s)", src, dst, ", ".join(names))
    return dst


def _convert_all(src: Path, dst: Path) -> None:
    """:func:`convert_pickle` of every network, as the conversion cache's ``convert`` callback."""
    convert_pickle(src, dst)
