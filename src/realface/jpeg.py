"""Writing an edited JPEG so that every block the edit did not touch keeps its DCT coefficients.

A JPEG stores each component as 8×8 blocks of quantised DCT coefficients, grouped into MCUs (minimum
coded units: 16×16 pixels for 4:2:0, 16×8 for 4:2:2, 8×8 for 4:4:4 and grayscale). Decoding and
re-encoding a whole JPEG moves almost every pixel by a level or two. :func:`patch_jpeg` instead
re-encodes only the MCUs that contain a changed pixel and copies the coefficients of every other MCU
from the original file unchanged — the DCT-domain copy that lossless JPEG tools use for crops and
rotations — so those MCUs decode to exactly the pixels they had.

What the output keeps from the original: the quantisation tables and their assignment to components,
the sampling factors (chroma subsampling), the component ids, every APPn and COM segment before the
first scan byte for byte (JFIF, EXIF with its orientation, ICC profile, XMP, comments) and the pixel
grid in the file's stored orientation. What it does not keep: progressive scans and restart markers
(the output is a sequential JPEG with optimised Huffman tables; neither changes a decoded pixel).

What holds for the decoded pixels (checked on every write, see :func:`patch_jpeg`):

* every MCU that contains no changed pixel has the original's coefficients, so with a 4:4:4 or
  grayscale file it decodes to the original's pixels exactly;
* with subsampled chroma (4:2:0, 4:2:2) decoders such as libjpeg-turbo (Pillow's, browsers') smooth
  the chroma across block edges ("fancy upsampling"), so the outermost row or column of pixels of an
  untouched MCU that borders a re-encoded one reads one chroma sample of its re-encoded neighbour and
  can move by a level or two. Every pixel farther away is exact. :func:`reencoded_region` gives both
  regions.

Files this cannot patch raise :class:`JpegPatchUnsupported` (the caller then encodes the whole image):
CMYK/YCCK and RGB-coded JPEGs, 12-bit, lossless, hierarchical and arithmetic-coded files, sampling
factors that are not whole multiples of each other, and images whose size differs from the file's.

The coefficients are read and written with ``jpeglib`` (libjpeg-turbo's lossless coefficient
interface).
A re-encoded block gets its original coefficients plus the quantised DCT of the change of its samples
(:func:`forward_dct`, the JPEG standard's DCT, ITU-T T.81 A.3.3, quantised as in F.1.1.4, with the
block's own quantisation table), so what did not change inside a re-encoded MCU moves as little as
quantisation allows, and a block whose samples did not change keeps its coefficients exactly. ``jpeglib`` never sees the original's APPn
and COM segments (they are removed from the copy it reads and put back into its output here), which
keeps its fixed-size marker store out of the way of hostile files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import struct
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import numpy as np
from PIL import Image

from realface.imageio import _orient

__all__ = [
    "JpegLayout",
    "JpegPatchUnsupported",
    "PatchedJpeg",
    "forward_dct",
    "parse_layout",
    "patch_jpeg",
    "reencoded_region",
    "stored_from_display",
]

logger = logging.getLogger(__name__)

_SOI, _EOI, _SOS, _DNL = 0xD8, 0xD9, 0xDA, 0xDC
_SUPPORTED_SOF = {0xC0: "baseline", 0xC1: "extended sequential", 0xC2: "progressive"}
_OTHER_SOF = {0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM and RST0-7 carry no length
_EXIF_ORIENTATION = 0x0112
_INVERSE_ORIENTATION = {6: 8, 8: 6}  # every other EXIF orientation is its own inverse
_JPEGLIB_LOCK = threading.Lock()  # jpeglib keeps its libjpeg choice and marker state globally
_LIBJPEG = "turbo210"  # of jpeglib's builds: libjpeg-turbo, the codec family Pillow decodes with


class JpegPatchUnsupported(Exception):
    """The file cannot be patched block by block; the caller encodes the whole image instead."""


@dataclasses.dataclass(frozen=True)
class _Segment:
    marker: int  # the byte after 0xFF
    start: int  # offset of the 0xFF
    end: int  # offset just past the segment (for SOS: past its header, not the entropy-coded data)


@dataclasses.dataclass(frozen=True)
class JpegLayout:
    """The structure of a JPEG file that decides how it can be patched.

    Attributes:
        width, height: image size in the file's stored orientation (before EXIF orientation).
        sampling: ``(h, v)`` sampling factors per component, in frame order.
        component_ids: component identifiers from the frame header.
        process: ``"baseline"``, ``"extended sequential"`` or ``"progressive"``.
        colour: ``"L"`` (one component) or ``"YCbCr"`` (three).
        orientation: the EXIF orientation (1-8; 1 when there is none).
        metadata: every APPn and COM segment before the first scan, in file order, bytes as stored.
    """

    width: int
    height: int
    sampling: tuple[tuple[int, int], ...]
    component_ids: tuple[int, ...]
    process: str
    colour: str
    orientation: int
    metadata: tuple[bytes, ...]

    @property
    def max_sampling(self) -> tuple[int, int]:
        return max(h for h, _ in self.sampling), max(v for _, v in self.sampling)

    @property
    def mcu_size(self) -> tuple[int, int]:
        """``(width, height)`` of an MCU in pixels (8×8 for a single-component file)."""
        if len(self.sampling) == 1:
            return 8, 8
        hmax, vmax = self.max_sampling
        return 8 * hmax, 8 * vmax

    @property
    def subsampling(self) -> str:
        """``"4:4:4"``, ``"4:2:2"``, ``"4:2:0"``, ``"gray"`` or ``"HxV,..."`` for other layouts."""
        if len(self.sampling) == 1:
            return "gray"
        names: dict[tuple[tuple[int, int], ...], str] = {
            ((1, 1), (1, 1), (1, 1)): "4:4:4",
            ((2, 1), (1, 1), (1, 1)): "4:2:2",
        }
        names[(2, 2), (1, 1), (1, 1)] = "4:2:0"
        return names.get(self.sampling, ",".join(f"{h}x{v}" for h, v in self.sampling))


def _walk(data: bytes) -> Iterator[tuple[_Segment, bytes]]:
    """Every marker segment of a JPEG file, with its payload, through all scans up to EOI.

    Entropy-coded data after each SOS header is skipped (stuffed ``FF 00``, fill bytes and RSTn are
    not segments). Raises :class:`JpegPatchUnsupported` on a malformed structure.
    """
    n = len(data)
    if n < 4 or data[0] != 0xFF or data[1] != _SOI:
        raise JpegPatchUnsupported("no JPEG start-of-image marker")
    pos = 2
    while pos < n:
        if data[pos] != 0xFF:
            raise JpegPatchUnsupported(f"expected a marker at byte {pos}")
        while pos + 1 < n and data[pos + 1] == 0xFF:  # fill bytes before a marker
            pos += 1
        if pos + 1 >= n:
            break
        marker = data[pos + 1]
        if marker == _EOI:
            yield _Segment(marker, pos, pos + 2), b""
            return
        if marker in _STANDALONE:
            yield _Segment(marker, pos, pos + 2), b""
            pos += 2
            continue
        if pos + 4 > n:
            raise JpegPatchUnsupported("truncated marker segment")
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if length < 2 or pos + 2 + length > n:
            raise JpegPatchUnsupported(f"marker 0x{marker:02X} at byte {pos} has a bad length")
        end = pos + 2 + length
        yield _Segment(marker, pos, end), data[pos + 4 : end]
        pos = end
        if marker == _SOS:  # skip the entropy-coded data that follows
            while pos < n:
                i = data.find(b"\xff", pos)
                if i < 0 or i + 1 >= n:
                    pos = n
                    break
                nxt = data[i + 1]
                if nxt == 0x00 or 0xD0 <= nxt <= 0xD7 or nxt == 0xFF:
                    pos = i + 1 if nxt == 0xFF else i + 2
                    continue
                pos = i
                break
    raise JpegPatchUnsupported("no end-of-image marker")


def _exif_orientation(data: bytes) -> int:
    """The EXIF orientation as :func:`realface.imageio.load_image` reads it (Pillow's EXIF parser)."""
    with Image.open(io.BytesIO(data)) as im:
        return int(im.getexif().get(_EXIF_ORIENTATION, 1) or 1)


def parse_layout(data: bytes) -> JpegLayout:
    """Read the frame header, colour coding and metadata segments of a JPEG file.

    Raises:
        JpegPatchUnsupported: the file is not a JPEG that :func:`patch_jpeg` can patch (the message
            says why).
    """
    sof: tuple[int, bytes] | None = None
    metadata: list[bytes] = []
    saw_jfif = False
    adobe_transform: int | None = None
    scans = 0
    for seg, payload in _walk(data):
        m = seg.marker
        if m == _SOS:
            scans += 1
        elif m in _SUPPORTED_SOF or m in _OTHER_SOF:
            if sof is not None:
                raise JpegPatchUnsupported("more than one frame header")
            sof = (m, payload)
        elif m == _DNL:
            raise JpegPatchUnsupported("the image height is given by a DNL marker")
        elif 0xE0 <= m <= 0xEF or m == 0xFE:
            if scans == 0:
                metadata.append(data[seg.start : seg.end])
            if m == 0xE0 and payload.startswith(b"JFIF\x00"):
                saw_jfif = True
            if m == 0xEE and payload.startswith(b"Adobe") and len(payload) >= 12:
                adobe_transform = payload[11]
    if sof is None or scans == 0:
        raise JpegPatchUnsupported("no frame header or no scan")
    m, p = sof
    if m not in _SUPPORTED_SOF:
        raise JpegPatchUnsupported(f"SOF{m - 0xC0} (lossless, hierarchical or arithmetic-coded) files")
    if len(p) < 6:
        raise JpegPatchUnsupported("short frame header")
    precision, height, width, ncomp = p[0], *struct.unpack(">HH", p[1:5]), p[5]
    if precision != 8:
        raise JpegPatchUnsupported(f"{precision}-bit samples")
    if height == 0 or width == 0 or len(p) < 6 + 3 * ncomp:
        raise JpegPatchUnsupported("a frame header without a size")
    comps = [p[6 + 3 * i : 9 + 3 * i] for i in range(ncomp)]
    ids = tuple(c[0] for c in comps)
    sampling = tuple((c[1] >> 4, c[1] & 15) for c in comps)
    if ncomp == 1:
        colour = "L"
    elif ncomp == 3:
        # libjpeg's rule for a 3-component file: JFIF means YCbCr, else Adobe's transform flag, else
        # the component ids ('R', 'G', 'B' means RGB).
        if adobe_transform is not None:
            rgb = adobe_transform == 0
        else:
            rgb = ids == (82, 71, 66)
        if rgb and not saw_jfif:
            raise JpegPatchUnsupported("RGB-coded JPEGs")
        colour = "YCbCr"
    else:
        raise JpegPatchUnsupported(f"{ncomp}-component (CMYK or YCCK) JPEGs")
    if any(not (1 <= h <= 4 and 1 <= v <= 4) for h, v in sampling):
        raise JpegPatchUnsupported("invalid sampling factors")
    hmax, vmax = max(h for h, _ in sampling), max(v for _, v in sampling)
    if any(hmax % h or vmax % v for h, v in sampling):
        raise JpegPatchUnsupported(f"sampling factors {sampling} that are not whole multiples")
    return JpegLayout(
        width=width,
        height=height,
        sampling=sampling,
        component_ids=ids,
        process=_SUPPORTED_SOF[m],
        colour=colour,
        orientation=_exif_orientation(data),
        metadata=tuple(metadata),
    )


def stored_from_display(a: np.ndarray, orientation: int) -> np.ndarray:
    """Undo an EXIF orientation: the inverse of the one :func:`realface.imageio.load_image` applies.

    ``a`` is ``[H, W, ...]`` as a viewer shows it; the result is in the file's stored pixel grid.
    """
    return _orient(a, _INVERSE_ORIENTATION.get(orientation, orientation))


def _dct_matrix() -> np.ndarray:
    """The orthonormal 8-point DCT-II matrix ``D[u, x] = c(u) cos((2x + 1) u π / 16)``, ``[8, 8]``."""
    u = np.arange(8)[:, None]
    x = np.arange(8)[None, :]
    d = np.cos((2 * x + 1) * u * np.pi / 16) * np.sqrt(2 / 8)
    d[0] /= np.sqrt(2)
    return d


_D = _dct_matrix()
_COEF_LIMIT = np.where(np.arange(64).reshape(8, 8) == 0, 2047, 1023)  # DC, AC bounds of 8-bit Huffman coding


def forward_dct(blocks: np.ndarray, qtable: np.ndarray) -> np.ndarray:
    """DCT of 8×8 blocks divided by a quantisation table (not rounded).

    Args:
        blocks: ``[N, 8, 8]`` float, rows then columns; the caller subtracts JPEG's level shift (128)
            or passes differences of samples.
        qtable: ``[8, 8]`` quantisation table in natural (row-major frequency) order.

    Returns:
        ``[N, 8, 8]`` float64, ``F(v, u) / Q[v, u]`` with ``F`` the 2-D DCT of ITU-T T.81 A.3.3 (equal to
        the orthonormal DCT-II; ``v`` the vertical frequency). Rounding gives the quantised
        coefficients of T.81 F.1.1.4.
    """
    f = blocks.astype(np.float64)  # [N, 8, 8]
    return np.einsum("ux,nxy,vy->nuv", _D, f, _D) / qtable.astype(np.float64)  # [N, 8, 8]


_RGB_TO_YCBCR = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]
)  # JFIF (T.871 eq. 3) without its +128 offsets, which cancel in a difference


