"""Shared fixtures of the metric tests: a random FID Inception in the real key layout, small image folders."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from realface.metrics.fid import InceptionExtractor
from realface.nn.inception import load_fid_inception


@functools.cache
def _torchvision_shapes() -> tuple[tuple[str, tuple[int, ...]], ...]:
    import torchvision

    net = torchvision.models.inception_v3(
        weights=None, aux_logits=False, num_classes=1008, init_weights=False
    )
    return tuple((k, tuple(v.shape)) for k, v in net.state_dict().items())


def torchvision_fid_layout() -> dict[str, tuple[int, ...]]:
    """Key names and shapes of torchvision's Inception-v3 with the FID file's head (1008 classes, no aux
    logits), in state-dict order."""
    return dict(_torchvision_shapes())


def random_inception_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under torchvision's key names (the layout of pt_inception-2015-12-05-6726825d.pth),
    scaled so that activations stay O(1) through the 94 conv layers; no ``num_batches_tracked`` (the real
    file has none)."""
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key, shape in torchvision_fid_layout().items():
        if key.endswith("num_batches_tracked"):
            continue
        if key.endswith("conv.weight"):
            fan_in = shape[1] * shape[2] * shape[3]
            state[key] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
        elif key.endswith("bn.weight"):
            state[key] = 1 + 0.1 * torch.randn(shape, generator=g)
        elif key.endswith("bn.bias"):
            state[key] = 0.1 * torch.randn(shape, generator=g)
        elif key.endswith("running_mean"):
            state[key] = 0.05 * torch.randn(shape, generator=g)
        elif key.endswith("running_var"):
            state[key] = 1 + 0.1 * torch.rand(shape, generator=g)
        else:  # fc.weight, fc.bias
            state[key] = 0.01 * torch.randn(shape, generator=g)
    return state


@pytest.fixture(scope="session")
def random_inception_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("inception") / "pt_inception-random.pth"
    torch.save(random_inception_state(), path)
    return path


@pytest.fixture(scope="session")
def extractor(random_inception_file) -> InceptionExtractor:
    model = load_fid_inception("cpu", random_inception_file)
    return InceptionExtractor(model, identity="random-test-inception", device=torch.device("cpu"))


def smooth_images(n: int, size: int = 48, seed: int = 0) -> list[np.ndarray]:
    """``n`` smooth random colour images, uint8 ``[size, size, 3]``, values kept inside (30, 225)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        coarse = rng.uniform(30, 225, size=(6, 6, 3)).astype(np.uint8)
        out.append(np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC)))
    return out


def write_folder(folder: Path, images: list[np.ndarray], fmt: str = "png") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        Image.fromarray(im).save(folder / f"img{i:02d}.{fmt}")
    return folder
