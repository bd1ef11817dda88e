"""Safe image reading and writing that round-trips size, mode, bit depth, alpha and format.

Every image the project reads from a user goes through :func:`load_image`, and every image it writes
goes through :func:`save_image`. The contract:

* **Decoded array.** :class:`LoadedImage` holds the colour channels as ``pixels`` ``[H, W, C]``
  (``C`` = 1 for grayscale, 3 for colour) in the file's own integer type (``uint8`` or ``uint16``)
  and the alpha channel, when there is one, separately as ``alpha`` ``[H, W]``. EXIF orientation is
  applied, so row 0 is the top of the picture as a viewer shows it.
* **Round trip.** ``save_image(load_image(p), q)`` writes the same size, mode and bit depth, and by
  default the same format. PNG and WebP (written lossless) store the array exactly. A JPEG written
  from a JPEG re-encodes only the MCUs (8×8 to 16×16 pixel blocks) that contain a changed pixel and
  copies every other block's DCT coefficients (:mod:`realface.jpeg`), so unchanged regions decode to
  the same pixels; other JPEGs are encoded afresh and every pixel can move by a few levels.
* **Limits.** Files are refused before any pixel is decoded when width × height exceeds
  ``max_pixels`` (a decompression-bomb guard; :data:`DEFAULT_MAX_PIXELS` unless configured, and
  never more than :data:`MAX_PIXELS_CEILING`). Animated images, corrupt or truncated files,
  non-image files and unsupported modes raise :class:`ImageError` naming the file and the problem.
  Nothing here executes code from a file.
* **Writes are atomic** (:func:`realface.utils.fs.atomic_path`): a failed write leaves no output, and
  writing over the input file is refused.

Image modes: :data:`READ_MODES` is the one list of what is accepted. RGB, RGBA, L and LA are read
as they are; palette (``P``/``PA``), bilevel (``1``), CMYK and YCbCr are converted on reading to RGB
(RGBA when the palette has transparency) or L and written in that mode; a message is logged.
16-bit images are read at full depth from PNG files only (16-bit colour PNGs, which Pillow reduces to
8 bits, are decoded and encoded with ``pypng``). Every other mode — 32-bit integer (``I``) and float
(``F``) images, 16-bit images in other formats (e.g. TIFF ``I;16``) — is refused with a message that
names the file and the mode, before any pixel is decoded.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import warnings
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from realface.errors import ConfigError, ImageError
from realface.utils.fs import atomic_path

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "MAX_PIXELS_CEILING",
    "READ_MODES",
    "PNG16_MODES",
    "LoadedImage",
    "check_max_pixels",
    "load_image",
    "save_image",
    "format_for_path",
    "IMAGE_SUFFIXES",
    "image_suffixes_text",
    "is_image_file",
    "list_images",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 100_000_000
"""Default decompression-bomb limit: 100 megapixels (a 10000 × 10000 image)."""

MAX_PIXELS_CEILING = 250_000_000
"""The highest ``max_pixels`` accepted: 250 megapixels (about 15800 × 15800, 750 MB as 8-bit RGB).
A file that declares more is refused whatever the configured limit, so a forged header can never make
the reader allocate gigabytes."""

READ_MODES: dict[str, str] = {
    "RGB": "RGB",
    "RGBA": "RGBA",
    "L": "L",
    "LA": "LA",
    "P": "RGB",  # RGBA when the palette has a transparent entry
    "PA": "RGBA",
    "1": "L",
    "CMYK": "RGB",
    "YCbCr": "RGB",
}
"""The accepted 8-bit Pillow modes, each mapped to the mode it is read (and written) as. With
:data:`PNG16_MODES` this is the one list of supported image modes; every other mode is refused."""

PNG16_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
"""Modes in which Pillow opens a 16-bit grayscale PNG; they are accepted from PNG files only (a PNG
sample has at most 16 bits). 16-bit colour PNGs are recognised from the PNG header instead."""

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff")
"""The one list of file name suffixes (lower case, compared case-insensitively) that mark a file as an
image wherever a folder is searched: ``realface apply`` catalogues, ``realface dataset build --images``,
training sets, the metrics' image folders and the web page's folder runs."""

_MODE_NAMES = {"I": "32-bit integer", "F": "32-bit float", "I;16": "16-bit, read from PNG files only"}

_EXIF_ORIENTATION = 0x0112
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PIL_LOCK = threading.Lock()  # Image.MAX_IMAGE_PIXELS is process-wide; change it under this lock only
_SUFFIX_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}


@dataclasses.dataclass(frozen=True, eq=False)
class LoadedImage:
    """A decoded image plus what is needed to write a result back in the same form.

    Attributes:
        path: the file it was read from.
        format: Pillow format name of the file (``"JPEG"``, ``"PNG"``, ``"WEBP"``, ...).
        pixels: colour channels ``[H, W, C]``, ``C`` in {1, 3}, dtype ``uint8`` or ``uint16``,
            EXIF orientation applied.
        alpha: alpha channel ``[H, W]`` of the same dtype, or ``None``.
        save_options: keyword arguments for Pillow's ``save`` that carry metadata to the output
            (ICC profile, DPI, EXIF with the orientation tag removed, JPEG tables).
    """

    path: Path
    format: str
    pixels: np.ndarray
    alpha: np.ndarray | None = None
    save_options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        p = self.pixels
        if p.ndim != 3 or p.shape[2] not in (1, 3) or p.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"pixels must be [H, W, 1|3] uint8/uint16; got {p.shape} {p.dtype}")
        if self.alpha is not None and (self.alpha.shape != p.shape[:2] or self.alpha.dtype != p.dtype):
            raise ValueError(
                f"alpha must be {p.shape[:2]} {p.dtype}; got {self.alpha.shape} {self.alpha.dtype}"
            )

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` as Pillow reports it."""
        return self.width, self.height

    @property
    def bit_depth(self) -> int:
        return 16 if self.pixels.dtype == np.uint16 else 8

    @property
    def max_value(self) -> int:
        return 65535 if self.bit_depth == 16 else 255

    @property
    def mode(self) -> str:
        """The Pillow-style mode of the output: L, LA, RGB, RGBA, I;16, or RGB;16 / RGBA;16 / LA;16."""
        base = {1: "L", 3: "RGB"}[self.pixels.shape[2]]
        if self.alpha is not None:
            base += "A"
        if self.bit_depth == 16:
            return "I;16" if base == "L" else base + ";16"
        return base

    def rgb_float(self) -> np.ndarray:
        """Colour channels as float32 RGB in [0, 1], ``[H, W, 3]`` (grayscale is replicated)."""
        rgb = self.pixels.astype(np.float32) / self.max_value  # [H, W, C]
        return np.repeat(rgb, 3, axis=2) if rgb.shape[2] == 1 else rgb  # [H, W, 3]

    def rgb8(self) -> np.ndarray:
        """Colour channels as uint8 RGB ``[H, W, 3]`` (for detectors; 16-bit is rounded to 8)."""
        p = self.pixels
        if p.dtype == np.uint16:
            p = ((p.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)  # [H, W, C]
        return np.ascontiguousarray(np.repeat(p, 3, axis=2) if p.shape[2] == 1 else p)  # [H, W, 3]

    def with_pixels(self, pixels: np.ndarray) -> LoadedImage:
        """A copy carrying new colour channels of the same shape and dtype (alpha, metadata kept)."""
        if pixels.shape != self.pixels.shape or pixels.dtype != self.pixels.dtype:
            raise ValueError(
                f"new pixels must be {self.pixels.shape} {self.pixels.dtype}; "
                f"got {pixels.shape} {pixels.dtype}"
            )
        return dataclasses.replace(self, pixels=pixels)


def image_suffixes_text(suffixes: Collection[str] = IMAGE_SUFFIXES) -> str:
    """The suffixes as messages list them: ``".jpg, .jpeg, .png, .webp, .tif, .tiff"``."""
    return ", ".join(suffixes)


def is_image_file(path: str | os.PathLike, suffixes: Collection[str] = IMAGE_SUFFIXES) -> bool:
    """Whether ``path`` is named like an image: its suffix is in ``suffixes`` (case-insensitive).
    Only the name is looked at; the file need not exist."""
    wanted = {s.lower() for s in suffixes}
    return Path(os.fspath(path)).suffix.lower() in wanted


def list_images(
    folder: str | os.PathLike,
    recursive: bool = True,
    *,
    suffixes: Collection[str] = IMAGE_SUFFIXES,
    exclude: Sequence[str | os.PathLike] = (),
) -> list[Path]:
    """The image files in ``folder`` (:func:`is_image_file`), in walk order: a folder's files sorted by
    name, then its sub-folders, sorted, when ``recursive``.

    Hidden files and folders (name starting with ``.``, e.g. the temporary files of atomic writes) are
    skipped; symbolic links to files are followed, links to folders are not. Folders in ``exclude``
    (and everything below them) are left out. Paths start with ``folder`` as given (relative stays
    relative). A missing folder, or a file, gives an empty list.
    """
    excluded = [Path(os.path.abspath(p)) for p in exclude]
    wanted = {s.lower() for s in suffixes}
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(Path(folder), followlinks=False):
        here = Path(dirpath)
        absolute = Path(os.path.abspath(here))
        if any(absolute == ex or ex in absolute.parents for ex in excluded):
            dirnames.clear()
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        for name in sorted(filenames):
            file = here / name
            if not name.startswith(".") and file.suffix.lower() in wanted and file.is_file():
                found.append(file)
    return found


@contextmanager
def _pil_pixel_limit(max_pixels: int) -> Iterator[None]:
    """Set Pillow's own decompression-bomb threshold to ``max_pixels`` while a file is decoded."""
    with _PIL_LOCK:
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            with warnings.catch_warnings():
                # Our own check (header size against max_pixels) reports oversized images; Pillow's
                # error at twice the limit still guards any decoder that runs before that check.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                yield
        finally:
            Image.MAX_IMAGE_PIXELS = old


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an array ``[H, W, ...]``, as a viewer displays it."""
    ops = {
        1: lambda x: x,
        2: lambda x: x[:, ::-1],
        3: lambda x: x[::-1, ::-1],
        4: lambda x: x[::-1],
        5: lambda x: x.swapaxes(0, 1),
        6: lambda x: np.rot90(x, -1),
        7: lambda x: x.swapaxes(0, 1)[::-1, ::-1],
        8: lambda x: np.rot90(x, 1),
    }
    return np.ascontiguousarray(ops.get(orientation, ops[1])(a))


def _png_header(path: Path) -> tuple[int, int] | None:
    """``(bit depth, colour type)`` of a PNG file, or ``None`` if it is not a PNG."""
    with open(path, "rb") as f:
        head = f.read(33)
    if len(head) < 33 or not head.startswith(_PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    return head[24], head[25]


def _read_png16(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode a 16-bit grayscale+alpha / RGB / RGBA PNG at full depth with pypng."""
    import png  # pypng: pure Python, used only for 16-bit colour PNGs

    width, height, rows, meta = png.Reader(filename=str(path)).asDirect()
    planes = int(meta["planes"])
    a = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(height, width, planes)
    if meta.get("alpha"):
        return np.ascontiguousarray(a[..., :-1]), np.ascontiguousarray(a[..., -1])
    return a, None


def _check_mode(im: Image.Image, fmt: str, path: Path) -> None:
    """Refuse a file whose Pillow mode is not in :data:`READ_MODES` (or :data:`PNG16_MODES` for a PNG)."""
    mode = im.mode
    if mode in READ_MODES or (fmt == "PNG" and mode in PNG16_MODES):
        return
    what = _MODE_NAMES.get("I;16" if mode.startswith("I;16") else mode)
    described = f"{mode} ({what})" if what else mode
    raise ImageError(
        f"{path}: image mode {described} is not supported; supported: 8-bit "
        f"{', '.join(READ_MODES)} and 16-bit PNG (convert the file to one of these)"
    )


def _split_pil(im: Image.Image, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Pixels ``[H, W, C]`` and alpha ``[H, W]`` of a loaded Pillow image (mode converted if needed).
    The mode was checked by :func:`_check_mode`."""
    mode = im.mode
    if mode in PNG16_MODES:
        a = np.asarray(im)
        if a.min() < 0 or a.max() > 65535:  # mode I of a PNG holds 16-bit samples; anything else is corrupt
            raise ImageError(f"{path}: corrupt 16-bit image (values outside 0..65535)")
        return a.astype(np.uint16)[..., None], None
    target = READ_MODES[mode]
    if mode == "P" and "transparency" in im.info:
        target = "RGBA"
    if target != mode:
        logger.info("%s: mode %s is read as %s and will be written as %s", path, mode, target, target)
        im = im.convert(target)
        mode = target
    a = np.asarray(im)
    if a.ndim == 2:
        a = a[..., None]
    if mode in ("LA", "RGBA"):
        return np.ascontiguousarray(a[..., :-1]), np.ascontiguousarray(a[..., -1])
    return np.ascontiguousarray(a), None


def check_max_pixels(max_pixels: int) -> int:
    """``max_pixels`` if it is in 1..:data:`MAX_PIXELS_CEILING`, else :class:`ConfigError` (field
    ``max_pixels``, so the command line names ``--max-pixels``)."""
    if (
        isinstance(max_pixels, bool)
        or not isinstance(max_pixels, int)
        or not 0 < max_pixels <= MAX_PIXELS_CEILING
    ):
        raise ConfigError(
            f"max_pixels must be an integer from 1 to {MAX_PIXELS_CEILING:,} (the decompression-bomb "
            f"ceiling); got {max_pixels!r}",
            field="max_pixels",
        )
    return max_pixels


def _raise_hint(max_pixels: int) -> str:
    if max_pixels >= MAX_PIXELS_CEILING:
        return "(the most realface reads; downscale the image)"
    return f"(raise it with --max-pixels, up to {MAX_PIXELS_CEILING:,}, if the file is trusted)"


def load_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Read an image file safely.

    Args:
        path: the file.
        max_pixels: refuse images whose width × height exceeds this (decompression-bomb guard),
            checked from the header before any pixel is decoded. Default :data:`DEFAULT_MAX_PIXELS`;
            at most :data:`MAX_PIXELS_CEILING`.

    Returns:
        A :class:`LoadedImage` with EXIF orientation applied.

    Raises:
        ImageError: the file is missing, is not an image, is corrupt or truncated, is animated, has
            an unsupported mode (:data:`READ_MODES`), or is too large. The message names the file and
            the problem.
        ConfigError: ``max_pixels`` is not in 1..:data:`MAX_PIXELS_CEILING`.
    """
    path = Path(path)
    check_max_pixels(max_pixels)
    if not path.exists():
        raise ImageError(f"{path}: file not found")
    if not path.is_file():
        raise ImageError(f"{path}: not a regular file")
    try:
        with _pil_pixel_limit(max_pixels), Image.open(path) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise ImageError(
                    f"{path}: {w}x{h} = {w * h:,} pixels exceeds the limit of {max_pixels:,} "
                    f"{_raise_hint(max_pixels)}"
                )
            if getattr(im, "n_frames", 1) > 1:
                raise ImageError(f"{path}: animated or multi-frame images are not supported")
            fmt = im.format or "PNG"
            _check_mode(im, fmt, path)
            exif = im.getexif()
            orientation = int(exif.get(_EXIF_ORIENTATION, 1) or 1)
            options = _save_options(im, exif)
            header = _png_header(path) if fmt == "PNG" else None
            if header is not None and header[0] == 16 and header[1] in (2, 4, 6):
                pixels, alpha = _read_png16(path)
            else:
                im.load()
                pixels, alpha = _split_pil(im, path)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file, or a format that cannot be read") from None
    except Image.DecompressionBombError:
        raise ImageError(
            f"{path}: more pixels than the limit of {max_pixels:,} {_raise_hint(max_pixels)}"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{path}: corrupt or truncated image ({exc})") from None
    except Exception as exc:  # pypng and codec plug-ins raise their own types on corrupt data
        raise ImageError(f"{path}: could not decode image ({type(exc).__name__}: {exc})") from None
    if orientation != 1:
        pixels = _orient(pixels, orientation)
        alpha = None if alpha is None else _orient(alpha, orientation)
    return LoadedImage(path=path, format=fmt, pixels=pixels, alpha=alpha, save_options=options)


def _save_options(im: Image.Image, exif: Image.Exif) -> dict[str, Any]:
    """Metadata worth carrying to the output: ICC profile, DPI, EXIF (orientation reset), JPEG tables."""
    opts: dict[str, Any] = {}
    if im.info.get("icc_profile"):
        opts["icc_profile"] = im.info["icc_profile"]
    if "dpi" in im.info:
        opts["dpi"] = im.info["dpi"]
    if len(exif):
        exif = Image.Exif()
        exif.load(im.getexif().tobytes())
        exif.pop(_EXIF_ORIENTATION, None)
        opts["exif"] = exif.tobytes()
    if im.format == "JPEG":
        from PIL import JpegImagePlugin

        qtables = getattr(im, "quantization", None)
        if qtables:
            opts["qtables"] = qtables
            sampling = JpegImagePlugin.get_sampling(im)
            if sampling != -1:
                opts["subsampling"] = sampling
    return opts


def format_for_path(path: str | os.PathLike) -> str | None:
    """The image format implied by a file name's suffix (``None`` when the suffix is not known)."""
    return _SUFFIX_FORMATS.get(Path(path).suffix.lower())


def _to_pil(image: LoadedImage, fmt: str) -> Image.Image:
    p, a = image.pixels, image.alpha
    if image.bit_depth == 16:
        if p.shape[2] == 1 and a is None:
            return Image.fromarray(np.ascontiguousarray(p[..., 0]).astype("<u2"))  # mode I;16
        raise AssertionError("16-bit colour is written by _write_png16")
    arr = p if a is None else np.concatenate([p, a[..., None]], axis=2)  # [H, W, C(+1)]
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[arr.shape[2]]
    return Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr, mode=mode)


def _write_png16(image: LoadedImage, dest: Path) -> None:
    import png

    arr = image.pixels if image.alpha is None else np.concatenate([image.pixels, image.alpha[..., None]], 2)
    planes = arr.shape[2]
    writer = png.Writer(
        width=image.width,
        height=image.height,
        bitdepth=16,
        greyscale=planes in (1, 2),
        alpha=image.alpha is not None,
    )
    with open(dest, "wb") as f:
        writer.write(f, arr.reshape(image.height, image.width * planes))


def _patched_jpeg(image: LoadedImage, dest: Path) -> bytes | None:
    """``image`` as a copy of its source JPEG with only the changed MCUs re-encoded
    (:func:`realface.jpeg.patch_jpeg`), or ``None`` (logged) when the source cannot be patched."""
    from realface.jpeg import JpegPatchUnsupported, patch_jpeg

    try:
        original = image.path.read_bytes()
        patched = patch_jpeg(original, image.pixels)
    except (OSError, JpegPatchUnsupported) as exc:
        logger.warning(
            "%s: the JPEG is encoded afresh, so pixels outside the face can move by a few levels "
            "(its blocks cannot be copied from %s: %s); write PNG to keep every other pixel exact",
            dest,
            image.path,
            exc,
        )
        return None
    logger.info(
        "%s: %d of %d MCUs (%dx%d-pixel JPEG blocks) re-encoded; all others copied from %s unchanged",
        dest,
        patched.reencoded_mcus,
        patched.total_mcus,
        *patched.layout.mcu_size,
        image.path,
    )
    return patched.data


def save_image(image: LoadedImage, dest: str | os.PathLike, format: str | None = None) -> Path:
    """Write ``image`` to ``dest`` atomically, in ``format`` (default: the format it was read from).

    Size, mode, bit depth and alpha are those of ``image``; metadata from the input (ICC profile,
    DPI, EXIF with orientation reset to normal) is carried over. WebP is written lossless. A JPEG
    written from a JPEG input is a copy of the input in the DCT domain with only the MCUs that contain
    a changed pixel re-encoded (:func:`realface.jpeg.patch_jpeg`: same quantisation tables, sampling,
    metadata and stored orientation; every other block keeps its coefficients); when the input's
    coding cannot be patched (CMYK, RGB-coded, arithmetic, 12-bit) it is encoded afresh with the
    input's quantisation tables and subsampling, and a warning says so. Other inputs are written as
    JPEG at quality 95. A 16-bit image can only be written as PNG.

    Raises:
        ImageError: ``dest`` is the input file, or the format cannot hold this image.
    """
    dest = Path(dest)
    fmt = (format or image.format).upper()
    if dest.exists() and image.path.exists() and dest.resolve() == image.path.resolve():
        raise ImageError(f"{dest}: refusing to overwrite the input image; choose another output path")
    if image.bit_depth == 16 and fmt != "PNG":
        raise ImageError(f"{dest}: a 16-bit image can only be written as PNG, not {fmt}")
    if fmt == "JPEG" and image.alpha is not None:
        raise ImageError(f"{dest}: JPEG cannot store the alpha channel of {image.path}; write PNG or WebP")
    opts = dict(image.save_options)
    if fmt != "JPEG" or image.format != "JPEG":
        opts.pop("qtables", None)
        opts.pop("subsampling", None)
    if fmt == "JPEG" and "qtables" not in opts:
        opts["quality"] = 95
    if fmt == "WEBP":
        opts["lossless"] = True
        opts.pop("dpi", None)
    if fmt == "JPEG" and image.format == "JPEG":
        patched = _patched_jpeg(image, dest)
        if patched is not None:
            try:
                with atomic_path(dest) as tmp:
                    tmp.write_bytes(patched)
            except OSError as exc:
                raise ImageError(f"{dest}: could not write JPEG image ({exc})") from None
            return dest
    with atomic_path(dest) as tmp:
        try:
            if image.bit_depth == 16 and (image.pixels.shape[2] == 3 or image.alpha is not None):
                _write_png16(image, tmp)
            else:
                _to_pil(image, fmt).save(tmp, format=fmt, **opts)
        except (OSError, ValueError, KeyError) as exc:
            raise ImageError(f"{dest}: could not write {fmt} image ({exc})") from None
    return dest
