"""The BlazeFace detector: each case class of benchmarks/bench_detect.py on small canvases, the threshold,
images without faces, the keypoint check of the landmarks, the detector registry and the weight record."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest

import realface.face
from realface.errors import FaceError
from realface.face import detect
from realface.face.align import ffhq_quad
from realface.face.detect import (
    BLAZEFACE_SURE,
    BLAZEFACE_THRESHOLD,
    DETECTORS,
    DetectConfig,
    Detection,
    detect_faces,
    dlib_box_from_blazeface,
    find_faces,
    keypoint_disagreement,
)
from realface.imageio import load_image
from realface.weights import get_record, weight_path
from tests.conftest import data_file
from tests.face.conftest import fixture_record

ROOT = Path(__file__).resolve().parents[2]
W, H = 900, 1200  # small canvases: the tiles, levels and merging of a large one, at a fraction of the cost


def _bench():
    path = ROOT / "benchmarks" / "bench_detect.py"
    if not path.is_file():
        pytest.fail(f"missing {path}")
    if "bench_detect" not in sys.modules:
        spec = importlib.util.spec_from_file_location("bench_detect", path)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules["bench_detect"] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    return sys.modules["bench_detect"]


B = _bench()

CASES = {
    "plain": B.Case("plain", "plain", (B.Placed("astronaut", 60), B.Placed("avatar", 130))),
    "busy": B.Case("busy", "busy", (B.Placed("astronaut", 90), B.Placed("avatar", 160))),
    "mirrored": B.Case("mirrored", "busy", (B.Placed("astronaut", 80, "mirror"), B.Placed("avatar", 140, "mirror"))),
    "rotated30": B.Case("rotated30", "busy", (B.Placed("astronaut", 110, "rot+30"), B.Placed("avatar", 130, "rot-30"))),
    "darkened": B.Case("darkened", "busy", (B.Placed("astronaut", 100, "dark"), B.Placed("avatar", 150, "dark"))),
    "side_lit": B.Case("side_lit", "busy", (B.Placed("astronaut", 100, "sidelit"), B.Placed("avatar", 150, "sidelit"))),
    "turned30": B.Case("turned30", "busy", (B.Placed("astronaut", 120, "yaw30"), B.Placed("avatar", 150, "yaw30"))),
    "turned45": B.Case("turned45", "busy", (B.Placed("astronaut", 150, "yaw45"), B.Placed("avatar", 150, "yaw45"))),
    "astronaut_patch": B.Case("astronaut_patch", "busy", astronaut_photo=120),
    "patches_only": B.Case("patches_only", "plain", patches=(90, 150)),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CASES))
def test_every_face_found_and_nothing_else(name):
    case = CASES[name]
    canvas, truth = B.build(case, W, H, seed=7)
    if truth:
        faces = find_faces(canvas, source=f"{name}.png")
        found, missed, false = B.score([f.box for f in faces], truth)
        assert (found, missed, false) == (len(truth), 0, 0), [(f.box, f.score) for f in faces]
        assert all(f.detector == "blazeface" and f.score >= BLAZEFACE_THRESHOLD for f in faces)
    else:
        assert detect_faces(canvas) == []
        with pytest.raises(
            FaceError, match=rf"^{name}\.png: no face of at least 48 px found \(tried the BlazeFace"
        ):
            find_faces(canvas, source=f"{name}.png")


def _smiley_canvas() -> np.ndarray:
    badge = load_image(data_file("images", "smiley_badge.png")).rgb8()  # [300, 300, 3]
    canvas = np.full((600, 600, 3), 100, np.uint8)
    canvas[:300, :300] = badge
    return canvas


def test_smiley_print_refused_by_the_second_stage(caplog):
    canvas = _smiley_canvas()
    (smiley,) = detect_faces(canvas, DetectConfig(sure_score=0.0))  # BlazeFace alone takes it for a face
    assert BLAZEFACE_THRESHOLD <= smiley.score < BLAZEFACE_SURE
    assert not detect.dlib_confirms(canvas, smiley)
    with caplog.at_level(logging.INFO, logger="realface.face.detect"):
        assert detect_faces(canvas, source="print.png") == []
    assert any(
        r.getMessage().startswith(f"print.png: a face candidate at box {list(smiley.box)} scored")
        and "neither dlib detector confirms it" in r.getMessage()
        for r in caplog.records
    )
    with pytest.raises(FaceError, match=r"^print\.png: no face"):
        find_faces(canvas, source="print.png")


@pytest.mark.parametrize("effect", ["dark", "sidelit"])
def test_darkened_and_side_lit_faces_pass_the_second_stage(effect):
    """The rendered avatar darkened to 35 % or side-lit scores under the sure score, so dlib must
    confirm it; it does, and the face is kept with its landmarks."""
    rgb, alpha, box = B.face_patch(B.Placed("avatar", 150, effect))
    canvas = np.full((*alpha.shape, 3), 100, np.uint8)
    B.paste(canvas, rgb, alpha, 0, 0)
    (face,) = find_faces(canvas, source=f"{effect}.png")
    assert BLAZEFACE_THRESHOLD <= face.score < BLAZEFACE_SURE
    assert B.score([face.box], [box]) == (1, 0, 0)
    assert [d.box for d in detect_faces(canvas, DetectConfig(sure_score=0.0))] == [face.box]


def test_image_without_faces():
    canvas, truth = B.build(B.Case("no_face", "busy"), W, H, seed=3)
    assert truth == [] and detect_faces(canvas) == []
    blank = np.full((300, 300, 3), 128, np.uint8)
    assert detect_faces(blank) == []


def test_threshold_refuses_weaker_faces_and_logs_them(caplog):
    rgb = load_image(data_file("images", "astronaut.png")).rgb8()
    (face,) = detect_faces(rgb)  # the mission patch, a second HOG "face", is no BlazeFace candidate
    assert face.score > 0.9 and len(face.keypoints or ()) == 6
    with caplog.at_level(logging.INFO, logger="realface.face.detect"):
        assert detect_faces(rgb, DetectConfig(threshold=0.99), source="astro.png") == []
    assert any(
        r.getMessage().startswith(
            f"astro.png: a face candidate at box {list(face.box)} scored {face.score:.3f}"
        )
        for r in caplog.records
    )
    with pytest.raises(FaceError, match=r"astro\.png: no face .*threshold 0\.99"):
        find_faces(rgb, DetectConfig(threshold=0.99), source="astro.png")


@pytest.mark.parametrize("name", ["astronaut", "replicant_face_00000"])
def test_blazeface_landmarks_give_the_fixture_alignment(name):
    """The 68 points fitted on BlazeFace's box give the FFHQ quad of the fixture (fitted on HOG's box)
    to within 2 % of its side, and the mapped box is within 8 % of HOG's."""
    rec = fixture_record(name)
    file = {"astronaut": "astronaut.png", "replicant_face_00000": "replicant_face_00000.jpg"}[name]
    (face,) = find_faces(load_image(data_file("images", file)).rgb8())
    quad, _ = ffhq_quad(face.landmarks_array)
    ref_quad, qsize = ffhq_quad(np.array(rec["landmarks_68"]))
    assert np.abs(quad - ref_quad).max() < 0.02 * qsize
    box, ref = np.array(face.box, float), np.array(rec["face_box"], float)
    assert np.abs(box - ref).max() < 0.08 * (ref[2] - ref[0])


