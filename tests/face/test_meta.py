"""The schema check of the ``--meta`` JSON that ``realface paste`` reads: every hostile or broken value
is refused with a message naming the file and the key, before anything is computed from it."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from PIL import Image

from realface.cli import main
from realface.errors import FaceError
from realface.face.align import Alignment
from realface.face.detect import Face
from realface.face.meta import FaceMeta
from tests.conftest import data_file
from tests.face.conftest import fixture_record


def valid_meta(output_size: int = 256) -> dict:
    """The astronaut fixture's face as `realface align` records it (landmarks and quad from dlib)."""
    rec = fixture_record("astronaut")
    size = tuple(rec["image_size"])
    al = Alignment.from_quad(np.asarray(rec["quad_tl_bl_br_tr"]), output_size, size)
    lms = tuple((float(x), float(y)) for x, y in rec["landmarks_68"])
    face = Face(tuple(rec["face_box"]), 1.25, "hog", lms, al)
    return FaceMeta(rec["image"], size, 0, face).to_dict()


def _quad(d: dict) -> list:
    return d["face"]["alignment"]["quad_tl_bl_br_tr"]


def _scaled_quad(d: dict, s: float) -> None:
    q = np.asarray(_quad(d))
    c = q.mean(axis=0)
    d["face"]["alignment"]["quad_tl_bl_br_tr"] = ((q - c) * s + c).tolist()


def _set(path: tuple, value):
    def edit(d: dict) -> None:
        obj = d
        for k in path[:-1]:
            obj = obj[k]
        obj[path[-1]] = value

    return edit


def _nan_landmark(d):
    d["face"]["landmarks_68"][30][0] = float("nan")


def _nan_quad(d):
    _quad(d)[2][1] = float("nan")


def _swap_quad(d):
    q = _quad(d)
    q[1], q[2] = q[2], q[1]  # TL, BR, BL, TR: a bow tie


def _collapse_quad(d):
    d["face"]["alignment"]["quad_tl_bl_br_tr"] = [list(_quad(d)[0])] * 4


def _flat_quad(d):
    d["face"]["alignment"]["quad_tl_bl_br_tr"] = [
        [100.0, 100.0],
        [200.0, 100.0],
        [300.0, 100.0],
        [400.0, 100.0],
    ]


def _drop(*path):
    def edit(d):
        obj = d
        for k in path[:-1]:
            obj = obj[k]
        del obj[path[-1]]

    return edit


