"""Training images and the infinite, resumable batch stream of ``realface train``.

**Layout.** :class:`ImageDataset` reads the StyleGAN2-ADA dataset layout (what the official
``dataset_tool.py`` writes): a folder, searched recursively, or a ``.zip`` archive of aligned,
square images (the suffixes of :data:`realface.imageio.IMAGE_SUFFIXES`: ``.png``, ``.jpg``/``.jpeg``,
``.webp``, ``.tif``/``.tiff``; other files are ignored). A ``dataset.json``
with class labels may be present; realface trains unconditional networks, so it is ignored (logged
at debug level). Files are used in sorted order of their ``/``-separated relative names.

**What every image must be.** Square, all of one resolution (``resolution`` when given, otherwise the
most common size), and 8-bit RGB. Images in the modes L, LA, RGBA, P, PA or 1 are converted to RGB
when read (alpha is dropped, as the official ``dataset_tool.py`` does); one warning counts them.
Any other mode (CMYK, 16-bit, float, ...) or a wrong size raises :class:`DatasetError` listing the
offending files with what was expected and what was found.

**Unreadable files are listed and skipped, never fatal.** Every file's header is read when the
dataset is built (Pillow reads only the first bytes; no pixel is decoded), plus its last bytes for
truncation: a PNG must end with its ``IEND`` chunk, a JPEG must have its end-of-image marker near
the end, a WebP's RIFF size must fit the file (zip members stored compressed skip this tail check;
their CRC is verified when they are read). Files that fail are logged once as a summary and kept in
:attr:`ImageDataset.skipped`. A file whose pixel data turns out corrupt only when decoded (rare:
damage in the middle of a file) is logged once per process and replaced, deterministically, by the
next readable image in order, so a training run never crashes on it. ``verify="decode"`` decodes
every image when the dataset is built instead, so that :attr:`~ImageDataset.skipped` is complete.

**Zip archives** are never extracted. Members are opened lazily, one at a time, and every process
(each DataLoader worker) opens its own handle. Member names that are absolute, contain ``..``,
a drive letter or a backslash are refused with :class:`DatasetError` before anything is read.

**Items** are ``uint8`` tensors ``[3, H, W]`` (the official dataset's layout, without labels).
``xflip=True`` doubles the dataset: index ``i + N`` is the mirror image of index ``i``, as in the
official ``ImageFolderDataset``. ``max_size`` keeps a random subset chosen exactly as the official
code chooses it (``RandomState(0)`` shuffle, first ``max_size``, sorted).

**Batches.** :func:`make_loader` returns an :class:`InfiniteLoader`: an endless stream of
``uint8`` batches ``[B, 3, H, W]`` in the order of the official ``InfiniteSampler`` (a
``RandomState(seed)`` shuffle followed by a random walk that swaps each visited item with one of the
previous ``window`` items; with several processes, rank ``r`` takes the global positions
``r, r + world, r + 2·world, ...``). :meth:`InfiniteLoader.state_dict` captures the position after
the last batch handed out (not where prefetching workers have got to), so a loader rebuilt and
restored with :meth:`~InfiniteLoader.load_state_dict` continues with exactly the batches an
uninterrupted loader would have produced (``tests/train/test_dataset.py``).
"""

from __future__ import annotations

import collections
import io
import logging
import os
import struct
import zipfile
from collections.abc import Iterator, Sized
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from realface.errors import ConfigError, RealFaceError
from realface.imageio import image_suffixes_text, is_image_file

__all__ = [
    "DatasetError",
    "SkippedFile",
    "ImageDataset",
    "InfiniteSampler",
    "InfiniteLoader",
    "default_workers",
    "make_loader",
    "to_model_range",
]

logger = logging.getLogger(__name__)

# Pillow identifies by content; only the decoders of the formats that realface.imageio.IMAGE_SUFFIXES
# name may run.
_PIL_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF")
_CONVERTED_MODES = ("L", "LA", "RGBA", "P", "PA", "1")  # read as RGB, alpha dropped
_MAX_SIDE = 16384  # no aligned face dataset is larger; a bigger header is refused before decoding
_MAX_MEMBER_BYTES = 1 << 30  # a zip member larger than 1 GiB is not an aligned face image
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_JPEG_EOI = b"\xff\xd9"
_JPEG_TAIL = 4096  # bytes searched for the end-of-image marker (encoders may pad after it)
_ZIP_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")  # 30 bytes before a member's name and data
_MAX_LISTED = 10  # file names shown in one log line or error message


