"""Parsing and checking of option values shared by the command line, the web page and the library.

Ranges such as ``'0-7,12'`` are checked against their bounds *before* they are expanded, so a huge
range is refused at once with a short message instead of exhausting memory. Messages quote the
user's text, never the expanded list.
"""

from __future__ import annotations

import math
import re

from realface.errors import ConfigError

__all__ = ["MAX_SEEDS", "MAX_LAYERS", "parse_range", "parse_seeds", "parse_layers", "check_finite"]

MAX_SEEDS = 100_000
"""At most this many seeds in one ``--seeds`` value."""

MAX_LAYERS = 32
"""Upper bound on W+ layer indices when the generator is not known yet (1024 px StyleGAN2: 18)."""

_PART = re.compile(r"(\d+)(?:-(\d+))?")


def _short(spec: str, limit: int = 40) -> str:
    return repr(spec if len(spec) <= limit else spec[:limit] + "...")


def parse_range(
    spec: str, *, what: str, upper: int, max_items: int, example: str, noun: str = "value"
) -> list[int]:
    """``'0-3,7'`` -> ``[0, 1, 2, 3, 7]``: inclusive ranges of integers in ``[0, upper)``.

    Bounds and the total count (at most ``max_items``, duplicates counted) are checked before any
    range is expanded. ``what`` names the value in messages (e.g. ``'--seeds'``).
    """
    parts: list[tuple[int, int]] = []
    total = 0
    for part in filter(None, (p.strip() for p in str(spec).split(","))):
        m = _PART.fullmatch(part)
        if not m:
            raise ConfigError(f"{what}: invalid {noun} {_short(part)}; use e.g. {example!r}")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise ConfigError(f"{what}: range {_short(part)} ends before it starts")
        if hi >= upper:
            raise ConfigError(f"{what}: {_short(part)} is out of range; values must be in 0..{upper - 1}")
        total += hi - lo + 1
        if total > max_items:
            raise ConfigError(f"{what}: {_short(spec)} gives more than {max_items} values")
        parts.append((lo, hi))
    if not parts:
        raise ConfigError(f"{what}: no values given; use e.g. {example!r}")
    out: list[int] = []
    for lo, hi in parts:
        out.extend(range(lo, hi + 1))
    return out


def parse_seeds(spec: str, *, what: str = "seeds") -> list[int]:
    """Seeds ``'0-7'`` or ``'1,5,9-12'``: each in ``[0, 2**32)``, at most :data:`MAX_SEEDS` of them."""
    return parse_range(spec, what=what, upper=2**32, max_items=MAX_SEEDS, example="0-7", noun="seed")


def parse_layers(
    spec: str | None, num_ws: int | None = None, *, what: str = "transfer layers"
) -> tuple[int, ...] | None:
    """W+ layer indices ``'0-7'`` or ``'0,2,4'`` in ``0..num_ws-1`` (unknown ``num_ws``: ``0..31``);
    ``''``, ``'all'`` or None -> None (every layer)."""
    if spec is None or spec.strip().lower() in ("", "all"):
        return None
    upper = MAX_LAYERS if num_ws is None else int(num_ws)
    return tuple(
        parse_range(spec, what=what, upper=upper, max_items=upper, example="0-7", noun="transfer layers")
    )


def check_finite(obj: object, prefix: str = "") -> None:
    """Raise :class:`ConfigError` (with ``field`` set) if any float field of a dataclass is NaN or inf."""
    import dataclasses

    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{prefix}{f.name} must be a finite number, got {value}", field=f.name)
