"""JPEG outputs: only the MCUs that contain a changed pixel are re-encoded, every other block keeps its
DCT coefficients, so garment and background pixels of a JPEG input come out unchanged."""

from __future__ import annotations

import io
import logging

import jpeglib
import numpy as np
import pytest
import scipy.fft
from PIL import Image, ImageCms, ImageOps, JpegImagePlugin

from realface.imageio import _orient, load_image, save_image
from realface.jpeg import (
    JpegPatchUnsupported,
    forward_dct,
    parse_layout,
    patch_jpeg,
    reencoded_region,
    stored_from_display,
)
from tests.conftest import data_file

FACE = (220, 57, 33)  # colours of the replicant fixture's segmentation (tests/data/FIXTURES.md)
BEARD = (118, 190, 70)


def _pixels(src) -> np.ndarray:
    """[H, W, C] uint8 as Pillow decodes a file (path or bytes), EXIF orientation applied by Pillow."""
    with Image.open(io.BytesIO(src) if isinstance(src, bytes) else src) as im:
        a = np.asarray(ImageOps.exif_transpose(im))
    return a[..., None] if a.ndim == 2 else a


def _stored(src) -> np.ndarray:
    """[H, W, C] uint8 as Pillow decodes a file, in its stored frame (no orientation applied)."""
    with Image.open(io.BytesIO(src) if isinstance(src, bytes) else src) as im:
        a = np.asarray(im)
    return a[..., None] if a.ndim == 2 else a


def _display_to_stored(changed: np.ndarray, src: bytes) -> np.ndarray:
    """Move a display-frame [H, W] mask into the file's stored frame with Pillow's own EXIF transpose."""
    with Image.open(io.BytesIO(src)) as im:
        w, h = im.size
        pos = Image.fromarray(np.arange(w * h, dtype=np.int32).reshape(h, w))
        pos.info["exif"] = im.info.get("exif", b"")
        pos.getexif().update(im.getexif())
        shown = np.asarray(ImageOps.exif_transpose(pos))  # display frame: stored index of each pixel
    assert shown.shape == changed.shape
    out = np.zeros(h * w, dtype=bool)
    out[shown[changed]] = True
    return out.reshape(h, w)


def _regions(changed: np.ndarray, mcu: tuple[int, int], ring: bool) -> tuple[np.ndarray, np.ndarray]:
    """Independent of realface.jpeg: (pixels of MCUs holding a change, 1-px ring around them when the
    chroma is subsampled). ``changed`` [H, W] and ``mcu`` (w, h) in the file's stored frame."""
    h, w = changed.shape
    mw, mh = mcu
    inside = np.zeros_like(changed)
    for y in range(0, h, mh):
        for x in range(0, w, mw):
            if changed[y : y + mh, x : x + mw].any():
                inside[y : y + mh, x : x + mw] = True
    border = np.zeros_like(changed)
    if ring:
        padded = np.pad(inside, 1)
        grown = np.zeros_like(padded)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                grown |= np.roll(np.roll(padded, dy, 0), dx, 1)
        border = grown[1:-1, 1:-1] & ~inside
    return inside, border


def _face_edit(pixels: np.ndarray) -> np.ndarray:
    """A synthetic face replacement: the face and beard of the fixture, feathered, made greener."""
    seg = np.asarray(Image.open(data_file("images", "replicant_face_00000_mask.png")).convert("RGB")).astype(
        int
    )
    near = lambda c: np.abs(seg - np.array(c)).sum(axis=2) <= 6  # noqa: E731
    face = (near(FACE) | near(BEARD)).astype(np.float32)
    from scipy.ndimage import gaussian_filter

    m = gaussian_filter(face, 3)[..., None]  # [H, W, 1]
    target = pixels.astype(np.float32) * [0.6, 1.1, 0.8]
    out = np.clip(np.rint(m * target + (1 - m) * pixels), 0, 255).astype(np.uint8)
    return out


def _garment_and_background() -> np.ndarray:
    from tests.test_pipeline import garment_and_background

    return garment_and_background(data_file("images", "replicant_face_00000_mask.png"))


