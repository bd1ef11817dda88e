"""BiSeNet face parsing (19 CelebAMask-HQ classes), pure PyTorch, no I/O beyond a safe state-dict load.

The module names, parameter names and shapes follow zllrunning/face-parsing.PyTorch (whose
``79999_iter.pth`` is byte-identical to facexlib's ``parsing_bisenet.pth``), so that checkpoint loads
key for key with :func:`load_bisenet`: a ResNet-18 context path (``cp.resnet``), attention refinement
modules ``cp.arm16``/``cp.arm32``, heads ``cp.conv_head16``/``cp.conv_head32``/``cp.conv_avg``, the
feature fusion module ``ffm`` and three output heads ``conv_out`` (256 → 19), ``conv_out16`` and
``conv_out32`` (64 → 19). The spatial path of the paper is absent, as in the checkpoint; layer 2 of
the ResNet stands in for it. Nothing is downloaded at construction.

Input: RGB ``[N, 3, H, W]`` normalised with ImageNet mean/std (see :func:`preprocess`), 512 × 512 as
in training. Output: logits ``[N, 19, H, W]`` (bilinear, ``align_corners=True``, as upstream).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from realface.utils.weightfile import load_checked, read_state_dict, strip_prefix

__all__ = ["BiSeNet", "LABELS", "FACE_LABELS", "SKIN_LABELS", "load_bisenet", "preprocess"]

LABELS = (
    "background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
    "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat",
)  # fmt: skip
"""Class names by index (CelebAMask-HQ order used by the checkpoint)."""

FACE_LABELS = (1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 17)
"""The paper's paste-back mask: skin, brows, eyes, glasses, ears, nose, mouth, lips, hair."""

