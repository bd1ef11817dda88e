"""External weights: one registry, a verified cache, resumable downloads, offline use and import.

Public API::

    from realface.weights import REGISTRY, WeightRecord, weight_path, cache_dir, converted_generator_path
    path = weight_path("dlib-lm68")           # verified local file (downloaded when allowed)

See :mod:`realface.weights.store` for the lookup order and :mod:`realface.weights.cache` for the layout.
"""

from __future__ import annotations

from realface.weights.cache import cache_dir, is_offline, sha256_file
from realface.weights.download import DownloadOptions
from realface.weights.errors import (
    ChecksumError,
    DownloadError,
    ManualDownloadRequired,
    MissingWeightsError,
    UnknownWeightError,
    WeightsError,
    WrongFileError,
)
from realface.weights.registry import REGISTRY, WeightRecord, get_record
from realface.weights.store import (
    VerifyResult,
    apply_weight_ids,
    converted_generator_path,
    converted_path,
    fetch_plan,
    import_weight,
    licence_line,
    locate,
    require_weights,
    size_short,
    verify_weight,
    weight_path,
)

__all__ = [
    "REGISTRY",
    "WeightRecord",
    "get_record",
    "weight_path",
    "cache_dir",
    "is_offline",
    "sha256_file",
    "import_weight",
    "locate",
    "require_weights",
    "apply_weight_ids",
    "verify_weight",
    "VerifyResult",
    "converted_path",
    "converted_generator_path",
    "licence_line",
    "fetch_plan",
    "size_short",
    "DownloadOptions",
    "WeightsError",
    "MissingWeightsError",
    "ManualDownloadRequired",
    "ChecksumError",
    "DownloadError",
    "UnknownWeightError",
    "WrongFileError",
]