# --- the fixture avatar (tests/data/images/replicant_face_00000.jpg == examples/avatar.jpg) -------


def test_jpeg_output_keeps_every_pixel_outside_the_touched_mcus(tmp_path):
    src = data_file("images", "replicant_face_00000.jpg")
    before = src.read_bytes()
    image = load_image(src)
    edited = _face_edit(image.pixels)
    save_image(image.with_pixels(edited), tmp_path / "out.jpg")
    assert src.read_bytes() == before
    original, out = _stored(src), _stored(tmp_path / "out.jpg")
    changed = np.any(edited != original, axis=2)
    assert 2000 < changed.sum() < 40_000
    inside, border = _regions(changed, (16, 16), ring=True)  # the fixture is 4:2:0
    outside = ~inside & ~border
    assert int(np.any(out != original, axis=2)[outside].sum()) == 0
    # Garment and background pixels move only where they share an MCU with the edit (a few next to the
    # collar here); a whole-image re-encode changed about 20,000 of them.
    keep = _garment_and_background()
    moved = np.any(out != original, axis=2) & keep
    assert keep.sum() > 200_000 and not (moved & outside).any() and moved.sum() < 500
    # Inside, the new face is there (close to the edit, far from the original).
    edit = np.abs(edited.astype(int) - original.astype(int)).max(axis=2)
    strong = edit > 10
    err = np.abs(out.astype(int) - edited.astype(int)).max(axis=2)
    assert strong.sum() > 1000 and err[strong].mean() < edit[strong].mean() / 5


def test_untouched_blocks_keep_their_coefficients_and_tables(tmp_path):
    src = data_file("images", "replicant_face_00000.jpg")
    image = load_image(src)
    edited = _face_edit(image.pixels)
    save_image(image.with_pixels(edited), tmp_path / "out.jpg")
    a, b = jpeglib.read_dct(str(src)), jpeglib.read_dct(str(tmp_path / "out.jpg"))
    changed = np.any(edited != _pixels(src), axis=2)
    touched = changed.reshape(40, 16, 40, 16).any(axis=(1, 3))  # [40, 40] MCUs of 16x16
    luma_touched = np.repeat(np.repeat(touched, 2, 0), 2, 1)  # 2x2 Y blocks per MCU
    assert np.array_equal(a.Y[~luma_touched], b.Y[~luma_touched])
    assert np.array_equal(a.Cb[~touched], b.Cb[~touched]) and np.array_equal(a.Cr[~touched], b.Cr[~touched])
    assert not np.array_equal(a.Y[luma_touched], b.Y[luma_touched])
    assert np.array_equal(a.qt, b.qt) and list(a.quant_tbl_no) == list(b.quant_tbl_no)
    with Image.open(src) as i, Image.open(tmp_path / "out.jpg") as o:
        assert o.quantization == i.quantization
        assert JpegImagePlugin.get_sampling(o) == JpegImagePlugin.get_sampling(i) == 2
        assert o.info["comment"] == i.info["comment"] and o.info["jfif_density"] == i.info["jfif_density"]


def test_unchanged_image_is_written_with_the_original_coefficients(tmp_path):
    src = data_file("images", "replicant_face_00000.jpg")
    image = load_image(src)
    save_image(image, tmp_path / "same.jpg")
    assert np.array_equal(_pixels(tmp_path / "same.jpg"), _pixels(src))
    a, b = jpeglib.read_dct(str(src)), jpeglib.read_dct(str(tmp_path / "same.jpg"))
    assert np.array_equal(a.Y, b.Y) and np.array_equal(a.Cb, b.Cb) and np.array_equal(a.Cr, b.Cr)


# --- other layouts, made here with Pillow ---------------------------------------------------------


def _jpeg(mode: str = "RGB", size=(127, 101), at=(250, 150), **save) -> bytes:
    base = np.asarray(Image.open(data_file("images", "replicant_face_00000.jpg")).convert("RGB"))
    crop = Image.fromarray(base[at[1] : at[1] + size[1], at[0] : at[0] + size[0]]).convert(mode)
    buf = io.BytesIO()
    crop.save(buf, "JPEG", quality=save.pop("quality", 90), **save)
    return buf.getvalue()