SKIN_LABELS = (1,)
"""Region used for colour statistics."""

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class ConvBNReLU(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, ks: int = 3, stride: int = 1, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, ks, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample = None
        if in_ch != out_ch or stride != 1:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = F.relu(self.bn1(self.conv1(x)))
        r = self.bn2(self.conv2(r))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(shortcut + r)


def _layer(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    return nn.Sequential(BasicBlock(in_ch, out_ch, stride), BasicBlock(out_ch, out_ch, 1))


class Resnet18(nn.Module):
    """ResNet-18 trunk returning the stride-8, -16 and -32 features (128, 256, 512 channels)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = _layer(64, 64, 1)
        self.layer2 = _layer(64, 128, 2)
        self.layer3 = _layer(128, 256, 2)
        self.layer4 = _layer(256, 512, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))  # [N, 64, H/2, W/2]
        x = F.max_pool2d(x, 3, 2, 1)  # [N, 64, H/4, W/4]
        x = self.layer1(x)
        feat8 = self.layer2(x)  # [N, 128, H/8, W/8]
        feat16 = self.layer3(feat8)  # [N, 256, H/16, W/16]
        feat32 = self.layer4(feat16)  # [N, 512, H/32, W/32]
        return feat8, feat16, feat32


class AttentionRefinement(nn.Module):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = ConvBNReLU(in_ch, out_ch, 3, 1, 1)
        self.conv_atten = nn.Conv2d(out_ch, out_ch, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)  # [N, C, h, w]
        atten = torch.sigmoid(
            self.bn_atten(self.conv_atten(feat.mean(dim=(2, 3), keepdim=True)))
        )  # [N,C,1,1]
        return feat * atten


class ContextPath(nn.Module):
    def __init__(self):
        super().__init__()
        self.resnet = Resnet18()
        self.arm16 = AttentionRefinement(256, 128)
        self.arm32 = AttentionRefinement(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128, 3, 1, 1)
        self.conv_head16 = ConvBNReLU(128, 128, 3, 1, 1)
        self.conv_avg = ConvBNReLU(512, 128, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feat8, feat16, feat32 = self.resnet(x)
        avg = self.conv_avg(feat32.mean(dim=(2, 3), keepdim=True))  # [N, 128, 1, 1]
        avg_up = F.interpolate(avg, size=feat32.shape[2:], mode="nearest")  # [N, 128, H/32, W/32]
        feat32_sum = self.arm32(feat32) + avg_up
        feat32_up = self.conv_head32(F.interpolate(feat32_sum, size=feat16.shape[2:], mode="nearest"))
        feat16_sum = self.arm16(feat16) + feat32_up  # [N, 128, H/16, W/16]
        feat16_up = self.conv_head16(F.interpolate(feat16_sum, size=feat8.shape[2:], mode="nearest"))
        return feat8, feat16_up, feat32_up  # [N,128,H/8,W/8], [N,128,H/8,W/8], [N,128,H/16,W/16]


class FeatureFusion(nn.Module):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.convblk = ConvBNReLU(in_ch, out_ch, 1, 1, 0)
        self.conv1 = nn.Conv2d(out_ch, out_ch // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(out_ch // 4, out_ch, 1, bias=False)

    def forward(self, fsp: torch.Tensor, fcp: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([fsp, fcp], dim=1))  # [N, C, h, w]
        atten = feat.mean(dim=(2, 3), keepdim=True)  # [N, C, 1, 1]
        atten = torch.sigmoid(self.conv2(F.relu(self.conv1(atten))))
        return feat * atten + feat


class BiSeNetOutput(nn.Module):
    def __init__(self, in_ch: int, mid_ch: int, n_classes: int):
        super().__init__()
        self.conv = ConvBNReLU(in_ch, mid_ch, 3, 1, 1)
        self.conv_out = nn.Conv2d(mid_ch, n_classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    """Face-parsing BiSeNet. ``forward`` returns ``(out, out16, out32)`` logits, each ``[N, 19, H, W]``."""

    def __init__(self, n_classes: int = 19):
        super().__init__()
        self.n_classes = n_classes
        self.cp = ContextPath()
        self.ffm = FeatureFusion(256, 256)
        self.conv_out = BiSeNetOutput(256, 256, n_classes)
        self.conv_out16 = BiSeNetOutput(128, 64, n_classes)
        self.conv_out32 = BiSeNetOutput(128, 64, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"BiSeNet expects [N, 3, H, W]; got {tuple(x.shape)}")
        size = x.shape[2:]
        feat8, feat_cp8, feat_cp16 = self.cp(x)
        fuse = self.ffm(feat8, feat_cp8)  # [N, 256, H/8, W/8]
        outs = (self.conv_out(fuse), self.conv_out16(feat_cp8), self.conv_out32(feat_cp16))
        return tuple(F.interpolate(o, size=size, mode="bilinear", align_corners=True) for o in outs)  # type: ignore[return-value]


def preprocess(rgb: torch.Tensor, size: int = 512) -> torch.Tensor:
    """RGB ``[N, 3, H, W]`` in [0, 1] → resized to ``size`` (bilinear) and ImageNet-normalised."""
    if rgb.shape[-2:] != (size, size):
        rgb = F.interpolate(rgb, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(_MEAN, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    std = torch.tensor(_STD, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    return (rgb - mean) / std


def load_bisenet(path: str | os.PathLike, device: str | torch.device = "cpu") -> BiSeNet:
    """Build :class:`BiSeNet` and load a plain state dict (``79999_iter.pth``) key for key.

    The file is read by :func:`realface.utils.weightfile.read_state_dict` (``torch.load(weights_only=True)``
    or safetensors): nothing in it is executed; a ``module.`` prefix on every key is removed. A checkpoint
    without BatchNorm ``num_batches_tracked`` counters (older PyTorch) is accepted; any other missing
    or unexpected key, or a shape mismatch, raises :class:`CheckpointError`.
    """
    state = strip_prefix(read_state_dict(path, "BiSeNet face-parsing weights"))
    model = BiSeNet(19)
    load_checked(model, state, str(path), "a BiSeNet face-parsing checkpoint")
    return model.eval().requires_grad_(False).to(device)
