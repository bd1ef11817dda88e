"""Paste-back: bit-identical outside the mask, round trip inside it, colour match, dtypes and alpha."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from realface.face.align import AlignConfig, align_face, apply_transform
from realface.face.blend import (
    BlendConfig,
    LabTransfer,
    face_roi,
    lab_to_rgb,
    mask_in_image,
    paste_face,
    rgb_to_lab,
)
from realface.face.mask import MaskConfig, make_mask
from tests.conftest import data_file
from tests.face.conftest import psnr

# Label colours of replicant_face_00000_mask.png (tests/data/FIXTURES.md).
CLOTHES, BACKGROUND = (135, 198, 199), (0, 0, 0)


def _prepare(detected, name, size=1024, mask_cfg=None):
    image, faces = detected[name]
    face = faces[0]
    aligned = align_face(image.rgb8(), face.landmarks_array, AlignConfig(size))
    lm = apply_transform(aligned.alignment.matrix, face.landmarks_array)
    mask = make_mask(lm, size, mask_cfg or MaskConfig(kind="landmarks"))
    return image, aligned, mask


@pytest.mark.parametrize("name", ["astronaut", "replicant_face_00000"])
@pytest.mark.parametrize("color_correct", [True, False])
def test_round_trip_same_face(detected, name, color_correct):
    image, aligned, mask = _prepare(detected, name)
    crop = aligned.to_uint8().astype(np.float32) / 255.0  # as written by `realface align`
    out = paste_face(image.pixels, crop, aligned.alignment, mask, BlendConfig(color_correct))
    inside = mask_in_image(aligned.alignment, mask) > 0
    assert inside.sum() > 1000
    np.testing.assert_array_equal(out[~inside], image.pixels[~inside])
    assert psnr(out[inside], image.pixels[inside]) >= 40.0


def test_clothes_and_background_unchanged_on_rendered_avatar(detected):
    image, aligned, _ = _prepare(detected, "replicant_face_00000")
    rng = np.random.default_rng(0)
    new_face = rng.random(aligned.image.shape, dtype=np.float32)  # a face that differs everywhere
    for cfg in (MaskConfig(kind="landmarks"), MaskConfig(kind="landmarks", erode=0.0, feather=0.0)):
        _, _, mask = _prepare(detected, "replicant_face_00000", mask_cfg=cfg)
        out = paste_face(image.pixels, new_face, aligned.alignment, mask)
        labels = np.asarray(Image.open(data_file("images", "replicant_face_00000_mask.png")).convert("RGB"))
        labels = labels.astype(int)
        keep = (np.abs(labels - CLOTHES).sum(-1) <= 6) | (np.abs(labels - BACKGROUND).sum(-1) <= 6)
        assert keep.sum() > 200_000
        changed = (out != image.pixels).any(-1)
        assert changed.sum() > 5_000  # the face was replaced ...
        assert not (changed & keep).any()  # ... and no clothes or background pixel moved


def test_only_the_face_region_is_touched_in_place(detected):
    image, aligned, mask = _prepare(detected, "astronaut", size=256)
    canvas = image.pixels.copy()
    roi = face_roi(aligned.alignment, mask)
    x0, y0, x1, y1 = roi
    assert (x1 - x0) * (y1 - y0) < 0.25 * canvas.shape[0] * canvas.shape[1]
    result = paste_face(canvas, np.zeros((256, 256, 3), np.float32), aligned.alignment, mask, out=canvas)
    assert result is canvas
    outside = np.ones(canvas.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    np.testing.assert_array_equal(canvas[outside], image.pixels[outside])
    assert (canvas[y0:y1, x0:x1] != image.pixels[y0:y1, x0:x1]).any()


def test_face_of_another_resolution_is_resampled(detected):
    image, aligned, mask = _prepare(detected, "astronaut", size=1024)
    half = np.asarray(Image.fromarray(aligned.to_uint8()).resize((512, 512), Image.LANCZOS)) / np.float32(255)
    out = paste_face(image.pixels, half.astype(np.float32), aligned.alignment, mask, BlendConfig(False))
    inside = mask_in_image(aligned.alignment, mask) > 0
    np.testing.assert_array_equal(out[~inside], image.pixels[~inside])
    assert psnr(out[inside], image.pixels[inside]) >= 35.0


@pytest.mark.parametrize("dtype,channels", [(np.uint16, 3), (np.uint8, 1), (np.uint16, 1)])
def test_dtypes_and_channels(detected, dtype, channels):
    image, aligned, mask = _prepare(detected, "astronaut", size=256)
    base = image.pixels.astype(np.float64) / 255.0
    if channels == 1:
        base = base @ [0.299, 0.587, 0.114]
        base = base[..., None]
    peak = np.iinfo(dtype).max
    pixels = np.rint(base * peak).astype(dtype)
    crop = aligned.image
    out = paste_face(pixels, crop, aligned.alignment, mask, BlendConfig(False))
    assert out.dtype == dtype and out.shape == pixels.shape
    inside = mask_in_image(aligned.alignment, mask) > 0
    np.testing.assert_array_equal(out[~inside], pixels[~inside])
    assert psnr(out[inside], pixels[inside], peak=peak) >= 38.0


def test_color_correction_moves_a_tinted_face_back(detected):
    image, aligned, mask = _prepare(detected, "replicant_face_00000")
    tinted = np.clip(aligned.image * [1.3, 0.8, 0.8] + 0.05, 0, 1).astype(np.float32)
    inside = mask_in_image(aligned.alignment, mask) > 0.99
    errors = {}
    for cc in (False, True):
        out = paste_face(image.pixels, tinted, aligned.alignment, mask, BlendConfig(cc))
        errors[cc] = np.abs(
            out[inside].astype(float).mean(0) - image.pixels[inside].astype(float).mean(0)
        ).max()
    assert errors[False] > 10 and errors[True] < errors[False] / 3


def test_lab_conversions():
    rgb = np.random.default_rng(0).random((1000, 3))
    np.testing.assert_allclose(lab_to_rgb(rgb_to_lab(rgb)), rgb, atol=1e-9)
    lab = rgb_to_lab(np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    # white, black and sRGB red (CIE Lab of sRGB red: 53.24, 80.09, 67.20)
    np.testing.assert_allclose(lab, [[100.0, 0, 0], [0, 0, 0], [53.24, 80.09, 67.20]], atol=0.02)


def test_lab_transfer_fit_and_lut_agree_with_reference():
    rng = np.random.default_rng(0)
    src = rng.random((500, 3)) * 0.5 + 0.2
    dst = np.clip(src * 0.8 + [0.15, 0.05, 0.0], 0, 1)
    t = LabTransfer.fit(src, dst)
    lab_out, lab_dst = rgb_to_lab(t.apply(src)), rgb_to_lab(dst)
    np.testing.assert_allclose(lab_out.mean(0), lab_dst.mean(0), atol=0.05)
    np.testing.assert_allclose(lab_out.std(0), lab_dst.std(0), atol=0.05, rtol=0.01)
    img = rng.random((64, 64, 3), dtype=np.float32)
    exact = t.apply(img)  # [64, 64, 3]
    fast = t.apply_lut(torch.from_numpy(img).permute(2, 0, 1)).permute(1, 2, 0).numpy()
    err = np.abs(fast - exact) * 255
    assert err.max() < 1.0 and err.mean() < 0.1


def test_bad_arguments(detected):
    image, aligned, mask = _prepare(detected, "astronaut", size=256)
    with pytest.raises(ValueError, match="square RGB"):
        paste_face(image.pixels, np.zeros((256, 200, 3), np.float32), aligned.alignment, mask)
    with pytest.raises(ValueError, match=r"alignment is for a \(512, 512\) image"):
        paste_face(image.pixels[:100], aligned.image, aligned.alignment, mask)
    with pytest.raises(ValueError, match="uint8/uint16"):
        paste_face(image.pixels.astype(np.float32), aligned.image, aligned.alignment, mask)