# (edit of a valid meta dict, text the message must contain)
CASES = {
    "nan_landmark": (_nan_landmark, "face.landmarks_68[30].x"),
    "huge_landmark": (_set(("face", "landmarks_68", 5), [1e300, 3.0]), "face.landmarks_68[5]"),
    "landmark_count": (lambda d: d["face"]["landmarks_68"].pop(), "68 (x, y) points"),
    "landmark_text": (_set(("face", "landmarks_68", 0), ["1", "2"]), "must be a number"),
    "nan_quad": (_nan_quad, "face.alignment.quad_tl_bl_br_tr[2].y"),
    "quad_1e4": (lambda d: _scaled_quad(d, 1e4), "far outside the 512x512 image"),
    "quad_collapsed": (_collapse_quad, "degenerate"),
    "quad_flat": (_flat_quad, "not a proper quadrilateral"),
    "quad_bow_tie": (_swap_quad, "not a proper quadrilateral"),
    "output_size_1e6": (_set(("face", "alignment", "output_size"), 1_000_000), "output_size = 1e+06"),
    "output_size_float": (_set(("face", "alignment", "output_size"), 256.5), "must be an integer"),
    "output_size_zero": (_set(("face", "alignment", "output_size"), 0), "output_size = 0"),
    "output_size_bool": (_set(("face", "alignment", "output_size"), True), "must be an integer"),
    "output_size_text": (_set(("face", "alignment", "output_size"), "256"), "must be an integer"),
    "matrix_nan": (_set(("face", "alignment", "aligned_from_image", 1, 1), float("inf")), "[1][1]"),
    "matrix_shape": (_set(("face", "alignment", "aligned_from_image"), [[1, 0, 0]]), "3x3"),
    "image_size_negative": (_set(("image_size",), [-5, 512]), "image_size width"),
    "image_size_huge": (_set(("image_size",), [512, 10**9]), "image_size height"),
    "alignment_size_differs": (_set(("face", "alignment", "image_size"), [640, 640]), "differs"),
    "box_inverted": (_set(("face", "box_ltrb"), [265, 166, 175, 76]), "right < left"),
    "box_far": (_set(("face", "box_ltrb"), [0, 0, 10**7, 10]), "face.box_ltrb[2]"),
    "detector": (_set(("face", "detector"), {"x": 1}), "face.detector"),
    "score_nan": (_set(("face", "score"), float("nan")), "face.score"),
    "face_index": (_set(("face_index",), -1), "'face_index'"),
    "no_alignment": (_set(("face", "alignment"), None), "never aligned"),
    "missing_quad": (_drop("face", "alignment", "quad_tl_bl_br_tr"), "lacks the key(s) 'quad_tl_bl_br_tr'"),
    "missing_face": (_drop("face"), "lacks the key(s) 'face'"),
    "face_is_list": (_set(("face",), [1, 2]), "'face' must be a JSON object, got a list"),
    "unknown_key": (_set(("face", "colour"), 3), "unknown key(s) 'colour'"),
    "image_name": (_set(("image",), 7), "'image'"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_meta_is_refused_naming_file_and_key(tmp_path, case):
    edit, message = CASES[case]
    d = copy.deepcopy(valid_meta())
    edit(d)
    path = tmp_path / "face0.json"
    path.write_text(json.dumps(d))  # json writes NaN / Infinity literals as Python reads them
    with pytest.raises(FaceError) as info:
        FaceMeta.load(path)
    text = str(info.value)
    assert text.startswith(f"{path}: "), text
    assert message in text, text


def test_raw_json_tricks_are_refused(tmp_path):
    good = json.dumps(valid_meta())
    texts = {
        "deep": "[" * 100_000 + "]" * 100_000,  # the C parser would recurse until it crashes
        "inf_literal": good.replace('"score": 1.25', '"score": 1e400'),
        "nan_literal": good.replace('"score": 1.25', '"score": NaN'),
        "many_digits": good.replace('"face_index": 0', '"face_index": ' + "9" * 5000),
        "top_list": "[1, 2, 3]",
        "big": " " * (2 << 20) + good,
    }
    assert texts["inf_literal"] != good and texts["many_digits"] != good
    for name, text in texts.items():
        path = tmp_path / f"{name}.json"
        path.write_text(text)
        with pytest.raises(FaceError, match="^" + str(path).replace("\\", "\\\\") + ": ") as info:
            FaceMeta.load(path)
        assert "metadata" in str(info.value), (name, info.value)


def test_valid_meta_loads_exactly_and_pastes(tmp_path, capsys):
    d = valid_meta()
    path = tmp_path / "astronaut_face0.json"
    path.write_text(json.dumps(d, indent=1))
    meta = FaceMeta.load(path)
    assert meta.to_dict() == d
    for size in (256, 512, 1024):  # every size `realface align` writes passes the check
        FaceMeta.from_dict(valid_meta(size))
    # The same file drives a real paste (the refusals above are not an artefact of the setup).
    face = tmp_path / "new_face.png"
    Image.fromarray(np.full((256, 256, 3), 128, np.uint8)).save(face)
    out = tmp_path / "out.png"
    argv = ["paste", "--image", str(data_file("images", "astronaut.png")), "--face", str(face),
            "--meta", str(path), "-o", str(out), "--mask", "landmarks"]  # fmt: skip
    try:
        main(argv)
    except SystemExit as exc:
        assert not exc.code, capsys.readouterr().err
    assert out.is_file()
