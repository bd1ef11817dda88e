"""Shared fixtures of the face-pipeline tests: the fixture images, their detected faces, PSNR."""

from __future__ import annotations

import json

import numpy as np
import pytest

from realface.face import DetectConfig, find_faces
from realface.imageio import load_image
from tests.conftest import data_file

# (image file, landmarks fixture name, output sizes with an official crop in tests/data/align)
FIXTURES = {
    "astronaut": ("astronaut.png", (256, 1024)),
    "replicant_face_00000": ("replicant_face_00000.jpg", (256,)),
}


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(peak**2 / mse)


def fixture_record(name: str) -> dict:
    return json.loads(data_file("align", f"{name}_landmarks.json").read_text())


@pytest.fixture(scope="session")
def detected():
    """name -> (LoadedImage, faces) for the two fixture images, found by dlib's HOG detector as the
    fixtures were (dlib runs once per session)."""
    out = {}
    for name, (file, _) in FIXTURES.items():
        image = load_image(data_file("images", file))
        out[name] = (image, find_faces(image.rgb8(), DetectConfig(detector="hog"), source=file))
    return out
