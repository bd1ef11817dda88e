"""FACES.json: faces chosen by a person (``realface apply --faces``) read instead of detected, from
align's JSON or the simple ``realface.faces/1`` format, as a file or a folder; mismatches refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from realface.errors import FaceError
from realface.face import FaceMeta, align_face, find_faces
from realface.face.given import FACES_FORMAT, faces_files, load_given_faces
from realface.imageio import load_image
from tests.conftest import data_file

NAME = "replicant_face_00000.jpg"


@pytest.fixture(scope="module")
def image():
    return load_image(data_file("images", NAME))


@pytest.fixture(scope="module")
def fixture_face():
    """The official dlib HOG box and 68 points of the replicant face (tests/data/align)."""
    d = json.loads(data_file("align", "replicant_face_00000_landmarks.json").read_text())
    return d["face_box"], np.array(d["landmarks_68"], dtype=np.float64)


def _simple(tmp_path, faces, name=NAME, size=None, file="replicant_face_00000.faces.json"):
    d = {"format": FACES_FORMAT, "image": name, "faces": faces}
    if size is not None:
        d["image_size"] = size
    path = tmp_path / file
    path.write_text(json.dumps(d))
    return path


def test_a_given_box_gets_dlibs_68_points(tmp_path, image, fixture_face):
    box, official = fixture_face
    path = _simple(tmp_path, [{"box_ltrb": box}], size=list(image.size))
    (face,) = load_given_faces(path, image.path, image.size, image.rgb8())
    assert face.box == tuple(box) and face.detector == "given" and face.score == 1.0
    np.testing.assert_allclose(face.landmarks_array, official, atol=1.0)  # dlib's points are integers


def test_given_landmarks_are_used_as_they_are(tmp_path, image, fixture_face):
    _, official = fixture_face
    lms = (official + 0.25).tolist()
    path = _simple(tmp_path, [{"landmarks_68": lms, "score": 0.5}, {"box_ltrb": [10, 10, 90, 90]}])
    first, second = load_given_faces(tmp_path, image.path, image.size, image.rgb8())  # a folder
    np.testing.assert_array_equal(first.landmarks_array, official + 0.25)
    lo, hi = np.rint(official.min(0) + 0.25), np.rint(official.max(0) + 0.25)
    assert first.score == 0.5 and first.box == (*lo.astype(int), *hi.astype(int))  # the points' extent
    assert second.box == (10, 10, 90, 90)
    assert faces_files(tmp_path, image.path) == [path]


def test_aligns_json_files_in_a_folder_in_face_order(tmp_path, image):
    rgb = image.rgb8()
    (face,) = find_faces(rgb)
    aligned = align_face(rgb, face.landmarks_array)
    for i in (1, 0, 10):  # written out of order; read face0, face1, face10
        moved = face.with_alignment(aligned.alignment)
        FaceMeta(NAME, image.size, i, moved).save(tmp_path / f"replicant_face_00000_face{i}.json")
    got = load_given_faces(tmp_path, image.path, image.size, rgb)
    assert [f.landmarks for f in got] == [face.landmarks] * 3
    names = [p.name for p in faces_files(tmp_path, image.path)]
    assert names == [f"replicant_face_00000_face{i}.json" for i in (0, 1, 10)]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: _simple(p, [{"box_ltrb": [1, 1, 50, 50]}], name="other.jpg"), "made for the image 'other.jpg'"),
        (lambda p: _simple(p, [{"box_ltrb": [1, 1, 50, 50]}], size=[641, 640]), r"made for a \[641, 640\] image"),
        (lambda p: _simple(p, [{"box_ltrb": [1, 1, 1, 50]}]), r"faces\[0\].box_ltrb \[1, 1, 1, 50\] is empty"),
        (lambda p: _simple(p, [{"score": 1}]), r"faces\[0\] needs 'box_ltrb' or 'landmarks_68'"),
        (lambda p: _simple(p, [{"landmarks_68": [[1, 2]] * 5}]), "must be a list of 68"),
        (lambda p: _simple(p, []), "'faces' must be a list of 1 to"),
        (lambda p: (p / "replicant_face_00000.faces.json").write_text("{oops"), "not a faces file"),
        (lambda p: (p / "replicant_face_00000.faces.json").write_text('{"format": "x"}'), "expected format"),
    ],
)  # fmt: skip
def test_bad_or_mismatched_files_are_refused_with_one_line(tmp_path, image, make, message):
    make(tmp_path)
    with pytest.raises(FaceError, match=message) as info:
        load_given_faces(tmp_path, image.path, image.size, image.rgb8())
    assert "\n" not in str(info.value) and "replicant_face_00000.faces.json" in str(info.value)


def test_a_folder_without_a_file_for_the_image_or_with_both_kinds_is_refused(tmp_path, image):
    (tmp_path / "other_face0.json").write_text("{}")
    with pytest.raises(FaceError, match=r"no faces file for it in .* \(expected replicant_face_00000_face0"):
        faces_files(tmp_path, image.path)
    _simple(tmp_path, [{"box_ltrb": [1, 1, 50, 50]}])
    (tmp_path / "replicant_face_00000_face0.json").write_text("{}")
    with pytest.raises(FaceError, match="keep one kind"):
        faces_files(tmp_path, image.path)
    with pytest.raises(FaceError, match="no such faces file or folder"):
        faces_files(tmp_path / "missing", image.path)
