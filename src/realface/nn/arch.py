"""The constructor arguments of the StyleGAN2-ADA networks as untrusted data: one schema and a size.

A network file states its architecture as data (the official pickles' ``_init_kwargs``, the
``networks`` header of realface safetensors). Before anything is built from it,
:func:`check_init_kwargs` checks that data against the constructors' schema: only known keys,
values of the right type, resolutions that are powers of two between 4 and 1024, positive and
bounded dimensions, channel numbers and layer counts, and a bounded nesting depth.
:func:`state_numel` then computes, by arithmetic alone, how many values the network's
``state_dict()`` holds (parameters and persistent buffers), so a loader can compare it with the
tensors actually in the file before it allocates anything (a 1 MB file must not be able to ask for
gigabytes). The arithmetic follows the constructors in :mod:`realface.nn.stylegan2` exactly; the
tests compare it with real networks over many configurations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["ArchError", "check_init_kwargs", "state_numel", "check_depth", "MAX_DEPTH"]

MIN_RESOLUTION, MAX_RESOLUTION = 4, 1024
MAX_FEATURES = 2048  # z_dim, w_dim, channel_max, embed/layer features, cmap_dim
MAX_C_DIM = 100_000
MAX_IMG_CHANNELS = 4
MAX_CHANNEL_BASE = 1 << 22
MAX_MAPPING_LAYERS = 32
MAX_FILTER_TAPS = 8
MAX_DEPTH = 8  # init kwargs -> sub-dict -> filter list is 3 levels


class ArchError(ValueError):
    """The declared architecture violates the schema; the message names the key."""


_ACTIVATIONS = ("linear", "relu", "lrelu", "tanh", "sigmoid")


def check_depth(obj: Any, limit: int, where: str = "the value") -> None:
    """Refuse containers nested deeper than ``limit`` (iteratively: no recursion on hostile data)."""
    stack = [(obj, 1)]
    seen = 0
    while stack:
        value, depth = stack.pop()
        if isinstance(value, Mapping):
            children = list(value.values())
        elif isinstance(value, (list, tuple, set, frozenset)):
            children = list(value)
        else:
            continue
        if depth > limit:
            raise ArchError(f"{where} is nested more than {limit} levels deep")
        seen += len(children)
        if seen > 100_000:
            raise ArchError(f"{where} holds more than 100000 values")
        stack.extend((c, depth + 1) for c in children)


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if v is None:
        return "null"
    if isinstance(v, Mapping):
        return "an object"
    if isinstance(v, (list, tuple)):
        return "a list"
    return type(v).__name__


def _show(v: Any) -> str:
    return repr(v) if not isinstance(v, (int, float)) or abs(v) < 1e15 else "a huge number"


def _int(d: Mapping, key: str, where: str, lo: int, hi: int, default: Any = ..., none: bool = False) -> Any:
    if key not in d:
        if default is ...:
            raise ArchError(f"{where} lacks the required key '{key}'")
        return default
    v = d[key]
    if v is None and none:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and math.isfinite(v) and v.is_integer():
            v = int(v)
        else:
            raise ArchError(f"{where}.{key} must be an integer, got {_kind(v)} {_show(v)}")
    if not lo <= v <= hi:
        raise ArchError(f"{where}.{key} = {_show(v)} is outside {lo}..{hi}")
    return v


def _float(d: Mapping, key: str, where: str, lo: float, hi: float, none: bool = False) -> None:
    if key not in d:
        return
    v = d[key]
    if v is None and none:
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ArchError(f"{where}.{key} must be a finite number, got {_kind(v)} {_show(v)}")
    if not lo <= v <= hi:
        raise ArchError(f"{where}.{key} = {_show(v)} is outside {lo:g}..{hi:g}")


def _choice(d: Mapping, key: str, where: str, choices: tuple) -> None:
    if key in d and d[key] not in choices:
        raise ArchError(f"{where}.{key} must be one of {', '.join(map(repr, choices))}, got {_show(d[key])}")


def _bool(d: Mapping, key: str, where: str) -> None:
    if key in d and not isinstance(d[key], bool):
        raise ArchError(f"{where}.{key} must be true or false, got {_kind(d[key])}")


def _keys(d: Any, where: str, allowed: tuple[str, ...]) -> Mapping:
    if d is None:
        return {}
    if not isinstance(d, Mapping):
        raise ArchError(f"{where} must be an object, got {_kind(d)}")
    bad = sorted(str(k) for k in d if k not in allowed)
    if bad:
        raise ArchError(
            f"{where} has unsupported key(s) {', '.join(map(repr, bad[:5]))} (known: {', '.join(allowed)})"
        )
    return d


def _filter_taps(d: Mapping, where: str) -> int:
    """Number of values of the [k, k] resample_filter buffer."""
    if "resample_filter" not in d:
        return 16
    f = d["resample_filter"]
    if not isinstance(f, (list, tuple)) or not 1 <= len(f) <= MAX_FILTER_TAPS:
        raise ArchError(f"{where}.resample_filter must be a list of 1..{MAX_FILTER_TAPS} numbers")
    for v in f:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ArchError(f"{where}.resample_filter must hold finite numbers, got {_show(v)}")
    if abs(sum(f)) < 1e-6:
        raise ArchError(f"{where}.resample_filter sums to zero")
    return len(f) ** 2


def _resolution(d: Mapping, where: str) -> int:
    r = _int(d, "img_resolution", where, MIN_RESOLUTION, MAX_RESOLUTION)
    if r & (r - 1):
        raise ArchError(
            f"{where}.img_resolution = {r} is not a power of two ({MIN_RESOLUTION}..{MAX_RESOLUTION})"
        )
    return r


def _channels(d: Mapping, where: str, resolutions: list[int]) -> dict[int, int]:
    base = _int(d, "channel_base", where, 1, MAX_CHANNEL_BASE, default=32768)
    cmax = _int(d, "channel_max", where, 1, MAX_FEATURES, default=512)
    ch = {res: min(base // res, cmax) for res in resolutions}
    if min(ch.values()) < 1:
        raise ArchError(
            f"{where}.channel_base = {base} leaves no channels at {max(resolutions)} px (needs >= {max(resolutions)})"
        )
    return ch


def _common(d: Mapping, where: str) -> None:
    _int(d, "num_fp16_res", where, 0, 16, default=0)
    _float(d, "conv_clamp", where, 1e-6, 1e12, none=True)


# --- mapping --------------------------------------------------------------------------------------

_MAPPING_KEYS = (
    "num_layers",
    "embed_features",
    "layer_features",
    "activation",
    "lr_multiplier",
    "w_avg_beta",
)


def _mapping_numel(m: Mapping, where: str, z_dim: int, c_dim: int, w_dim: int, w_avg: bool) -> int:
    layers = _int(m, "num_layers", where, 1, MAX_MAPPING_LAYERS, default=8)
    embed = _int(m, "embed_features", where, 1, MAX_FEATURES, default=None, none=True)
    layer = _int(m, "layer_features", where, 1, MAX_FEATURES, default=None, none=True)
    _choice(m, "activation", where, _ACTIVATIONS)
    _float(m, "lr_multiplier", where, 1e-9, 1e9)
    _float(m, "w_avg_beta", where, 0.0, 1.0, none=True)
    embed = w_dim if embed is None else embed
    embed = 0 if c_dim == 0 else embed
    layer = w_dim if layer is None else layer
    features = [z_dim + embed] + [layer] * (layers - 1) + [w_dim]
    n = c_dim * embed + embed if c_dim > 0 else 0
    n += sum(features[i] * features[i + 1] + features[i + 1] for i in range(layers))
    if w_avg and m.get("w_avg_beta", 0.995) is not None:
        n += w_dim
    return n


# --- generator ------------------------------------------------------------------------------------

_G_KEYS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs")
_SYN_KEYS = (
    "channel_base",
    "channel_max",
    "num_fp16_res",
    "architecture",
    "resample_filter",
    "conv_clamp",
    "fp16_channels_last",
    "kernel_size",
    "use_noise",
    "activation",
)


def _generator_numel(kw: Mapping, where: str) -> int:
    z_dim = _int(kw, "z_dim", where, 1, MAX_FEATURES)
    c_dim = _int(kw, "c_dim", where, 0, MAX_C_DIM)
    w_dim = _int(kw, "w_dim", where, 1, MAX_FEATURES)
    res = _resolution(kw, where)
    img_ch = _int(kw, "img_channels", where, 1, MAX_IMG_CHANNELS)
    sw = f"{where}.synthesis_kwargs"
    syn = _keys(kw.get("synthesis_kwargs"), sw, _SYN_KEYS)
    _choice(syn, "architecture", sw, ("skip",))
    _common(syn, sw)
    _bool(syn, "fp16_channels_last", sw)
    _bool(syn, "use_noise", sw)
    _choice(syn, "activation", sw, _ACTIVATIONS)
    k = _int(syn, "kernel_size", sw, 1, 7, default=3)
    if k % 2 == 0:
        raise ArchError(f"{sw}.kernel_size = {k} must be odd")
    taps = _filter_taps(syn, sw)
    noise = syn.get("use_noise", True)
    resolutions = [2**i for i in range(2, int(math.log2(res)) + 1)]
    ch = _channels(syn, sw, resolutions)

    def layer(cin: int, cout: int, r: int, filt: int) -> int:
        return filt + w_dim * cin + cin + cout * cin * k * k + (r * r + 1 if noise else 0) + cout

    n = 0
    num_ws = 0
    for r in resolutions:
        cout = ch[r]
        n += taps  # the block's resample_filter
        if r == 4:
            n += cout * r * r + layer(cout, cout, r, 16)
            num_ws += 1
        else:
            n += layer(ch[r // 2], cout, r, taps) + layer(cout, cout, r, 16)
            num_ws += 2
        n += w_dim * cout + cout + img_ch * cout + img_ch  # torgb
    num_ws += 1
    mw = f"{where}.mapping_kwargs"
    mapping = _keys(kw.get("mapping_kwargs"), mw, _MAPPING_KEYS)
    return n + _mapping_numel(mapping, mw, z_dim, c_dim, w_dim, w_avg=num_ws > 0)


# --- discriminator --------------------------------------------------------------------------------

_D_KEYS = (
    "c_dim",
    "img_resolution",
    "img_channels",
    "architecture",
    "channel_base",
    "channel_max",
    "num_fp16_res",
    "conv_clamp",
    "cmap_dim",
    "block_kwargs",
    "mapping_kwargs",
    "epilogue_kwargs",
)


def _discriminator_numel(kw: Mapping, where: str) -> int:
    c_dim = _int(kw, "c_dim", where, 0, MAX_C_DIM)
    res = _resolution(kw, where)
    img_ch = _int(kw, "img_channels", where, 1, MAX_IMG_CHANNELS)
    _choice(kw, "architecture", where, ("resnet",))
    _common(kw, where)
    blocks = [2**i for i in range(int(math.log2(res)), 2, -1)]
    ch = _channels(kw, where, blocks + [4])
    cmap = _int(kw, "cmap_dim", where, 1, MAX_FEATURES, default=None, none=True)
    cmap = ch[4] if cmap is None else cmap
    cmap = 0 if c_dim == 0 else cmap
    bw = f"{where}.block_kwargs"
    bk = _keys(
        kw.get("block_kwargs"), bw, ("activation", "resample_filter", "fp16_channels_last", "freeze_layers")
    )
    _choice(bk, "activation", bw, _ACTIVATIONS)
    _bool(bk, "fp16_channels_last", bw)
    _int(bk, "freeze_layers", bw, 0, 1000, default=0)
    taps = _filter_taps(bk, bw)
    n = 0
    for r in blocks:
        tmp, out = ch[r], ch[r // 2]
        n += taps
        if r == res:
            n += 16 + tmp * img_ch + tmp  # fromrgb (1x1)
        n += 16 + tmp * tmp * 9 + tmp  # conv0
        n += taps + out * tmp * 9 + out  # conv1 (down)
        n += taps + out * tmp  # skip (down, no bias)
    ew = f"{where}.epilogue_kwargs"
    ep = _keys(kw.get("epilogue_kwargs"), ew, ("mbstd_group_size", "mbstd_num_channels", "activation"))
    _int(ep, "mbstd_group_size", ew, 1, 1024, default=4, none=True)
    nc = _int(ep, "mbstd_num_channels", ew, 0, 64, default=1)
    _choice(ep, "activation", ew, _ACTIVATIONS)
    if nc and ch[4] % nc:
        raise ArchError(f"{ew}.mbstd_num_channels = {nc} does not divide the {ch[4]} channels at 4 px")
    c4 = ch[4]
    n += 16 + c4 * (c4 + nc) * 9 + c4  # conv
    n += c4 * 16 * c4 + c4  # fc
    o = 1 if cmap == 0 else cmap
    n += c4 * o + o  # out
    mw = f"{where}.mapping_kwargs"
    mapping = _keys(kw.get("mapping_kwargs"), mw, _MAPPING_KEYS[:-1])
    if c_dim > 0:
        n += _mapping_numel(mapping, mw, 0, c_dim, cmap, w_avg=False)
    else:
        _mapping_numel(mapping, mw, 0, 0, 1, w_avg=False)  # still checked
    return n


_CHECKS = {"Generator": (_G_KEYS, _generator_numel), "Discriminator": (_D_KEYS, _discriminator_numel)}


def check_init_kwargs(class_name: Any, init_kwargs: Any) -> int:
    """Check a network's declared class and constructor arguments; return its ``state_dict`` size.

    Raises :class:`ArchError` (a ``ValueError``) naming the first offending key. Nothing is built.
    """
    if class_name not in _CHECKS:
        raise ArchError(f"class {_show(class_name)} is not a supported network (Generator or Discriminator)")
    check_depth(init_kwargs, MAX_DEPTH, "init_kwargs")
    keys, numel = _CHECKS[class_name]
    return numel(_keys(init_kwargs, "init_kwargs", keys), "init_kwargs")


def state_numel(class_name: str, init_kwargs: Mapping[str, Any]) -> int:
    """Values in ``state_dict()`` of the network these arguments build (checked first)."""
    return check_init_kwargs(class_name, init_kwargs)
