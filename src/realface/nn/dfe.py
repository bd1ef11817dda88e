"""The DeepFaceEditing sketch generator (Chen et al. 2021) in pure PyTorch, and a safe reader for its weights.

The paper's sketch loss ``‖S(a↓512) − S(b↓512)‖₁`` uses as ``S`` the sketch generator of
DeepFaceEditing: a pix2pixHD *global generator* that turns a face photo into a line drawing. Its
weights are published only as ``checkpoints/sketch_generator.pkl`` inside the project's checkpoint
archive (registry id ``dfe-sketch``, fetched by hand), saved by Jittor.

Architecture (:class:`GlobalGenerator`, the configuration ``ngf=32, n_downsampling=4, n_blocks=9``,
``input_nc = output_nc = 3`` that ``test_model.py --gen_sketch`` builds), one ``nn.Sequential`` named
``model`` whose indices are the checkpoint's key names::

    0  ReflectionPad2d(3)                 1  Conv2d(3→32, k7)           2  InstanceNorm(32)  3  ReLU
    4  Conv2d(32→64, k3, s2, zero pad 1)  5  InstanceNorm(64)           6  ReLU
    7, 10, 13: the same for 64→128, 128→256, 256→512 (norms at 8, 11, 14)
    16 … 24  ResnetBlock(512) × 9: x + B(A(x)), A = [reflect pad 1, Conv3, IN, ReLU], B = [reflect pad 1, Conv3, IN]
    25  ConvTranspose2d(512→256, k3, s2, p1, output_padding 1)   26  InstanceNorm(256)   27  ReLU
    28, 31, 34: the same for 256→128, 128→64, 64→32 (norms at 29, 32, 35)
    37  ReflectionPad2d(3)                38  Conv2d(32→3, k7)          39  Tanh

Every convolution has a bias; every InstanceNorm is affine (per-channel weight and bias), uses
eps = 1e-5, the biased variance and no running statistics. Key names inside a residual block are
``model.<i>.conv_block.<0|1>.{conv,norm}.{weight,bias}``. For the official configuration this is 110
tensors and 45,642,243 parameters (:func:`key_layout`, :func:`parameter_count`).

Provenance. *Verified* by reading the sources: the layer list, paddings (reflect everywhere except the
stride-2 downsampling convolutions, which zero-pad by 1), kernel sizes, the ReLU only after the first
convolution of a residual block, the final Tanh (IGLICT/DeepFaceEditing-Jittor ``networks.py``:
``GlobalGenerator``, ``ResnetBlock``, ``ConvBlock``); the input, RGB resized to 512 and normalised with
mean = std = 0.5 to [-1, 1], and the output, 3 channels in [-1, 1] saved as an image by ``(y + 1) / 2``
(``test_model.py``); Jittor's layer semantics (``jittor/nn.py``, 2020): ``InstanceNorm2d`` always has
``weight``/``bias`` (initialised 1/0), eps 1e-5 and variance ``max(E[x²] − E[x]², 0)``; ``Conv`` and
``ConvTranspose`` default to ``bias=True``; ``ConvTranspose`` stores its weight as ``(in, out, kh, kw)``
and scatters input pixel ``i`` to output ``i·stride − padding + k``, exactly PyTorch's
``conv_transpose2d``; ``Module.save`` writes ``{p.name(): p.data}`` (numpy arrays) through
``safepickle`` (``jittor/__init__.py``, 2021). *Inferred*, not checked on the real file (it is not
available to the project's tests): that the 2021 Jittor which saved the checkpoint kept those layer
semantics; that the three output channels are (near) equal grey levels, so their mean is a faithful
one-channel sketch; that lines are dark on white (as in the sketches DeepFaceEditing publishes, and
because ``test_model.py`` saves ``(y + 1) / 2`` without inverting it). PyTorch computes the
InstanceNorm variance as ``E[(x − μ)²]``: the same quantity, rounded differently.

The Jittor ``.pkl`` format: ``pickle.dumps(params, protocol=4)`` + the 20-byte SHA-1 digest of those
pickle bytes + the 8 bytes ``b"HCAJSLHD"``. :func:`read_jittor_pickle` checks the trailer (a damaged or
truncated download fails with :class:`CheckpointError`), then unpickles with an allow-list that admits
only what a dict of numeric numpy arrays needs; any other global raises :class:`UnsafePickleError`
before it can run. The SHA-1 guards against corruption, not against a forged file: safety comes from
the allow-list. realface's own conversion (:func:`convert_dfe`) is a ``.safetensors`` file with the same
tensor names and ``format = "realface.dfe-sketch"`` in its metadata; :func:`load_dfe_state_dict` reads
either, telling them apart by their bytes.

Tests: ``tests/nn/test_dfe.py`` (tiny models written in the real Jittor format load key-for-key and
reproduce the original module; an independent functional forward pass; the ngf-32 key table; trailer
and allow-list refusals; the extractor contract and gradients).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file as _st_save_file
from torch import nn

from realface.errors import CheckpointError, UnsafePickleError
from realface.nn.sketch import register_sketch_extractor
from realface.utils.fs import atomic_path
from realface.utils.weightfile import RestrictedUnpickler, pickle_failure, sniff_format

__all__ = [
    "DFEConfig",
    "GlobalGenerator",
    "DFESketch",
    "key_layout",
    "parameter_count",
    "infer_config",
    "read_jittor_pickle",
    "load_dfe_state_dict",
    "load_dfe_generator",
    "convert_dfe",
    "build_dfe_sketch",
    "JITTOR_MAGIC",
    "JITTOR_TRAILER_SIZE",
    "SAFETENSORS_FORMAT",
]

log = logging.getLogger(__name__)

JITTOR_MAGIC = b"HCAJSLHD"
"""Last 8 bytes of a file written by Jittor's ``safepickle``."""

