"""``realface study create``: pairing by relative path, hidden method names, crops, the manifest."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from realface.errors import ConfigError
from realface.study import CreateConfig, Study, create_study, pair_folders
from tests.conftest import data_file
from tests.robustness._cli import assert_refused, run_realface, snapshot
from tests.study._make import KEYS, METHODS, make_methods


def test_pairs_by_relative_path_without_suffix_and_lists_mismatches(tmp_path):
    folders = make_methods(tmp_path, extra="tops/only_here")
    pairs, mismatches = pair_folders(list(zip(METHODS, folders, strict=True)))
    assert sorted(pairs) == sorted(KEYS)
    assert pairs["tops/c"][METHODS[0]].name == "c.png" and pairs["tops/c"][METHODS[1]].name == "c.jpg"
    assert mismatches == [f"tops/only_here: missing in {METHODS[1]}, {METHODS[2]}"]


def test_two_files_with_one_name_are_refused(tmp_path):
    (folder,) = make_methods(tmp_path, methods=("zebramethod",))
    Image.new("RGB", (8, 8)).save(folder / "a.jpg")  # beside a.png
    with pytest.raises(ConfigError, match="a.jpg and a.png|a.png and a.jpg"):
        pair_folders([("zebramethod", folder)])


def test_full_images_study_hides_method_names(tmp_path):
    folders = make_methods(tmp_path / "in", extra="lonely")
    config = CreateConfig(
        name="Catalogue test", methods=tuple(zip(METHODS, folders, strict=True)), crop="full", seed=7
    )
    result = create_study(config, tmp_path / "s")
    assert result.mismatches == ("lonely: missing in quokkamethod, narwhalmethod",)
    study = Study.load(tmp_path / "s")
    assert study.seed == 7 and study.methods == METHODS and len(study.items) == len(KEYS)
    assert sorted(i.key for i in study.items) == sorted(KEYS)
    for item in study.items:
        assert sorted(item.candidates.values()) == sorted(METHODS)
        for code, method in item.candidates.items():
            path = study.candidate_path(item, code)
            assert method not in path.name and path.is_file()
            pixels = np.asarray(Image.open(path))
            assert pixels.shape == (40, 48, 3)  # full image, not enlarged
            level = 60 + 60 * METHODS.index(method)  # the method's colour, as made above
            assert abs(float(pixels.mean()) - (level + 9.5)) < 3
            assert not Image.open(path).info.get("exif")
    # Method names are only in the manifest, never in a file name below items/.
    names = " ".join(str(p.relative_to(tmp_path / "s")) for p in (tmp_path / "s" / "items").rglob("*"))
    assert not any(m in names for m in METHODS)


def test_face_crops_by_detection(tmp_path):
    src = np.asarray(Image.open(data_file("images", "replicant_face_00000.jpg")).convert("RGB"))
    for i, name in enumerate(("zebramethod", "quokkamethod")):
        (tmp_path / name).mkdir()
        Image.fromarray(np.clip(src.astype(int) + 10 * i, 0, 255).astype(np.uint8)).save(
            tmp_path / name / "p.png"
        )
    config = CreateConfig(
        name="faces", methods=(("zebramethod", tmp_path / "zebramethod"), ("quokkamethod", tmp_path / "quokkamethod")),
        size=64, seed=1,
    )  # fmt: skip
    study = create_study(config, tmp_path / "s").study
    (item,) = study.items
    crops = [np.asarray(Image.open(study.candidate_path(item, c))) for c in item.candidates]
    assert all(c.shape == (64, 64, 3) for c in crops)
    from realface.face import find_faces

    left, top, right, bottom = find_faces(src)[0].box
    side = 2.0 * max(right + 1 - left, bottom + 1 - top)
    assert side < min(src.shape[:2])  # a crop, not the whole image
    expect = Image.fromarray(src).resize(
        (64, 64), Image.Resampling.LANCZOS,
        box=((left + right + 1) / 2 - side / 2, (top + bottom + 1) / 2 - side / 2,
             (left + right + 1) / 2 + side / 2, (top + bottom + 1) / 2 + side / 2),
    )  # fmt: skip
    zebra = next(c for c, m in item.candidates.items() if m == "zebramethod")
    got = np.asarray(Image.open(study.candidate_path(item, zebra))).astype(int)
    assert np.abs(got - np.asarray(expect).astype(int)).mean() < 2


def test_face_crops_from_alignment_metadata(tmp_path):
    from realface.face import AlignConfig, FaceMeta, align_face, find_faces

    src = np.asarray(Image.open(data_file("images", "replicant_face_00000.jpg")).convert("RGB"))
    face = find_faces(src)[0]
    aligned = align_face(src, face.landmarks_array, AlignConfig(output_size=256))
    meta = tmp_path / "meta"
    meta.mkdir()
    FaceMeta("p.png", (src.shape[1], src.shape[0]), 0, face.with_alignment(aligned.alignment)).save(
        meta / "p_face0.json"
    )
    for name in ("zebramethod", "quokkamethod"):
        (tmp_path / name).mkdir()
        Image.fromarray(src).save(tmp_path / name / "p.png")
    config = CreateConfig(
        name="faces", methods=(("zebramethod", tmp_path / "zebramethod"), ("quokkamethod", tmp_path / "quokkamethod")),
        meta=meta, margin=1.0, size=64, seed=1,
    )  # fmt: skip
    study = create_study(config, tmp_path / "s").study
    (item,) = study.items
    quad = np.array(aligned.alignment.quad)
    box = (quad[:, 0].min(), quad[:, 1].min(), quad[:, 0].max(), quad[:, 1].max())
    side = max(box[2] - box[0], box[3] - box[1])  # margin 1: the quad's bounding square
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    pad = int(np.ceil(side))
    padded = Image.fromarray(np.pad(src, ((pad, pad), (pad, pad), (0, 0)), mode="edge"))
    expect = padded.resize((64, 64), Image.Resampling.LANCZOS, box=(cx - side / 2 + pad, cy - side / 2 + pad, cx + side / 2 + pad, cy + side / 2 + pad))  # fmt: skip
    for code in item.candidates:
        assert np.array_equal(np.asarray(Image.open(study.candidate_path(item, code))), np.asarray(expect))


def test_cli_create_and_refusals(tmp_path):
    folders = make_methods(tmp_path / "in", methods=METHODS[:2], extra="lonely")
    args = ["study", "create", "--name", "cli", "--method", f"{METHODS[0]}={folders[0]}", "--method", f"{METHODS[1]}={folders[1]}", "--crop", "full"]  # fmt: skip
    run = run_realface(*args, "-o", tmp_path / "s", "--seed", "3")
    assert run.returncode == 0, run.stderr
    assert "4 item(s), 2 methods, seed 3, 1 unpaired" in run.stdout
    assert "not paired: lonely: missing in quokkamethod" in run.stderr
    manifest = json.loads((tmp_path / "s" / "study.json").read_text())
    assert manifest["format"] == "realface.study/1" and manifest["seed"] == 3
    before = snapshot(tmp_path / "in", tmp_path / "s")
    assert_refused(run_realface(*args, "-o", tmp_path / "s"), "not an empty folder", before)
    assert_refused(
        run_realface(*args[:6], "-o", tmp_path / "t"), "at least two --method", before, [tmp_path / "t"]
    )
    assert_refused(
        run_realface(*args, "-o", tmp_path / "u", "--crop", "head"), "--crop", before, [tmp_path / "u"]
    )
    assert_refused(
        run_realface(*args, "--method", f"x={tmp_path / 'nope'}", "-o", tmp_path / "v"), "nope", before
    )
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "study.json").write_text('{"format": "other"}')
    assert_refused(run_realface("study", "report", bad), "study.json", snapshot(bad))


def test_serving_an_incomplete_study_is_refused(tmp_path):
    folders = make_methods(tmp_path / "in", methods=METHODS[:2])
    config = CreateConfig(
        name="gone", methods=tuple(zip(METHODS[:2], folders, strict=True)), crop="full", seed=2
    )
    study = create_study(config, tmp_path / "s").study
    item = study.items[1]
    missing = study.candidate_path(item, next(iter(item.candidates)))
    missing.unlink()
    run = run_realface("study", "serve", tmp_path / "s", "--port", "1")
    assert_refused(run, missing.name, snapshot(tmp_path / "s"))
