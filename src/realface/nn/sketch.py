"""Sketch (line drawing) extractors for the sketch identity loss, behind a small registry.

The paper computes ``L_sketch`` with the sketch generator of DeepFaceEditing (Chen et al. 2021), a
trained network whose weights are distributed as a Google Drive archive (reference/weights.md §3).
realface ships a weight-free, differentiable substitute, ``"xdog"`` (:class:`XDoGSketch`): the
eXtended Difference-of-Gaussians of Winnemöller et al. (2012) on luminance, with its soft tanh
threshold. It responds to the same structure the paper's loss is after (contours of the face,
eyes, brows, nostrils, lips, hairline) but it is a hand-made edge detector, not the learned
sketch style: loss magnitudes differ from the paper's, so ``λs`` may need retuning with it.

Contract of every extractor (what :func:`realface.losses.sketch_loss` relies on): an ``nn.Module``
mapping RGB images ``[N, 3, H, W]`` in [-1, 1] to sketches ``[N, 1, H, W]`` in [0, 1], where 1 is
paper white and lines are dark; differentiable with respect to its input; no trainable state
needed at use (the loss does not train it). Extractors are built by name::

    S = build_sketch_extractor("xdog", sigma=1.0)

and new ones are added with :func:`register_sketch_extractor`. The DeepFaceEditing network is
registered as ``"dfe"`` by :mod:`realface.nn.dfe`, imported on first use.
"""

from __future__ import annotations

import importlib
import logging
import math
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

from realface.errors import ConfigError
from realface.nn.blur import gaussian_blur

__all__ = [
    "SKETCH_EXTRACTORS",
    "register_sketch_extractor",
    "build_sketch_extractor",
    "XDoGSketch",
    "xdog",
    "luminance",
]

log = logging.getLogger(__name__)

SKETCH_EXTRACTORS: dict[str, Callable[..., nn.Module]] = {}
"""Registered sketch extractors: name -> factory (a class or function) taking keyword arguments."""

_F = TypeVar("_F", bound=Callable[..., nn.Module])

_LAZY_EXTRACTORS: dict[str, str] = {"dfe": "realface.nn.dfe"}
"""Extractors registered by a module imported on first use: name -> module."""

# ITU-R BT.601 luma weights.
_LUMA = (0.299, 0.587, 0.114)


def register_sketch_extractor(name: str) -> Callable[[_F], _F]:
    """Decorator that registers a factory under ``name`` in :data:`SKETCH_EXTRACTORS`.

    The factory must return a module honouring the contract in the module docstring. A name can be
    registered once; registering a second factory under a taken name raises ``ValueError``.
    """

    def decorator(factory: _F) -> _F:
        existing = SKETCH_EXTRACTORS.get(name)
        if existing is not None and existing is not factory:
            raise ValueError(f"sketch extractor {name!r} is already registered (by {existing!r})")
        SKETCH_EXTRACTORS[name] = factory
        return factory

    return decorator


def build_sketch_extractor(name: str, **kwargs: object) -> nn.Module:
    """Build the extractor registered as ``name`` with ``kwargs``, frozen and in eval mode.

    Raises:
        ConfigError: no extractor has that name (the message lists the registered ones).
    """
    if name not in SKETCH_EXTRACTORS and name in _LAZY_EXTRACTORS:
        importlib.import_module(_LAZY_EXTRACTORS[name])  # registers the name on import
    factory = SKETCH_EXTRACTORS.get(name)
    if factory is None:
        known = ", ".join(sorted(set(SKETCH_EXTRACTORS) | set(_LAZY_EXTRACTORS))) or "none"
        raise ConfigError(f"unknown sketch extractor {name!r}; registered: {known}")
    module = factory(**kwargs)
    log.debug("built sketch extractor %r: %s", name, module)
    return module.eval().requires_grad_(False)


