"""The CurricularFace identity embedder: IR weights through the file override and the weights registry,
its 112 px crop, normalised mirror-symmetric embeddings, and clear refusals when the weights are absent."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from realface.errors import CheckpointError, WeightsError
from realface.metrics import METRICS
from realface.metrics.files import match_pairs
from realface.metrics.identity import (
    CURRICULARFACE_CROP_BOX,
    EMBEDDERS,
    CurricularFaceEmbedder,
    IdentityConfig,
    NoFaceError,
    evaluate_identity,
)
from realface.nn.irse import IRBackbone
from tests.conftest import data_file
from tests.test_cli_apply import run_cli

TINY = (1, 1, 1, 1)


def _ir_file(path, units=TINY, seed: int = 0):
    torch.manual_seed(seed)
    torch.save(IRBackbone(units).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    return _ir_file(tmp_path_factory.mktemp("irse") / "CurricularFace_Backbone.pth")


@pytest.fixture(scope="module")
def aligned() -> np.ndarray:
    return np.asarray(Image.open(data_file("align", "astronaut_aligned_256.png")).convert("RGB"))


def test_registered_with_its_protocol():
    assert "curricularface" in EMBEDDERS and IdentityConfig(model="curricularface").model == "curricularface"
    assert METRICS["identity_curricularface"].module == "realface.metrics.identity"
    assert "112" in METRICS["identity_consistency_curricularface"].protocol


def test_crop_box_is_square_and_mirror_symmetric():
    left, top, right, bottom = CURRICULARFACE_CROP_BOX
    assert right - left == pytest.approx(bottom - top)
    assert left == pytest.approx(1 - right)  # centred across: a mirrored image gives the mirrored crop


def test_aligned_embedding_is_unit_length_and_mirror_symmetric(tiny_file, aligned):
    emb = CurricularFaceEmbedder(path=tiny_file, units=TINY)
    chip = emb.aligned_chip(aligned)
    assert chip.shape == (112, 112, 3) and chip.dtype == np.float32 and 0 <= chip.min() <= chip.max() <= 1
    e = emb.embed_aligned(aligned)
    assert e.shape == (512,) and e.dtype == np.float64
    assert np.linalg.norm(e) == pytest.approx(1.0, abs=1e-6)
    mirrored = emb.embed_aligned(np.ascontiguousarray(aligned[:, ::-1]))
    np.testing.assert_allclose(mirrored, e, atol=1e-5)
    other = np.asarray(Image.open(data_file("align", "replicant_face_00000_aligned_256.png")).convert("RGB"))
    assert np.linalg.norm(emb.embed_aligned(other) - e) > 1e-3


def test_photo_embedding_detects_aligns_and_refuses_a_blank(tiny_file):
    emb = CurricularFaceEmbedder(path=tiny_file, units=TINY)
    photo = np.asarray(Image.open(data_file("images", "astronaut.png")).convert("RGB"))
    e = emb.embed(photo, source="astronaut.png")
    assert e.shape == (512,) and np.linalg.norm(e) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(NoFaceError, match="blank.png"):
        emb.embed(np.full((200, 200, 3), 128, np.uint8), source="blank.png")


def test_a_file_of_another_architecture_is_refused_naming_it(tmp_path):
    bad = _ir_file(tmp_path / "small.pth", units=(1, 2, 1, 1))
    with pytest.raises(
        CheckpointError,
        match=r"small\.pth: not a CurricularFace IR \(1, 1, 1, 1\) backbone state dict \(.*unexpected \['body\.4\.",
    ):
        CurricularFaceEmbedder(path=bad, units=TINY)


def test_missing_weights_are_refused_with_the_registry_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("REALFACE_HOME", str(tmp_path / "home"))
    with pytest.raises(WeightsError, match="curricularface.*realface weights import curricularface"):
        CurricularFaceEmbedder()
    img = tmp_path / "a.png"
    Image.new("RGB", (64, 64)).save(img)
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    img.rename(tmp_path / "in" / "a.png")
    Image.new("RGB", (64, 64)).save(tmp_path / "out" / "a.png")
    with pytest.raises(WeightsError, match="curricularface"):
        evaluate_identity(
            match_pairs(tmp_path / "in", tmp_path / "out"), IdentityConfig(model="curricularface")
        )


def test_cli_refuses_curricularface_without_weights(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REALFACE_HOME", str(tmp_path / "home"))
    for d in ("in", "out"):
        (tmp_path / d).mkdir()
        Image.new("RGB", (64, 64)).save(tmp_path / d / "a.png")
    code = run_cli("eval", "identity", tmp_path / "in", tmp_path / "out", "--model", "curricularface")
    assert code == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "curricularface" in errors[0] and "Traceback" not in err


def test_ir101_through_the_weights_registry(tmp_path, monkeypatch):
    """A random IR-101 in the published layout, imported as the record ``curricularface``, is what the
    embedder loads by default, tensor for tensor (its forward pass is tested on the small models above)."""
    from realface.metrics.identity import _ir101
    from realface.weights import import_weight

    monkeypatch.setenv("REALFACE_HOME", str(tmp_path / "home"))
    src = _ir_file(tmp_path / "CurricularFace_Backbone.pth", units=(3, 13, 30, 3))
    import_weight("curricularface", src, link=True)
    try:
        net = CurricularFaceEmbedder()._net
        assert net.units == (3, 13, 30, 3) and not net.training
        want = torch.load(src, weights_only=True)
        got = net.state_dict()
        assert got.keys() == want.keys()
        assert all(torch.equal(got[k], want[k]) for k in want)
    finally:
        _ir101.cache_clear()


def test_pairs_report_under_the_curricularface_metric(tiny_file, tmp_path):
    photo = Image.open(data_file("images", "astronaut.png")).convert("RGB")
    for d in ("in", "out"):
        (tmp_path / d).mkdir()
    photo.save(tmp_path / "in" / "a.png")
    photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(tmp_path / "out" / "a.png")
    photo.save(tmp_path / "in" / "same.png")
    photo.save(tmp_path / "out" / "same.png")
    config = IdentityConfig(model="curricularface", progress=False)
    report = evaluate_identity(
        match_pairs(tmp_path / "in", tmp_path / "out"),
        config,
        CurricularFaceEmbedder(path=tiny_file, units=TINY),
    )
    s = report.summary()
    assert s["metric"] == "identity_curricularface" and s["evaluated"] == 2
    assert s["protocol"] == METRICS["identity_curricularface"].protocol
    same = next(p for p in report.pairs if p.name == "same.png")
    assert same.distance == 0.0 and same.cosine == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize(
    "name",
    ["astronaut_aligned_256.png", "astronaut_aligned_1024.png", "replicant_face_00000_aligned_256.png"],
)
def test_crop_box_puts_the_face_on_the_112px_five_point_template(name):
    """dlib's landmarks of the aligned fixtures, mapped into the 112 px crop, land near the usual 5-point
    template: eyes within 4 px, nose tip and mouth corners within 7 px (observed up to 5.3 for the replicant's
    turned nose and 6.4 for the astronaut's mouth). The landmarks come from the detection protocol of the
    identity metrics (dlib's HOG box), as in the embedder."""
    from realface.face.detect import DetectConfig, find_faces

    rgb = np.asarray(Image.open(data_file("align", name)).convert("RGB"))
    side = rgb.shape[0]
    lm = (
        find_faces(rgb, DetectConfig(detector="hog"))[0].landmarks_array / side
    )  # [68, 2] in units of the side
    left, top, right, bottom = CURRICULARFACE_CROP_BOX
    points = np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])  # [5, 2]
    in_crop = (points - [left, top]) / [right - left, bottom - top] * 112  # [5, 2]
    template = np.array([(38.29, 51.70), (73.53, 51.50), (56.03, 71.74), (41.55, 92.37), (70.73, 92.20)])
    np.testing.assert_allclose(in_crop[:2], template[:2], atol=4)
    np.testing.assert_allclose(in_crop[2:], template[2:], atol=7)