def _mcu_tiles(pixels: np.ndarray, layout: JpegLayout, ty: np.ndarray, tx: np.ndarray) -> np.ndarray:
    """The MCUs ``(ty[i], tx[i])`` of ``pixels`` ``[H, W, C]``, the image padded to whole MCUs by repeating
    its last row and column (as encoders do): ``[N, mh, mw, C]`` uint8."""
    rows, cols = _mcu_grid(layout)
    mw, mh = layout.mcu_size
    h, w = pixels.shape[:2]
    padded = np.pad(pixels, ((0, rows * mh - h), (0, cols * mw - w), (0, 0)), "edge")
    return padded.reshape(rows, mh, cols, mw, -1).transpose(0, 2, 1, 3, 4)[ty, tx]


def _component_blocks(change: np.ndarray, layout: JpegLayout) -> list[np.ndarray]:
    """The change of each component's 8×8 blocks inside MCU tiles.

    Args:
        change: ``[N, mh, mw, C]`` float64, new minus old pixels of N MCUs (RGB or gray).

    Returns:
        per component ``[N, vc, hc, 8, 8]``: the sample change of its ``vc × hc`` blocks in each MCU
        (YCbCr for colour; chroma box-filtered to the component's sampling).
    """
    if change.shape[-1] == 1:
        return [change[:, None, None, :, :, 0]]  # one 8x8 block per MCU
    ycc = change @ _RGB_TO_YCBCR.T  # [N, mh, mw, 3]
    hmax, vmax = layout.max_sampling
    n, mh, mw = ycc.shape[:3]
    out = []
    for c, (hc, vc) in enumerate(layout.sampling):
        sx, sy = hmax // hc, vmax // vc  # pixels per sample
        plane = ycc[..., c].reshape(n, mh // sy, sy, mw // sx, sx).mean(axis=(2, 4))  # [N, 8vc, 8hc]
        out.append(plane.reshape(n, vc, 8, hc, 8).transpose(0, 1, 3, 2, 4))  # [N, vc, hc, 8, 8]
    return out


def _mcu_grid(layout: JpegLayout) -> tuple[int, int]:
    """``(rows, cols)`` of MCUs covering the image."""
    mw, mh = layout.mcu_size
    return -(-layout.height // mh), -(-layout.width // mw)


def _touched_mcus(changed: np.ndarray, layout: JpegLayout) -> np.ndarray:
    """``[rows, cols]`` bool: MCUs that contain a changed pixel (``changed`` is ``[H, W]``, stored frame)."""
    rows, cols = _mcu_grid(layout)
    mw, mh = layout.mcu_size
    pad = np.zeros((rows * mh, cols * mw), dtype=bool)
    pad[: changed.shape[0], : changed.shape[1]] = changed
    return cast(np.ndarray, pad.reshape(rows, mh, cols, mw).any(axis=(1, 3)))


def reencoded_region(
    changed: np.ndarray, layout: JpegLayout, orientation_applied: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Which pixels :func:`patch_jpeg` re-encodes, and which next to them may still move.

    Args:
        changed: ``[H, W]`` bool, the pixels that differ from the original.
        layout: the original's :func:`parse_layout`.
        orientation_applied: ``changed`` is in display orientation (as ``load_image`` returns pixels);
            the results are then in display orientation too.

    Returns:
        ``(inside, border)``, both ``[H, W]`` bool: ``inside`` the pixels of re-encoded MCUs;
        ``border`` the pixels outside them that a chroma-upsampling decoder reads from a re-encoded
        neighbour (empty for 4:4:4 and grayscale). Every pixel in neither decodes exactly as before.
    """
    if orientation_applied:
        changed = stored_from_display(changed, layout.orientation)
    if changed.shape != (layout.height, layout.width):
        raise ValueError(f"changed must be {(layout.height, layout.width)}; got {changed.shape}")
    touched = _touched_mcus(changed, layout)
    mw, mh = layout.mcu_size
    inside = np.repeat(np.repeat(touched, mh, 0), mw, 1)[: layout.height, : layout.width]
    hmax, vmax = layout.max_sampling
    dx = 1 if any(h < hmax for h, _ in layout.sampling) else 0
    dy = 1 if any(v < vmax for _, v in layout.sampling) else 0
    grown = inside.copy()
    if dy:
        grown[1:] |= inside[:-1]
        grown[:-1] |= inside[1:]
    if dx:
        g = grown.copy()
        grown[:, 1:] |= g[:, :-1]
        grown[:, :-1] |= g[:, 1:]
    border = grown & ~inside
    if orientation_applied:
        inside = _orient(inside, layout.orientation)
        border = _orient(border, layout.orientation)
    return inside, border


@dataclasses.dataclass(frozen=True)
class PatchedJpeg:
    """The output of :func:`patch_jpeg`.

    Attributes:
        data: the JPEG file's bytes.
        layout: the original's layout (the output has the same).
        reencoded_mcus: MCUs re-encoded from the new pixels.
        total_mcus: MCUs in the image.
    """

    data: bytes
    layout: JpegLayout
    reencoded_mcus: int
    total_mcus: int


@contextlib.contextmanager
def _stderr_to_log() -> Iterator[None]:
    """Send what libjpeg prints on file descriptor 2 (warnings about the data) to the log instead."""
    try:
        saved = os.dup(2)
    except OSError:  # no standard error to protect
        yield
        return
    with tempfile.TemporaryFile() as sink:
        try:
            os.dup2(sink.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace").strip()
            if text:
                logger.debug("libjpeg: %s", text)


def _without_metadata(data: bytes) -> bytes:
    """The file with every APPn and COM segment removed (what jpeglib is given to read)."""
    parts, pos = [], 0
    for seg, _ in _walk(data):
        if 0xE0 <= seg.marker <= 0xEF or seg.marker == 0xFE:
            parts.append(data[pos : seg.start])
            pos = seg.end
    parts.append(data[pos:])
    return b"".join(parts)


def _finish(data: bytes, layout: JpegLayout) -> bytes:
    """jpeglib's output made to carry the original's metadata and component ids.

    Its own APPn/COM segments are replaced by ``layout.metadata`` (placed after SOI), and the
    component ids it renumbers (0, 1, 2) are set back to the original's in the frame and scan headers.
    """
    body = bytearray(_without_metadata(data))
    sof = [(seg, p) for seg, p in _walk(bytes(body)) if seg.marker in _SUPPORTED_SOF]
    if len(sof) != 1 or sof[0][1][5] != len(layout.component_ids):
        raise JpegPatchUnsupported("libjpeg wrote an unexpected frame header")
    seg, payload = sof[0]
    written = [payload[6 + 3 * i] for i in range(payload[5])]
    new_id = dict(zip(written, layout.component_ids, strict=True))
    for i in range(len(written)):
        body[seg.start + 4 + 6 + 3 * i] = layout.component_ids[i]
    for seg, payload in _walk(bytes(body)):
        if seg.marker == _SOS:
            for j in range(payload[0]):
                at = seg.start + 4 + 1 + 2 * j
                if body[at] not in new_id:
                    raise JpegPatchUnsupported("libjpeg wrote a scan for an unknown component")
                body[at] = new_id[body[at]]
    return bytes(body[:2]) + b"".join(layout.metadata) + bytes(body[2:])


def _decode(data: bytes) -> np.ndarray:
    """Pixels ``[H, W, C]`` uint8 as Pillow decodes the file, stored orientation (no EXIF applied)."""
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        a = np.asarray(im)
    return a[..., None] if a.ndim == 2 else a


def _quantisation(data: bytes) -> dict[int, list[int]]:
    """The file's quantisation tables as Pillow reads them (table slot -> 64 values)."""
    with Image.open(io.BytesIO(data)) as im:
        return {k: list(v) for k, v in getattr(im, "quantization", {}).items()}


def patch_jpeg(original: bytes, pixels: np.ndarray) -> PatchedJpeg:
    """Encode ``pixels`` as the JPEG ``original`` with only the changed MCUs re-encoded.

    Args:
        original: the bytes of the JPEG file the pixels were read from.
        pixels: ``[H, W, C]`` uint8, ``C`` = 3 for a colour file and 1 for a grayscale one, in display
            orientation (EXIF orientation applied, as :func:`realface.imageio.load_image` returns it).

    Returns:
        The new file (see the module docstring for what it keeps). An MCU is re-encoded when any of
        its pixels differs from Pillow's decoding of ``original``; all others keep their coefficients.
        A re-encoded block gets the original's coefficients plus the quantised DCT of the change
        (new pixels minus the original's decoded pixels, in YCbCr, chroma box-filtered to its
        sampling), so a block whose samples did not change keeps its coefficients too. Before
        returning, the new file is decoded and every pixel outside the re-encoded MCUs and their
        chroma border (:func:`reencoded_region`) is checked to equal ``pixels``.

    Raises:
        JpegPatchUnsupported: the file's coding cannot be patched, or the check failed.
    """
    layout = parse_layout(original)
    channels = 1 if layout.colour == "L" else 3
    stored = stored_from_display(pixels, layout.orientation)  # [H, W, C] stored frame
    if stored.shape != (layout.height, layout.width, channels) or stored.dtype != np.uint8:
        raise JpegPatchUnsupported(
            f"pixels {pixels.shape} {pixels.dtype} do not fit the file's "
            f"{layout.width}x{layout.height} {layout.colour} image"
        )
    before = _decode(original)  # [H, W, C] stored frame
    if before.shape != stored.shape:
        raise JpegPatchUnsupported(f"Pillow decodes the file as {before.shape}, expected {stored.shape}")
    changed = np.any(before != stored, axis=2)  # [H, W]
    touched = _touched_mcus(changed, layout)  # [rows, cols]
    data = _rewrite(original, layout, before, stored, touched)
    _check(data, original, layout, stored, changed)
    return PatchedJpeg(data=data, layout=layout, reencoded_mcus=int(touched.sum()), total_mcus=touched.size)


def _rewrite(
    original: bytes, layout: JpegLayout, before: np.ndarray, after: np.ndarray, touched: np.ndarray
) -> bytes:
    """The original's coefficients with the blocks of ``touched`` MCUs moved by the change
    ``after - before`` (both ``[H, W, C]`` uint8, stored frame), written as a new file."""
    try:
        import jpeglib
    except (ImportError, RuntimeError) as exc:
        raise JpegPatchUnsupported(f"jpeglib is missing or broken ({exc}); pip install jpeglib") from None

    ty, tx = np.nonzero(touched)  # [N] each
    change = _mcu_tiles(after, layout, ty, tx).astype(np.float64) - _mcu_tiles(before, layout, ty, tx)
    deltas = _component_blocks(change, layout)  # per component [N, vc, hc, 8, 8]
    with tempfile.TemporaryDirectory(prefix="realface-jpeg-") as tmp:
        src, dst = Path(tmp) / "in.jpg", Path(tmp) / "out.jpg"
        src.write_bytes(_without_metadata(original))
        with _JPEGLIB_LOCK, _stderr_to_log():
            try:
                jpeglib.version.set(_LIBJPEG)
                jpeg = jpeglib.read_dct(str(src))
                jpeg.load()
            except (OSError, ValueError, RuntimeError) as exc:
                raise JpegPatchUnsupported(f"libjpeg could not read the coefficients ({exc})") from None
            coefs = [jpeg.Y] + ([jpeg.Cb, jpeg.Cr] if layout.colour == "YCbCr" else [])
            sampling = tuple((int(s[1]), int(s[0])) for s in np.asarray(jpeg.samp_factor))  # (h, v)
            if sampling != layout.sampling:
                raise JpegPatchUnsupported(
                    f"libjpeg reads sampling {sampling}, the frame says {layout.sampling}"
                )
            for c, (coef, delta) in enumerate(zip(coefs, deltas, strict=True)):  # coef [by, bx, 8, 8]
                vc, hc = delta.shape[1:3]
                by = (ty[:, None, None] * vc + np.arange(vc)[None, :, None]).repeat(hc, 2)  # [N, vc, hc]
                bx = (tx[:, None, None] * hc + np.arange(hc)[None, None, :]).repeat(vc, 1)
                real = (by < coef.shape[0]) & (bx < coef.shape[1])  # not an MCU's padding block
                by, bx, delta = by[real], bx[real], delta[real]  # [M], [M], [M, 8, 8]
                if by.size == 0:
                    continue
                q = np.asarray(jpeg.qt[jpeg.quant_tbl_no[c]])  # [8, 8]
                moved = coef[by, bx].astype(np.float64) + np.rint(forward_dct(delta, q))  # [M, 8, 8]
                coef[by, bx] = np.clip(moved, -_COEF_LIMIT, _COEF_LIMIT).astype(np.int16)
            jpeg.markers = []
            try:
                jpeg.write_dct(str(dst), flags=["+OPTIMIZE_CODING"])
            except (OSError, ValueError) as exc:
                raise JpegPatchUnsupported(f"libjpeg could not write the coefficients ({exc})") from None
        out = dst.read_bytes()
    return _finish(out, layout)


def _check(data: bytes, original: bytes, layout: JpegLayout, stored: np.ndarray, changed: np.ndarray) -> None:
    """Decode the new file and confirm its frame, tables, metadata and the guarantee of
    :func:`reencoded_region` against the original."""
    try:
        after = _decode(data)
        out = parse_layout(data)
        same_tables = _quantisation(data) == _quantisation(original)
    except (OSError, ValueError, JpegPatchUnsupported) as exc:
        raise JpegPatchUnsupported(f"the patched file does not decode ({exc})") from None
    frame = (out.sampling, out.component_ids, out.width, out.height, out.metadata)
    if frame != (layout.sampling, layout.component_ids, layout.width, layout.height, layout.metadata):
        raise JpegPatchUnsupported("the patched file's frame or metadata differs from the original's")
    if not same_tables:
        raise JpegPatchUnsupported("the patched file's quantisation tables differ from the original's")
    if after.shape != stored.shape:
        raise JpegPatchUnsupported(f"the patched file decodes as {after.shape}, expected {stored.shape}")
    inside, border = reencoded_region(changed, layout, orientation_applied=False)
    moved = np.any(after != stored, axis=2)  # [H, W]
    bad = int(np.count_nonzero(moved & ~(inside | border)))
    if bad:
        raise JpegPatchUnsupported(f"{bad} pixels outside the re-encoded blocks changed")
