"""Is a file what its registry record says it is? Checks for files that no published hash can vouch for.

A file imported (or downloaded) for a record without a published sha256 is checked here before it is
stored, so that a wrong file (a photo, an HTML error page, another model) is refused at once instead of
failing later inside a command:

- **format**, from the first bytes: ``pickle`` (protocol 2-5 header), ``zip`` (local-file or
  empty-archive signature; also what ``torch.save`` writes), ``safetensors`` (8-byte header length,
  then ``{``). Formats without a recognisable signature (``dlib-dat``) are not checked.
- **size**: within a factor of :data:`SIZE_TOLERANCE` of the record's ``approx_size``.
- **network class and resolution** (StyleGAN2-ADA pickles, when the record declares them): the pickle
  is read by the restricted reader of :mod:`realface.checkpoints` (nothing in it is executed) and its
  ``G_ema`` (else ``G``) must be of class ``network_class`` with ``img_resolution == resolution``.
"""

from __future__ import annotations

from pathlib import Path

from realface.utils.weightfile import sniff_format
from realface.weights.errors import WrongFileError
from realface.weights.registry import WeightRecord

__all__ = ["SIZE_TOLERANCE", "WrongFileError", "check_content", "sniff_format"]

SIZE_TOLERANCE = 2.0
"""A file of a record with only an approximate size must be within this factor of it (both ways)."""


def _allowed_formats(record: WeightRecord) -> tuple[str, ...] | None:
    """The container formats the record's ``format`` allows, or None when it cannot be recognised."""
    fmt = record.format.lower()
    if fmt in ("sg2-persistence-pkl", "jittor-pkl") or fmt.endswith("pickle"):
        return ("pickle",)
    if fmt == "torch-state-dict":
        return ("zip", "pickle")  # torch.save's zip container, or the legacy pickle format
    if fmt.startswith("zip"):
        return ("zip",)
    if fmt == "safetensors":
        return ("safetensors",)
    return None


def _describe(found: str | None) -> str:
    return f"a {found} file" if found else "not a recognised model file (no known signature)"


def check_content(record: WeightRecord, path: Path) -> None:
    """Raise :class:`WrongFileError` (one line naming ``path``) unless the file fits the record."""
    name = f"{record.id!r} ({record.filename}, {record.format})"
    allowed = _allowed_formats(record)
    if allowed is not None:
        found = sniff_format(path)
        if found not in allowed:
            raise WrongFileError(f"{path}: is {_describe(found)}, but {name} is {' or '.join(allowed)}")
    size = path.stat().st_size
    if record.size is None and record.approx_size:
        low, high = record.approx_size / SIZE_TOLERANCE, record.approx_size * SIZE_TOLERANCE
        if not low <= size <= high:
            raise WrongFileError(
                f"{path}: is {size:,} bytes, but {name} is about {record.approx_size:,} bytes "
                f"(accepted: {int(low):,} to {int(high):,})"
            )
    if record.format == "sg2-persistence-pkl" and (record.network_class or record.resolution):
        _check_network(record, path, name)


def _check_network(record: WeightRecord, path: Path, name: str) -> None:
    from realface.checkpoints import read_official_pickle
    from realface.errors import RealFaceError

    try:
        networks = read_official_pickle(path)["networks"]
    except RealFaceError as exc:
        text = str(exc)
        text = text[len(f"{path}: ") :] if text.startswith(f"{path}: ") else text
        raise WrongFileError(
            f"{path}: not a readable StyleGAN2-ADA network pickle for {name} ({text})"
        ) from None
    net = networks.get("G_ema") or networks.get("G")
    if net is None:
        raise WrongFileError(f"{path}: has no generator (G_ema or G), but {name} is a generator pickle")
    if record.network_class and net.class_name != record.network_class:
        raise WrongFileError(
            f"{path}: its generator is of class {net.class_name!r}, but {name} holds a {record.network_class!r}"
        )
    resolution = net.init_kwargs.get("img_resolution")
    if record.resolution and resolution != record.resolution:
        raise WrongFileError(
            f"{path}: its generator makes {resolution}-pixel images, but {name} makes "
            f"{record.resolution}-pixel images"
        )