class DatasetError(RealFaceError):
    """A training dataset cannot be used: wrong image sizes or modes, an unsafe archive, no images."""


@dataclass(frozen=True)
class SkippedFile:
    """A file left out of the dataset. ``name`` is relative to the dataset root, ``/``-separated."""

    name: str
    reason: str


@dataclass(frozen=True)
class _Header:
    format: str
    size: tuple[int, int]  # (width, height)
    mode: str


def _listing(names: list[str], limit: int = _MAX_LISTED) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _unsafe_member_reason(name: str) -> str | None:
    """Why a zip member name could escape the archive's root, or None when it is safe."""
    if "\\" in name:
        return "contains a backslash"
    if name.startswith("/"):
        return "is an absolute path"
    parts = PurePosixPath(name).parts
    if parts and len(parts[0]) >= 2 and parts[0][1] == ":":
        return "starts with a drive letter"
    if ".." in parts:
        return "contains '..'"
    return None


def to_model_range(x: torch.Tensor) -> torch.Tensor:
    """``uint8`` images (any shape) → ``float32`` in [-1, 1] by ``x / 127.5 - 1`` (official loop)."""
    if x.dtype != torch.uint8:
        raise TypeError(f"to_model_range expects uint8 images; got {x.dtype}")
    return x.to(torch.float32) / 127.5 - 1  # same shape, float32


