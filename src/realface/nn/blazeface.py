"""BlazeFace full-range face detector (MediaPipe), pure PyTorch, no I/O beyond a safetensors load.

The network is the one of MediaPipe's ``face_detection_full_range.tflite`` (Bazarevsky et al.,
"BlazeFace: Sub-millisecond Neural Face Detection on Mobile GPUs", 2019; full-range variant with a
feature pyramid). It was read from that file's graph and written here as modules:

- a 3×3 stride-2 stem convolution (32 channels) with ReLU;
- 15 backbone blocks (:class:`BlazeBlock`): depthwise 3×3 → 1×1 bottleneck → ReLU → depthwise 3×3 →
  1×1 expansion, added to the input (max-pooled 2×2 and zero-padded in channels when the block
  downsamples or widens), then ReLU. Feature maps of 48, 24, 12 and 6 cells per side;
- a top-down pyramid of three levels (:class:`PyramidLevel`): a 1×1 convolution with ReLU of the
  coarser map, bilinearly upsampled ×2 (half-pixel centres), plus a 1×1 convolution with ReLU of the
  backbone map of that size, then one or two blocks;
- two 1×1 heads on the final 48×48×48 map: one face logit and 16 regression values per cell.

TensorFlow's ``SAME`` padding is reproduced exactly (stride-2 layers pad one pixel on the bottom and
right only). Weights: ``realface/face/data/blazeface_full_range.safetensors``, written once from the
``.tflite`` file by ``scripts/convert_blazeface.py`` (its float16 values kept; computed in float32).
Equivalence with the official TFLite runtime: ``tests/face/test_blazeface.py`` against
``tests/data/blazeface_reference.npz``.

Input: RGB ``[N, 3, 192, 192]`` float32 scaled to ``[-1, 1]`` (:func:`preprocess`). Output: face
logits ``[N, 2304]`` and regressions ``[N, 2304, 16]`` for the 48 × 48 anchors in row-major order
(:func:`anchor_centres`). Regression values are in input pixels (of 192): box centre offset
``(dx, dy)`` from the anchor centre, box size ``(w, h)``, then six keypoints as offsets ``(dx, dy)``
from the anchor centre: the subject's right eye, left eye, nose tip, mouth centre, right ear
tragion, left ear tragion (image left to right for a frontal face: right eye first).
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from realface.errors import CheckpointError
from realface.utils.weightfile import state_dict_mismatch

__all__ = [
    "INPUT_SIZE",
    "NUM_ANCHORS",
    "KEYPOINTS",
    "BlazeBlock",
    "BlazeFace",
    "PyramidLevel",
    "anchor_centres",
    "load_blazeface",
    "preprocess",
]

INPUT_SIZE = 192
"""Side of the square network input in pixels."""

GRID = 48
NUM_ANCHORS = GRID * GRID
"""One anchor per cell of the 48 × 48 output map."""

KEYPOINTS = ("right_eye", "left_eye", "nose_tip", "mouth_centre", "right_ear", "left_ear")
"""The six keypoints in output order (the subject's right and left)."""

# (in, bottleneck, out, stride) of the backbone blocks, in order.
_BACKBONE = (
    (32, 8, 32, 1), (32, 8, 32, 1),
    (32, 12, 48, 2), (48, 12, 48, 1), (48, 16, 64, 1),
    (64, 24, 96, 2), (96, 32, 128, 1), (128, 32, 128, 1),
    (128, 36, 144, 2), (144, 48, 192, 1), (192, 64, 256, 1),
    (256, 96, 384, 2), (384, 96, 384, 1), (384, 96, 384, 1), (384, 96, 384, 1),
)  # fmt: skip
# Indices of the backbone blocks whose outputs feed the pyramid: 48, 24 and 12 cells per side.
_TAPS = (4, 7, 10)
# (coarse channels, lateral channels, out channels, bottleneck, blocks) per pyramid level, coarse to fine.
_PYRAMID = ((384, 256, 96, 48, 2), (96, 128, 64, 32, 2), (64, 64, 48, 24, 1))


def _pad_same(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow ``SAME`` padding of ``x`` ``[N, C, H, W]`` for a square kernel (extra pixel bottom/right)."""
    _, _, h, w = x.shape
    pad_h = max((-(-h // stride) - 1) * stride + kernel - h, 0)
    pad_w = max((-(-w // stride) - 1) * stride + kernel - w, 0)
    return F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))


class BlazeBlock(nn.Module):
    """Two depthwise-separable convolutions with a residual: ``relu(x' + pw2(dw2(relu(pw1(dw1(x))))))``.

    ``x'`` is ``x`` (max-pooled 2×2 when ``stride`` is 2), zero-padded to ``out_channels`` channels.
    """

    def __init__(self, in_channels: int, bottleneck: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        if stride not in (1, 2) or out_channels < in_channels:
            raise ValueError(f"BlazeBlock: bad stride {stride} or channels {in_channels} -> {out_channels}")
        self.stride = stride
        self.pad_channels = out_channels - in_channels
        # Stride 1: TensorFlow's SAME is one pixel on each side; stride 2 pads bottom/right in forward.
        self.dw1 = nn.Conv2d(in_channels, in_channels, 3, stride, padding=2 - stride, groups=in_channels)
        self.pw1 = nn.Conv2d(in_channels, bottleneck, 1)
        self.dw2 = nn.Conv2d(bottleneck, bottleneck, 3, padding=1, groups=bottleneck)
        self.pw2 = nn.Conv2d(bottleneck, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dw1(_pad_same(x, 3, 2) if self.stride == 2 else x)  # [N, Cin, H/s, W/s]
        y = F.relu(self.pw1(y), inplace=True)  # [N, B, H/s, W/s]
        y = self.pw2(self.dw2(y))  # [N, Cout, H/s, W/s]
        skip = F.max_pool2d(x, 2) if self.stride == 2 else x  # [N, Cin, H/s, W/s]
        if self.pad_channels:  # the skip, zero-padded in channels, adds to the first Cin channels only
            y[:, : skip.shape[1]] += skip
        else:
            y += skip
        return F.relu(y, inplace=True)


class PyramidLevel(nn.Module):
    """One top-down step: ``blocks(up2(relu(top(coarse))) + relu(lateral(fine)))``."""

    def __init__(self, coarse: int, lateral: int, out_channels: int, bottleneck: int, blocks: int) -> None:
        super().__init__()
        self.top = nn.Conv2d(coarse, out_channels, 1)
        self.lateral = nn.Conv2d(lateral, out_channels, 1)
        self.blocks = nn.Sequential(
            *(BlazeBlock(out_channels, bottleneck, out_channels) for _ in range(blocks))
        )

    def forward(self, coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
        top = F.relu(self.top(coarse), inplace=True)  # [N, C, h, w]
        top = F.interpolate(top, size=fine.shape[-2:], mode="bilinear", align_corners=False)  # [N, C, 2h, 2w]
        return self.blocks(top + F.relu(self.lateral(fine), inplace=True))  # [N, C, 2h, 2w]


class BlazeFace(nn.Module):
    """BlazeFace full-range: ``[N, 3, 192, 192]`` in ``[-1, 1]`` → logits ``[N, 2304]``, regressions
    ``[N, 2304, 16]`` (see the module docstring for their meaning)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, stride=2)
        self.backbone = nn.ModuleList(BlazeBlock(*spec) for spec in _BACKBONE)
        self.pyramid = nn.ModuleList(PyramidLevel(*spec) for spec in _PYRAMID)
        self.classifier = nn.Conv2d(48, 1, 1)
        self.regressor = nn.Conv2d(48, 16, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = x.shape[0]
        if x.shape[1:] != (3, INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"BlazeFace expects [N, 3, {INPUT_SIZE}, {INPUT_SIZE}]; got {list(x.shape)}")
        x = F.relu(self.stem(_pad_same(x, 3, 2)), inplace=True)  # [N, 32, 96, 96]
        taps = []
        for i, block in enumerate(self.backbone):
            x = block(x)
            if i in _TAPS:
                taps.append(x)  # [N, 64, 48, 48], [N, 128, 24, 24], [N, 256, 12, 12]
        for level, fine in zip(self.pyramid, reversed(taps), strict=True):
            x = level(x, fine)  # [N, 96, 12, 12] → [N, 64, 24, 24] → [N, 48, 48, 48]
        logits = self.classifier(x).reshape(n, NUM_ANCHORS)  # [N, 2304]
        regress = self.regressor(x).permute(0, 2, 3, 1).reshape(n, NUM_ANCHORS, 16)  # [N, 2304, 16]
        return logits, regress


def anchor_centres() -> np.ndarray:
    """Anchor centres ``[2304, 2]`` ``(x, y)`` in input pixels (of 192): cell centres, row-major."""
    c = (np.arange(GRID, dtype=np.float64) + 0.5) * (INPUT_SIZE / GRID)  # [48]
    xs, ys = np.meshgrid(c, c)  # [48, 48] each
    return np.stack([xs.ravel(), ys.ravel()], axis=1)  # [2304, 2]


def preprocess(rgb: np.ndarray) -> torch.Tensor:
    """``[N, 192, 192, 3]`` (or one ``[192, 192, 3]``) uint8 RGB → ``[N, 3, 192, 192]`` float32 in ``[-1, 1]``."""
    a = np.asarray(rgb)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3) or a.dtype != np.uint8:
        raise ValueError(f"expected uint8 [N, {INPUT_SIZE}, {INPUT_SIZE}, 3]; got {a.shape} {a.dtype}")
    x = torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float()  # [N, 3, 192, 192]
    return x / 127.5 - 1.0


def load_blazeface(path: str | os.PathLike[str]) -> BlazeFace:
    """A :class:`BlazeFace` in eval mode with the weights of a safetensors file (float16 or float32).

    Raises:
        CheckpointError: the file is not a safetensors file with exactly this network's tensors.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(os.fspath(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    model = BlazeFace()
    problem = state_dict_mismatch(model.state_dict(), state)
    if problem:
        raise CheckpointError(f"{path}: not BlazeFace full-range weights: {problem}")
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval().requires_grad_(False)