JITTOR_TRAILER_SIZE = 20 + len(JITTOR_MAGIC)
"""SHA-1 digest (20 bytes) of the pickle, then :data:`JITTOR_MAGIC`: 28 bytes."""

SAFETENSORS_FORMAT = "realface.dfe-sketch"
"""``format`` metadata of realface's safetensors conversion."""

_SAFETENSORS_VERSION = "1"
_CONVERTER_TAG = "dfe1"  # names this converter's output in the conversion cache


# --------------------------------------------------------------------------------------------------
# Architecture


@dataclass(frozen=True)
class DFEConfig:
    """Constructor arguments of :class:`GlobalGenerator`; defaults are the DeepFaceEditing sketch generator."""

    input_nc: int = 3
    output_nc: int = 3
    ngf: int = 32
    n_downsampling: int = 4
    n_blocks: int = 9

    def __post_init__(self) -> None:
        if min(self.input_nc, self.output_nc, self.ngf) < 1 or min(self.n_downsampling, self.n_blocks) < 0:
            raise ValueError(f"invalid GlobalGenerator configuration {self}")


def _conv_indices(config: DFEConfig) -> tuple[list[int], list[int], list[int], int]:
    """Sequential indices of the downsampling convs, the residual blocks, the transposed convs, and the last conv."""
    d, b = config.n_downsampling, config.n_blocks
    down = [4 + 3 * i for i in range(d)]
    blocks = [4 + 3 * d + i for i in range(b)]
    up = [4 + 3 * d + b + 3 * i for i in range(d)]
    last = 4 + 6 * d + b + 1  # after the ReflectionPad2d(3)
    return down, blocks, up, last


