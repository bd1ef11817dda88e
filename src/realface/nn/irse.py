"""IR ("improved residual") face-recognition backbones, as trained by CurricularFace (IR-101).

The layout follows the published ``CurricularFace_Backbone.pth`` state dict key for key
(reference/weights.md §6), so that file loads with ``strict=True``:

- ``input_layer``: ``0`` conv 3→64 3×3 (no bias), ``1`` BatchNorm2d(64), ``2`` PReLU(64);
- ``body.N`` (N = 0 … sum(units) − 1): a bottleneck unit with ``res_layer`` = ``0`` BatchNorm2d(in),
  ``1`` conv in→depth 3×3, ``2`` PReLU(depth), ``3`` conv depth→depth 3×3 with the unit's stride,
  ``4`` BatchNorm2d(depth); and ``shortcut_layer`` = ``0`` conv in→depth 1×1 with the stride, ``1``
  BatchNorm2d(depth) when in ≠ depth, else a parameter-free stride-``s`` subsampling;
- four stages of depths 64, 128, 256, 512; the first unit of each stage has stride 2; IR-101 has
  :data:`IR101_UNITS` = (3, 13, 30, 3) units;
- ``output_layer``: ``0`` BatchNorm2d(512), ``1`` dropout, ``2`` flatten, ``3`` Linear(512·7·7, 512),
  ``4`` BatchNorm1d(512, affine=False).

Input: RGB ``[N, 3, 112, 112]`` normalised as ``(x - 0.5) / 0.5`` (x in [0, 1]); output: the 512-d
embedding before normalisation. :func:`embed_flip` is the evaluation protocol of CurricularFace's
validation code: the embedding of the image plus that of its horizontal mirror, l2-normalised.

This module imports no training code.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from realface.utils.weightfile import load_checked, read_state_dict, strip_prefix

__all__ = ["IR101_UNITS", "IRBackbone", "IR_INPUT_SIZE", "embed_flip", "load_ir101", "preprocess"]

IR101_UNITS = (3, 13, 30, 3)
"""Units per stage of IR-101 (``get_blocks(100)`` of CurricularFace's ``backbone/model_irse.py``)."""
IR_INPUT_SIZE = 112
IR_EMBEDDING_DIM = 512
_DEPTHS = (64, 128, 256, 512)


class _Subsample(nn.Module):
    """The identity shortcut of a unit whose input and output depths agree: every ``stride``-th pixel
    (a 1×1 max-pool with that stride); holds no parameters."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :: self.stride, :: self.stride]  # [N, C, ceil(H/s), ceil(W/s)]


class BottleneckIR(nn.Module):
    """One IR unit: ``res_layer(x) + shortcut_layer(x)`` (module docstring for the layout)."""

    def __init__(self, in_channel: int, depth: int, stride: int) -> None:
        super().__init__()
        self.shortcut_layer: nn.Module
        if in_channel == depth:
            self.shortcut_layer = _Subsample(stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channel, depth, 1, stride, bias=False), nn.BatchNorm2d(depth)
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channel),
            nn.Conv2d(in_channel, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)  # [N, depth, H/s, W/s]


class IRBackbone(nn.Module):
    """The IR backbone for 112×112 faces; ``units`` per stage (default IR-101's)."""

    def __init__(self, units: Sequence[int] = IR101_UNITS) -> None:
        super().__init__()
        if len(units) != 4 or any(u < 1 for u in units):
            raise ValueError(f"IR backbone: expected 4 stages of at least one unit, got {tuple(units)}")
        self.units = tuple(units)
        self.input_layer = nn.Sequential(
            nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64)
        )
        blocks: list[nn.Module] = []
        in_channel = 64
        for depth, n in zip(_DEPTHS, units, strict=True):
            for i in range(n):
                blocks.append(BottleneckIR(in_channel, depth, 2 if i == 0 else 1))
                in_channel = depth
        self.body = nn.Sequential(*blocks)
        side = IR_INPUT_SIZE // 16
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(512),
            nn.Dropout(),
            nn.Flatten(),
            nn.Linear(512 * side * side, IR_EMBEDDING_DIM),
            nn.BatchNorm1d(IR_EMBEDDING_DIM, affine=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings ``[N, 512]`` (not normalised) of faces ``[N, 3, 112, 112]`` already normalised."""
        if x.ndim != 4 or x.shape[1:] != (3, IR_INPUT_SIZE, IR_INPUT_SIZE):
            raise ValueError(f"IR backbone: expected [N, 3, 112, 112], got {tuple(x.shape)}")
        x = self.input_layer(x)  # [N, 64, 112, 112]
        x = self.body(x)  # [N, 512, 7, 7]
        return self.output_layer(x)  # [N, 512]


def preprocess(rgb: torch.Tensor) -> torch.Tensor:
    """RGB ``[N, 3, 112, 112]`` in [0, 1] → the network's input, ``(x - 0.5) / 0.5`` in [-1, 1]."""
    return (rgb - 0.5) / 0.5


def embed_flip(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``l2_normalise(model(x) + model(flip(x)))`` ``[N, 512]`` for network inputs ``x`` ``[N, 3, 112, 112]``:
    CurricularFace's evaluation protocol (flip test-time augmentation, util/utils.py). The result is the
    same for an image and its mirror."""
    emb = model(x) + model(torch.flip(x, dims=[3]))  # [N, 512]
    return F.normalize(emb, dim=1)


def load_ir101(
    path: str | os.PathLike, device: str | torch.device = "cpu", units: Sequence[int] = IR101_UNITS
) -> IRBackbone:
    """IR-101 with the weights of ``path`` (``CurricularFace_Backbone.pth`` or a safetensors copy),
    frozen, in eval mode. ``units``: units per stage (default IR-101's; fewer build small test models).

    The file is read by :func:`realface.utils.weightfile.read_state_dict` (``torch.load(weights_only=True)``;
    nothing in it is executed); a ``module.`` prefix on every key is removed; every key and shape must
    match (BatchNorm ``num_batches_tracked`` counters may be absent).

    Raises:
        CheckpointError: the file is unreadable or not an IR-101 state dict; the message names it.
    """
    state = strip_prefix(read_state_dict(path, "CurricularFace IR-101 weights"))
    model = IRBackbone(units)
    name = "IR-101" if tuple(units) == IR101_UNITS else f"IR {tuple(units)}"
    load_checked(model, state, str(path), f"a CurricularFace {name} backbone state dict")
    return model.eval().requires_grad_(False).to(device)
