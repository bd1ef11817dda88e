"""Checks shared by the loaders of external state dicts."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

__all__ = ["state_dict_mismatch"]


def state_dict_mismatch(
    expected: Mapping[str, torch.Tensor],
    given: Mapping[str, torch.Tensor],
    optional: Callable[[str], bool] = lambda key: False,
) -> str | None:
    """None when ``given`` has exactly the keys and shapes of ``expected`` (keys for which ``optional``
    is true may be absent); otherwise a short description: missing, unexpected, wrong shapes."""
    missing = [k for k in expected if k not in given and not optional(k)]
    unexpected = [k for k in given if k not in expected]
    wrong = [
        f"{k} {tuple(given[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in given and tuple(given[k].shape) != tuple(v.shape)
    ]
    if not (missing or unexpected or wrong):
        return None
    return f"missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}, wrong shapes {wrong[:3]}"
