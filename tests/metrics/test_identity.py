"""Identity similarity with dlib's real face-recognition model (shipped in face_recognition_models)."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from realface.errors import ConfigError
from realface.metrics.files import match_pairs, read_pairs_csv
from realface.metrics.identity import (
    DLIB_SAME_PERSON,
    EMBEDDERS,
    DlibFaceEmbedder,
    IdentityConfig,
    NoFaceError,
    cosine_similarity,
    evaluate_identity,
)
from tests.conftest import data_file
from tests.test_cli_apply import run_cli


@pytest.fixture(scope="module")
def embedder() -> DlibFaceEmbedder:
    return DlibFaceEmbedder()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return np.asarray(Image.open(data_file("images", "astronaut.png")).convert("RGB"))


def test_same_photo_flipped_copy_and_another_face(embedder, astronaut):
    replicant = np.asarray(Image.open(data_file("images", "replicant_face_00000.jpg")).convert("RGB"))
    e = embedder.embed(astronaut)
    assert e.shape == (128,)
    same = embedder.embed(astronaut.copy())
    assert np.linalg.norm(e - same) == 0.0
    assert cosine_similarity(e, same) == pytest.approx(1.0, abs=1e-12)
    flipped = embedder.embed(np.ascontiguousarray(astronaut[:, ::-1]))
    d_flip = np.linalg.norm(e - flipped)
    assert 0 < d_flip < DLIB_SAME_PERSON  # observed 0.19
    d_other = np.linalg.norm(e - embedder.embed(replicant))
    assert d_other > DLIB_SAME_PERSON  # observed 0.67: a rendered face of someone else
    assert cosine_similarity(e, flipped) > cosine_similarity(e, embedder.embed(replicant))


def test_chip_is_dlibs_150px_aligned_crop(embedder, astronaut):
    chip = embedder.chip(astronaut)
    assert chip.shape == (150, 150, 3) and chip.dtype == np.uint8
    with pytest.raises(NoFaceError, match="blank.png"):
        embedder.chip(np.full((200, 200, 3), 128, np.uint8), source="blank.png")


def test_cosine_similarity_matches_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=128), rng.normal(size=128)
    assert cosine_similarity(a, b) == pytest.approx(a @ b / np.sqrt((a @ a) * (b @ b)))
    with pytest.raises(ValueError, match="zero"):
        cosine_similarity(a, np.zeros(128))


@pytest.fixture
def pair_folders(tmp_path, astronaut):
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    (inputs / "sub").mkdir(parents=True)
    (outputs / "sub").mkdir(parents=True)
    Image.fromarray(astronaut).save(inputs / "a.png")
    Image.fromarray(astronaut).save(outputs / "a.png")
    Image.fromarray(astronaut).save(inputs / "sub" / "flip.png")
    Image.fromarray(np.ascontiguousarray(astronaut[:, ::-1])).save(outputs / "sub" / "flip.jpg", quality=95)
    Image.fromarray(astronaut).save(inputs / "other.png")
    shutil.copy(data_file("images", "replicant_face_00000.jpg"), outputs / "other.jpg")
    Image.fromarray(astronaut).save(inputs / "noface.png")
    Image.fromarray(np.full((128, 128, 3), 90, np.uint8)).save(outputs / "noface.png")
    Image.fromarray(astronaut).save(inputs / "lonely.png")  # no partner: reported, not compared
    return inputs, outputs


def test_pairs_by_relative_path_with_a_failed_pair_recorded(pair_folders, embedder):
    pairs = match_pairs(*pair_folders)
    assert [p.name for p in pairs.pairs] == ["a.png", "noface.png", "other.png", "sub/flip.png"]
    assert pairs.unmatched_inputs == ("lonely.png",)
    report = evaluate_identity(pairs, IdentityConfig(progress=False), embedder=embedder)
    by_name = {p.name: p for p in report.pairs}
    assert by_name["a.png"].distance == 0.0 and by_name["a.png"].same_person
    assert by_name["sub/flip.png"].same_person and by_name["other.png"].same_person is False
    failed = by_name["noface.png"]
    assert failed.cosine is None and "noface.png" in failed.error and "no face" in failed.error
    s = report.summary()
    cos = [by_name[n].cosine for n in ("a.png", "other.png", "sub/flip.png")]
    assert (s["pairs"], s["evaluated"], s["failed"], s["unmatched"]) == (4, 3, 1, 1)
    assert s["mean_cosine"] == pytest.approx(np.mean(cos))
    assert s["median_cosine"] == pytest.approx(np.median(cos))
    assert s["same_person_rate"] == pytest.approx(2 / 3)


def test_pairs_csv_and_missing_files(tmp_path, pair_folders, embedder):
    inputs, outputs = pair_folders
    table = tmp_path / "pairs.csv"
    table.write_text(
        f"input,output\n{inputs / 'a.png'},{outputs / 'sub' / 'flip.jpg'}\nin/a.png,out/gone.png\n"
    )
    pairs = read_pairs_csv(table)
    assert pairs.pairs[1].output == tmp_path / "out" / "gone.png"  # relative to the CSV's folder
    report = evaluate_identity(pairs, IdentityConfig(progress=False), embedder=embedder)
    assert report.pairs[0].same_person and "gone.png" in report.pairs[1].error
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\nx,y\n")
    with pytest.raises(ConfigError, match="bad.csv.*'input' and 'output'"):
        read_pairs_csv(bad)


def test_config_and_registry():
    assert "dlib" in EMBEDDERS
    with pytest.raises(ConfigError, match="unknown identity model 'arcface'"):
        IdentityConfig(model="arcface")


def test_cli_identity_writes_table_json_and_csv(pair_folders, tmp_path, capsys):
    out_json, out_csv = tmp_path / "id.json", tmp_path / "id.csv"
    code = run_cli("eval", "identity", *pair_folders, "--no-progress", "--json", out_json, "--csv", out_csv)
    assert code == 0
    screen = capsys.readouterr().out
    assert "sub/flip.png" in screen and "identity_dlib" in screen
    doc = json.loads(out_json.read_text())
    assert doc["summary"]["evaluated"] == 3 and doc["summary"]["failed"] == 1
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["name"] for r in rows] == [p["name"] for p in doc["pairs"]]
    row = next(r for r in rows if r["name"] == "other.png")
    assert float(row["distance"]) > DLIB_SAME_PERSON and row["same_person"] == "False"
    assert next(r for r in rows if r["name"] == "noface.png")["cosine"] == ""

    assert run_cli("eval", "identity", pair_folders[0]) == 1  # one folder and no --pairs
    assert "two folders" in capsys.readouterr().err
