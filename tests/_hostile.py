"""Hostile network files, built by hand for the loader's schema checks.

Safetensors files are written byte by byte (8-byte little-endian header length, JSON header,
tensor data) from a real tiny network, with the ``networks`` metadata replaced; pickles use the
official persistence layout (see :func:`tests._helpers.write_official_pickle`) with one part of a
record edited. ``NETWORK_CASES`` maps a case name to ``(builder, text the error must contain)``;
a builder takes the path to write.
"""

from __future__ import annotations

import json
import pickle
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from realface.checkpoints import save_networks
from tests._helpers import _fake_official_modules, _Persistent, tiny_generator, tiny_generator_kwargs

__all__ = ["write_safetensors", "good_networks_header", "networks_file", "hostile_pickle", "NETWORK_CASES"]


def write_safetensors(path: Path, metadata: dict[str, str], tensors: dict[str, dict], data: bytes) -> Path:
    """A safetensors file from its parts: ``tensors`` maps names to {dtype, shape, data_offsets}."""
    header = dict(tensors)
    header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return Path(path)


def _tiny_parts(tmp: Path) -> tuple[dict, bytes]:
    """Header entries and data bytes of a real 8 px generator saved as G_ema."""
    src = save_networks({"G_ema": tiny_generator(8)}, tmp)
    blob = src.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    header.pop("__metadata__")
    src.unlink()
    return header, blob[8 + n :]


def good_networks_header() -> dict:
    return {"G_ema": {"class": "Generator", "init_kwargs": tiny_generator_kwargs(8)}}


def networks_file(path: Path, networks: Any) -> Path:
    """A realface network file whose ``networks`` metadata is ``networks`` (JSON-encoded unless a str)."""
    tensors, data = _tiny_parts(path.with_name(path.name + ".src"))
    text = networks if isinstance(networks, str) else json.dumps(networks)
    meta = {"format": "realface.networks", "version": "1", "networks": text}
    return write_safetensors(path, meta, tensors, data)


def _edited(**changes: Any) -> dict:
    """The good header with init_kwargs changed; keys 'synthesis_kwargs.x' reach into sub-dicts."""
    h = good_networks_header()
    _change(h["G_ema"]["init_kwargs"], changes)
    return h


def _change(kw: dict, changes: dict) -> None:
    """Set ``changes`` in init kwargs ``kw``; keys 'outer__inner' reach into sub-dicts."""
    for key, value in changes.items():
        if "__" in key:
            outer, inner = key.split("__")
            kw[outer][inner] = value
        else:
            kw[key] = value


def _deep(levels: int) -> str:
    return '{"k": ' * levels + "0" + "}" * levels


class _Reduced:
    def __init__(self, reduced: tuple) -> None:
        self.reduced = reduced

    def __reduce__(self) -> tuple:
        return self.reduced


def hostile_pickle(path: Path, edit: Callable[[dict], Any]) -> Path:
    """An official-layout pickle of a tiny G_ema whose persistence ``meta`` went through ``edit``
    (which changes it in place or returns a replacement)."""
    G = tiny_generator(8)
    with _fake_official_modules() as (reconstruct, easydict):
        fn, (meta,) = _Persistent(G, reconstruct, easydict, G.init_kwargs).__reduce__()
        replaced = edit(meta)
        meta = meta if replaced is None else replaced
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, 20_000))  # the pickler recurses into deep test structures
        try:
            with open(path, "wb") as f:
                data = {"G_ema": _Reduced((fn, (meta,))), "augment_pipe": None, "training_set_kwargs": None}
                pickle.dump(data, f, protocol=4)
        finally:
            sys.setrecursionlimit(limit)
    return Path(path)


def _deep_dict(levels: int) -> dict:
    d: dict = {"k": 0}
    for _ in range(levels - 1):
        d = {"k": d}
    return d


def _set_state(key: str, value: Any) -> Callable[[dict], None]:
    def edit(meta: dict) -> None:
        meta["state"][key] = value

    return edit


def _kwargs(**changes: Any) -> Callable[[dict], None]:
    def edit(meta: dict) -> None:
        _change(meta["state"]["_init_kwargs"], changes)

    return edit


def _st(networks: Any) -> Callable[[Path], Path]:
    return lambda path: networks_file(path, networks)


def _pk(edit: Callable[[dict], Any]) -> Callable[[Path], Path]:
    return lambda path: hostile_pickle(path, edit)


