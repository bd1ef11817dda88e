"""Tiny models for the web UI tests: the fixture pickle's G (as G_real) and G_ema (as G_rendering), and a
random VGG16 for LPIPS, written once per session."""

from __future__ import annotations

import pytest

from realface.checkpoints import convert_pickle
from tests._helpers import random_vgg16_file
from tests.conftest import data_file


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("ui_models")
    pkl = data_file("stylegan2-ada", "sg2ada_tiny64.pkl")
    return {
        "real": convert_pickle(pkl, d / "real.safetensors", only=("G",)),
        "rendering": convert_pickle(pkl, d / "rendering.safetensors", only=("G_ema",)),
        "vgg": random_vgg16_file(d / "vgg16.pth"),
    }
