"""Shared fixtures of the training tests: a tiny dataset in a "rendering style" and a random VGG16."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from realface.checkpoints import load_generator
from tests._helpers import random_vgg16_file
from tests.conftest import data_file


def rendering_style(img: np.ndarray) -> np.ndarray:
    """A fixed, non-learned 'rendering style': posterise to 6 levels and shift the colours."""
    x = np.round(img.astype(np.float32) / 255 * 5) / 5
    x = np.clip(x * np.array([1.1, 0.95, 0.85]) + 0.05, 0, 1)
    return (x * 255).astype(np.uint8)


@pytest.fixture(scope="session")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    pkl = data_file("stylegan2-ada", "sg2ada_tiny64.pkl")
    G = load_generator(pkl, cache=False)
    data = root / "data"
    data.mkdir()
    rng = np.random.RandomState(0)
    with torch.no_grad():
        ws = G.mapping(torch.from_numpy(rng.randn(8, G.z_dim)).float(), None, truncation_psi=0.7)
        imgs = (G.synthesis(ws, noise_mode="const") * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    for i, im in enumerate(imgs.permute(0, 2, 3, 1).numpy()):
        Image.fromarray(rendering_style(im)).save(data / f"{i:03d}.png")
    vgg = random_vgg16_file(root / "vgg16.pth")
    return {"pkl": str(pkl), "data": str(data), "vgg": str(vgg), "root": root}
