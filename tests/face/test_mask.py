"""Landmark and parsing masks in the aligned frame: coverage, erosion, feathering, configuration."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from realface.face.align import AlignConfig, align_face, apply_transform
from realface.face.mask import MaskConfig, build_mask, landmark_region, make_mask, parsing_region
from tests.face.conftest import fixture_record


@pytest.fixture(scope="module")
def aligned_landmarks():
    rec = fixture_record("astronaut")
    lm = np.array(rec["landmarks_68"])
    out = align_face(np.zeros((512, 512, 3), np.uint8), lm, AlignConfig(1024))
    return lm, out.alignment, apply_transform(out.alignment.matrix, lm)


def _at(mask: np.ndarray, pts_aligned: np.ndarray, n: int) -> np.ndarray:
    r = mask.shape[0]
    idx = np.rint((pts_aligned + 0.5) * r / n - 0.5).astype(int)
    return mask[idx[:, 1], idx[:, 0]]


def test_landmark_region_covers_the_face_and_the_forehead(aligned_landmarks):
    _, _, lm = aligned_landmarks
    cfg = MaskConfig(kind="landmarks")
    region = landmark_region(lm, 1024, cfg)
    assert region.shape == (256, 256) and region.dtype == bool
    assert _at(region, lm[27:68], 1024).all()  # nose, eyes, mouth inside
    forehead = lm[17:27].mean(0) - [0, 0.25 * (lm[8, 1] - lm[17:27, 1].mean())]
    assert _at(region, forehead[None], 1024).all()
    corners = np.array([[5.0, 5.0], [1018.0, 5.0], [5.0, 1018.0], [1018.0, 1018.0]])
    assert not _at(region, corners, 1024).any()
    lower = landmark_region(lm, 1024, MaskConfig(kind="landmarks", forehead=0.0))
    assert lower.sum() < region.sum() and not (lower & ~region).any()


def test_erosion_and_feather_keep_the_support_inside_the_region(aligned_landmarks):
    _, _, lm = aligned_landmarks
    cfg = MaskConfig(kind="landmarks")
    region = landmark_region(lm, 1024, cfg)
    mask = make_mask(lm, 1024, cfg)
    assert mask.alpha.dtype == np.float32 and 0.0 <= mask.alpha.min() and mask.alpha.max() <= 1.0
    assert not ((mask.alpha > 0) & ~region).any()  # feathering never reaches outside the face region
    assert (mask.alpha == 1.0).sum() > 0.5 * region.sum()  # the inside is fully replaced
    soft = (mask.alpha > 0) & (mask.alpha < 1)
    assert soft.sum() > 0  # there is a feathered band
    assert mask.stats.sum() < region.sum() and not (mask.stats & ~region).any()
    sharp = make_mask(lm, 1024, MaskConfig(kind="landmarks", erode=0.0, feather=0.0))
    np.testing.assert_array_equal(sharp.alpha > 0, region)
    wider = make_mask(lm, 1024, MaskConfig(kind="landmarks", feather=0.03, erode=0.06))
    assert ((wider.alpha > 0) & (wider.alpha < 1)).sum() > soft.sum()


def test_parsing_region_and_mask_from_labels():
    labels = np.zeros((512, 512), np.uint8)
    canvas = Image.new("L", (512, 512), 0)
    draw = ImageDraw.Draw(canvas)
    draw.ellipse((128, 96, 384, 448), fill=1)  # skin
    draw.rectangle((200, 300, 310, 330), fill=12)  # lip
    draw.rectangle((0, 460, 511, 511), fill=16)  # cloth: excluded
    labels[:] = np.asarray(canvas)
    region = parsing_region(labels, (1, 12), 256)
    assert region.shape == (256, 256) and region[128, 128] and not region[250, 128] and not region[5, 5]
    mask = make_mask(None, 1024, MaskConfig(kind="parsing"), labels=labels)
    assert mask.kind == "parsing" and mask.alpha[128, 128] == 1.0 and mask.alpha[240:, :].max() == 0.0
    lip = slice(152, 163), slice(102, 153)
    assert mask.stats[lip].sum() == 0  # colour statistics come from skin only


def test_build_mask_landmarks_offline(aligned_landmarks):
    lm, alignment, lm_al = aligned_landmarks
    a = build_mask(None, lm, alignment, MaskConfig(kind="auto"))  # no BiSeNet weights in tests
    b = make_mask(lm_al, 1024, MaskConfig(kind="landmarks"))
    assert a.kind == "landmarks"
    np.testing.assert_array_equal(a.alpha, b.alpha)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"kind": "hull"}, "kind"),
        ({"resolution": 8}, "resolution"),
        ({"erode": 1.5}, "erode"),
        ({"truncate": 0}, "truncate"),
    ],
)
def test_mask_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MaskConfig(**kwargs)
