"""`realface align` and `realface paste` end to end, including every error path (no tracebacks)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from realface.cli import main
from realface.face.align import Alignment
from realface.face.meta import FaceMeta
from realface.imageio import load_image
from tests.conftest import data_file
from tests.face.conftest import fixture_record, psnr


def run(argv, capsys):
    code = 0
    try:
        main(argv)
    except SystemExit as exc:
        code = exc.code or 0
    captured = capsys.readouterr()
    return code, captured.err


def test_align_then_paste_round_trip(tmp_path, capsys):
    src = data_file("images", "replicant_face_00000.jpg")
    args = ["--size", "256", "--exact", "--detector", "hog"]  # the fixtures' landmarks are HOG's
    code, err = run(["align", str(src), "-o", str(tmp_path / "al"), *args], capsys)
    assert code == 0, err
    crop = tmp_path / "al" / "replicant_face_00000_face0.png"
    official = np.asarray(Image.open(data_file("align", "replicant_face_00000_aligned_256.png")))
    assert psnr(np.asarray(Image.open(crop)), official) == float("inf")
    meta = FaceMeta.load(tmp_path / "al" / "replicant_face_00000_face0.json")
    rec = fixture_record("replicant_face_00000")
    assert meta.image_size == (640, 640) and meta.face_index == 0
    assert np.abs(meta.face.alignment.quad_array - np.array(rec["quad_tl_bl_br_tr"])).max() <= 1e-6
    assert list(meta.face.box) == rec["face_box"]
    raw = json.loads((tmp_path / "al" / "replicant_face_00000_face0.json").read_text())
    assert Alignment.from_dict(raw["face"]["alignment"]) == meta.face.alignment

    out = tmp_path / "out.png"  # lossless output, to compare pixels exactly
    code, err = run(
        ["paste", "--image", str(src), "--face", str(crop), "--meta", str(tmp_path / "al" / crop.stem) + ".json",
         "-o", str(out), "--mask", "landmarks"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    before, after = load_image(src), load_image(out)
    assert after.size == before.size and after.mode == before.mode
    changed = (after.pixels != before.pixels).any(-1)
    assert 0 < changed.sum() < 0.1 * changed.size
    out_jpg = tmp_path / "out.jpg"
    args = ["paste", "--image", str(src), "--face", str(crop), "--meta", str(crop.with_suffix(".json"))]
    code, err = run([*args, "-o", str(out_jpg)], capsys)
    assert code == 0, err
    assert Image.open(out_jpg).format == "JPEG"


def test_align_rgba_16bit_and_face_index(tmp_path, capsys):
    rgb = np.asarray(Image.open(data_file("images", "astronaut.png")).convert("RGB")).astype(np.uint16) * 257
    src = tmp_path / "astro16.png"
    from realface.imageio import LoadedImage, save_image

    alpha = np.full(rgb.shape[:2], 40000, np.uint16)
    save_image(LoadedImage(src, "PNG", rgb, alpha), src)
    code, err = run(
        ["align", str(src), "-o", str(tmp_path / "al"), "--size", "256", "--face-index", "0"], capsys
    )
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "al").iterdir()) == ["astro16_face0.json", "astro16_face0.png"]
    crop = tmp_path / "al" / "astro16_face0.png"
    out = tmp_path / "out.png"
    args = ["paste", "--image", str(src), "--face", str(crop), "--meta", str(crop.with_suffix(".json"))]
    code, err = run([*args, "-o", str(out)], capsys)
    assert code == 0, err
    result = load_image(out)
    assert result.mode == "RGBA;16"
    np.testing.assert_array_equal(result.alpha, alpha)
    assert (result.pixels != rgb).any(-1).sum() > 100


@pytest.mark.parametrize(
    "setup,args,message",
    [
        ("blank", [], "blank.png: no face"),
        ("astronaut", ["--min-face-size", "400"], "no face of at least 400 px"),
        ("astronaut", ["--face-index", "7"], "--face-index 7 requested but 2 face(s) found"),
        ("astronaut", ["--max-pixels", "200000"], "262,144 pixels exceeds the limit of 200,000"),
        ("text", [], "notes.jpg: not an image file"),
        ("missing", [], "nothing.png: file not found"),
    ],
)
def test_align_errors_are_one_line_and_write_nothing(tmp_path, capsys, setup, args, message):
    if setup == "blank":
        src = tmp_path / "blank.png"
        Image.new("RGB", (200, 200), "gray").save(src)
    elif setup == "astronaut":
        src = data_file("images", "astronaut.png")
    elif setup == "text":
        src = tmp_path / "notes.jpg"
        src.write_text("not an image")
    else:
        src = tmp_path / "nothing.png"
    out_dir = tmp_path / "al"
    code, err = run(["align", str(src), "-o", str(out_dir), "--detector", "hog", "--no-cnn", *args], capsys)
    assert code == 1
    assert message in err and "Traceback" not in err
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_paste_errors(tmp_path, capsys):
    src = data_file("images", "replicant_face_00000.jpg")
    code, err = run(["align", str(src), "-o", str(tmp_path), "--size", "256"], capsys)
    assert code == 0, err
    crop, meta = tmp_path / "replicant_face_00000_face0.png", tmp_path / "replicant_face_00000_face0.json"
    astro = data_file("images", "astronaut.png")
    wide = tmp_path / "wide.png"
    Image.new("RGB", (300, 200)).save(wide)
    cases = [
        ([str(astro), str(crop), str(meta)], "made for a 640x640 image"),
        ([str(src), str(wide), str(meta)], "wide.png: an aligned face must be square"),
        ([str(src), str(crop), str(crop)], "not a realface face metadata file"),
        ([str(src), str(crop), str(tmp_path / "none.json")], "cannot read face metadata"),
    ]
    for (image, face, meta_path), message in cases:
        out = tmp_path / "out.png"
        code, err = run(
            ["paste", "--image", image, "--face", face, "--meta", meta_path, "-o", str(out)], capsys
        )
        assert code == 1 and message in err and "Traceback" not in err, err
        assert not out.exists()
    code, err = run(
        ["paste", "--image", str(src), "--face", str(crop), "--meta", str(meta), "-o", str(src)], capsys
    )
    assert code == 1 and "refusing to overwrite the input" in err
    code, err = run(
        ["paste", "--image", str(src), "--face", str(crop), "--meta", str(meta), "-o", str(tmp_path / "o.png"),
         "--mask", "hull"],
        capsys,
    )  # fmt: skip
    assert code == 1 and "--mask" in err


def test_align_detector_options(tmp_path, capsys):
    src = data_file("images", "astronaut.png")
    code, err = run(["align", str(src), "-o", str(tmp_path / "al"), "--size", "256"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "al").iterdir()) == [
        "astronaut_face0.json",
        "astronaut_face0.png",
    ]
    face = json.loads((tmp_path / "al" / "astronaut_face0.json").read_text())["face"]
    assert face["detector"] == "blazeface" and face["score"] > 0.9  # the mission patch is not a face
    FaceMeta.load(tmp_path / "al" / "astronaut_face0.json")
    code, err = run(
        ["align", str(src), "-o", str(tmp_path / "b"), "--threshold", "0.99", "--min-face", "40"], capsys
    )
    assert code == 1 and "astronaut.png: no face of at least 40 px found" in err and "threshold 0.99" in err
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())
    code, err = run(["align", str(src), "-o", str(tmp_path / "c"), "--detector", "mtcnn"], capsys)
    assert code != 0 and "unknown detector 'mtcnn'" in err and "Traceback" not in err