def key_layout(config: DFEConfig | None = None) -> OrderedDict[str, tuple[int, ...]]:
    """The checkpoint's tensor names and shapes for ``config`` (default: the official sketch generator).

    Computed from the architecture alone (no module is built), in the order Jittor's ``Module.save``
    lists them (a ``ConvBlock`` registers its norm before its conv). For the default configuration:
    110 tensors, 45,642,243 parameters, e.g. ``model.1.weight`` (32, 3, 7, 7),
    ``model.16.conv_block.0.conv.weight`` (512, 512, 3, 3), ``model.25.weight`` (512, 256, 3, 3) (transposed
    conv: ``(in, out, kh, kw)``), ``model.38.weight`` (3, 32, 7, 7).
    """
    c = config or DFEConfig()
    down, blocks, up, last = _conv_indices(c)
    out: OrderedDict[str, tuple[int, ...]] = OrderedDict()

    def conv(prefix: str, c_out: int, c_in: int, k: int) -> None:
        out[f"{prefix}.weight"] = (c_out, c_in, k, k)
        out[f"{prefix}.bias"] = (c_out,)

    def norm(prefix: str, ch: int) -> None:
        out[f"{prefix}.weight"] = (ch,)
        out[f"{prefix}.bias"] = (ch,)

    conv("model.1", c.ngf, c.input_nc, 7)
    norm("model.2", c.ngf)
    for s, i in enumerate(down):
        ch = c.ngf * 2**s
        conv(f"model.{i}", 2 * ch, ch, 3)
        norm(f"model.{i + 1}", 2 * ch)
    dim = c.ngf * 2**c.n_downsampling
    for i in blocks:
        for j in (0, 1):
            norm(f"model.{i}.conv_block.{j}.norm", dim)
            conv(f"model.{i}.conv_block.{j}.conv", dim, dim, 3)
    for s, i in enumerate(up):
        ch = c.ngf * 2 ** (c.n_downsampling - s)
        out[f"model.{i}.weight"] = (ch, ch // 2, 3, 3)  # transposed conv: (in, out, kh, kw)
        out[f"model.{i}.bias"] = (ch // 2,)
        norm(f"model.{i + 1}", ch // 2)
    conv(f"model.{last}", c.output_nc, c.ngf, 7)
    return out


def parameter_count(config: DFEConfig | None = None) -> int:
    """Number of scalar parameters of ``config`` (45,642,243 for the official sketch generator)."""
    return sum(int(np.prod(shape)) for shape in key_layout(config).values())


def _instance_norm(channels: int) -> nn.InstanceNorm2d:
    # Jittor's InstanceNorm2d: affine, eps 1e-5, statistics of the instance only (no running stats).
    return nn.InstanceNorm2d(channels, eps=1e-5, affine=True, track_running_stats=False)


class _ConvBlock(nn.Module):
    """Reflect pad 1 → Conv3 (bias) → affine InstanceNorm → optional ReLU; attribute names match Jittor's ``ConvBlock``."""

    def __init__(self, dim: int, relu: bool):
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.norm = _instance_norm(dim)
        self.activation = nn.ReLU() if relu else None
        self.conv = nn.Conv2d(dim, dim, kernel_size=3, stride=1, padding=0, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.conv(self.pad(x)))  # [N, C, H, W]
        return self.activation(x) if self.activation is not None else x


class _ResnetBlock(nn.Module):
    """``x + B(A(x))`` with A = ConvBlock(ReLU), B = ConvBlock(no activation); no activation after the sum."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv_block = nn.Sequential(_ConvBlock(dim, relu=True), _ConvBlock(dim, relu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)  # [N, C, H, W]


class GlobalGenerator(nn.Module):
    """pix2pixHD global generator as DeepFaceEditing defines it (norm ``'in'``, reflect padding).

    Maps ``[N, input_nc, H, W]`` in [-1, 1] to ``[N, output_nc, H, W]`` in (-1, 1) (Tanh). H and W
    must be multiples of ``2**n_downsampling`` with at least 2 pixels left at the bottleneck (the
    residual blocks reflect-pad by 1). Parameter names are the Jittor checkpoint's (module docstring).

    Args:
        config: architecture; default :class:`DFEConfig` (the official sketch generator, ngf 32,
            4 downsamplings, 9 residual blocks, RGB in and out).
    """

    def __init__(self, config: DFEConfig | None = None):
        super().__init__()
        self.config = c = config or DFEConfig()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(c.input_nc, c.ngf, kernel_size=7, padding=0, bias=True),
            _instance_norm(c.ngf),
            nn.ReLU(),
        ]
        for s in range(c.n_downsampling):
            ch = c.ngf * 2**s
            layers += [
                nn.Conv2d(ch, 2 * ch, kernel_size=3, stride=2, padding=1, bias=True),  # zero padding
                _instance_norm(2 * ch),
                nn.ReLU(),
            ]
        dim = c.ngf * 2**c.n_downsampling
        layers += [_ResnetBlock(dim) for _ in range(c.n_blocks)]
        for s in range(c.n_downsampling):
            ch = c.ngf * 2 ** (c.n_downsampling - s)
            layers += [
                nn.ConvTranspose2d(
                    ch, ch // 2, kernel_size=3, stride=2, padding=1, output_padding=1, bias=True
                ),
                _instance_norm(ch // 2),
                nn.ReLU(),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(c.ngf, c.output_nc, kernel_size=7, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is ``[N, input_nc, H, W]`` with H, W usable by the network."""
        c = self.config
        if x.ndim != 4 or x.shape[1] != c.input_nc:
            raise ValueError(f"expected images [N, {c.input_nc}, H, W], got shape {tuple(x.shape)}")
        m = 2**c.n_downsampling
        for size in x.shape[2:]:
            if size % m != 0 or size // m < 2 or size < 4:
                raise ValueError(
                    f"image size {tuple(x.shape[2:])} is not usable: H and W must be multiples of {m} and at "
                    f"least {max(2 * m, 4)} (the sketch generator was trained on 512x512 faces)"
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        y = self.model(x)  # [N, output_nc, H, W]
        assert y.shape[2:] == x.shape[2:], (y.shape, x.shape)
        return y

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self.config).items())


# --------------------------------------------------------------------------------------------------
# Configuration from a state dict

_BLOCK_KEY = re.compile(r"^model\.(\d+)\.conv_block\.")
_TOP_WEIGHT_KEY = re.compile(r"^model\.(\d+)\.weight$")


def infer_config(shapes: Mapping[str, tuple[int, ...]], source: str = "state dict") -> DFEConfig:
    """The :class:`DFEConfig` whose :func:`key_layout` is exactly ``shapes`` (name → shape).

    ``ngf`` and ``input_nc`` come from ``model.1.weight``, ``n_blocks`` from the residual-block keys,
    ``n_downsampling`` from the index of the last convolution and ``output_nc`` from its shape; the whole
    table is then compared with :func:`key_layout`. Raises :class:`CheckpointError` naming ``source``
    and the first differences when the tensors are not a DeepFaceEditing global generator.
    """
    first = shapes.get("model.1.weight")
    if first is None or len(first) != 4:
        raise CheckpointError(
            f"{source}: not a DeepFaceEditing sketch generator (no 4-d tensor 'model.1.weight'; "
            f"first keys: {sorted(shapes)[:5]})"
        )
    ngf, input_nc = int(first[0]), int(first[1])
    n_blocks = len({int(m.group(1)) for k in shapes if (m := _BLOCK_KEY.match(k))})
    last = max(int(m.group(1)) for k in shapes if (m := _TOP_WEIGHT_KEY.match(k)))
    last_shape = shapes[f"model.{last}.weight"]
    n_down, rem = divmod(last - 5 - n_blocks, 6)  # the last conv sits at 4 + 6·d + b + 1
    if rem != 0 or n_down < 0 or len(last_shape) != 4:
        raise CheckpointError(
            f"{source}: layer indices do not fit a global generator (last weight at model.{last}, "
            f"shape {tuple(last_shape)})"
        )
    try:
        config = DFEConfig(
            input_nc=input_nc,
            output_nc=int(last_shape[0]),
            ngf=ngf,
            n_downsampling=n_down,
            n_blocks=n_blocks,
        )
    except ValueError as exc:
        raise CheckpointError(f"{source}: {exc}") from None
    expected = key_layout(config)
    missing = [k for k in expected if k not in shapes]
    unexpected = [k for k in shapes if k not in expected]
    wrong = [
        f"{k} {tuple(shapes[k])} (expected {v})"
        for k, v in expected.items()
        if k in shapes and tuple(shapes[k]) != v
    ]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{source}: tensors do not match a DeepFaceEditing global generator {config}: "
            f"{len(missing)} missing {missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}, "
            f"{len(wrong)} of the wrong shape {wrong[:3]}"
        )
    return config


# --------------------------------------------------------------------------------------------------
# Safe reading of Jittor pickles

_RECONSTRUCT = cast(
    Callable[..., np.ndarray], np.ndarray.__reduce__(np.zeros(1))[0]
)  # numpy's array reconstructor, whatever its module
_NUMERIC_KINDS = frozenset("biuf")  # bool, signed, unsigned, float
_TEXT_ENCODINGS = frozenset({"latin1", "latin-1", "utf-8", "utf8"})


def _safe_reconstruct(subtype: Any, shape: Any, typecode: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise UnsafePickleError(f"numpy array of type {subtype!r} is not allowed (only numpy.ndarray)")
    return _RECONSTRUCT(np.ndarray, shape, typecode)


def _safe_dtype(spec: Any, align: bool = False, copy: bool = False) -> np.dtype:
    dt = np.dtype(spec, align, copy)
    if dt.hasobject or dt.kind not in _NUMERIC_KINDS:
        raise UnsafePickleError(
            f"numpy dtype {dt!r} is not allowed (only numeric dtypes; object dtypes can hold code)"
        )
    return dt


def _codecs_encode(text: Any, encoding: str = "utf-8") -> bytes:
    # Protocol 0-2 pickles spell raw bytes as _codecs.encode(str, "latin1").
    if not isinstance(text, str) or encoding.lower().replace("_", "-") not in _TEXT_ENCODINGS:
        raise UnsafePickleError(f"_codecs.encode({type(text).__name__}, {encoding!r}) is not allowed")
    return text.encode(encoding)


# (module, name) -> object. Nothing else resolves. Dicts themselves need no global (EMPTY_DICT opcode).
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _safe_reconstruct,  # files written with numpy 1.x
    ("numpy._core.multiarray", "_reconstruct"): _safe_reconstruct,  # numpy >= 2
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _safe_dtype,
    ("_codecs", "encode"): _codecs_encode,
    ("collections", "OrderedDict"): OrderedDict,
}


_REFUSAL = "a Jittor weight file holds only numpy arrays, and loading anything else could execute code"


def read_jittor_pickle(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a Jittor ``Module.save`` file as ``{name: numpy array}`` without executing anything from it.

    Steps: the file must end with the 28-byte trailer (SHA-1 of the pickle bytes, then
    :data:`JITTOR_MAGIC`); the SHA-1 is recomputed and compared; the pickle is read by a restricted
    unpickler (numpy arrays of numeric dtypes in a dict, nothing else); the result must be a mapping of
    ``str`` to ``numpy.ndarray``.

    Raises:
        UnsafePickleError: the pickle names a global outside the allow-list, or an object dtype.
        CheckpointError: missing, truncated or corrupt file (hash mismatch), or not a dict of arrays; the
            message names the file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a directory, expected a Jittor .pkl weight file") from None
    if len(data) <= JITTOR_TRAILER_SIZE or not data.endswith(JITTOR_MAGIC):
        raise CheckpointError(
            f"{path}: does not end with Jittor's checksum trailer (…{JITTOR_MAGIC.decode()}); the file is "
            "truncated, damaged, or was not written by Jittor's Module.save. Fetch sketch_generator.pkl again"
        )
    body = memoryview(data)[:-JITTOR_TRAILER_SIZE]
    stored = bytes(data[-JITTOR_TRAILER_SIZE : -len(JITTOR_MAGIC)])
    actual = hashlib.sha1(body, usedforsecurity=False).digest()
    if actual != stored:
        raise CheckpointError(
            f"{path}: checksum mismatch (trailer SHA-1 {stored.hex()}, contents {actual.hex()}); the file is "
            "corrupt. Fetch it again"
        )
    try:
        obj = RestrictedUnpickler(io.BytesIO(body), _ALLOWED_GLOBALS, _REFUSAL, "Jittor weight files").load()
    except Exception as exc:  # noqa: BLE001 - every failure becomes a CheckpointError naming the file
        raise pickle_failure(
            path,
            exc,
            "Jittor weight pickle",
            "the pickle ends early (truncated download?); fetch the file again",
        ) from exc
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict of arrays at the top level, got {type(obj).__name__}")
    out: dict[str, np.ndarray] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, np.ndarray):
            raise CheckpointError(
                f"{path}: entry {key!r} is a {type(value).__name__}, expected str → numpy.ndarray entries only"
            )
        # Already refused while unpickling; checked again on the result.
        if value.dtype.hasobject or value.dtype.kind not in _NUMERIC_KINDS:
            raise UnsafePickleError(
                f"{path}: entry {key!r} has dtype {value.dtype}, expected a numeric dtype"
            )
        out[key] = value
    log.debug("read %d arrays from Jittor file %s", len(out), path)
    return out


# --------------------------------------------------------------------------------------------------
# Loading, conversion, building


def _detect(path: Path) -> str:
    """``"jittor"`` or ``"safetensors"`` from the file's bytes; :class:`CheckpointError` otherwise."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(16)
            f.seek(max(size - len(JITTOR_MAGIC), 0))
            tail = f.read()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CheckpointError(
            f"{path}: is a directory, expected sketch_generator.pkl or a .safetensors file"
        ) from None
    if tail == JITTOR_MAGIC or (len(head) >= 2 and head[0] == 0x80):
        return "jittor"  # a pickle without the trailer is refused by read_jittor_pickle with its own message
    if sniff_format(path) == "safetensors":
        return "safetensors"
    raise CheckpointError(
        f"{path}: unrecognised file; expected DeepFaceEditing's checkpoints/sketch_generator.pkl (Jittor) or "
        "realface's .safetensors conversion of it"
    )


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    fmt = meta.get("format")
    if fmt is not None and fmt != SAFETENSORS_FORMAT:
        raise CheckpointError(
            f"{path}: holds {fmt!r}, expected {SAFETENSORS_FORMAT!r} (a DeepFaceEditing sketch generator)"
        )
    return tensors


def load_dfe_state_dict(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], DFEConfig]:
    """Tensors of a sketch-generator file (Jittor ``.pkl`` or realface ``.safetensors``) and their configuration.

    Returns float32 CPU tensors keyed by the checkpoint names and the :class:`DFEConfig` inferred from
    their shapes (:func:`infer_config`). Raises :class:`CheckpointError` / :class:`UnsafePickleError`.
    """
    path = Path(path)
    if _detect(path) == "jittor":
        arrays = read_jittor_pickle(path)
        tensors = {k: torch.from_numpy(np.array(v, copy=True)) for k, v in arrays.items()}
    else:
        tensors = _read_safetensors(path)
    for k, t in tensors.items():
        if not t.is_floating_point():
            raise CheckpointError(
                f"{path}: tensor {k!r} has dtype {t.dtype}, expected floating point weights"
            )
    config = infer_config({k: tuple(t.shape) for k, t in tensors.items()}, source=str(path))
    return {k: t.float().contiguous() for k, t in tensors.items()}, config


def load_dfe_generator(path: str | os.PathLike, device: torch.device | str = "cpu") -> GlobalGenerator:
    """A :class:`GlobalGenerator` with the weights of ``path`` loaded key-for-key (strict), frozen, in eval mode."""
    state, config = load_dfe_state_dict(path)
    net = GlobalGenerator(config)
    net.load_state_dict(state, strict=True)
    log.info("loaded DeepFaceEditing sketch generator %s from %s", config, path)
    return net.eval().requires_grad_(False).to(device)


def convert_dfe(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Convert ``sketch_generator.pkl`` (or a realface conversion) to realface ``.safetensors`` at ``dst``.

    Tensor names are kept (the Jittor checkpoint's); the metadata holds ``format``
    (:data:`SAFETENSORS_FORMAT`), ``version``, ``config`` (JSON of :class:`DFEConfig`) and ``source`` (the
    source file's name). The source is fully validated first; ``dst`` is written atomically, so a failed
    conversion leaves nothing behind. Used by :func:`build_dfe_sketch` through the weights conversion cache.
    """
    state, config = load_dfe_state_dict(src)
    meta = {
        "format": SAFETENSORS_FORMAT,
        "version": _SAFETENSORS_VERSION,
        "config": json.dumps(asdict(config), sort_keys=True),
        "source": Path(src).name,
    }
    with atomic_path(dst, suffix=".safetensors") as tmp:
        _st_save_file(state, str(tmp), metadata=meta)
    log.info("converted %s (%d tensors) to %s", src, len(state), dst)


class DFESketch(nn.Module):
    """Sketch extractor around the DeepFaceEditing generator, honouring realface's extractor contract.

    ``[N, 3, H, W]`` RGB in [-1, 1] → ``[N, 1, H, W]`` in (0, 1), 1 = paper white, lines dark.
    The network takes RGB in [-1, 1] as is (DeepFaceEditing normalises photos with mean = std = 0.5), so
    no input transform is applied; its 3-channel Tanh output is averaged over channels and mapped by
    ``(y + 1) / 2``, the mapping DeepFaceEditing uses to save sketches as images. H and W must be
    multiples of ``2**n_downsampling`` (16); the network was trained on 512×512 faces, which is what the
    sketch loss feeds it.

    Args:
        generator: a :class:`GlobalGenerator` with 3 input channels (see :func:`load_dfe_generator`).
    """

    def __init__(self, generator: GlobalGenerator):
        super().__init__()
        if generator.config.input_nc != 3:
            raise ValueError(
                f"DFESketch needs a generator with RGB input, got input_nc={generator.config.input_nc}"
            )
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected RGB images [N, 3, H, W] in [-1, 1], got shape {tuple(x.shape)}")
        y = self.generator(x)  # [N, C, H, W] in (-1, 1)
        y = y.mean(dim=1, keepdim=True)  # [N, 1, H, W]
        return (y + 1) * 0.5  # [N, 1, H, W] in (0, 1), 1 = white


@register_sketch_extractor("dfe")
def build_dfe_sketch(path: str | os.PathLike | None = None, device: torch.device | str = "cpu") -> DFESketch:
    """The ``"dfe"`` sketch extractor: DeepFaceEditing's sketch generator, frozen, in eval mode.

    Args:
        path: ``sketch_generator.pkl`` (Jittor) or its realface ``.safetensors`` conversion. Default None:
            the registry file ``dfe-sketch`` through :func:`realface.weights.weight_path` (a manual download;
            its :class:`~realface.errors.WeightsError` propagates unchanged), converted once to safetensors in
            the weights cache and loaded from there.
        device: where the network lives (default ``"cpu"``).
    """
    if path is None:
        # Imported here: the weights package is only needed when the registry file is used.
        from realface.weights import converted_path, weight_path

        src = weight_path("dfe-sketch")
        path = converted_path(src, convert_dfe, record_id="dfe-sketch", tag=_CONVERTER_TAG)
    return DFESketch(load_dfe_generator(path, device=device)).eval().requires_grad_(False)
