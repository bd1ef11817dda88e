"""Inception-v3 as used for FID: the network of pytorch-fid (``fid_inception_v3``) in pure PyTorch.

FID (Heusel et al., 2017) is defined on the 2048-d "pool3" features of the TensorFlow Inception graph
``inception-2015-12-05``. pytorch-fid ports that graph to a torchvision-style Inception-v3 whose weights
are ``pt_inception-2015-12-05-6726825d.pth`` (registry id ``fid-inception``, reference/weights.md §5).
The port differs from torchvision's ImageNet Inception-v3 in four blocks, because the TF graph pools
differently:

- ``Mixed_5b``, ``Mixed_5c``, ``Mixed_5d`` (:class:`FIDInceptionA`), ``Mixed_6b`` … ``Mixed_6e``
  (:class:`FIDInceptionC`) and ``Mixed_7b`` (:class:`FIDInceptionE1`): the 3×3 average pool of the
  pool branch does not count the zero padding (``count_include_pad=False``);
- ``Mixed_7c`` (:class:`FIDInceptionE2`): the pool branch uses a 3×3 *max* pool (stride 1, padding 1).

Every other block is torchvision's. Module and parameter names are torchvision's
(``Conv2d_1a_3x3.conv.weight``, ``Mixed_5b.branch1x1.bn.running_var``, …, ``fc.weight`` ``[1008, 2048]``),
so the pytorch-fid file loads key for key; ``tests/metrics/test_inception.py`` compares the key set and
shapes with torchvision's ``inception_v3(num_classes=1008, aux_logits=False)`` and the forward pass with
torchvision's blocks patched to pool as above.

Input protocol (pytorch-fid ``InceptionV3(resize_input=True, normalize_input=True)``): RGB in [0, 1],
any size; resized to 299×299 with ``F.interpolate(mode="bilinear", align_corners=False)`` (no
antialiasing), then mapped to [-1, 1] with ``2x − 1``. :meth:`FIDInception3.forward` does both.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from realface.errors import CheckpointError
from realface.utils.weightfile import load_checked, read_state_dict

__all__ = [
    "FIDInception3",
    "FIDInceptionA",
    "FIDInceptionC",
    "FIDInceptionE1",
    "FIDInceptionE2",
    "load_fid_inception",
    "FID_INPUT_SIZE",
    "FID_FEATURE_DIM",
]

log = logging.getLogger(__name__)

FID_INPUT_SIZE = 299
"""Side of the square Inception input, pixels."""

FID_FEATURE_DIM = 2048
"""Width of the pool3 features."""

FID_NUM_CLASSES = 1008
"""Classes of the TF 2015-12-05 graph's logits layer (``fc``); unused for FID but part of the file."""

_BN_EPS = 0.001  # BatchNorm eps of every Inception conv block (torchvision and the TF graph)


class BasicConv2d(nn.Module):
    """Conv (no bias) → BatchNorm (eps 1e-3) → ReLU; parameters ``conv.weight``, ``bn.*``."""

    def __init__(self, in_channels: int, out_channels: int, **conv_kwargs: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **conv_kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=_BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))  # [N, out, H', W']


def _avg_pool_no_pad(x: torch.Tensor) -> torch.Tensor:
    """3×3 average pool, stride 1, padding 1, averaging only over pixels inside the image."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)  # [N, C, H, W]


class FIDInceptionA(nn.Module):
    """35×35 block (torchvision ``InceptionA`` layout): 1×1, 5×5, double 3×3 and pool branches.

    Output channels ``64 + 64 + 96 + pool_features``.
    """

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)  # [N, 64, H, W]
        b5 = self.branch5x5_2(self.branch5x5_1(x))  # [N, 64, H, W]
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))  # [N, 96, H, W]
        bp = self.branch_pool(_avg_pool_no_pad(x))  # [N, pool_features, H, W]
        return torch.cat([b1, b5, b3, bp], dim=1)


class InceptionB(nn.Module):
    """Grid reduction 35→17 (torchvision ``InceptionB``): 3×3/2, double 3×3 (last /2) and 3×3/2 max pool.

    Output channels ``384 + 96 + in_channels``.
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3(x)  # [N, 384, H', W']
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))  # [N, 96, H', W']
        bp = F.max_pool2d(x, kernel_size=3, stride=2)  # [N, C, H', W']
        return torch.cat([b3, bd, bp], dim=1)


class FIDInceptionC(nn.Module):
    """17×17 block with factorised 7×7 convolutions (torchvision ``InceptionC`` layout); 768 channels out."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)  # [N, 192, H, W]
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))  # [N, 192, H, W]
        bd = self.branch7x7dbl_1(x)  # [N, c7, H, W]
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = conv(bd)  # [N, c7 (192 after the last), H, W]
        bp = self.branch_pool(_avg_pool_no_pad(x))  # [N, 192, H, W]
        return torch.cat([b1, b7, bd, bp], dim=1)


class InceptionD(nn.Module):
    """Grid reduction 17→8 (torchvision ``InceptionD``): 3×3/2, 7×7-then-3×3/2 and 3×3/2 max pool.

    Output channels ``320 + 192 + in_channels``.
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))  # [N, 320, H', W']
        b7 = self.branch7x7x3_1(x)  # [N, 192, H, W]
        for conv in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = conv(b7)  # [N, 192, H or H', W or W']
        bp = F.max_pool2d(x, kernel_size=3, stride=2)  # [N, C, H', W']
        return torch.cat([b3, b7, bp], dim=1)


