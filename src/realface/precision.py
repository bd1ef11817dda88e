"""Numeric precision of inversion: ``fp32`` (the reference), ``bf16``, or ``auto``.

``auto`` resolves, at run time and per device, to ``bf16`` where it is fast and to ``fp32`` elsewhere:
on a CPU, bf16 where the CPU has native bf16 arithmetic (the AVX512_BF16 or AMX-BF16 instructions,
read from ``/proc/cpuinfo``); on CUDA, bf16 where the GPU supports it; fp32 on anything else.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from realface.errors import ConfigError

__all__ = ["PRECISIONS", "cpu_has_bf16", "resolve_precision"]

PRECISIONS = ("auto", "fp32", "bf16")


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU runs bf16 convolutions natively (AVX512_BF16 or AMX-BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(precision: str, device: str | torch.device = "cpu") -> str:
    """``"fp32"`` or ``"bf16"`` for ``precision`` (one of :data:`PRECISIONS`) on ``device``.

    Raises:
        ConfigError: ``precision`` is not one of :data:`PRECISIONS`.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be auto, fp32 or bf16, got {precision!r}", field="precision")
    if precision != "auto":
        return precision
    dev = torch.device(device)
    if dev.type == "cpu":
        return "bf16" if cpu_has_bf16() else "fp32"
    if dev.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "fp32"