def test_dlib_box_from_blazeface():
    # side 100 · 0.85 = 85; centre (149.5, 249.5 + 0.016 · 85 = 250.86); corners ± 42
    assert dlib_box_from_blazeface(np.array([100.0, 200.0, 200.0, 300.0])) == (108, 209, 192, 293)


def test_keypoint_check_rejects_a_bad_fit(caplog, monkeypatch):
    rgb = load_image(data_file("images", "astronaut.png")).rgb8()
    (good,) = detect_faces(rgb)
    lm = detect.find_landmarks(rgb, good)
    assert keypoint_disagreement(lm, good) < 0.1
    base = keypoint_disagreement(lm, good)
    kps = np.array(good.keypoints) + [0.0, 0.6 * good.width]  # every keypoint 0.6 box widths lower
    bad = Detection(good.box, good.score, "blazeface", tuple(map(tuple, kps)))
    assert 0.6 - base <= keypoint_disagreement(lm, bad) <= 0.6 + base
    assert keypoint_disagreement(lm, Detection(good.box, 1.0, "hog")) == 0.0
    monkeypatch.setattr(detect, "_run_blazeface", lambda rgb, config, source: [bad])
    monkeypatch.setitem(
        DETECTORS, "blazeface", detect.dataclasses.replace(DETECTORS["blazeface"], run=detect._run_blazeface)
    )
    with caplog.at_level(logging.WARNING, logger="realface.face.detect"):
        with pytest.raises(FaceError, match="agree with the detector's keypoints"):
            find_faces(rgb, source="astro.png")
    assert any("disagree with the detector's keypoints by 0.6" in r.getMessage() for r in caplog.records)
    assert find_faces(rgb, DetectConfig(keypoint_tolerance=0.7))[0].box == good.box


