"""``realface study create``: a blind study folder from the outputs of several methods.

Study folder layout::

    study.json          the manifest (:class:`Study`): name, seed, methods, items and, per item, which
                        hidden candidate code shows which method
    items/<id>/<code>.png   one crop (or full image) per candidate; ``<code>`` is random, never a method name
    items/<id>/reference.png    the rendered input, when ``--reference`` was given
    votes.jsonl         the participants' votes (written by ``realface study serve``)

Candidates are re-encoded as plain PNG, so no file name, format or metadata of the inputs reaches the
participants. Files are paired by relative path without the suffix (``tops/a.jpg`` pairs with
``tops/a.png``); paths missing from some folder are listed in :attr:`CreateResult.mismatches`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from realface.errors import ConfigError, FaceError, ImageError, RealFaceError
from realface.imageio import DEFAULT_MAX_PIXELS, list_images, load_image
from realface.utils.fs import atomic_dir, atomic_write_text

__all__ = [
    "FORMAT",
    "CreateConfig",
    "CreateResult",
    "Item",
    "Study",
    "create_study",
    "pair_folders",
]

log = logging.getLogger(__name__)

FORMAT = "realface.study/1"
MANIFEST_NAME = "study.json"
VOTES_NAME = "votes.jsonl"
REFERENCE_NAME = "reference.png"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_MANIFEST_BYTES = 64 << 20

Crop = Literal["face", "full"]


@dataclass(frozen=True)
class CreateConfig:
    """How a study is made.

    Attributes:
        name: the study's title (shown to participants; never a method name).
        methods: ``(method name, folder)`` pairs, at least two; names are letters, digits, ``_.-``.
        reference: folder of the rendered inputs, shown beside the candidates with the question
            "same person?"; None: no reference, no identity question.
        crop: ``"face"``: a square around the face; ``"full"``: the whole image.
        meta: folder of face metadata (``realface align --meta``), ``<relative path>_face<N>.json``
            or ``<relative path>.json``; faces without one are detected (:func:`realface.face.find_faces`).
        face_index: which face of an image (0: the largest).
        margin: the face crop's side as a multiple of the face box's larger side.
        size: side of a face crop, or the longest side of a full image (never enlarged), in pixels.
        seed: the seed of every participant's order; None: a random one (recorded in the manifest).
        max_pixels: the largest input image accepted.
    """

    name: str
    methods: tuple[tuple[str, Path], ...]
    reference: Path | None = None
    crop: Crop = "face"
    meta: Path | None = None
    face_index: int = 0
    margin: float = 2.0
    size: int = 256
    seed: int | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        if not self.name.strip() or len(self.name) > 200:
            raise ConfigError("--name must be 1 to 200 characters")
        if len(self.methods) < 2:
            raise ConfigError(f"a study needs at least two --method NAME=FOLDER, got {len(self.methods)}")
        names = [m for m, _ in self.methods]
        for n in names:
            if not _NAME.match(n):
                raise ConfigError(f"--method name {n!r}: use letters, digits, '_', '.', '-' (at most 64)")
        if len(set(names)) != len(names):
            raise ConfigError(f"--method names must differ, got {', '.join(names)}")
        if self.crop not in ("face", "full"):
            raise ConfigError(f"--crop must be face or full, got {self.crop!r}")
        if not 1.0 <= self.margin <= 6.0:
            raise ConfigError(f"--margin must be in [1, 6], got {self.margin}")
        if not 32 <= self.size <= 4096:
            raise ConfigError(f"--size must be in 32..4096, got {self.size}")
        if self.face_index < 0:
            raise ConfigError(f"--face-index must be >= 0, got {self.face_index}")


@dataclass(frozen=True)
class Item:
    """One question of the study: the files it was made from and its candidates.

    Attributes:
        id: the item's id (``"0000"``, ...), also its folder under ``items/``.
        key: the relative path it pairs (without suffix).
        candidates: hidden candidate code -> method name.
        reference: whether ``items/<id>/reference.png`` exists.
    """

    id: str
    key: str
    candidates: dict[str, str]
    reference: bool = False


@dataclass(frozen=True)
class Study:
    """A study folder's manifest (``study.json``)."""

    root: Path
    name: str
    seed: int
    crop: str
    methods: tuple[str, ...]
    items: tuple[Item, ...]
    identity_question: bool = False

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "name": self.name,
            "seed": self.seed,
            "crop": self.crop,
            "methods": list(self.methods),
            "identity_question": self.identity_question,
            "items": [
                {"id": i.id, "key": i.key, "candidates": i.candidates, "reference": i.reference}
                for i in self.items
            ],
        }

    def item(self, item_id: str) -> Item:
        for it in self.items:
            if it.id == item_id:
                return it
        raise KeyError(item_id)

    def candidate_path(self, item: Item, code: str) -> Path:
        return self.root / "items" / item.id / f"{code}.png"

    def reference_path(self, item: Item) -> Path:
        return self.root / "items" / item.id / REFERENCE_NAME

    @property
    def votes_path(self) -> Path:
        return self.root / VOTES_NAME

    @classmethod
    def load(cls, root: str | os.PathLike) -> Study:
        """Read ``root/study.json``; any problem raises :class:`RealFaceError` naming the file."""
        root = Path(root)
        path = root / MANIFEST_NAME
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_MANIFEST_BYTES + 1)
        except OSError as exc:
            raise RealFaceError(
                f"{path}: cannot read the study manifest ({exc.strerror or exc}); "
                "make the study with `realface study create`"
            ) from None
        try:
            if len(raw) > MAX_MANIFEST_BYTES:
                raise ValueError("larger than 64 MB")
            d = json.loads(raw.decode("utf-8"))
            if not isinstance(d, dict) or d.get("format") != FORMAT:
                raise ValueError(f"its format is not {FORMAT!r}")
            methods = tuple(str(m) for m in d["methods"])
            items = []
            for e in d["items"]:
                cands = {str(k): str(v) for k, v in dict(e["candidates"]).items()}
                if not set(cands.values()) <= set(methods) or len(cands) < 2:
                    raise ValueError(f"item {e.get('id')!r} has unknown methods or fewer than two candidates")
                items.append(Item(str(e["id"]), str(e["key"]), cands, bool(e.get("reference", False))))
            if not items:
                raise ValueError("it has no items")
            return cls(
                root=root,
                name=str(d["name"]),
                seed=int(d["seed"]),
                crop=str(d["crop"]),
                methods=methods,
                items=tuple(items),
                identity_question=bool(d.get("identity_question", False)),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise RealFaceError(f"{path}: not a realface study manifest ({exc})") from None


@dataclass(frozen=True)
class CreateResult:
    """What :func:`create_study` made: the study, and the paths it could not use (with the reason)."""

    study: Study
    mismatches: tuple[str, ...] = ()
    skipped: tuple[str, ...] = field(default_factory=tuple)


def _key(rel: Path) -> str:
    return rel.with_suffix("").as_posix()


def _folder_files(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise ConfigError(f"{what} {folder}: not a folder")
    files: dict[str, Path] = {}
    for path in list_images(folder):
        key = _key(path.relative_to(folder))
        if key in files:
            raise ConfigError(
                f"{what} {folder}: {files[key].name} and {path.name} pair with the same name; keep one"
            )
        files[key] = path
    if not files:
        raise ConfigError(f"{what} {folder}: no images found")
    return files


def pair_folders(folders: Sequence[tuple[str, Path]]) -> tuple[dict[str, dict[str, Path]], list[str]]:
    """Pair the images of ``folders`` (``(label, folder)``) by relative path without suffix.

    Returns ``(pairs, mismatches)``: ``pairs[key][label]`` for the keys found in every folder (sorted),
    and one line per key missing somewhere (``"tops/b: missing in baseline"``).
    """
    files = {label: _folder_files(folder, f"--method {label}") for label, folder in folders}
    keys = sorted(set().union(*(f.keys() for f in files.values())))
    pairs: dict[str, dict[str, Path]] = {}
    mismatches: list[str] = []
    for key in keys:
        missing = [label for label in files if key not in files[label]]
        if missing:
            mismatches.append(f"{key}: missing in {', '.join(missing)}")
        else:
            pairs[key] = {label: files[label][key] for label in files}
    return pairs, mismatches


def _face_box_from_meta(
    meta_dir: Path, key: str, face_index: int
) -> tuple[tuple[float, float, float, float], tuple[int, int]] | None:
    """The area recorded for ``key``'s face (the bounding box of its alignment quad: what the aligned
    crop shows) and the size of the image it refers to; None when there is no meta file."""
    from realface.face import FaceMeta

    for name in (f"{key}_face{face_index}.json", f"{key}.json"):
        path = meta_dir / name
        if path.is_file():
            meta = FaceMeta.load(path)
            assert meta.face.alignment is not None  # FaceMeta holds aligned faces only
            quad = np.array(meta.face.alignment.quad, dtype=np.float64)  # [4, 2] image pixels
            box = (quad[:, 0].min(), quad[:, 1].min(), quad[:, 0].max(), quad[:, 1].max())
            return box, meta.image_size
    return None


def _detect_box(rgb: np.ndarray, source: str, face_index: int) -> tuple[float, float, float, float]:
    from realface.face import find_faces

    faces = find_faces(rgb, source=source)
    if face_index >= len(faces):
        raise FaceError(f"{source}: --face-index {face_index} requested but {len(faces)} face(s) found")
    left, top, right, bottom = faces[face_index].box
    return (left, top, right + 1, bottom + 1)


def _square(box: tuple[float, float, float, float], margin: float) -> tuple[float, float, float]:
    """Centre x, centre y and side of the square crop around ``box`` (image pixels)."""
    left, top, right, bottom = box
    return ((left + right) / 2, (top + bottom) / 2, max(right - left, bottom - top) * margin)


def _crop(rgb: np.ndarray, square: tuple[float, float, float], size: int) -> Image.Image:
    """The square (centre, side in the frame of an image of ``rgb``'s size) resized to ``size``;
    beyond the image it is padded with the edge colour."""
    cx, cy, side = square
    pad = int(np.ceil(side))  # the square may reach past the image: pad with the edge colour first
    padded = Image.fromarray(np.pad(rgb, ((pad, pad), (pad, pad), (0, 0)), mode="edge"))  # [H+2p, W+2p, 3]
    box = (cx - side / 2 + pad, cy - side / 2 + pad, cx + side / 2 + pad, cy + side / 2 + pad)
    return padded.resize((size, size), Image.Resampling.LANCZOS, box=box)


def _full(rgb: np.ndarray, size: int) -> Image.Image:
    im = Image.fromarray(rgb)
    scale = min(1.0, size / max(im.size))
    if scale < 1.0:
        im = im.resize(
            (max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.Resampling.LANCZOS
        )
    return im


def _save_png(im: Image.Image, path: Path) -> None:
    im.convert("RGB").save(path, format="PNG")  # no metadata of the input is carried over


def create_study(config: CreateConfig, out: str | os.PathLike) -> CreateResult:
    """Make the study folder ``out`` (atomically: it appears complete or not at all).

    Raises:
        ConfigError: ``out`` exists and is not empty, a folder is missing or empty, or no path is
            found in every folder.
        RealFaceError: nothing could be made (every item failed; the reasons are in the message).
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"-o {out}: exists and is not an empty folder; choose a new study folder")
    folders = list(config.methods)
    if config.reference is not None:
        folders.append(("reference", config.reference))
        if "reference" in dict(config.methods):
            raise ConfigError("--method reference=...: the name 'reference' is taken by --reference")
    pairs, mismatches = pair_folders(folders)
    if not pairs:
        raise ConfigError(
            "no image is found in every folder (paired by relative path without suffix): "
            + "; ".join(mismatches[:5])
        )
    seed = config.seed if config.seed is not None else secrets.randbits(31)
    rng = np.random.default_rng(seed)
    methods = tuple(m for m, _ in config.methods)
    items: list[Item] = []
    skipped: list[str] = []
    with atomic_dir(out) as tmp:
        for key, files in pairs.items():
            item_id = f"{len(items):04d}"
            try:
                items.append(_make_item(config, key, files, methods, tmp / "items" / item_id, item_id, rng))
            except (ImageError, FaceError) as exc:
                skipped.append(f"{key}: {exc}")
                log.warning("skipped %s: %s", key, exc)
        if not items:
            raise RealFaceError("no study item could be made: " + "; ".join(skipped[:5]))
        study = Study(
            root=out,
            name=config.name,
            seed=seed,
            crop=config.crop,
            methods=methods,
            items=tuple(items),
            identity_question=config.reference is not None,
        )
        atomic_write_text(tmp / MANIFEST_NAME, json.dumps(study.to_dict(), indent=1) + "\n")
    return CreateResult(study, tuple(mismatches), tuple(skipped))


def _make_item(
    config: CreateConfig,
    key: str,
    files: dict[str, Path],
    methods: tuple[str, ...],
    folder: Path,
    item_id: str,
    rng: np.random.Generator,
) -> Item:
    images = {label: load_image(path, max_pixels=config.max_pixels).rgb8() for label, path in files.items()}
    square = None
    frame: tuple[int, int] = (0, 0)  # (width, height) of the image the square was found in
    if config.crop == "face":
        first = "reference" if "reference" in images else methods[0]
        frame = (images[first].shape[1], images[first].shape[0])
        recorded = _face_box_from_meta(config.meta, key, config.face_index) if config.meta else None
        if recorded is None:
            box = _detect_box(images[first], str(files[first]), config.face_index)
        else:
            box, frame = recorded
        square = _square(box, config.margin)
    folder.mkdir(parents=True)
    candidates: dict[str, str] = {}
    for label, rgb in images.items():
        if square is not None:
            sx, sy = rgb.shape[1] / frame[0], rgb.shape[0] / frame[1]  # outputs of another size: same place
            im = _crop(rgb, (square[0] * sx, square[1] * sy, square[2] * max(sx, sy)), config.size)
        else:
            im = _full(rgb, config.size)
        if label == "reference":
            _save_png(im, folder / REFERENCE_NAME)
            continue
        code = secrets.token_hex(6)
        candidates[code] = label
        _save_png(im, folder / f"{code}.png")
    # Manifest order of the candidates is random too, so not even the codes' order tells the methods.
    order = rng.permutation(len(candidates))
    codes = list(candidates)
    return Item(item_id, key, {codes[i]: candidates[codes[i]] for i in order}, "reference" in images)