class ImageDataset(torch.utils.data.Dataset):
    """Aligned square RGB training images from a folder or a ``.zip`` (see the module docstring).

    Args:
        path: a folder (searched recursively) or a ``.zip`` archive.
        resolution: required width and height in pixels; ``None`` uses the most common size.
        xflip: append a mirrored copy of every image (index ``i + N`` mirrors index ``i``).
        max_size: keep at most this many images (the official random subset; ``None``: all).
        verify: ``"header"`` (default) reads each file's header and last bytes when the dataset is
            built; ``"decode"`` decodes every image, which finds every corrupt file up front.

    Raises:
        DatasetError: the path is not a folder or zip, no usable image is found, an image has the
            wrong size or an unsupported mode, or a zip member name is unsafe.

    Attributes:
        names: the image files used, relative ``/``-separated names, sorted (``N`` of them).
        skipped: the files left out, with the reason.
        resolution: the images' width and height.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        resolution: int | None = None,
        xflip: bool = False,
        max_size: int | None = None,
        *,
        verify: Literal["header", "decode"] = "header",
    ) -> None:
        self.path = Path(path)
        if resolution is not None and resolution <= 0:
            raise ConfigError(f"resolution must be positive; got {resolution}")
        if max_size is not None and max_size <= 0:
            raise ConfigError(f"max_size must be positive or None; got {max_size}")
        if verify not in ("header", "decode"):
            raise ConfigError(f"verify must be 'header' or 'decode'; got {verify!r}")
        if self.path.is_dir():
            self._kind = "dir"
        elif self.path.is_file() and zipfile.is_zipfile(self.path):
            self._kind = "zip"
        elif self.path.is_file() and self.path.suffix.lower() == ".zip":
            raise DatasetError(f"{self.path}: not a readable zip archive (damaged or incomplete?)")
        else:
            raise DatasetError(f"{self.path}: expected a folder or a .zip of aligned images; not found")
        self._zip: zipfile.ZipFile | None = None
        self._zip_pid: int | None = None
        self._late_failures: set[str] = set()

        candidates = self._list_images()
        headers: dict[str, _Header] = {}
        skipped: list[SkippedFile] = []
        for name in candidates:
            header = self._inspect(name, decode=verify == "decode")
            if isinstance(header, str):
                skipped.append(SkippedFile(name, header))
            else:
                headers[name] = header
        self.skipped: tuple[SkippedFile, ...] = tuple(skipped)
        if skipped:
            logger.warning(
                "%s: %d unreadable image file(s) skipped: %s",
                self.path,
                len(skipped),
                _listing([f"{s.name} ({s.reason})" for s in skipped]),
            )
        if not headers:
            raise DatasetError(
                f"{self.path}: no readable images (looked for {image_suffixes_text()}; "
                f"{len(candidates)} candidate file(s), {len(skipped)} unreadable)"
            )
        self.resolution = self._check_sizes(headers, resolution)
        self._check_modes(headers)

        names = sorted(headers)
        raw_idx = np.arange(len(names), dtype=np.int64)
        if max_size is not None and raw_idx.size > max_size:
            np.random.RandomState(0).shuffle(raw_idx)  # the official subset: seed 0, then sorted
            raw_idx = np.sort(raw_idx[:max_size])
        self.names: tuple[str, ...] = tuple(names[i] for i in raw_idx)
        self.xflip = bool(xflip)
        logger.info(
            "%s: %d images of %dx%d%s",
            self.path,
            len(self.names),
            self.resolution,
            self.resolution,
            " (+ mirrored copies)" if self.xflip else "",
        )

    # ------------------------------------------------------------------------------------------
    # Files

    def _list_images(self) -> list[str]:
        """Sorted relative names of every file with an image suffix; logs what is ignored."""
        if self._kind == "dir":
            all_names = []
            for root, _dirs, files in os.walk(self.path):
                for fname in files:
                    rel = os.path.relpath(os.path.join(root, fname), self.path)
                    all_names.append(Path(rel).as_posix())
        else:
            zf = self._zipfile()
            all_names = []
            seen: set[str] = set()
            for info in zf.infolist():
                reason = _unsafe_member_reason(info.filename)
                if reason is not None:
                    raise DatasetError(
                        f"{self.path}: refusing the archive: member {info.filename!r} {reason} "
                        "(a dataset archive holds plain relative names only)"
                    )
                if info.is_dir():
                    continue
                if info.filename in seen:
                    raise DatasetError(
                        f"{self.path}: refusing the archive: member {info.filename!r} appears twice"
                    )
                seen.add(info.filename)
                all_names.append(info.filename)
        if "dataset.json" in all_names:
            logger.debug("%s: dataset.json (class labels) is ignored; training is unconditional", self.path)
        images = sorted(n for n in all_names if is_image_file(n))
        ignored = len(all_names) - len(images) - ("dataset.json" in all_names)
        if ignored:
            logger.debug("%s: %d non-image file(s) ignored", self.path, ignored)
        return images

    def _zipfile(self) -> zipfile.ZipFile:
        """This process's handle on the archive (reopened after a fork or in a worker)."""
        if self._zip is None or self._zip_pid != os.getpid():
            try:
                self._zip = zipfile.ZipFile(self.path)
            except (zipfile.BadZipFile, OSError) as exc:
                raise DatasetError(f"{self.path}: not a readable zip archive ({exc})") from None
            self._zip_pid = os.getpid()
        return self._zip

    def _read_bytes(self, name: str) -> bytes:
        if self._kind == "dir":
            return (self.path / name).read_bytes()
        zf = self._zipfile()
        info = zf.getinfo(name)
        if info.file_size > _MAX_MEMBER_BYTES:
            raise OSError(f"member of {info.file_size:,} bytes is too large for an image")
        with zf.open(info) as f:
            return f.read()  # reading to the end checks the member's CRC

    def _tail(self, name: str, n: int) -> tuple[bytes, int] | None:
        """The last ``n`` bytes and the size of a file, or None when they cannot be read cheaply."""
        if self._kind == "dir":
            with open(self.path / name, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(size - n, 0))
                return f.read(), size
        info = self._zipfile().getinfo(name)
        if info.compress_type != zipfile.ZIP_STORED:
            return None  # the tail of a compressed member needs the whole member decompressed
        with open(self.path, "rb") as f:  # a stored member's bytes lie in the archive as they are
            f.seek(info.header_offset)
            fields = _ZIP_LOCAL_HEADER.unpack(f.read(_ZIP_LOCAL_HEADER.size))
            data_start = info.header_offset + _ZIP_LOCAL_HEADER.size + fields[9] + fields[10]
            size = info.compress_size
            f.seek(data_start + max(size - n, 0))
            return f.read(min(n, size)), size

    def _inspect(self, name: str, decode: bool) -> _Header | str:
        """The header of one file, or why the file is unreadable (a short reason)."""
        try:
            if self._kind == "dir":
                fobj: Any = open(self.path / name, "rb")
            else:
                info = self._zipfile().getinfo(name)
                if info.file_size > _MAX_MEMBER_BYTES:
                    return f"member of {info.file_size:,} bytes is too large for an image"
                fobj = self._zipfile().open(info)
            with fobj, Image.open(fobj, formats=_PIL_FORMATS) as im:
                header = _Header(format=str(im.format), size=im.size, mode=im.mode)
                if getattr(im, "n_frames", 1) > 1:
                    return "animated image"
            if max(header.size) > _MAX_SIDE:
                return f"{header.size[0]}x{header.size[1]} is larger than any aligned face image"
            problem = self._check_end(name, header.format)
            if problem:
                return problem
            if decode:
                self._decode(self._read_bytes(name), expected=None)
        except UnidentifiedImageError:
            return "not a PNG, JPEG, WebP or TIFF image"
        except (OSError, SyntaxError, ValueError, EOFError, zipfile.BadZipFile, RuntimeError) as exc:
            return f"unreadable ({exc})"
        except Image.DecompressionBombError as exc:
            return f"too many pixels ({exc})"
        return header

    def _check_end(self, name: str, fmt: str) -> str | None:
        """Truncation check from a file's last bytes (and a WebP's RIFF size); the problem or None."""
        tail = self._tail(name, _JPEG_TAIL if fmt == "JPEG" else len(_PNG_END))
        if tail is None:
            return None
        end, size = tail
        if fmt == "PNG" and not end.endswith(_PNG_END):
            return "truncated PNG (no IEND chunk at the end)"
        if fmt == "JPEG" and _JPEG_EOI not in end:
            return "truncated JPEG (no end-of-image marker)"
        if fmt == "WEBP":
            if self._kind == "dir":
                with open(self.path / name, "rb") as f:
                    head = f.read(8)
            else:
                with self._zipfile().open(name) as f:
                    head = f.read(8)
            riff_size = struct.unpack("<I", head[4:8])[0] if len(head) == 8 else 0
            if head[:4] != b"RIFF" or riff_size + 8 > size:
                return "truncated WebP (RIFF size exceeds the file)"
        return None

    def _check_sizes(self, headers: dict[str, _Header], resolution: int | None) -> int:
        if resolution is None:
            counts = collections.Counter(h.size for h in headers.values())
            (w, h), _ = counts.most_common(1)[0]
            if w != h:
                first = next(n for n, hd in headers.items() if hd.size == (w, h))
                raise DatasetError(
                    f"{self.path}: expected square aligned images; most are {w}x{h} (e.g. {first})"
                )
            resolution = w
        wrong = [n for n, hd in sorted(headers.items()) if hd.size != (resolution, resolution)]
        if wrong:
            got = ", ".join(f"{n} is {headers[n].size[0]}x{headers[n].size[1]}" for n in wrong[:_MAX_LISTED])
            more = f" ({len(wrong) - _MAX_LISTED} more)" if len(wrong) > _MAX_LISTED else ""
            raise DatasetError(
                f"{self.path}: every image must be {resolution}x{resolution}; {got}{more}. "
                "Re-align or resize these files, or remove them."
            )
        return resolution

    def _check_modes(self, headers: dict[str, _Header]) -> None:
        bad = [n for n, h in sorted(headers.items()) if h.mode != "RGB" and h.mode not in _CONVERTED_MODES]
        if bad:
            got = ", ".join(f"{n} has mode {headers[n].mode}" for n in bad[:_MAX_LISTED])
            raise DatasetError(
                f"{self.path}: expected 8-bit RGB images (L, LA, RGBA, P and PA are converted); {got}"
                f"{f' ({len(bad) - _MAX_LISTED} more)' if len(bad) > _MAX_LISTED else ''}. "
                "Convert these files to 8-bit RGB."
            )
        converted = [n for n, h in sorted(headers.items()) if h.mode != "RGB"]
        if converted:
            modes = collections.Counter(headers[n].mode for n in converted)
            logger.warning(
                "%s: %d of %d images are not RGB (%s) and are converted to RGB when read "
                "(alpha is dropped), e.g. %s",
                self.path,
                len(converted),
                len(headers),
                ", ".join(f"{m}: {c}" for m, c in sorted(modes.items())),
                _listing(converted, 3),
            )

    @staticmethod
    def _decode(data: bytes, expected: int | None) -> np.ndarray:
        """File bytes → ``uint8`` ``[H, W, 3]``; OSError unless ``expected`` x ``expected`` (if given)."""
        with Image.open(io.BytesIO(data), formats=_PIL_FORMATS) as im:
            if expected is not None and im.size != (expected, expected):
                raise OSError(f"decoded size {im.size} differs from the dataset resolution {expected}")
            rgb = im if im.mode == "RGB" else im.convert("RGB")
            return np.asarray(rgb, dtype=np.uint8)  # [H, W, 3]

    # ------------------------------------------------------------------------------------------
    # Dataset protocol

    def __len__(self) -> int:
        return len(self.names) * (2 if self.xflip else 1)

    @property
    def num_images(self) -> int:
        """Number of distinct image files used (``N``; ``len(self)`` is ``2N`` with ``xflip``)."""
        return len(self.names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (3, self.resolution, self.resolution)

    def __getitem__(self, index: int) -> torch.Tensor:
        """The image ``[3, H, W]`` ``uint8``; indices ``N..2N-1`` are mirrored when ``xflip``."""
        n = len(self.names)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} items")
        raw, flip = index % n, index >= n
        for k in range(n):
            name = self.names[(raw + k) % n]
            if name in self._late_failures:
                continue
            try:
                hwc = self._decode(self._read_bytes(name), self.resolution)  # [H, W, 3]
                break
            except (OSError, SyntaxError, ValueError, EOFError, zipfile.BadZipFile, RuntimeError) as exc:
                self._late_failures.add(name)
                logger.warning(
                    "%s: %s could not be decoded (%s); the next readable image is used in its place",
                    self.path,
                    name,
                    exc,
                )
        else:
            raise DatasetError(f"{self.path}: none of the {n} images could be decoded")
        chw = hwc.transpose(2, 0, 1)  # [3, H, W]
        if flip:
            chw = chw[:, :, ::-1]
        return torch.from_numpy(np.ascontiguousarray(chw))  # [3, H, W] uint8

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_zip"] = None  # each worker process opens its own handle
        state["_zip_pid"] = None
        return state

    def close(self) -> None:
        """Close this process's zip handle (it is reopened when needed)."""
        if self._zip is not None:
            self._zip.close()
        self._zip = None
        self._zip_pid = None

    def __repr__(self) -> str:
        return (
            f"ImageDataset({str(self.path)!r}, images={len(self.names)}, resolution={self.resolution}, "
            f"xflip={self.xflip}, skipped={len(self.skipped)})"
        )


