"""Process-wide allocator settings for CPU work on large images.

A 1024² StyleGAN2 forward/backward pass allocates and frees many 128 MiB activation buffers. glibc
serves allocations that large with fresh ``mmap`` pages and returns them on ``free``, so every step
pays for zero-filling the same memory again: on the 2-core development CPU this was half of the
generator's forward+backward time (4.3 s → 2.1 s at 1024², ``benchmarks/bench_generator.py``).
:func:`keep_freed_memory` tells glibc to serve them from the heap and keep freed memory for reuse.

The cost: the process keeps its peak memory until it exits. The command-line front ends call it
(they are single jobs); library users opt in. ``REALFACE_MALLOC=system`` leaves the allocator alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

__all__ = ["keep_freed_memory"]

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4
_done = False


def keep_freed_memory() -> bool:
    """Serve large allocations from the heap and keep freed memory (glibc on Linux; else a no-op).

    Returns True when the settings were applied. Safe to call more than once.
    """
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux") or os.environ.get("REALFACE_MALLOC", "").lower() == "system":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
        return False
    ok = (
        mallopt(_M_MMAP_MAX, 0) == 1  # no mmap for large blocks: they come from (and return to) the heap
        and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1  # do not hand freed heap memory back to the OS
        and mallopt(_M_TOP_PAD, 1 << 28) == 1  # grow the heap in 256 MiB steps
    )
    _done = ok
    log.debug("allocator tuned for large buffers: %s", ok)
    return ok