def luminance(x: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of RGB ``[N, 3, H, W]`` in [-1, 1], as ``[N, 1, H, W]`` in [0, 1]; a one-channel
    input ``[N, 1, H, W]`` in [-1, 1] is only rescaled."""
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected images [N, 3, H, W] (or [N, 1, H, W]), got shape {tuple(x.shape)}")
    if x.shape[1] == 3:
        w = x.new_tensor(_LUMA).view(1, 3, 1, 1)  # [1, 3, 1, 1]
        x = (x * w).sum(dim=1, keepdim=True)  # [N, 1, H, W]
    return (x + 1) * 0.5  # [N, 1, H, W]


def _kernel_size(sigma: float) -> int:
    """Odd Gaussian support covering ±3σ."""
    return 2 * math.ceil(3 * sigma) + 1


def _check_params(sigma: float, k: float, tau: float, phi: float) -> None:
    if not (sigma > 0 and k > 1 and 0 < tau <= 1 and phi > 0):
        raise ValueError(
            f"xdog: expected sigma > 0, k > 1, 0 < tau <= 1, phi > 0; got sigma={sigma}, k={k}, "
            f"tau={tau}, phi={phi}"
        )


def xdog(
    x: torch.Tensor,
    sigma: float = 1.0,
    k: float = 1.6,
    tau: float = 0.99,
    epsilon: float = 0.0,
    phi: float = 200.0,
) -> torch.Tensor:
    """XDoG line drawing of images: dark lines on white, differentiable.

    With ``Y`` the luminance in [0, 1] and ``G_s`` a Gaussian blur of standard deviation ``s`` pixels
    (reflect padding, support ±3s):

        ``D = G_σ(Y) − τ · G_{kσ}(Y)``
        ``S = 1 + tanh(φ · min(D − ε, 0))``

    On flat regions ``D = (1 − τ) · Y ≥ 0``, so ``S = 1`` (white). Across an edge, ``D`` dips below
    zero on its darker side, and the tanh turns the dip into a dark line whose width grows with σ and
    whose darkness grows with the edge contrast and φ. ``S`` is continuous in ``x``; its gradient is
    zero where ``D ≥ ε`` (white paper) and non-zero on and around lines.

    Args:
        x: RGB images ``[N, 3, H, W]`` in [-1, 1] (or one channel ``[N, 1, H, W]``). H and W must
            exceed ``3·k·σ`` (reflect padding).
        sigma: scale of the inner Gaussian in pixels; lines are about ``2σ`` wide. Default 1.0, for
            512 px faces as in the paper's sketch loss.
        k: ratio of the outer to the inner Gaussian (1.6 approximates a Laplacian of Gaussian).
        tau: weight of the outer Gaussian, below 1 so that flat regions stay white (default 0.99).
        epsilon: threshold on ``D`` below which ink starts (default 0.0).
        phi: steepness of the soft threshold (default 200: ``D − ε = −0.005`` gives S ≈ 0.24).

    Returns:
        ``[N, 1, H, W]`` in [0, 1], 1 = paper white.
    """
    _check_params(sigma, k, tau, phi)
    y = luminance(x)  # [N, 1, H, W]
    inner = gaussian_blur(y, _kernel_size(sigma), sigma)  # [N, 1, H, W]
    outer = gaussian_blur(y, _kernel_size(k * sigma), k * sigma)  # [N, 1, H, W]
    d = inner - tau * outer  # [N, 1, H, W]
    return 1 + torch.tanh(phi * (d - epsilon).clamp(max=0))  # [N, 1, H, W] in (0, 1]


@register_sketch_extractor("xdog")
class XDoGSketch(nn.Module):
    """Module form of :func:`xdog` (no parameters, no weights); the default sketch extractor.

    A substitute for the DeepFaceEditing sketch generator used by the paper; see the module
    docstring for what that changes. Arguments as :func:`xdog`.
    """

    def __init__(
        self, sigma: float = 1.0, k: float = 1.6, tau: float = 0.99, epsilon: float = 0.0, phi: float = 200.0
    ):
        super().__init__()
        self.sigma, self.k, self.tau, self.epsilon, self.phi = sigma, k, tau, epsilon, phi
        _check_params(sigma, k, tau, phi)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return xdog(x, self.sigma, self.k, self.tau, self.epsilon, self.phi)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}, k={self.k}, tau={self.tau}, epsilon={self.epsilon}, phi={self.phi}"