# --------------------------------------------------------------------------------------------------
# Sampling


class InfiniteSampler:
    """The official StyleGAN2-ADA ``InfiniteSampler`` order, as an explicit, saveable state.

    ``order`` starts as ``arange(num_items)`` shuffled by ``numpy.random.RandomState(seed)``. Step
    ``t`` (``t = 0, 1, 2, ...``) visits position ``i = t mod num_items``: the item ``order[i]`` belongs
    to rank ``t mod world_size``, then ``order[i]`` is swapped with ``order[(i - rng.randint(window))
    mod num_items]`` where ``window = rint(num_items · window_size)`` (no swap when ``window < 2``). The
    walk is the same on every rank, so at any step the ranks hold disjoint positions of one stream.
    With ``shuffle=False`` the order is ``0, 1, 2, ...`` repeated.

    The state (``order``, the generator's state and the step) is captured by :meth:`state_dict`.
    """

    def __init__(
        self,
        num_items: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        window_size: float = 0.5,
    ) -> None:
        if num_items <= 0:
            raise ConfigError(f"the dataset is empty (num_items={num_items})")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ConfigError(f"rank must be in [0, world_size); got rank={rank}, world_size={world_size}")
        if not 0 <= window_size <= 1:
            raise ConfigError(f"window_size must be in [0, 1]; got {window_size}")
        self.num_items, self.rank, self.world_size = num_items, rank, world_size
        self.seed, self.shuffle, self.window_size = seed, shuffle, window_size
        self.order = np.arange(num_items, dtype=np.int64)
        self.rng = np.random.RandomState(seed)
        self.window = 0
        if shuffle:
            self.rng.shuffle(self.order)
            self.window = int(np.rint(num_items * window_size))
        self.step = 0

    def next_index(self) -> int:
        """The next item index for this rank (advances the walk past it)."""
        while True:
            i = self.step % self.num_items
            item = int(self.order[i]) if self.step % self.world_size == self.rank else None
            if self.window >= 2:
                j = (i - self.rng.randint(self.window)) % self.num_items
                self.order[i], self.order[j] = self.order[j], self.order[i]
            self.step += 1
            if item is not None:
                return item

    def __iter__(self) -> Iterator[int]:
        while True:
            yield self.next_index()

    def state_dict(self) -> dict[str, Any]:
        """Plain ints and ``int64`` tensors; :meth:`load_state_dict` restores the walk exactly."""
        state = self.rng.get_state()
        assert isinstance(state, tuple) and state[0] == "MT19937"
        _name, keys, pos, has_gauss, cached_gaussian = state
        return {
            "num_items": self.num_items,
            "rank": self.rank,
            "world_size": self.world_size,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "window": self.window,
            "step": self.step,
            "order": torch.from_numpy(self.order.copy()),  # [num_items] int64
            "rng_keys": torch.from_numpy(keys.astype(np.int64)),  # [624] int64 (MT19937 words)
            "rng_pos": int(pos),
            "rng_has_gauss": int(has_gauss),
            "rng_cached_gaussian": float(cached_gaussian),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state saved by :meth:`state_dict` from a sampler with the same settings."""
        for key in ("num_items", "rank", "world_size", "seed", "shuffle", "window"):
            if key not in state:
                raise ConfigError(f"sampler state has no {key!r}; expected one saved by InfiniteSampler")
            mine = getattr(self, key)
            if state[key] != mine:
                raise ConfigError(
                    f"sampler state was saved with {key}={state[key]!r}; this sampler has {key}={mine!r} "
                    "(resume with the same dataset, seed, batch and number of processes)"
                )
        order = torch.as_tensor(state["order"]).numpy().astype(np.int64)
        if order.shape != (self.num_items,):
            raise ConfigError(f"sampler state order has shape {order.shape}; expected ({self.num_items},)")
        keys = torch.as_tensor(state["rng_keys"]).numpy().astype(np.uint32)
        self.order = order.copy()
        self.rng.set_state(
            (
                "MT19937",
                keys,
                int(state["rng_pos"]),
                int(state["rng_has_gauss"]),
                state["rng_cached_gaussian"],
            )
        )
        self.step = int(state["step"])


class _BatchSampler(torch.utils.data.Sampler):
    """Endless lists of ``batch_size`` indices from an :class:`InfiniteSampler`.

    Runs in the main process. After producing batch ``k`` (counted from the last restart) it records
    the sampler state, so that the loader can report the state at the batch it actually handed out.
    """

    def __init__(self, sampler: InfiniteSampler, batch_size: int) -> None:
        self.sampler, self.batch_size = sampler, batch_size
        self.snapshots: dict[int, dict[str, Any]] = {}
        self._start: dict[str, Any] = sampler.state_dict()
        self._generation = 0

    def restart_from(self, state: dict[str, Any]) -> None:
        """The next iteration starts from ``state`` (batch 0 of a new generation)."""
        self._start = state
        self.snapshots = {}
        self._generation += 1

    def __iter__(self) -> Iterator[list[int]]:
        self.sampler.load_state_dict(self._start)
        self.snapshots = {0: self._start}
        k = 0
        while True:
            batch = [self.sampler.next_index() for _ in range(self.batch_size)]
            k += 1
            self.snapshots[k] = self.sampler.state_dict()
            yield batch


class InfiniteLoader:
    """An endless iterator of ``uint8`` batches ``[B, 3, H, W]`` with an exact, saveable position.

    Built by :func:`make_loader`. ``next(loader)`` returns the next batch; :meth:`state_dict` /
    :meth:`load_state_dict` save and restore the position (see the module docstring).
    """

    def __init__(
        self,
        dataset: torch.utils.data.Dataset,
        batch_size: int,
        sampler: InfiniteSampler,
        num_workers: int,
        pin_memory: bool,
        prefetch_factor: int | None,
    ) -> None:
        self.dataset, self.batch_size = dataset, batch_size
        self._batches = _BatchSampler(sampler, batch_size)
        self._loader: torch.utils.data.DataLoader | None = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=self._batches,
            num_workers=num_workers,
            pin_memory=pin_memory,
            persistent_workers=num_workers > 0,
            prefetch_factor=prefetch_factor if num_workers > 0 else None,
            # Starting an iterator draws the workers' base seed: from this generator, never from the
            # global RNG, whose state belongs to the training run (and is saved with its checkpoints).
            generator=torch.Generator().manual_seed(sampler.seed),
        )
        self._iter: Iterator[torch.Tensor] | None = None
        self._consumed = 0  # batches handed out since the last restart
        self._state = sampler.state_dict()  # sampler state after the last batch handed out
        self.batches_done = 0  # batches handed out since the stream's beginning

    def __iter__(self) -> InfiniteLoader:
        return self

    def __next__(self) -> torch.Tensor:
        if self._loader is None:
            raise RuntimeError("the loader was closed")
        if self._iter is None:
            self._batches.restart_from(self._state)
            self._consumed = 0
            self._iter = iter(self._loader)
        batch = next(self._iter)  # [B, 3, H, W] uint8
        self._consumed += 1
        self._state = self._batches.snapshots.pop(self._consumed)
        for k in [k for k in self._batches.snapshots if k < self._consumed]:
            del self._batches.snapshots[k]
        self.batches_done += 1
        return batch

    def state_dict(self) -> dict[str, Any]:
        """The position after the last batch returned: the sampler state plus ``batches_done``."""
        return {
            "sampler": dict(self._state),
            "batch_size": self.batch_size,
            "batches_done": self.batches_done,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved position; the next batch is the one that followed it."""
        if state.get("batch_size") != self.batch_size:
            raise ConfigError(
                f"loader state was saved with batch_size={state.get('batch_size')}; "
                f"this loader has batch_size={self.batch_size}"
            )
        self._batches.sampler.load_state_dict(state["sampler"])  # validates the settings
        self._state = self._batches.sampler.state_dict()
        self.batches_done = int(state["batches_done"])
        self._iter = None  # in-flight batches of the old position are discarded on restart

    def close(self) -> None:
        """Stop the worker processes."""
        self._iter = None
        self._loader = None

    def __enter__(self) -> InfiniteLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def default_workers() -> int:
    """Loader processes by default: ``min(3, usable CPUs - 1)``, at least 0.

    3 is the official value; one CPU is left to the training process itself, so a small machine
    never gets more workers than it has CPUs (the case PyTorch's DataLoader warns about).
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not every platform can tell which CPUs this process may use
        cpus = os.cpu_count() or 1
    return max(0, min(3, cpus - 1))


def make_loader(
    dataset: torch.utils.data.Dataset,
    batch_size: int,
    *,
    num_workers: int | None = None,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    shuffle: bool = True,
    window_size: float = 0.5,
    pin_memory: bool | None = None,
    prefetch_factor: int = 2,
) -> InfiniteLoader:
    """An endless, seeded, resumable stream of batches of ``dataset`` for one training process.

    Args:
        dataset: items of equal shape (an :class:`ImageDataset`).
        batch_size: images per batch *of this process* (the official ``batch_gpu``).
        num_workers: loader processes (default :func:`default_workers`: ``min(3, CPUs - 1)``; the
            official value is 3); 0 reads in the calling process. Workers are persistent across restarts.
        seed, shuffle, window_size: the sampler (:class:`InfiniteSampler`; official defaults).
        rank, world_size: this process's rank among ``world_size`` data-parallel processes; each
            rank gets disjoint positions of the same global stream.
        pin_memory: page-locked batches for fast copies to the GPU; default: when CUDA is available.
        prefetch_factor: batches loaded ahead per worker.

    Every batch is full (the stream has no end). The batch sequence depends only on the dataset,
    ``seed``, ``shuffle``, ``window_size``, ``batch_size``, ``rank`` and ``world_size``, never on
    ``num_workers``.
    """
    if batch_size <= 0:
        raise ConfigError(f"batch_size must be positive; got {batch_size}")
    if num_workers is None:
        num_workers = default_workers()
    if num_workers < 0:
        raise ConfigError(f"num_workers must be >= 0; got {num_workers}", field="workers")
    if not isinstance(dataset, Sized):
        raise ConfigError(f"the dataset must be map-style with a length; got {type(dataset).__name__}")
    sampler = InfiniteSampler(
        len(dataset), rank=rank, world_size=world_size, seed=seed, shuffle=shuffle, window_size=window_size
    )
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    return InfiniteLoader(dataset, batch_size, sampler, num_workers, pin_memory, prefetch_factor)
