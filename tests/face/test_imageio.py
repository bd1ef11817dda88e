"""Safe image loading and saving: formats, bit depths, alpha, EXIF orientation, limits, errors."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image, ImageOps

from realface.errors import ImageError
from realface.imageio import LoadedImage, load_image, save_image
from tests.conftest import data_file


def _rng_image(h, w, c, dtype=np.uint8):
    peak = np.iinfo(dtype).max
    return np.random.default_rng(h * w + c).integers(0, peak + 1, (h, w, c), dtype=np.int64).astype(dtype)


@pytest.mark.parametrize(
    "mode,suffix",
    [("RGB", ".png"), ("RGBA", ".png"), ("L", ".png"), ("LA", ".png"), ("RGB", ".webp"), ("RGBA", ".webp")],
)
def test_lossless_round_trip_8bit(tmp_path, mode, suffix):
    channels = len(mode)
    arr = _rng_image(37, 53, channels)
    src = tmp_path / f"in{suffix}"
    Image.fromarray(arr[..., 0] if channels == 1 else arr, mode).save(src, lossless=True)
    img = load_image(src)
    assert img.mode == mode and img.size == (53, 37) and img.bit_depth == 8
    assert (img.alpha is not None) == mode.endswith("A")
    dst = save_image(img, tmp_path / f"out{suffix}")
    again = load_image(dst)
    assert again.format == img.format and again.mode == mode
    np.testing.assert_array_equal(again.pixels, img.pixels)
    if img.alpha is not None:
        np.testing.assert_array_equal(again.alpha, img.alpha)


@pytest.mark.parametrize("channels,alpha", [(1, False), (3, False), (3, True)])
def test_16bit_png_round_trip(tmp_path, channels, alpha):
    pixels = _rng_image(21, 34, channels, np.uint16)
    a = _rng_image(21, 34, 1, np.uint16)[..., 0] if alpha else None
    src = save_image(LoadedImage(tmp_path / "x.png", "PNG", pixels, a), tmp_path / "in.png")
    img = load_image(src)
    assert img.bit_depth == 16 and img.mode == {1: "I;16", 3: "RGBA;16" if alpha else "RGB;16"}[channels]
    np.testing.assert_array_equal(img.pixels, pixels)
    if alpha:
        np.testing.assert_array_equal(img.alpha, a)
    assert img.pixels.max() > 255  # really 16 bits, not 8 bits scaled
    assert img.rgb8().dtype == np.uint8 and img.rgb_float().max() <= 1.0


def test_jpeg_keeps_size_mode_and_tables(tmp_path):
    img = load_image(data_file("images", "replicant_face_00000.jpg"))
    assert img.format == "JPEG" and img.mode == "RGB" and img.size == (640, 640)
    out = load_image(save_image(img, tmp_path / "same.jpg"))
    assert out.size == img.size and out.mode == "RGB"
    diff = np.abs(out.pixels.astype(int) - img.pixels.astype(int))
    assert diff.mean() < 1.0  # same quantisation tables: re-encoding barely moves pixels


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied_like_pillow(tmp_path, orientation):
    arr = _rng_image(30, 50, 3)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "o.png"
    Image.fromarray(arr).save(path, exif=exif.tobytes())
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)))
    img = load_image(path)
    np.testing.assert_array_equal(img.pixels, expected)
    out = Image.open(save_image(img, tmp_path / "out.png"))
    assert out.getexif().get(0x0112, 1) == 1  # written upright, not rotated twice


def test_palette_is_read_as_rgb(tmp_path):
    Image.fromarray(_rng_image(10, 10, 3)).convert("P").save(tmp_path / "p.png")
    img = load_image(tmp_path / "p.png")
    assert img.mode == "RGB" and img.pixels.shape == (10, 10, 3)


def test_errors_name_the_file_and_the_problem(tmp_path):
    with pytest.raises(ImageError, match="missing.png: file not found"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "notes.png").write_text("hello")
    with pytest.raises(ImageError, match="notes.png: not an image file"):
        load_image(tmp_path / "notes.png")
    good = tmp_path / "good.png"
    Image.fromarray(_rng_image(64, 64, 3)).save(good)
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:200])
    with pytest.raises(ImageError, match="cut.png: corrupt or truncated"):
        load_image(tmp_path / "cut.png")
    with pytest.raises(ImageError, match=r"good.png: 64x64 = 4,096 pixels exceeds the limit of 4,000"):
        load_image(good, max_pixels=4000)
    with pytest.raises(ImageError, match=r"good.png: more pixels than the limit of 1,000"):
        load_image(good, max_pixels=1000)  # Pillow's own guard (beyond twice the limit) is set too
    with pytest.raises(ImageError, match="not a regular file"):
        load_image(tmp_path)
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
    frames[0].save(tmp_path / "anim.webp", save_all=True, append_images=frames[1:])
    with pytest.raises(ImageError, match="anim.webp: animated"):
        load_image(tmp_path / "anim.webp")


def test_save_refuses_input_and_impossible_formats_without_leaving_files(tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray(_rng_image(8, 8, 4), "RGBA").save(path)
    img = load_image(path)
    before = path.read_bytes()
    with pytest.raises(ImageError, match="refusing to overwrite the input"):
        save_image(img, path)
    assert path.read_bytes() == before
    with pytest.raises(ImageError, match="JPEG cannot store the alpha"):
        save_image(img, tmp_path / "out.jpg", format="JPEG")
    sixteen = LoadedImage(path, "PNG", _rng_image(4, 4, 3, np.uint16))
    with pytest.raises(ImageError, match="16-bit image can only be written as PNG"):
        save_image(sixteen, tmp_path / "out.webp", format="WEBP")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]


def test_loaded_image_validates_arrays(tmp_path):
    with pytest.raises(ValueError, match=r"\[H, W, 1\|3\]"):
        LoadedImage(tmp_path, "PNG", np.zeros((4, 4, 2), np.uint8))
    img = LoadedImage(tmp_path, "PNG", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="new pixels must be"):
        img.with_pixels(np.zeros((4, 4, 3), np.uint16))


@pytest.mark.parametrize(
    "mode,pixels,suffix,described",
    [
        ("I", np.full((20, 30), 70000, np.int32), ".tif", "I (32-bit integer)"),
        ("I", np.full((20, 30), 300, np.int32), ".tif", "I (32-bit integer)"),
        ("I;16", np.full((20, 30), 300, np.uint16), ".tif", "I;16 (16-bit, read from PNG files only)"),
        ("F", np.full((20, 30), 0.5, np.float32), ".tif", "F (32-bit float)"),
    ],
)
def test_integer_float_and_non_png_16bit_modes_are_refused(tmp_path, mode, pixels, suffix, described):
    path = tmp_path / f"x{suffix}"
    Image.fromarray(pixels).save(path)
    assert Image.open(path).mode == mode
    with pytest.raises(ImageError, match=rf"x\.tif: image mode {re.escape(described)} is not supported"):
        load_image(path)


def test_every_listed_mode_is_read(tmp_path):
    from realface.imageio import READ_MODES, _split_pil

    pixels, alpha = _split_pil(Image.new("PA", (6, 4), (3, 128)), tmp_path / "pa")  # no format saves PA
    assert pixels.shape == (4, 6, 3) and alpha is not None and (alpha == 128).all()
    for mode, target in READ_MODES.items():
        if mode == "PA":
            continue
        suffix = ".jpg" if mode in ("CMYK", "YCbCr") else ".png"
        src = Image.new("RGB", (6, 4), (200, 40, 90)).convert(mode)
        path = tmp_path / f"{mode}{suffix}"
        src.save(path, **({"format": "JPEG"} if mode == "YCbCr" else {}))
        img = load_image(path)
        assert img.mode == target and img.size == (6, 4) and img.bit_depth == 8, mode
    gray16 = tmp_path / "gray16.png"
    Image.fromarray(np.full((4, 6), 40000, np.uint16)).save(gray16)  # opened by Pillow as I;16
    assert load_image(gray16).mode == "I;16" and load_image(gray16).pixels.max() == 40000


def test_max_pixels_has_a_ceiling_checked_before_any_file_is_opened(tmp_path):
    from realface.errors import ConfigError
    from realface.imageio import MAX_PIXELS_CEILING, check_max_pixels

    assert check_max_pixels(MAX_PIXELS_CEILING) == MAX_PIXELS_CEILING
    for bad in (0, -1, MAX_PIXELS_CEILING + 1, 10**12):
        with pytest.raises(ConfigError, match="max_pixels must be an integer from 1 to 250,000,000") as info:
            load_image(tmp_path / "never_opened.png", max_pixels=bad)
        assert info.value.field == "max_pixels"