def _edit_rect(pixels: np.ndarray) -> np.ndarray:
    out = pixels.copy()
    h, w = out.shape[:2]
    out[h // 3 : h // 2, w // 3 : w // 2] = 255 - out[h // 3 : h // 2, w // 3 : w // 2]
    return out


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


LAYOUTS = {
    "4:2:0": ({}, (16, 16), True),
    "4:2:2": ({"subsampling": 1}, (16, 8), True),
    "4:4:4": ({"subsampling": 0}, (8, 8), False),
    "grayscale": ({"mode": "L"}, (8, 8), False),
    "progressive": ({"progressive": True}, (16, 16), True),
    "progressive-4:4:4": ({"progressive": True, "subsampling": 0}, (8, 8), False),
    "restart-markers": ({"restart_marker_blocks": 3}, (16, 16), True),
    "quality-100": ({"quality": 100, "subsampling": 0}, (8, 8), False),
    "icc-profile": (
        {"icc_profile": ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()},
        (16, 16),
        True,
    ),
    **{f"exif-orientation-{o}": ({"exif": _exif(o)}, (16, 16), True) for o in range(2, 9)},
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_layouts_keep_untouched_pixels_tables_sampling_and_metadata(tmp_path, name):
    opts, mcu, ring = LAYOUTS[name]
    opts = dict(opts)
    data = _jpeg(opts.pop("mode", "RGB"), **opts)
    src = tmp_path / "in.jpg"
    src.write_bytes(data)
    image = load_image(src)
    edited = _edit_rect(image.pixels)
    save_image(image.with_pixels(edited), tmp_path / "out.jpg")
    out_bytes = (tmp_path / "out.jpg").read_bytes()
    original, out = _pixels(data), _pixels(out_bytes)
    assert out.shape == original.shape == edited.shape
    changed = _display_to_stored(np.any(edited != original, axis=2), data)
    inside, border = _regions(changed, mcu, ring)
    outside = ~inside & ~border
    assert outside.sum() > 0.6 * outside.size
    assert int(np.any(_stored(out_bytes) != _stored(data), axis=2)[outside].sum()) == 0
    err = np.abs(out.astype(int) - edited.astype(int))[np.any(edited != original, axis=2)].mean()
    assert err < 4
    with Image.open(io.BytesIO(data)) as i, Image.open(io.BytesIO(out_bytes)) as o:
        assert o.mode == i.mode and o.size == i.size
        assert o.quantization == i.quantization
        assert JpegImagePlugin.get_sampling(o) == JpegImagePlugin.get_sampling(i)
        assert o.info.get("icc_profile") == i.info.get("icc_profile")
        assert o.getexif().tobytes() == i.getexif().tobytes()


# --- pieces ---------------------------------------------------------------------------------------


def test_forward_dct_is_the_orthonormal_dct_divided_by_the_table():
    rng = np.random.default_rng(0)
    blocks = rng.uniform(-128, 127, size=(5, 8, 8))
    q = rng.integers(1, 100, size=(8, 8))
    expect = scipy.fft.dctn(blocks, type=2, norm="ortho", axes=(1, 2)) / q
    np.testing.assert_allclose(forward_dct(blocks, q), expect, rtol=1e-12, atol=1e-12)


def test_forward_dct_reproduces_libjpeg_coefficients(tmp_path):
    """Rounded, it gives the coefficients libjpeg wrote for the same samples (a flat-enough image,
    4:4:4, so no chroma filtering is involved)."""
    rng = np.random.default_rng(1)
    gray = (np.add.outer(np.arange(32), np.arange(32)) * 3 + rng.integers(0, 4, (32, 32))).astype(np.uint8)
    Image.fromarray(gray, "L").save(tmp_path / "g.jpg", quality=75)
    jpeg = jpeglib.read_dct(str(tmp_path / "g.jpg"))
    blocks = gray.reshape(4, 8, 4, 8).transpose(0, 2, 1, 3).reshape(16, 8, 8) - 128.0
    ours = np.rint(forward_dct(blocks, jpeg.qt[0])).reshape(4, 4, 8, 8)
    assert np.abs(ours - jpeg.Y).max() <= 1 and np.mean(ours == jpeg.Y) > 0.98


@pytest.mark.parametrize("orientation", range(1, 9))
def test_stored_from_display_inverts_the_orientation_load_image_applies(orientation):
    stored = np.arange(6 * 4 * 2).reshape(6, 4, 2)
    shown = _orient(stored, orientation)
    assert np.array_equal(stored_from_display(shown, orientation), stored)


def test_reencoded_region_is_whole_mcus_plus_the_chroma_ring():
    data = _jpeg(size=(40, 24))  # 4:2:0: MCUs of 16x16, a 3x2 grid (the right ones partial)
    layout = parse_layout(data)
    changed = np.zeros((24, 40), dtype=bool)
    changed[3, 20] = True
    inside, border = reencoded_region(changed, layout)
    expect = np.zeros_like(changed)
    expect[0:16, 16:32] = True
    assert np.array_equal(inside, expect)
    assert border.sum() == 16 + 16 + 16 + 2 and not (border & inside).any()  # left, right, below, corners
    assert layout.mcu_size == (16, 16) and layout.subsampling == "4:2:0"


def test_cmyk_jpeg_is_encoded_afresh_with_a_warning(tmp_path, caplog):
    src = tmp_path / "cmyk.jpg"
    src.write_bytes(_jpeg("CMYK"))
    image = load_image(src)
    with caplog.at_level(logging.WARNING, logger="realface.imageio"):
        save_image(image.with_pixels(_edit_rect(image.pixels)), tmp_path / "out.jpg")
    assert Image.open(tmp_path / "out.jpg").format == "JPEG"
    msg = " ".join(r.getMessage() for r in caplog.records)
    assert "encoded afresh" in msg and "CMYK" in msg and "PNG" in msg and str(src) in msg


def test_source_changed_after_loading_still_gives_the_new_pixels(tmp_path):
    """An MCU is copied only where the file on disk decodes to the new pixels, so a replaced source
    cannot leak into the output."""
    src = tmp_path / "in.jpg"
    src.write_bytes(_jpeg())
    image = load_image(src)
    edited = _edit_rect(image.pixels)
    other = _jpeg(at=(20, 500))  # another picture of the same size
    src.write_bytes(other)
    save_image(image.with_pixels(edited), tmp_path / "out.jpg")
    out = _pixels(tmp_path / "out.jpg").astype(int)
    assert np.abs(out - edited).mean() < 2.5 and np.abs(_pixels(other) - edited.astype(int)).mean() > 20


def test_source_gone_after_loading_is_encoded_afresh(tmp_path, caplog):
    src = tmp_path / "in.jpg"
    src.write_bytes(_jpeg())
    image = load_image(src)
    src.unlink()
    with caplog.at_level(logging.WARNING, logger="realface.imageio"):
        save_image(image.with_pixels(_edit_rect(image.pixels)), tmp_path / "out.jpg")
    assert (tmp_path / "out.jpg").is_file() and "encoded afresh" in caplog.text


def _with_segments(data: bytes, segments: list[bytes]) -> bytes:
    return data[:2] + b"".join(segments) + data[2:]


def test_many_metadata_segments_are_all_kept(tmp_path):
    """libjpeg wrappers often keep at most a fixed number of markers; all 80 comments here survive."""
    comments = [b"\xff\xfe" + (2 + len(t)).to_bytes(2, "big") + t for t in (b"c%02d" % i for i in range(80))]
    src = tmp_path / "in.jpg"
    src.write_bytes(_with_segments(_jpeg(), comments))
    image = load_image(src)
    save_image(image.with_pixels(_edit_rect(image.pixels)), tmp_path / "out.jpg")
    out = (tmp_path / "out.jpg").read_bytes()
    assert parse_layout(out).metadata == parse_layout(src.read_bytes()).metadata
    assert all(c in out for c in comments)


def test_libjpeg_messages_about_damaged_data_stay_off_the_terminal(tmp_path, capfd):
    data = data_file("images", "replicant_face_00000.jpg").read_bytes()
    damaged = data[: len(data) // 2] + b"\xff\xd3" + data[len(data) // 2 :]  # a stray restart marker
    src = tmp_path / "damaged.jpg"
    src.write_bytes(damaged)
    image = load_image(src)  # Pillow decodes it (and says nothing)
    capfd.readouterr()
    save_image(image.with_pixels(_edit_rect(image.pixels)), tmp_path / "out.jpg")
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
    original, out = _stored(damaged), _stored(tmp_path / "out.jpg")
    changed = np.any(_edit_rect(image.pixels) != original, axis=2)
    inside, border = _regions(changed, (16, 16), ring=True)
    assert int(np.any(out != original, axis=2)[~inside & ~border].sum()) == 0


def _sof_patched(data: bytes, marker: int | None = None, precision: int | None = None) -> bytes:
    i = data.index(b"\xff\xc0")
    b = bytearray(data)
    if marker is not None:
        b[i + 1] = marker
    if precision is not None:
        b[i + 4] = precision
    return bytes(b)


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda d: b"not a jpeg", "start-of-image"),
        (lambda d: d[:200], "bad length"),
        (lambda d: d[:2] + b"\xff\xfe\x00\x01" + d[2:], "bad length"),
        (lambda d: d[:2] + b"\xff\xfe\xff\xff" + d[2:], "bad length"),
        (lambda d: _sof_patched(d, marker=0xC9), "arithmetic"),
        (lambda d: _sof_patched(d, marker=0xC3), "lossless"),
        (lambda d: _sof_patched(d, precision=12), "12-bit"),
        (lambda d: _jpeg("CMYK"), "CMYK"),
        (lambda d: d[: d.rindex(b"\xff\xd9")], "end-of-image"),
    ],
)
def test_files_that_cannot_be_patched_are_refused_with_a_reason(make, reason):
    with pytest.raises(JpegPatchUnsupported, match=reason):
        parse_layout(make(_jpeg()))