class _FIDInceptionE(nn.Module):
    """8×8 block with expanded 1×3/3×1 branches (torchvision ``InceptionE`` layout); 2048 channels out.

    Subclasses choose the pool of the pool branch.
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)  # [N, 320, H, W]
        t = self.branch3x3_1(x)  # [N, 384, H, W]
        b3 = torch.cat([self.branch3x3_2a(t), self.branch3x3_2b(t)], dim=1)  # [N, 768, H, W]
        t = self.branch3x3dbl_2(self.branch3x3dbl_1(x))  # [N, 384, H, W]
        bd = torch.cat([self.branch3x3dbl_3a(t), self.branch3x3dbl_3b(t)], dim=1)  # [N, 768, H, W]
        bp = self.branch_pool(self._pool(x))  # [N, 192, H, W]
        return torch.cat([b1, b3, bd, bp], dim=1)  # [N, 2048, H, W]


class FIDInceptionE1(_FIDInceptionE):
    """``Mixed_7b``: pool branch is a 3×3 average pool that ignores the padding."""

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return _avg_pool_no_pad(x)


class FIDInceptionE2(_FIDInceptionE):
    """``Mixed_7c``: pool branch is a 3×3 max pool, stride 1, padding 1 (as the TF graph)."""

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)  # [N, C, H, W]


class FIDInception3(nn.Module):
    """The FID Inception-v3: :meth:`forward` maps images in [0, 1] to 2048-d pool3 features.

    A bare ``FIDInception3()`` has PyTorch's default initialisation; use :func:`load_fid_inception`
    for the real weights. ``fc`` (1008 classes) exists only so that the weight file loads key for key;
    :meth:`forward` stops before it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = FIDInceptionA(192, pool_features=32)
        self.Mixed_5c = FIDInceptionA(256, pool_features=64)
        self.Mixed_5d = FIDInceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        self.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = FIDInceptionE1(1280)
        self.Mixed_7c = FIDInceptionE2(2048)
        self.fc = nn.Linear(FID_FEATURE_DIM, FID_NUM_CLASSES)

    @staticmethod
    def preprocess(images: torch.Tensor) -> torch.Tensor:
        """pytorch-fid's input transform: [0, 1] → bilinear resize to 299² (``align_corners=False``, no
        antialias) → ``2x − 1``. ``[N, 3, H, W]`` → ``[N, 3, 299, 299]``."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"FID Inception: expected RGB images [N, 3, H, W], got {tuple(images.shape)}")
        x = F.interpolate(
            images, size=(FID_INPUT_SIZE, FID_INPUT_SIZE), mode="bilinear", align_corners=False
        )  # [N, 3, 299, 299]
        return 2 * x - 1  # [N, 3, 299, 299] in [-1, 1]

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Pool3 features of images already in the network's frame (``[N, 3, 299, 299]``, [-1, 1])."""
        if x.ndim != 4 or x.shape[1:] != (3, FID_INPUT_SIZE, FID_INPUT_SIZE):
            raise ValueError(f"FID Inception: expected [N, 3, 299, 299], got {tuple(x.shape)}")
        x = self.Conv2d_1a_3x3(x)  # [N, 32, 149, 149]
        x = self.Conv2d_2a_3x3(x)  # [N, 32, 147, 147]
        x = self.Conv2d_2b_3x3(x)  # [N, 64, 147, 147]
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # [N, 64, 73, 73]
        x = self.Conv2d_3b_1x1(x)  # [N, 80, 73, 73]
        x = self.Conv2d_4a_3x3(x)  # [N, 192, 71, 71]
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # [N, 192, 35, 35]
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))  # [N, 288, 35, 35]
        x = self.Mixed_6a(x)  # [N, 768, 17, 17]
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(x))))  # [N, 768, 17, 17]
        x = self.Mixed_7a(x)  # [N, 1280, 8, 8]
        x = self.Mixed_7c(self.Mixed_7b(x))  # [N, 2048, 8, 8]
        return x.mean(dim=(2, 3))  # [N, 2048] (adaptive average pool to 1×1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Pool3 features ``[N, 2048]`` of RGB images ``[N, 3, H, W]`` in [0, 1] (see :meth:`preprocess`)."""
        feats = self.trunk(self.preprocess(images))  # [N, 2048]
        assert feats.shape == (images.shape[0], FID_FEATURE_DIM)
        return feats


def load_fid_inception_state(model: FIDInception3, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy a pytorch-fid state dict into ``model``: every parameter and running statistic must be present
    with the right shape; ``num_batches_tracked`` counters are optional (unused in eval); anything else
    is refused (:func:`realface.utils.weightfile.load_checked`)."""
    load_checked(model, state, source, "the pytorch-fid Inception state dict (pt_inception-2015-12-05)")


def load_fid_inception(
    device: str | torch.device = "cpu", path: str | os.PathLike | None = None
) -> FIDInception3:
    """The FID Inception with pytorch-fid's weights, frozen, in eval mode.

    Args:
        device: where the network lives.
        path: a ``pt_inception-2015-12-05-6726825d.pth`` state dict (or a safetensors copy); default
            ``weight_path("fid-inception")`` (the verified cache, downloaded when allowed).

    The file (a state dict or safetensors) is read by :func:`realface.utils.weightfile.read_state_dict`
    (``torch.load(weights_only=True)``); nothing in it is executed.

    Raises:
        WeightsError: the default file is missing and cannot be fetched (the message says how to get it).
        CheckpointError: the file is not that state dict.
    """
    from realface.weights import weight_path

    file = Path(path) if path is not None else weight_path("fid-inception")
    if not file.is_file():
        raise CheckpointError(f"{file}: FID Inception weights not found")
    model = FIDInception3()
    load_fid_inception_state(model, read_state_dict(file, "FID Inception weights"), source=str(file))
    log.debug("FID Inception loaded from %s", file)
    return model.eval().requires_grad_(False).to(device)
