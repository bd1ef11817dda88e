"""LPIPS-VGG (version 0.1) in pure PyTorch: the perceptual distance of Zhang et al. (CVPR 2018).

``d(x, y) = Σ_l  mean_{h,w}  Σ_c  w_l[c] · (x̂_l[c,h,w] − ŷ_l[c,h,w])²``, where ``x̂_l`` is the VGG16 activation
at tap ``l`` (relu1_2, relu2_2, relu3_3, relu4_3, relu5_3) of the scaled input, divided by its channel
norm at every pixel (``x / (‖x‖₂ + 1e-10)``), and ``w_l`` are the learned non-negative "lin" heads.
Inputs are RGB in [-1, 1]; they are first mapped with ``(x − shift) / scale``, shift
``(-.030, -.088, -.188)``, scale ``(.458, .448, .450)``, as the reference implementation does.

Weights (reference/weights.md §2):

- the trunk ``LPIPS.net`` is torchvision's VGG16 ``features`` (``vgg16-397923af.pth``, registry id
  ``tv-vgg16``) with torchvision's layer indices (``features.0`` … ``features.28``), so that file's
  ``features.*`` tensors load into it key for key (``classifier.*`` is ignored);
- the heads are ``lpips/weights/v0.1/vgg.pth`` (registry id ``lpips-vgg-v0.1``, shipped in the PyPI
  ``lpips`` package), five tensors ``lin{k}.model.1.weight`` of shape ``[1, C_k, 1, 1]``, loaded here as
  ``lin{k}.weight``.

Two ways to compute the distance:

- :meth:`LPIPS.forward` (``lpips(x, y)``) is the reference: it applies the heads to the squared
  differences of the normalised taps, exactly as the published formula. ``tests/nn/test_lpips.py``
  checks it against the ``lpips`` package (``lpips.LPIPS(net="vgg")``) to 1e-5.
- :meth:`LPIPS.features` + :meth:`LPIPS.distance` is the path for a fixed target. ``features`` returns
  the normalised taps multiplied by ``sqrt(w_l / (H_l·W_l))``, so that the distance is a plain sum of
  squared differences (the layout the official StyleGAN2-ADA projector uses, reference/stylegan2-ada.md
  §A5). An optimiser that compares a batch of synthesised images with fixed targets computes the
  target features once, under ``torch.no_grad()``, and runs VGG only on the synthesised batch each
  step, half the work of calling ``lpips(x, y)``::

      with torch.no_grad():
          target = lpips.features(target_images)          # tuple of 5 tensors, batch 1 or N
      for step in ...:
          loss = lpips.distance(lpips.features(G.synthesis(ws)), target).sum()   # [N] -> []

  The test suite checks that this path equals :meth:`LPIPS.forward`. It needs non-negative heads; the
  published heads are (LPIPS training clamps them at zero) and :func:`load_lpips_vgg` refuses others.

No weights are downloaded at construction: a bare ``LPIPS()`` has randomly initialised VGG weights and
all heads equal to one (the unweighted "baseline" variant of the LPIPS paper). Use :func:`load_lpips_vgg`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import nn

from realface.errors import CheckpointError
from realface.nn.resize import area_downsample
from realface.utils.weightfile import check_state_dict, read_state_dict

__all__ = ["LPIPS", "LPIPSFeatures", "VGG16Trunk", "load_lpips_vgg", "TAP_INDICES", "TAP_CHANNELS"]

log = logging.getLogger(__name__)

LPIPSFeatures = tuple[torch.Tensor, ...]
"""The five head-weighted taps of :meth:`LPIPS.features`, ``[N, C_l, H_l, W_l]`` each."""

# torchvision VGG16 "D" configuration: channel counts, "M" = 2×2 max pool.
_VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)

TAP_INDICES = (3, 8, 15, 22, 29)
"""Indices in ``features`` of relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3."""

TAP_CHANNELS = (64, 128, 256, 512, 512)
"""Channels at each tap, the input width of heads ``lin0`` … ``lin4``."""

_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_NORM_EPS = 1e-10  # as lpips.normalize_tensor: x / (sqrt(sum_c x^2) + eps)
_MIN_SIZE = 16  # four 2x2 max pools precede relu5_3


class VGG16Trunk(nn.Module):
    """torchvision's ``vgg16().features`` up to relu5_3 (index 29): same module indices, no final pool,
    so the ``features.*`` tensors of a torchvision VGG16 state dict load into it key for key."""

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for v in _VGG16_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(in_ch, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=False)]
                in_ch = int(v)
        assert len(layers) == TAP_INDICES[-1] + 1
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Activations at :data:`TAP_INDICES` for a scaled input ``[N, 3, H, W]``."""
        out: list[torch.Tensor] = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in TAP_INDICES:
                out.append(x)  # [N, C_l, H_l, W_l]
        return out


