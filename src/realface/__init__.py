"""realface: photo-realistic faces of the same identity for rendered apparel avatars.

Public API (stable names)::

    G = realface.load_generator(path)       # official StyleGAN2-ADA .pkl or realface .safetensors
    D = realface.load_discriminator(path)

Heavy submodules are imported lazily so that ``import realface`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "load_generator": "realface.checkpoints",
    "load_discriminator": "realface.checkpoints",
    "save_networks": "realface.checkpoints",
    "load_networks": "realface.checkpoints",
    "convert_pickle": "realface.checkpoints",
    "Generator": "realface.nn.stylegan2",
    "Discriminator": "realface.nn.stylegan2",
    "RealFaceError": "realface.errors",
}

__all__ = [
    "Discriminator",
    "Generator",
    "RealFaceError",
    "__version__",
    "convert_pickle",
    "load_discriminator",
    "load_generator",
    "load_networks",
    "save_networks",
]

if TYPE_CHECKING:  # pragma: no cover
    from realface.checkpoints import (
        convert_pickle,
        load_discriminator,
        load_generator,
        load_networks,
        save_networks,
    )
    from realface.errors import RealFaceError
    from realface.nn.stylegan2 import Discriminator, Generator


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'realface' has no attribute {name!r}")
