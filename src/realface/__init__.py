"""realface: photo-realistic faces of the same identity for rendered apparel avatars.

Public API (stable names)::

    job = realface.RealFace.from_weights(rendering="g_rendering.safetensors", device="auto")
    paths = job.run_file("avatar.jpg", "out/avatar.png")   # the main job on one image
    G = realface.load_generator(path)       # official StyleGAN2-ADA .pkl or realface .safetensors
    D = realface.load_discriminator(path)
    result = realface.invert(G, targets, loss, realface.InvertConfig(steps=500))

Example (a tiny random generator; real ones come from :func:`load_generator`)::

    >>> import torch, realface
    >>> G = realface.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
    ...     mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=64, channel_max=8))
    >>> tuple(G(torch.randn(1, 8), None).shape)
    (1, 3, 16, 16)

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
    "RealFace": "realface.pipeline",
    "ApplyConfig": "realface.pipeline",
    "InvertConfig": "realface.invert",
}

__all__ = [
    "ApplyConfig",
    "Discriminator",
    "Generator",
    "InvertConfig",
    "RealFace",
    "RealFaceError",
    "__version__",
    "convert_pickle",
    "invert",
    "load_discriminator",
    "load_generator",
    "load_networks",
    "save_networks",
]

if TYPE_CHECKING:  # pragma: no cover
    from realface import invert
    from realface.checkpoints import (
        convert_pickle,
        load_discriminator,
        load_generator,
        load_networks,
        save_networks,
    )
    from realface.errors import RealFaceError
    from realface.invert import InvertConfig
    from realface.nn.stylegan2 import Discriminator, Generator
    from realface.pipeline import ApplyConfig, RealFace


def __getattr__(name: str) -> Any:
    if name == "invert":  # the module, callable as realface.invert.invert (see realface.invert)
        return importlib.import_module("realface.invert")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'realface' has no attribute {name!r}")