def test_weighted_nms_merges_overlaps_by_score():
    scores = np.array([0.6, 0.9, 0.8])
    boxes = np.array([[0.0, 0, 10, 10], [2, 0, 12, 10], [50, 50, 60, 60]])
    kps = np.zeros((3, 6, 2))
    kps[0], kps[1] = 1.0, 2.0
    out = detect._weighted_nms(scores, boxes, kps, 0.3)
    assert [s for s, _, _ in out] == [0.9, 0.8]
    np.testing.assert_allclose(out[0][1], [1.2, 0, 11.2, 10])  # (0.6·0 + 0.9·2) / 1.5
    np.testing.assert_allclose(out[0][2], 1.6)
    np.testing.assert_allclose(out[1][1], boxes[2])


def test_tiles_cover_the_image_with_the_stated_overlap():
    config = DetectConfig()
    rgb = np.random.default_rng(0).integers(0, 256, (2000, 1300, 3), dtype=np.uint8)
    tiles = detect._tiles(rgb, config)
    finest = [t for t in tiles if t.fx == 3]
    xs, ys = sorted({t.x for t in finest}), sorted({t.y for t in finest})
    assert xs[0] == 0 and ys[0] == 0 and xs[-1] + 192 == -(-1300 // 3) and ys[-1] + 192 == -(-2000 // 3)
    assert max(np.diff(xs)) <= 192 - 48 and max(np.diff(ys)) <= 192 - 48  # 144 px of 576 = 48 of 192
    assert {t.fx for t in tiles[:-1]} == {3, 6}  # 667 and 334 px reduced; at 12, 167 px fit one input
    assert tiles[-1].inner == (False, False, False, False) and tiles[-1].fy == pytest.approx(2000 / 192)
    assert all(t.image.shape == (192, 192, 3) and t.image.dtype == np.uint8 for t in tiles)


def test_detector_registry_and_config():
    assert set(DETECTORS) == {"blazeface", "hog", "cnn"}
    assert DetectConfig().detector == "blazeface" and DetectConfig().score_threshold == BLAZEFACE_THRESHOLD
    assert DetectConfig(detector="hog").score_threshold == 0.0
    assert DetectConfig(detector="hog", threshold=0.5).score_threshold == 0.5
    with pytest.raises(ValueError, match="unknown detector 'mtcnn'"):
        DetectConfig(detector="mtcnn")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tiles"):
        DetectConfig(tile_size=500)
    with pytest.raises(ValueError, match="finite"):
        DetectConfig(threshold=float("nan"))
    assert DetectConfig().sure_score == BLAZEFACE_SURE == 0.8
    with pytest.raises(ValueError, match="invalid DetectConfig"):
        DetectConfig(sure_score=1.5)
    for spec in DETECTORS.values():
        for weight_id in spec.weights:
            get_record(weight_id)


def test_weight_record_is_the_shipped_file():
    rec = get_record("blazeface-full-range")
    assert rec.license.startswith("Apache-2.0") and not rec.non_commercial
    assert rec.package == "realface" and rec.download_urls == ()
    path = weight_path("blazeface-full-range", download=False)
    shipped = Path(realface.face.__file__).parent / "data" / "blazeface_full_range.safetensors"
    assert path.resolve() == shipped.resolve()
    data = path.read_bytes()
    assert len(data) == rec.size and hashlib.sha256(data).hexdigest() == rec.sha256
    meta = json.loads((shipped.parent / "blazeface_full_range.json").read_text())
    assert meta["weights_sha256"] == rec.sha256 and meta["tflite_sha256"] in rec.source
    assert meta["license"].startswith("Apache-2.0")
