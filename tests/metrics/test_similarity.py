"""LPIPS-VGG and L2 of image pairs: protocol (resize, range), per-pair failures, `realface eval similarity`."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from realface.errors import ConfigError
from realface.metrics.files import match_pairs
from realface.metrics.similarity import (
    SimilarityConfig,
    evaluate_similarity,
    l2_distance,
    prepare_image,
)
from realface.nn.lpips import load_lpips_vgg
from tests._helpers import random_vgg16_file
from tests.metrics.conftest import smooth_images
from tests.test_cli_apply import run_cli


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    return random_vgg16_file(tmp_path_factory.mktemp("vgg") / "vgg16.pth")


def test_prepare_image_area_downsamples_to_256_in_minus_one_to_one():
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 1, size=(1024, 1024, 3)).astype(np.float32)
    x = prepare_image(img, 256)
    assert x.shape == (1, 3, 256, 256)
    block_mean = img.reshape(256, 4, 256, 4, 3).mean(axis=(1, 3))  # [256, 256, 3], the 4x4 box filter
    np.testing.assert_allclose(x[0].permute(1, 2, 0).numpy(), block_mean * 2 - 1, atol=1e-6)
    small = prepare_image(img[:100, :100], 256)  # enlarged, not an error
    assert small.shape == (1, 3, 256, 256) and small.min() >= -1 and small.max() <= 1
    native = prepare_image(img[:40, :60], 0)
    assert native.shape == (1, 3, 40, 60)


def test_l2_is_the_mean_squared_error_in_minus_one_to_one():
    black = prepare_image(np.zeros((64, 64, 3), np.float32), 64)
    grey = prepare_image(np.full((64, 64, 3), 0.5, np.float32), 64)
    assert l2_distance(black, grey).tolist() == [1.0]  # (−1 − 0)² in [-1, 1]; 0.25 in [0, 1]
    assert l2_distance(grey, grey).tolist() == [0.0]
    with pytest.raises(ValueError, match="one shape"):
        l2_distance(black, grey[..., :32])


@pytest.fixture
def pair_folders(tmp_path):
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    outputs.mkdir()
    a, b, c = smooth_images(3, size=300, seed=3)
    for name, im in (("same.png", a), ("other.png", b)):
        Image.fromarray(im).save(inputs / name)
    Image.fromarray(a).save(outputs / "same.png")
    Image.fromarray(c).save(outputs / "other.png")
    Image.fromarray(a).save(inputs / "wide.png")
    Image.fromarray(np.concatenate([a, a], axis=1)).save(outputs / "wide.png")  # 600x300: other framing
    (inputs / "broken.png").write_bytes(b"not a png")
    Image.fromarray(a).save(outputs / "broken.png")
    return inputs, outputs


def test_pairs_identical_different_and_failed(pair_folders, vgg_file):
    config = SimilarityConfig(device="cpu", lpips_vgg=vgg_file, batch_size=2, progress=False)
    report = evaluate_similarity(match_pairs(*pair_folders), config)
    by_name = {p.name: p for p in report.pairs}
    assert by_name["same.png"].lpips == pytest.approx(0.0, abs=1e-6) and by_name["same.png"].l2 == 0.0
    other = by_name["other.png"]
    assert other.lpips > 0.01 and other.l2 > 0.01
    assert "aspect ratio" in by_name["wide.png"].error and "wide.png" in by_name["wide.png"].error
    assert "broken.png" in by_name["broken.png"].error and by_name["broken.png"].lpips is None

    # the values are LPIPS and MSE of the 256 px, [-1, 1] images
    lpips = load_lpips_vgg("cpu", vgg_path=vgg_file)
    x = prepare_image(np.asarray(Image.open(other.input), np.float32) / 255, 256)
    y = prepare_image(np.asarray(Image.open(other.output), np.float32) / 255, 256)
    with torch.no_grad():
        assert other.lpips == pytest.approx(float(lpips(x, y)), rel=1e-5)
    assert other.l2 == pytest.approx(float(((x - y) ** 2).mean()), rel=1e-6)

    s = report.summary()
    assert (s["pairs"], s["evaluated"], s["failed"]) == (4, 2, 2)
    assert s["mean_lpips"] == pytest.approx((other.lpips + by_name["same.png"].lpips) / 2)
    assert "256x256" in s["protocol"] and "[-1,1]" in s["protocol"]


def test_config_rejects_sizes_lpips_cannot_take():
    with pytest.raises(ConfigError, match="16"):
        SimilarityConfig(size=8)


def test_cli_similarity_writes_table_json_and_csv(pair_folders, vgg_file, tmp_path, capsys):
    out_json, out_csv = tmp_path / "sim.json", tmp_path / "sim.csv"
    args = ["--lpips-vgg", vgg_file, "--device", "cpu", "--no-progress", "--json", out_json, "--csv", out_csv]
    assert run_cli("eval", "similarity", *pair_folders, *args) == 0
    screen = capsys.readouterr().out
    assert "other.png" in screen and "protocol:" in screen
    doc = json.loads(out_json.read_text())
    assert doc["summary"]["evaluated"] == 2
    rows = list(csv.DictReader(out_csv.open()))
    assert {r["name"] for r in rows} == {"same.png", "other.png", "wide.png", "broken.png"}
    same = next(r for r in rows if r["name"] == "same.png")
    assert float(same["l2"]) == 0.0 and same["error"] == ""
    assert run_cli("eval", "similarity", *pair_folders, "--size", "8", "--lpips-vgg", vgg_file) == 1
    assert "at least 16" in capsys.readouterr().err