def test_patch_refuses_pixels_of_another_size():
    data = _jpeg()
    with pytest.raises(JpegPatchUnsupported, match="do not fit"):
        patch_jpeg(data, np.zeros((10, 10, 3), np.uint8))


# --- the main job, end to end ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def rf(tmp_path_factory):
    from realface.checkpoints import load_generator
    from realface.nn.lpips import load_lpips_vgg
    from realface.pipeline import RealFace
    from tests._helpers import random_vgg16_file
    from tests.test_pipeline import _config

    pkl = data_file("stylegan2-ada", "sg2ada_tiny64.pkl")
    G_real, G_rend = (
        load_generator(pkl, which="G", cache=False),
        load_generator(pkl, which="G_ema", cache=False),
    )
    lpips = load_lpips_vgg(vgg_path=random_vgg16_file(tmp_path_factory.mktemp("vgg") / "vgg16.pth"))
    return RealFace(G_real, G_rend, lpips, _config())


def test_apply_on_a_jpeg_keeps_garment_and_background_pixels(tmp_path, rf):
    src = data_file("images", "replicant_face_00000.jpg")
    before = src.read_bytes()
    rf.run_file(src, tmp_path / "out.jpg")
    assert src.read_bytes() == before
    original, out = _stored(src), _stored(tmp_path / "out.jpg")
    keep = _garment_and_background()
    assert keep.sum() > 200_000
    assert int(np.any(out != original, axis=2)[keep].sum()) == 0, "garment/background pixels changed"
    assert np.any(out != original, axis=2).sum() > 500, "the face was not replaced"
    with Image.open(src) as i, Image.open(tmp_path / "out.jpg") as o:
        assert o.format == "JPEG" and o.quantization == i.quantization
        assert JpegImagePlugin.get_sampling(o) == JpegImagePlugin.get_sampling(i)
