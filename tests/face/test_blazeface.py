"""The BlazeFace full-range port against the official TFLite runtime's outputs (tests/data/blazeface_reference.npz)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import realface.face
from realface.errors import CheckpointError
from realface.nn.blazeface import NUM_ANCHORS, BlazeFace, anchor_centres, load_blazeface, preprocess
from tests.conftest import data_file

WEIGHTS = Path(realface.face.__file__).parent / "data" / "blazeface_full_range.safetensors"


@pytest.fixture(scope="module")
def model():
    return load_blazeface(WEIGHTS)


@pytest.fixture(scope="module")
def reference():
    with np.load(data_file("blazeface_reference.npz")) as ref:
        return {k: ref[k] for k in ref.files}


def test_port_matches_the_official_runtime(model, reference):
    """Tolerances: logits within 1e-3 absolute, regressions within 2e-3 input pixels (of 192).
    Both run the same float16 weights in float32; measured differences are about 1e-5 and 2e-4."""
    assert list(reference["names"]) == ["astronaut", "avatar_mirrored", "small_face_tile"]
    with torch.no_grad():
        logits, regress = model(preprocess(reference["inputs"]))  # [3, 2304], [3, 2304, 16]
    assert logits.shape == (3, NUM_ANCHORS) and regress.shape == (3, NUM_ANCHORS, 16)
    np.testing.assert_allclose(logits.numpy(), reference["logits"], rtol=0, atol=1e-3)
    np.testing.assert_allclose(regress.numpy(), reference["regressors"], rtol=0, atol=2e-3)


def test_reference_holds_a_confident_face_on_each_input(reference):
    """The fixture itself is meaningful: each input has one clearly detected face."""
    scores = 1.0 / (1.0 + np.exp(-reference["logits"]))  # [3, 2304]
    assert (scores.max(axis=1) > 0.75).all()
    assert (scores < 0.1).mean() > 0.99


def test_anchor_centres_are_cell_centres():
    a = anchor_centres()
    assert a.shape == (NUM_ANCHORS, 2)
    np.testing.assert_allclose(a[0], [2.0, 2.0])
    np.testing.assert_allclose(a[1], [6.0, 2.0])  # row-major: x varies fastest
    np.testing.assert_allclose(a[-1], [190.0, 190.0])


def test_preprocess_and_input_checks():
    x = preprocess(np.array([[[0, 255, 127]]], np.uint8).repeat(192, 0).repeat(192, 1))
    assert x.shape == (1, 3, 192, 192)
    np.testing.assert_allclose(x[0, :, 0, 0].numpy(), [-1.0, 1.0, 127 / 127.5 - 1], atol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        preprocess(np.zeros((100, 100, 3), np.uint8))
    with pytest.raises(ValueError, match="expects"):
        BlazeFace()(torch.zeros(1, 3, 128, 128))


def test_every_parameter_receives_a_gradient():
    net = BlazeFace()
    logits, regress = net(torch.randn(2, 3, 192, 192))
    (logits.sum() + regress.sum()).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_loading_refuses_other_files(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        load_blazeface(bad)
    from safetensors.torch import save_file

    save_file({"stem.weight": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not BlazeFace"):
        load_blazeface(tmp_path / "other.safetensors")