def _normalize_channels(f: torch.Tensor) -> torch.Tensor:
    """Unit length over channels at every pixel: ``f / (‖f‖₂ + 1e-10)``."""
    return f / (f.square().sum(dim=1, keepdim=True).sqrt() + _NORM_EPS)  # [N, C, H, W]


class LPIPS(nn.Module):
    """LPIPS-VGG v0.1 distance between images in [-1, 1].

    Args:
        resize_to: when set, inputs whose longer side exceeds it are area-downsampled to it first (the
            official StyleGAN2-ADA projector uses 256 for 1024 px images); ``None`` (default) compares
            images at their own size.

    Attributes:
        net: the VGG16 trunk (:class:`VGG16Trunk`), torchvision layout (``net.features.{0,2,5,…,28}``).
        lin0 … lin4: 1×1 heads without bias, ``[1, C_l, 1, 1]``.
        shift, scale: the input scaling, ``[1, 3, 1, 1]`` buffers.
    """

    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(self, resize_to: int | None = None):
        super().__init__()
        if resize_to is not None and resize_to < _MIN_SIZE:
            raise ValueError(f"LPIPS: resize_to must be at least {_MIN_SIZE} px, got {resize_to}")
        self.resize_to = resize_to
        self.net = VGG16Trunk()
        for k, ch in enumerate(TAP_CHANNELS):
            lin = nn.Conv2d(ch, 1, kernel_size=1, bias=False)
            nn.init.ones_(lin.weight)
            setattr(self, f"lin{k}", lin)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1))

    def _heads(self) -> list[nn.Conv2d]:
        return [getattr(self, f"lin{k}") for k in range(len(TAP_CHANNELS))]

    def _check(self, x: torch.Tensor, name: str) -> None:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS: expected {name} as RGB images [N, 3, H, W], got shape {tuple(x.shape)}")
        if min(x.shape[-2:]) < _MIN_SIZE:
            raise ValueError(
                f"LPIPS: images must be at least {_MIN_SIZE}x{_MIN_SIZE} px, got {name} of size "
                f"{tuple(x.shape[-2:])}"
            )

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Channel-normalised VGG activations at the five taps (no head weighting).

        Args:
            x: RGB images ``[N, 3, H, W]`` in [-1, 1] (``resize_to`` applies).

        Returns:
            Five tensors ``[N, C_l, H / 2^l, W / 2^l]`` (floor division), unit length over channels.
        """
        self._check(x, "x")
        if self.resize_to is not None:
            x = area_downsample(x, self.resize_to)  # [N, 3, H', W']
        h = (x - self.shift) / self.scale  # [N, 3, H, W]
        return [_normalize_channels(f) for f in self.net(h)]  # five [N, C_l, H_l, W_l]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS distance, reference formulation (heads applied to squared differences).

        Args:
            x, y: RGB images ``[N, 3, H, W]`` in [-1, 1], same shape.

        Returns:
            ``[N]`` distances (≥ 0 for non-negative heads; 0 when ``x == y``).
        """
        if x.shape != y.shape:
            raise ValueError(
                f"LPIPS: x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        self._check(x, "x")
        both = self.taps(torch.cat([x, y]))  # five [2N, C_l, H_l, W_l]
        n = x.shape[0]
        total = x.new_zeros(n)  # [N]
        for lin, f in zip(self._heads(), both, strict=True):
            d = (f[:n] - f[n:]).square()  # [N, C_l, H_l, W_l]
            total = total + lin(d).mean(dim=(1, 2, 3))  # [N]
        return total

    def features(self, x: torch.Tensor) -> LPIPSFeatures:
        """Head-weighted taps: ``sqrt(w_l / (H_l·W_l)) · x̂_l``, so that ``distance`` is a sum of squares.

        Args:
            x: RGB images ``[N, 3, H, W]`` in [-1, 1] (``resize_to`` applies).

        Returns:
            Five tensors ``[N, C_l, H_l, W_l]``. ``Σ_l ‖features(x)_l − features(y)_l‖²`` equals
            ``lpips(x, y)`` (see :meth:`distance`).
        """
        out = []
        for lin, f in zip(self._heads(), self.taps(x), strict=True):
            hw = f.shape[-2] * f.shape[-1]
            w = lin.weight.view(1, -1, 1, 1)  # [1, C_l, 1, 1]
            out.append(f * (w / hw).sqrt())  # [N, C_l, H_l, W_l]
        return tuple(out)

    @staticmethod
    def distance(a: LPIPSFeatures, b: LPIPSFeatures) -> torch.Tensor:
        """LPIPS distance between two outputs of :meth:`features`.

        Args:
            a, b: features of images of the same size; their batch sizes must be equal, or one of
                them 1 (a fixed target broadcast over a batch).

        Returns:
            ``[max(N_a, N_b)]`` distances.
        """
        if len(a) != len(TAP_CHANNELS) or len(b) != len(TAP_CHANNELS):
            raise ValueError(
                f"LPIPS.distance: expected {len(TAP_CHANNELS)} taps each, got {len(a)} and {len(b)}"
            )
        total: torch.Tensor | None = None
        for fa, fb in zip(a, b, strict=True):
            na, nb = fa.shape[0], fb.shape[0]
            if fa.shape[1:] != fb.shape[1:] or not (na == nb or na == 1 or nb == 1):
                raise ValueError(
                    "LPIPS.distance: features must come from images of one size with equal batch sizes "
                    f"(or batch 1), got {tuple(fa.shape)} and {tuple(fb.shape)}"
                )
            d = (fa - fb).square().sum(dim=(1, 2, 3))  # [N]
            total = d if total is None else total + d
        assert total is not None
        return total

    def load_heads(self, state: dict[str, torch.Tensor], source: str = "heads") -> None:
        """Copy the five lin heads from the lpips package's layout (``lin{k}.model.1.weight``) or ours
        (``lin{k}.weight``). Every head must be present with shape ``[1, C_k, 1, 1]`` and non-negative."""
        heads: dict[str, torch.Tensor] = {}
        known: set[str] = set()
        for k, ch in enumerate(TAP_CHANNELS):
            names = (f"lin{k}.model.1.weight", f"lin{k}.weight")
            known.update(names)
            found = [state[n] for n in names if n in state]
            if len(found) != 1:
                raise CheckpointError(
                    f"{source}: expected exactly one of {names} (the LPIPS v0.1 head {k}); keys present: "
                    f"{sorted(state)[:8]}"
                )
            t = found[0]
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != (1, ch, 1, 1):
                shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise CheckpointError(f"{source}: head {k} should have shape (1, {ch}, 1, 1), got {shape}")
            if bool((t < 0).any()):
                raise CheckpointError(
                    f"{source}: head {k} has negative weights; LPIPS heads are non-negative"
                )
            heads[f"lin{k}.weight"] = t
        extra = sorted(set(state) - known)
        if extra:
            raise CheckpointError(f"{source}: unexpected keys in an LPIPS head file: {extra[:5]}")
        with torch.no_grad():
            for k, lin in enumerate(self._heads()):
                lin.weight.copy_(heads[f"lin{k}.weight"])

    def load_vgg(self, state: dict[str, torch.Tensor], source: str = "vgg16") -> None:
        """Copy the ``features.*`` tensors of a torchvision VGG16 state dict (others, e.g. ``classifier.*``,
        are ignored). The ``features`` subset must match key for key and shape for shape."""
        expected = self.net.state_dict()
        given = {k: v for k, v in state.items() if k.startswith("features.")}
        check_state_dict(expected, given, source, "a torchvision VGG16 state dict", optional=lambda k: False)
        ignored = len(state) - len(given)
        if ignored:
            log.debug("%s: ignoring %d non-feature tensors (classifier)", source, ignored)
        self.net.load_state_dict(given, strict=True)


def load_lpips_vgg(
    device: str | torch.device = "cpu",
    vgg_path: str | os.PathLike | None = None,
    lin_path: str | os.PathLike | None = None,
    resize_to: int | None = None,
) -> LPIPS:
    """Build :class:`LPIPS` with torchvision's ImageNet VGG16 and the LPIPS v0.1 VGG heads; frozen, eval.

    Args:
        device: where the returned network lives.
        vgg_path: a torchvision VGG16 state dict; default ``weight_path("tv-vgg16")`` (the verified
            cache, downloaded when allowed).
        lin_path: the LPIPS head file; default ``weight_path("lpips-vgg-v0.1")`` (the copy shipped in
            the ``lpips`` package).
        resize_to: see :class:`LPIPS`.

    Both files are read by :func:`realface.utils.weightfile.read_state_dict` (``torch.load(weights_only=True)``
    or safetensors); nothing in them is executed. All
    parameters have ``requires_grad=False``; gradients still flow to the input images.

    Raises:
        WeightsError: a default file is missing and cannot be fetched (its message says how to get it).
        CheckpointError: a file is not the expected state dict.
    """
    from realface.weights import weight_path

    vgg_file = Path(vgg_path) if vgg_path is not None else weight_path("tv-vgg16")
    lin_file = Path(lin_path) if lin_path is not None else weight_path("lpips-vgg-v0.1")
    model = LPIPS(resize_to=resize_to)
    model.load_vgg(read_state_dict(vgg_file, "VGG16 weights"), source=str(vgg_file))
    model.load_heads(read_state_dict(lin_file, "LPIPS heads"), source=str(lin_file))
    log.debug("LPIPS-VGG loaded from %s and %s", vgg_file, lin_file)
    return model.eval().requires_grad_(False).to(device)