NETWORK_CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    # realface safetensors: the 'networks' header
    "st_header_list": (_st([1, 2]), "'networks' header must be a JSON object of networks, got list"),
    "st_header_number": (_st(7), "'networks' header must be a JSON object of networks, got int"),
    "st_header_bad_json": (_st('{"G_ema": '), "malformed 'networks' header"),
    "st_header_empty": (_st({}), "lists 0 networks"),
    "st_no_class": (
        _st({"G_ema": {"init_kwargs": tiny_generator_kwargs(8)}}),
        "lacks the required key 'class'",
    ),
    "st_class_bogus": (
        _st({"G_ema": {"class": "os.system", "init_kwargs": {}}}),
        "is not a supported network",
    ),
    "st_info_list": (_st({"G_ema": [1]}), "must be an object with 'class' and 'init_kwargs'"),
    "st_name": (_st({"../x": good_networks_header()["G_ema"]}), "is not a plain identifier"),
    "st_resolution_3": (_st(_edited(img_resolution=3)), "img_resolution = 3 is outside 4..1024"),
    "st_resolution_100": (_st(_edited(img_resolution=100)), "img_resolution = 100 is not a power of two"),
    "st_resolution_huge": (_st(_edited(img_resolution=2**20)), "img_resolution = 1048576 is outside"),
    "st_z_dim_negative": (_st(_edited(z_dim=-1)), "z_dim = -1 is outside"),
    "st_z_dim_text": (_st(_edited(z_dim="32")), "z_dim must be an integer, got a string"),
    "st_z_dim_missing": (
        _st({"G_ema": {"class": "Generator", "init_kwargs": {"w_dim": 8}}}),
        "lacks the required key 'z_dim'",
    ),
    "st_channel_max_4096": (
        _st(_edited(synthesis_kwargs__channel_max=4096)),
        "channel_max = 4096 is outside",
    ),
    "st_w_dim_8192": (_st(_edited(w_dim=8192)), "w_dim = 8192 is outside"),
    "st_too_big_for_file": (
        _st(
            _edited(
                w_dim=2048,
                z_dim=2048,
                synthesis_kwargs__channel_base=2**20,
                synthesis_kwargs__channel_max=2048,
            )
        ),
        "refusing to build it",
    ),
    "st_mapping_layers": (
        _st(_edited(mapping_kwargs={"num_layers": 10**6})),
        "num_layers = 1000000 is outside 1..32",
    ),
    "st_kernel_even": (_st(_edited(synthesis_kwargs__kernel_size=4)), "kernel_size = 4 must be odd"),
    "st_architecture": (
        _st(_edited(synthesis_kwargs__architecture="orig")),
        "architecture must be one of 'skip'",
    ),
    "st_unknown_key": (_st(_edited(synthesis_kwargs__use_fp16=True)), "unsupported key(s) 'use_fp16'"),
    "st_conv_clamp_nan": (
        _st(_edited(synthesis_kwargs__conv_clamp=float("nan"))),
        "conv_clamp must be a finite number",
    ),
    "st_filter": (_st(_edited(synthesis_kwargs__resample_filter=[1, -1])), "resample_filter sums to zero"),
    "st_channel_base": (_st(_edited(synthesis_kwargs__channel_base=2)), "leaves no channels"),
    "st_synthesis_list": (
        _st(_edited(synthesis_kwargs=[1])),
        "synthesis_kwargs must be an object, got a list",
    ),
    "st_nested_3000": (
        _st('{"G_ema": {"class": "Generator", "init_kwargs": {"synthesis_kwargs": ' + _deep(3000) + "}}}"),
        "nested too deeply",
    ),
    "st_nested_20": (
        _st('{"G_ema": {"class": "Generator", "init_kwargs": {"synthesis_kwargs": ' + _deep(20) + "}}}"),
        "nested more than 8 levels deep",
    ),
    # official pickles: the persistence records
    "pk_meta_list": (_pk(lambda meta: [meta]), "not a StyleGAN2-ADA persistence record (got list)"),
    "pk_state_list": (_pk(lambda meta: meta.update(state=[1, 2])), "state must be a dict, got list"),
    "pk_no_class": (_pk(lambda meta: meta.pop("class_name") and None), "has no class name"),
    "pk_parameter_int": (
        _pk(_set_state("_parameters", {"bogus": 7})),
        "parameter 'bogus' is int, not a tensor",
    ),
    "pk_parameters_list": (_pk(_set_state("_parameters", [1])), "_parameters must be a dict"),
    "pk_modules_str": (_pk(_set_state("_modules", "abc")), "_modules must be a dict"),
    "pk_init_args": (_pk(_set_state("_init_args", 5)), "_init_args must be a tuple"),
    "pk_z_dim_negative": (_pk(_kwargs(z_dim=-1)), "z_dim = -1 is outside"),
    "pk_resolution_100": (_pk(_kwargs(img_resolution=100)), "not a power of two"),
    "pk_nested_3000": (_pk(_kwargs(synthesis_kwargs=_deep_dict(3000))), "nested more than 8 levels deep"),
    "pk_too_big_for_file": (
        _pk(
            _kwargs(
                w_dim=2048,
                z_dim=2048,
                synthesis_kwargs__channel_base=2**20,
                synthesis_kwargs__channel_max=2048,
            )
        ),
        "refusing to build it",
    ),
}
