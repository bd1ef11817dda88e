"""dlib detection and landmarks with the real models shipped by face_recognition_models."""

from __future__ import annotations

import numpy as np
import pytest

from realface.errors import FaceError
from realface.face import detect
from realface.face.detect import DetectConfig, Detection, Face, detect_faces, find_faces
from tests.face.conftest import FIXTURES, fixture_record


@pytest.mark.parametrize("name", list(FIXTURES))
def test_largest_face_box_and_landmarks_match_fixture(detected, name):
    rec = fixture_record(name)
    _, faces = detected[name]
    assert faces[0].detector == "hog"
    assert list(faces[0].box) == rec["face_box"]
    np.testing.assert_array_equal(faces[0].landmarks_array, np.array(rec["landmarks_68"]))


def test_faces_sorted_largest_first(detected):
    _, faces = detected["astronaut"]
    areas = [(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) for f in faces]
    assert len(faces) >= 2 and areas == sorted(areas, reverse=True)


def test_min_face_size_drops_small_faces(detected):
    image, faces = detected["astronaut"]
    smallest = min(min(f.box[2] - f.box[0], f.box[3] - f.box[1]) + 1 for f in faces)
    kept = detect_faces(
        image.rgb8(), DetectConfig(detector="hog", min_face_size=smallest + 1, cnn_fallback=False)
    )
    assert len(kept) == len(faces) - 1
    with pytest.raises(FaceError, match=r"astro\.png: no face of at least 1000 px"):
        find_faces(
            image.rgb8(),
            DetectConfig(detector="hog", min_face_size=1000, cnn_fallback=False),
            source="astro.png",
        )


def test_cnn_detector_finds_the_face_hog_found(detected):
    image, faces = detected["replicant_face_00000"]
    found = detect._run_cnn(image.rgb8(), DetectConfig(upsample=0))
    assert found and found[0].detector == "cnn" and found[0].score > 0
    hog, cnn = np.array(faces[0].box, float), np.array(found[0].box, float)
    centre = lambda b: (b[:2] + b[2:]) / 2  # noqa: E731
    assert np.linalg.norm(centre(hog) - centre(cnn)) < 0.25 * (hog[2] - hog[0])


def test_falls_back_to_cnn_when_hog_finds_nothing(detected, monkeypatch):
    class NoFaces:
        def run(self, *args):
            return [], [], []

    image, _ = detected["replicant_face_00000"]
    monkeypatch.setattr(detect, "_hog_detector", lambda: NoFaces())
    faces = find_faces(image.rgb8(), DetectConfig(detector="hog", upsample=0))
    assert faces[0].detector == "cnn"
    with pytest.raises(FaceError, match="HOG detector"):
        find_faces(image.rgb8(), DetectConfig(detector="hog", upsample=0, cnn_fallback=False))


def test_blank_image_has_no_face():
    with pytest.raises(FaceError, match="blank.png: no face"):
        find_faces(np.full((200, 200, 3), 128, np.uint8), DetectConfig(upsample=0), source="blank.png")


def test_face_record_round_trip_and_validation(detected):
    _, faces = detected["replicant_face_00000"]
    assert Face.from_dict(faces[0].to_dict()) == faces[0]
    with pytest.raises(ValueError, match="68 landmarks"):
        Face(box=(0, 0, 1, 1), score=1.0, detector="hog", landmarks=((0.0, 0.0),))
    with pytest.raises(ValueError, match="not a face record"):
        Face.from_dict({"box_ltrb": [1, 2, 3, 4]})
    assert Detection((10, 10, 19, 29), 1.0, "hog").area == 10 * 20
    with pytest.raises(ValueError, match="uint8 RGB"):
        detect_faces(np.zeros((10, 10, 3), np.float32))


@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (8, 8), (8, 300), (16, 4000)])
def test_images_too_small_for_dlib_have_no_face(shape):
    """dlib's CNN detector fails on images of a few pixels (and on the downscaled copy of a long thin
    image); such images are answered without it, and find_faces names the file."""
    rgb = np.zeros((*shape, 3), np.uint8)
    config = DetectConfig(upsample=0, min_face_size=0)
    assert detect_faces(rgb, config, source="tiny.png") == []
    with pytest.raises(FaceError, match=r"tiny\.png: no face of at least \d+ px found"):
        find_faces(rgb, config, source="tiny.png")


def test_dlib_errors_become_face_errors_without_dlib_text(detected, monkeypatch):
    class Failing:
        def __call__(self, *args):
            raise RuntimeError("\n\nError detected at line 2957.\nError detected in file cpu_dlib.cpp.\n")

        run = __call__

    image, _ = detected["replicant_face_00000"]
    monkeypatch.setattr(detect, "_hog_detector", lambda: Failing())
    with pytest.raises(FaceError, match=r"^photo\.png: the HOG face detector could not") as info:
        detect_faces(image.rgb8(), DetectConfig(detector="hog"), source="photo.png")
    monkeypatch.undo()
    monkeypatch.setattr(detect, "_shape_predictor", lambda: Failing())
    with pytest.raises(FaceError, match=r"^photo\.png: the landmark predictor could not") as info2:
        find_faces(image.rgb8(), DetectConfig(detector="hog"), source="photo.png")
    for exc in (info.value, info2.value):
        assert "cpp" not in str(exc) and "line" not in str(exc) and exc.__cause__ is None
