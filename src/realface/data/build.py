"""Building an aligned training set from a URL list or a folder of renders (``realface dataset build``).

**What comes out.** For ``-o faces.zip`` or ``-o faces/``:

* the dataset, in the StyleGAN2-ADA layout that ``dataset_tool.py`` writes and both the official
  ``ImageFolderDataset`` and :class:`realface.train.dataset.ImageDataset` read: square RGB PNGs named
  ``00000/img00000000.png`` (1000 per folder) and ``dataset.json`` (``{"labels": null}``), nothing
  else, because both readers take every image file under the root;
* a **build folder** beside it, ``faces.build/``, holding ``manifest.jsonl``, ``summary.json``,
  ``contact_sheet.png``, ``build_config.json``, the downloads in progress, (zip output) the
  staging folder ``images/`` and, while a build runs, the lock ``.batch.lock``.

**Per item** (a URL or a file): fetch (:mod:`realface.data.fetch`), decode safely
(:func:`realface.imageio.load_image`, pixel limit), find faces and their 68 landmarks
(:func:`realface.face.find_faces`; or take the landmarks a published list gives), then for every
face: FFHQ-align to ``size`` with :func:`realface.face.align_face` and judge it with four filters,
in this order: ``size`` (the FFHQ crop's side in source pixels, :func:`realface.face.ffhq_quad`),
``pose`` (:func:`realface.data.filters.estimate_pose`), ``blur``
(:func:`realface.data.filters.sharpness`) and ``duplicate`` (perceptual hash within
``dup_distance`` bits of a face already kept). A face that passes all four is written as one image.
Every verdict, with the measured value, the limit and a sentence saying why, goes to the manifest.

**Manifest** (``manifest.jsonl``; one JSON object per processed item): a
:class:`realface.batch.Manifest` of the record kind :data:`DATASET_RECORDS`, so it is appended,
fsynced, read back (a line cut off by a crash is skipped with a warning) and locked
(:func:`realface.batch.folder_lock`; a second build into the folder is refused) exactly as a batch's.
The lines are compact JSON, as earlier versions wrote them, so their build folders resume as they are::

    {"key": "https://host/a.jpg" | "sub/a.png",   # the URL, or the file's path below --images
     "kind": "url" | "file", "url": ..., "path": ..., "license": ..., "source": ...,
     "fingerprint": "...",         # listed sha256 (URL) or size:mtime_ns (file): a change redoes it
     "status": "done" | "failed",  # failed: could not be fetched; retried by the next run
     "reason": null | "fetch" | "decode" | "no_face",  "error": null | "message",
     "file_sha256": "...", "image_size": [w, h],
     "faces": [{"face": 0, "box_ltrb": [...], "landmarks_68": [[x, y], ...], "detector": "hog",
                "quad_size": 261.3, "pose": {"yaw": .., "pitch": .., "roll": ..}, "sharpness": 7.1,
                "phash": "9a3c...", "verdicts": {"size": {"passed": true, "value": 261.3,
                "limit": 128, "why": "..."}, "pose": {...}, "blur": {...}, "duplicate": {...}},
                "kept": true, "reason": null | "size" | "pose" | "blur" | "duplicate",
                "output": "00000/img00000000.png" | null}],
     "config_hash": "...", "time": "..."}

**Resume and consistency.** An item's output images are written atomically *before* its manifest
line; the latest line per key decides. A rerun skips ``done`` items whose fingerprint is unchanged
and whose outputs exist, retries ``failed`` ones, continues the numbering, and deduplicates against
every face kept so far. Images without a manifest line (a crash between the two writes) and the
temporaries of interrupted writes are deleted when a run starts, so the dataset folder only ever
holds complete images that the manifest accounts for. A zip is written only at the end of a run,
from the staging folder, atomically (temporary file + rename): an interrupted run leaves the previous
zip (or none), never a partial one, and the next run rebuilds it. A build folder made with other
result-affecting settings (size, filters) is refused rather than mixed. An existing ``.zip`` at the
output path is replaced only when its ``dataset.json`` carries the build id recorded in this build
folder's ``build_config.json`` (it is this build's own earlier result), or with ``overwrite=True``
(``--overwrite``); any other file there is refused before anything is written.

**Parallelism.** ``fetch.workers`` threads download ahead of the image processing, which runs in the
calling thread in input order (so numbering and deduplication are deterministic).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import time
import uuid
import zipfile
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import numpy as np
from PIL import Image

from realface.batch import (
    Manifest,
    RecordKind,
    collect_inputs,
    error_message,
    folder_lock,
    hash_config,
    item_key,
    latest_records,
    progress_bar,
    remove_stale_temporaries,
)
from realface.data.fetch import FetchConfig, HostRateLimiter, fetch_url
from realface.data.filters import estimate_pose, hamming, phash, sharpness
from realface.data.sources import SourceItem, write_url_list
from realface.errors import ConfigError, FaceError, ImageError
from realface.imageio import DEFAULT_MAX_PIXELS, image_suffixes_text, load_image
from realface.utils.fs import atomic_path, atomic_write_text
from realface.weights.cache import offline_reason, sha256_file

__all__ = [
    "BuildConfig",
    "BuildPaths",
    "BuildSummary",
    "DATASET_RECORDS",
    "FILTERS",
    "build_dataset",
    "export_urls",
    "image_name",
]

logger = logging.getLogger(__name__)

FILTERS = ("size", "pose", "blur", "duplicate")
"""The face filters, in the order a face's rejection reason is chosen."""

MANIFEST_NAME = "manifest.jsonl"
SUMMARY_NAME = "summary.json"
CONTACT_SHEET_NAME = "contact_sheet.png"
CONFIG_NAME = "build_config.json"
DATASET_JSON = "dataset.json"
_IMAGE_NAME_RE = re.compile(r"^(\d{5})/img(\d{8})\.png$")
_THUMB = 128  # contact sheet thumbnail side
_CAPTION_BAND = 20  # height of the contact sheet's caption band (preset builds)


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """Options of :func:`build_dataset`.

    Attributes:
        size: side of the aligned crops: 256, 512 or 1024. Default 1024 (the paper's DRFHQ).
        min_face_size: smallest accepted side, in source pixels, of the FFHQ crop square (the
            region that becomes the aligned image; about 2.4 eye-to-eye distances). ``None``
            (default) means ``size // 2``: no face is upsampled more than twice.
        blur_threshold: smallest accepted :func:`~realface.data.filters.sharpness` (variance of the
            Laplacian of the face region at 256 px). Default 4.0. Rendered skin is smooth: the
            sharp render in the tests measures 7, a sharp photo 127; a Gaussian blur of σ = 2 px
            of the source brings them to 1.1 and 2.8. Lower it for very soft renders.
        max_yaw: largest accepted ``|yaw|`` estimate in degrees. Default 40 (keeps three-quarter
            views, rejects near-profiles whose landmarks and alignment are unreliable).
        max_pitch: largest accepted ``|pitch|`` estimate in degrees. Default 30.
        dup_distance: a face whose perceptual hash is at most this many bits (of 64) from a kept
            face is a duplicate. Default 6: re-encodes, rescales and mild blurs of one image
            measured 0-6 bits apart, different faces 26-40.
        max_pixels: decompression-bomb guard for decoding. Default
            :data:`realface.imageio.DEFAULT_MAX_PIXELS`.
        upsample: dlib detector upsampling (finds smaller faces, slower). Default 1.
        cnn_fallback: try dlib's CNN detector when HOG finds no face (renders often need it; slow
            on large images). Default True.
        sample_size: faces on the contact sheet (evenly spaced over the kept ones). Default 64.
        keep_downloads: keep each downloaded file after it has been processed. Default False (the
            manifest keeps its SHA-256; files of items not yet processed are always kept).
        fetch: network behaviour (:class:`~realface.data.fetch.FetchConfig`).
    """

    size: int = 1024
    min_face_size: int | None = None
    blur_threshold: float = 4.0
    max_yaw: float = 40.0
    max_pitch: float = 30.0
    dup_distance: int = 6
    max_pixels: int = DEFAULT_MAX_PIXELS
    upsample: int = 1
    cnn_fallback: bool = True
    sample_size: int = 64
    keep_downloads: bool = False
    fetch: FetchConfig = dataclasses.field(default_factory=FetchConfig)

    def __post_init__(self) -> None:
        if self.size not in (256, 512, 1024):
            raise ValueError(f"size must be 256, 512 or 1024; got {self.size}")
        if self.min_face_size is not None and self.min_face_size < 0:
            raise ValueError(f"min_face_size must be >= 0; got {self.min_face_size}")
        if self.blur_threshold < 0 or self.max_yaw <= 0 or self.max_pitch <= 0:
            raise ValueError("blur_threshold must be >= 0, max_yaw and max_pitch positive")
        if not 0 <= self.dup_distance <= 64:
            raise ValueError(f"dup_distance must be in 0..64; got {self.dup_distance}")
        if self.max_pixels <= 0 or self.upsample < 0 or self.sample_size < 0:
            raise ValueError("max_pixels must be positive, upsample and sample_size >= 0")

    @property
    def face_size_limit(self) -> int:
        """The effective minimum crop side in source pixels."""
        return self.size // 2 if self.min_face_size is None else self.min_face_size

    def result_fields(self) -> dict[str, Any]:
        """The settings that decide which faces are kept and how they look (hashed for resume)."""
        return {
            "size": self.size,
            "min_face_size": self.face_size_limit,
            "blur_threshold": self.blur_threshold,
            "max_yaw": self.max_yaw,
            "max_pitch": self.max_pitch,
            "dup_distance": self.dup_distance,
            "max_pixels": self.max_pixels,
            "upsample": self.upsample,
            "cnn_fallback": self.cnn_fallback,
        }


@dataclasses.dataclass(frozen=True)
class BuildPaths:
    """Where a build writes (see the module docstring).

    Attributes:
        output: the dataset: a folder, or a file ending in ``.zip``.
        work: the build folder, ``<output without .zip>.build`` beside it unless given.
    """

    output: Path
    work: Path

    @classmethod
    def for_output(cls, output: str | os.PathLike, work: str | os.PathLike | None = None) -> BuildPaths:
        out = Path(os.path.abspath(os.fspath(output)))
        stem = out.name[: -len(".zip")] if out.suffix.lower() == ".zip" else out.name
        return cls(out, Path(os.path.abspath(os.fspath(work))) if work else out.with_name(stem + ".build"))

    @property
    def is_zip(self) -> bool:
        return self.output.suffix.lower() == ".zip"

    @property
    def images(self) -> Path:
        """The folder the images are written to: the output folder, or the zip's staging folder."""
        return self.work / "images" if self.is_zip else self.output

    @property
    def manifest(self) -> Path:
        return self.work / MANIFEST_NAME

    @property
    def summary(self) -> Path:
        return self.work / SUMMARY_NAME

    @property
    def contact_sheet(self) -> Path:
        return self.work / CONTACT_SHEET_NAME

    @property
    def downloads(self) -> Path:
        return self.work / "downloads"


@dataclasses.dataclass(frozen=True)
class BuildSummary:
    """Counts over the whole build folder (every run so far), plus this run's.

    Attributes:
        images: images in the dataset.
        items: per item outcome: ``listed`` (this run's inputs), ``done``, ``failed`` (fetch
            failures, retried next run), ``decode`` (undecodable), ``no_face``, ``processed_now``,
            ``skipped`` (done by an earlier run), ``not_run`` (left by an interruption).
        faces: ``found`` and ``kept``, and per rejection reason (:data:`FILTERS`) the number of faces.
        interrupted: the run was stopped by Ctrl-C; the zip and contact sheet were not rewritten.
        seconds: wall time of this run.
        output: the dataset path; ``work``: the build folder.
    """

    images: int
    items: dict[str, int]
    faces: dict[str, int]
    interrupted: bool
    seconds: float
    output: str
    work: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def format(self) -> str:
        """Human-readable counts, one reason per line."""
        it, fa = self.items, self.faces
        lines = [
            f"dataset {'(interrupted) ' if self.interrupted else ''}{self.output}: {self.images} image(s)",
            f"  items   listed {it['listed']}, done {it['done']} ({it['processed_now']} now, "
            f"{it['skipped']} earlier), failed to fetch {it['failed']}"
            + (f", not run {it['not_run']}" if it["not_run"] else ""),
            f"          undecodable {it['decode']}, no face {it['no_face']}",
            f"  faces   found {fa['found']}, kept {fa['kept']}; rejected: "
            + ", ".join(f"{name} {fa[name]}" for name in FILTERS),
            f"  details {Path(self.work) / MANIFEST_NAME}",
        ]
        return "\n".join(lines)


def image_name(index: int) -> str:
    """The dataset file name of image ``index``: ``{index // 1000:05d}/img{index:08d}.png``."""
    return f"{index // 1000:05d}/img{index:08d}.png"


# --- inputs -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Input:
    key: str
    kind: str  # "url" | "file"
    location: str  # URL or absolute path
    fingerprint: str
    item: SourceItem | None = None


def _url_inputs(items: Sequence[SourceItem]) -> list[_Input]:
    return [_Input(i.url, "url", i.url, i.sha256 or "", i) for i in items]


def _file_inputs(
    folder: Path, exclude: Sequence[Path], file_items: Mapping[str, SourceItem] | None = None
) -> list[_Input]:
    if not folder.is_dir():
        raise ConfigError(f"--images {folder}: not a folder")
    files = collect_inputs([folder], recursive=True, exclude=exclude)
    out = []
    for f in files:
        key = item_key(f, [folder])
        if file_items is not None and key not in file_items:
            continue
        st = f.stat()
        item = file_items.get(key) if file_items is not None else None
        out.append(_Input(key, "file", str(f), f"{st.st_size}:{st.st_mtime_ns}", item))
    if not out:
        raise ConfigError(f"--images {folder}: no image files found ({image_suffixes_text()})")
    return out


# --- manifest -----------------------------------------------------------------------------------


def _dump_record(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def _parse_record(line: str) -> dict[str, Any]:
    rec = json.loads(line)
    if not isinstance(rec, dict) or "key" not in rec or "status" not in rec:
        raise ValueError("not a manifest record")
    return rec


DATASET_RECORDS: RecordKind[dict[str, Any]] = RecordKind(
    "dataset manifest", _dump_record, _parse_record, lambda r: str(r["key"])
)
"""The dataset builder's manifest lines (format: module docstring), kept in a
:class:`realface.batch.Manifest` with the batch's append, read and resume guarantees."""


def _read_manifest(path: Path) -> list[dict[str, Any]]:
    return Manifest(path, DATASET_RECORDS).records()


def _latest(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return latest_records(records, DATASET_RECORDS)


def _outputs(record: dict[str, Any]) -> list[str]:
    return [f["output"] for f in record.get("faces", ()) if f.get("output")]


# --- the output folder --------------------------------------------------------------------------


def _zip_build_id(path: Path) -> str | None:
    """The build id in the ``dataset.json`` of a zip written by :func:`_write_zip`, or None when the file
    is not a zip, has no (small, valid) ``dataset.json`` or no build id in it."""
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo(DATASET_JSON)
            if info.file_size > 64 << 10:
                return None
            doc = json.loads(zf.read(info).decode("utf-8"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, RuntimeError, NotImplementedError):
        return None
    build = doc.get("realface") if isinstance(doc, dict) else None
    build_id = build.get("build_id") if isinstance(build, dict) else None
    return build_id if isinstance(build_id, str) and build_id else None


def _work_build_id(work: Path) -> str | None:
    """The build id recorded in the build folder's ``build_config.json``, or None."""
    try:
        doc = json.loads((work / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    build_id = doc.get("build_id") if isinstance(doc, dict) else None
    return build_id if isinstance(build_id, str) and build_id else None


def _check_output(paths: BuildPaths, overwrite: bool = False) -> None:
    """Refuse to write into something that is not (yet) a build of ours."""
    if paths.is_zip:
        if paths.output.exists() and not paths.output.is_file():
            raise ConfigError(f"-o {paths.output}: exists and is not a file")
        if paths.output.is_file() and not overwrite:
            zip_id = _zip_build_id(paths.output)
            if zip_id is None:
                raise ConfigError(
                    f"-o {paths.output}: the file exists and is not a dataset made by `realface dataset "
                    "build`; choose another name, or pass --overwrite to replace it"
                )
            if zip_id != _work_build_id(paths.work):
                raise ConfigError(
                    f"-o {paths.output}: the file is a dataset of another build (build id {zip_id}, not "
                    f"the one in {paths.work}); choose another name, or pass --overwrite to replace it"
                )
        return
    if paths.output.exists() and not paths.output.is_dir():
        raise ConfigError(f"-o {paths.output}: exists and is not a folder (name a folder, or a .zip file)")
    if paths.output.is_dir() and not paths.manifest.exists():
        foreign = [p for p in paths.output.iterdir() if p.name != DATASET_JSON]
        if foreign:
            raise ConfigError(
                f"-o {paths.output}: the folder is not empty and has no build folder {paths.work}; "
                "choose a new or empty output folder"
            )


def _check_config(paths: BuildPaths, config: BuildConfig) -> tuple[str, str]:
    """The config hash and the build id; the first run records both in ``build_config.json``."""
    fields = config.result_fields()
    digest = hash_config(fields)
    cfg_path = paths.work / CONFIG_NAME
    if cfg_path.exists():
        try:
            old = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"{cfg_path}: unreadable ({exc}); delete the build folder to start over"
            ) from None
        if old.get("config_hash") != digest:
            changed = ", ".join(
                f"{k} {old.get('settings', {}).get(k)!r} -> {v!r}"
                for k, v in fields.items()
                if old.get("settings", {}).get(k) != v
            )
            raise ConfigError(
                f"{paths.output} was built with other settings ({changed or 'unknown'}); build into a new "
                "output, or use the same settings to continue"
            )
        build_id = old.get("build_id")
        if not isinstance(build_id, str) or not build_id:  # a build folder of an older version
            build_id = uuid.uuid4().hex
            atomic_write_text(cfg_path, json.dumps({**old, "build_id": build_id}, indent=2) + "\n")
    else:
        build_id = uuid.uuid4().hex
        doc = {
            "config_hash": digest,
            "build_id": build_id,
            "settings": fields,
            "fetch": dataclasses.asdict(config.fetch),
        }
        atomic_write_text(cfg_path, json.dumps(doc, indent=2) + "\n")
    return digest, build_id


def _remove_orphans(images: Path, referenced: set[str]) -> int:
    """Delete dataset images that no manifest line accounts for; return how many."""
    removed = 0
    if not images.is_dir():
        return 0
    for sub in sorted(images.iterdir()):
        if not (sub.is_dir() and re.fullmatch(r"\d{5}", sub.name)):
            continue
        for f in sorted(sub.iterdir()):
            rel = f"{sub.name}/{f.name}"
            if _IMAGE_NAME_RE.match(rel) and rel not in referenced:
                f.unlink()
                removed += 1
    if removed:
        logger.info("removed %d image(s) written by an interrupted run before it recorded them", removed)
    return removed


def _save_png(rgb8: np.ndarray, dest: Path) -> None:
    with atomic_path(dest) as tmp:
        Image.fromarray(rgb8).save(tmp, format="PNG")


# --- per item ------------------------------------------------------------------------------------


@dataclasses.dataclass
class _State:
    """The build's running state: kept hashes, the next image index."""

    kept: list[tuple[int, str]]  # (phash, output name)
    next_index: int


def _download_name(url: str) -> str:
    suffix = PurePosixPath(urlparse(url).path).suffix.lower()
    suffix = suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:32] + suffix


def _fetch(inp: _Input, paths: BuildPaths, config: FetchConfig, limiter: HostRateLimiter) -> tuple[Path, str]:
    """Worker: the local file of an input and its SHA-256 (downloading a URL)."""
    if inp.kind == "file":
        return Path(inp.location), sha256_file(Path(inp.location))
    dest = paths.downloads / _download_name(inp.location)
    assert inp.item is not None
    return dest, fetch_url(inp.location, dest, sha256=inp.item.sha256, config=config, limiter=limiter)


def _verdict(passed: bool, value: float, limit: float, why: str) -> dict[str, Any]:
    return {"passed": bool(passed), "value": round(float(value), 3), "limit": limit, "why": why}


def _faces_of(inp: _Input, rgb8: np.ndarray, config: BuildConfig) -> list[dict[str, Any]]:
    """Face records (box, landmarks, detector) of an image: the published ones, else detected."""
    if inp.item is not None and inp.item.faces:
        out = []
        for lms in inp.item.faces:
            a = np.asarray(lms)  # [68, 2]
            box = [int(math.floor(a[:, 0].min())), int(math.floor(a[:, 1].min()))]
            box += [int(math.ceil(a[:, 0].max())), int(math.ceil(a[:, 1].max()))]
            out.append({"box_ltrb": box, "landmarks_68": [list(p) for p in lms], "detector": "listed"})
        return out
    from realface.face import DetectConfig, find_faces

    detect = DetectConfig(  # BuildConfig's detection options (upsample, cnn_fallback) are dlib HOG's
        detector="hog", upsample=config.upsample, cnn_fallback=config.cnn_fallback, min_face_size=0
    )
    faces = find_faces(rgb8, detect, source=inp.location)
    return [
        {
            "box_ltrb": list(f.box),
            "landmarks_68": [[round(x, 2), round(y, 2)] for x, y in f.landmarks],
            "detector": f.detector,
            "score": round(f.score, 4),
        }
        for f in faces
    ]


def _judge_faces(
    rgb: np.ndarray, faces: list[dict[str, Any]], config: BuildConfig, state: _State, images: Path
) -> list[dict[str, Any]]:
    """Align and filter every face; write the kept ones; return the manifest's face records."""
    from realface.face import AlignConfig, align_face, ffhq_quad

    align_cfg = AlignConfig(output_size=config.size)
    limit = config.face_size_limit
    for i, face in enumerate(faces):
        lm = np.asarray(face["landmarks_68"], dtype=np.float64)  # [68, 2]
        _quad, qsize = ffhq_quad(lm)
        pose = estimate_pose(lm)
        aligned = align_face(rgb, lm, align_cfg).to_uint8()  # [S, S, 3]
        sharp = sharpness(aligned)
        ph = phash(aligned)
        worst = max(abs(pose.yaw) / config.max_yaw, abs(pose.pitch) / config.max_pitch)
        verdicts = {
            "size": _verdict(
                qsize >= limit,
                qsize,
                limit,
                f"the face's crop square spans {qsize:.0f} px of the source "
                f"({'at least' if qsize >= limit else 'below'} {limit} px for a {config.size} px crop)",
            ),
            "pose": _verdict(
                worst <= 1.0,
                worst,
                1.0,
                f"estimated yaw {pose.yaw:+.0f}°, pitch {pose.pitch:+.0f}° "
                f"(limits ±{config.max_yaw:g}°, ±{config.max_pitch:g}°)",
            ),
            "blur": _verdict(
                sharp >= config.blur_threshold,
                sharp,
                config.blur_threshold,
                f"Laplacian variance {sharp:.1f} of the face region "
                f"({'at least' if sharp >= config.blur_threshold else 'below'} {config.blur_threshold:g})",
            ),
        }
        reason = next((name for name in ("size", "pose", "blur") if not verdicts[name]["passed"]), None)
        if reason is None:
            nearest = min(((hamming(ph, h), name) for h, name in state.kept), default=None)
            is_dup = nearest is not None and nearest[0] <= config.dup_distance
            why = (
                f"{nearest[0]} bits from {nearest[1]} (duplicate at <= {config.dup_distance})"
                if nearest is not None
                else "the first face kept"
            )
            verdicts["duplicate"] = _verdict(
                not is_dup, nearest[0] if nearest else 64, config.dup_distance, why
            )
            reason = "duplicate" if is_dup else None
        else:
            verdicts["duplicate"] = {"passed": None, "why": f"not checked: rejected by the {reason} filter"}
        output = None
        if reason is None:
            output = image_name(state.next_index)
            _save_png(aligned, images / output)
            state.next_index += 1
            state.kept.append((ph, output))
        face.update(
            face=i,
            quad_size=round(qsize, 2),
            pose={"yaw": round(pose.yaw, 2), "pitch": round(pose.pitch, 2), "roll": round(pose.roll, 2)},
            sharpness=round(sharp, 3),
            phash=f"{ph:016x}",
            verdicts=verdicts,
            kept=reason is None,
            reason=reason,
            output=output,
        )
    return faces


def _base_record(inp: _Input, config_hash: str) -> dict[str, Any]:
    item = inp.item
    return {
        "key": inp.key,
        "kind": inp.kind,
        "url": inp.location if inp.kind == "url" else None,
        "path": inp.location if inp.kind == "file" else None,
        "license": item.license if item else "",
        "source": item.source if item else "",
        "fingerprint": inp.fingerprint,
        "status": "done",
        "reason": None,
        "error": None,
        "file_sha256": None,
        "image_size": None,
        "faces": [],
        "config_hash": config_hash,
    }


@dataclasses.dataclass(frozen=True)
class _Job:
    """What processing one input needs: the settings, the running state and where to write."""

    config: BuildConfig
    state: _State
    paths: BuildPaths
    config_hash: str


def _process(inp: _Input, fetched: tuple[Path, str] | Exception, job: _Job) -> dict[str, Any]:
    """The manifest record of one input (images of kept faces already written)."""
    config = job.config
    record = _base_record(inp, job.config_hash)
    if isinstance(fetched, Exception):
        msg = error_message(fetched)
        record.update(
            status="failed", reason="fetch", error=msg if inp.location in msg else f"{inp.location}: {msg}"
        )
        return record
    path, digest = fetched
    record["file_sha256"] = digest
    try:
        image = load_image(path, max_pixels=config.max_pixels)
    except ImageError as exc:
        msg = str(exc).replace(str(path), inp.location) if inp.kind == "url" else str(exc)
        record.update(reason="decode", error=msg)
        return record
    record["image_size"] = list(image.size)
    rgb8 = image.rgb8()
    try:
        faces = _faces_of(inp, rgb8, config)
    except FaceError as exc:
        record.update(reason="no_face", error=str(exc))
        return record
    rgb = rgb8 if image.bit_depth == 8 else image.rgb_float()
    record["faces"] = _judge_faces(rgb, faces, config, job.state, job.paths.images)
    return record


def _process_safely(inp: _Input, fetched: tuple[Path, str] | Exception, job: _Job) -> dict[str, Any]:
    """:func:`_process`, turning an unexpected error into a ``failed`` record (retried by the next
    run) after removing the images this item had written."""
    state = job.state
    kept, next_index = len(state.kept), state.next_index
    try:
        return _process(inp, fetched, job)
    except Exception as exc:
        logger.debug("%s failed", inp.key, exc_info=True)
        for _hash, name in state.kept[kept:]:
            with contextlib.suppress(FileNotFoundError):
                (job.paths.images / name).unlink()
        del state.kept[kept:]
        state.next_index = next_index
        record = _base_record(inp, job.config_hash)
        record.update(status="failed", reason="error", error=f"{inp.location}: {error_message(exc)}")
        return record


# --- finishing ------------------------------------------------------------------------------------


def _write_zip(paths: BuildPaths, names: list[str], build_id: str) -> None:
    """The dataset zip, atomically: ``dataset.json`` (labels, and the build id that lets a later run of
    the same build replace it) then the images in name order, stored."""
    doc = {"labels": None, "realface": {"build_id": build_id}}
    with atomic_path(paths.output) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(DATASET_JSON, json.dumps(doc))
        for name in names:
            zf.write(paths.images / name, name)


def _write_contact_sheet(paths: BuildPaths, names: list[str], count: int, caption: str | None = None) -> None:
    """Up to ``count`` kept faces, evenly spaced; ``caption`` (a preset's share of faces kept) is written
    in a band above them."""
    if not names or count <= 0:
        return
    picks = sorted({int(round(x)) for x in np.linspace(0, len(names) - 1, min(count, len(names)))})
    cols = math.ceil(math.sqrt(len(picks)))
    rows = math.ceil(len(picks) / cols)
    band = _CAPTION_BAND if caption else 0
    sheet = Image.new(
        "RGB", (max(cols * _THUMB, 6 * len(caption or "") + 8), rows * _THUMB + band), (32, 32, 32)
    )
    if caption:
        from PIL import ImageDraw

        ImageDraw.Draw(sheet).text((4, 4), caption, fill=(235, 235, 235))
    for n, idx in enumerate(picks):
        with Image.open(paths.images / names[idx]) as im:
            thumb = im.convert("RGB").resize((_THUMB, _THUMB), Image.Resampling.LANCZOS)
        sheet.paste(thumb, ((n % cols) * _THUMB, band + (n // cols) * _THUMB))
    with atomic_path(paths.contact_sheet) as tmp:
        sheet.save(tmp, format="PNG")


def _summarise(
    state: dict[str, dict[str, Any]], listed: int, now: int, skipped: int, not_run: int
) -> tuple[dict[str, int], dict[str, int]]:
    items = dict(listed=listed, done=0, failed=0, decode=0, no_face=0, processed_now=now, skipped=skipped)
    items["not_run"] = not_run
    faces = dict(found=0, kept=0, **{name: 0 for name in FILTERS})
    for rec in state.values():
        items["done" if rec["status"] == "done" else "failed"] += 1
        if rec.get("reason") in ("decode", "no_face"):
            items[rec["reason"]] += 1
        for face in rec.get("faces", ()):
            faces["found"] += 1
            faces["kept" if face.get("kept") else face.get("reason", "size")] += 1
    return items, faces


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


# --- the job --------------------------------------------------------------------------------------


def build_dataset(
    output: str | os.PathLike,
    *,
    urls: Sequence[SourceItem] | None = None,
    images: str | os.PathLike | None = None,
    config: BuildConfig | None = None,
    work: str | os.PathLike | None = None,
    progress: bool = True,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    overwrite: bool = False,
    file_items: Mapping[str, SourceItem] | None = None,
    caption: Callable[[BuildSummary], str] | None = None,
) -> BuildSummary:
    """Build (or continue building) an aligned training set; see the module docstring.

    Args:
        output: the dataset: a folder, or a ``.zip`` file.
        urls: the items of a URL list (:func:`realface.data.sources.read_url_list`); or
        images: a folder of images (searched recursively; only read).
        config: :class:`BuildConfig`.
        work: the build folder (default ``<output without .zip>.build`` beside the output).
        progress: show a progress bar.
        on_record: called with each manifest record after it is written (progress reporting).
        overwrite: replace an existing ``.zip`` output even when it is not this build's dataset (by
            default a zip is only replaced when its ``dataset.json`` carries this build folder's id).
        file_items: with ``images``, a preset source (:mod:`realface.data.presets`): only the files
            whose key (path below ``images``) is listed are built, and each takes its licence, source
            and published landmarks from its :class:`~realface.data.sources.SourceItem`.
        caption: called with the summary; its text heads the contact sheet (a preset's share of
            faces kept).

    Returns:
        The :class:`BuildSummary`, also written to ``<work>/summary.json``.

    Raises:
        ConfigError: neither or both of ``urls`` and ``images``; the output is not ours or was
            built with other settings; URLs remain to be fetched but ``REALFACE_OFFLINE`` is set.
        RealFaceError: another build holds the build folder.
    """
    config = config or BuildConfig()
    if (urls is None) == (images is None):
        raise ConfigError("give either a URL list or an image folder, not both or neither")
    paths = BuildPaths.for_output(output, work)
    _check_output(paths, overwrite)
    if images is not None:
        inputs = _file_inputs(Path(os.path.abspath(images)), [paths.output, paths.work], file_items)
    else:
        inputs = _url_inputs(urls or [])
    start = time.monotonic()
    _make_folders(paths, downloads=urls is not None)

    with folder_lock(paths.work, job="build", what="output"):
        config_hash, build_id = _check_config(paths, config)
        manifest = Manifest(paths.manifest, DATASET_RECORDS)
        plan = _resume(paths, inputs, manifest.records())
        _check_offline(paths, plan.todo)
        job = _Job(config, plan.state, paths, config_hash)
        done_now, interrupted = _run_items(job, plan, manifest, progress, on_record)
        names = sorted(o for rec in plan.latest.values() for o in _outputs(rec))
        items, faces = _summarise(plan.latest, len(inputs), done_now, plan.skipped, len(plan.todo) - done_now)
        summary = BuildSummary(
            images=len(names),
            items=items,
            faces=faces,
            interrupted=interrupted,
            seconds=0.0,
            output=str(paths.output),
            work=str(paths.work),
        )
        if interrupted:  # images of the item cut short have no manifest line: remove them now
            _remove_orphans(paths.images, set(names))
        else:
            if paths.is_zip:
                _write_zip(paths, names, build_id)
            text = caption(summary) if caption is not None else None
            _write_contact_sheet(paths, names, config.sample_size, text)
        summary = dataclasses.replace(summary, seconds=round(time.monotonic() - start, 3))
        atomic_write_text(paths.summary, json.dumps(summary.to_dict(), indent=2) + "\n")
    return summary


def _make_folders(paths: BuildPaths, downloads: bool) -> None:
    try:
        paths.work.mkdir(parents=True, exist_ok=True)
        paths.images.mkdir(parents=True, exist_ok=True)
        if downloads:
            paths.downloads.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {paths.work} or {paths.images}: {exc.strerror or exc}") from None


@dataclasses.dataclass(frozen=True)
class _Plan:
    """Where a run starts: the latest record per key (updated as items finish), the inputs to
    process, how many were skipped, and the numbering and duplicate state."""

    latest: dict[str, dict[str, Any]]
    todo: list[_Input]
    skipped: int
    state: _State


def _is_done(prev: dict[str, Any] | None, inp: _Input, images: Path) -> bool:
    """Whether an earlier run finished ``inp``: ``done``, same fingerprint, its images present."""
    return (
        prev is not None
        and prev["status"] == "done"
        and prev.get("fingerprint") == inp.fingerprint
        and all((images / o).exists() for o in _outputs(prev))
    )


def _resume(paths: BuildPaths, inputs: Sequence[_Input], records: list[dict[str, Any]]) -> _Plan:
    """Tidy the dataset folder against the manifest and plan the run (module docstring: resume).
    Call only while holding the build folder's lock."""
    remove_stale_temporaries(paths.images)
    latest = _latest(records)
    _remove_orphans(paths.images, {o for rec in latest.values() for o in _outputs(rec)})
    if not paths.is_zip:
        atomic_write_text(paths.output / DATASET_JSON, json.dumps({"labels": None}) + "\n")

    todo = [inp for inp in inputs if not _is_done(latest.get(inp.key), inp, paths.images)]
    skipped = len(inputs) - len(todo)
    if skipped:
        logger.info("%d of %d items already done in %s", skipped, len(inputs), paths.work)
    for inp in todo:  # outputs of an earlier version of a redone item are replaced
        prev = latest.get(inp.key)
        for name in _outputs(prev) if prev else ():
            with contextlib.suppress(FileNotFoundError):
                (paths.images / name).unlink()
    redo = {i.key for i in todo}
    kept = [
        (int(f["phash"], 16), f["output"])
        for key, rec in latest.items()
        if key not in redo
        for f in rec.get("faces", ())
        if f.get("output")
    ]
    used = [int(m.group(2)) for r in records for o in _outputs(r) if (m := _IMAGE_NAME_RE.match(o))]
    return _Plan(latest, todo, skipped, _State(kept=kept, next_index=max(used, default=-1) + 1))


def _check_offline(paths: BuildPaths, todo: Sequence[_Input]) -> None:
    """Refuse a run that would download while ``REALFACE_OFFLINE`` (or the like) forbids it."""
    offline = offline_reason()
    to_fetch = [i for i in todo if i.kind == "url" and not (paths.downloads / _download_name(i.key)).exists()]
    if offline and to_fetch:
        raise ConfigError(
            f"{len(to_fetch)} URL(s) still to download (first: {to_fetch[0].key}) but {offline} forbids "
            "network access; unset it, or build from a folder with --images"
        )


def _run_items(
    job: _Job,
    plan: _Plan,
    manifest: Manifest[dict[str, Any]],
    progress: bool,
    on_record: Callable[[dict[str, Any]], None] | None,
) -> tuple[int, bool]:
    """Process the planned inputs in order while ``fetch.workers`` threads fetch ahead; record each.
    Returns (items processed, interrupted by Ctrl-C)."""
    fetch = job.config.fetch
    limiter = HostRateLimiter(fetch.rate_per_host)
    done_now = 0
    interrupted = False
    pool = concurrent.futures.ThreadPoolExecutor(fetch.workers, thread_name_prefix="realface-fetch")
    try:
        with progress_bar(len(plan.todo), progress=progress, desc="dataset") as bar:
            pending: collections.deque[tuple[_Input, concurrent.futures.Future[tuple[Path, str]]]]
            pending = collections.deque()
            queue = iter(plan.todo)
            ahead = 2 * fetch.workers

            def refill() -> None:
                while len(pending) < ahead:
                    nxt = next(queue, None)
                    if nxt is None:
                        return
                    pending.append((nxt, pool.submit(_fetch, nxt, job.paths, fetch, limiter)))

            refill()
            while pending:
                inp, future = pending.popleft()
                refill()
                try:
                    fetched: tuple[Path, str] | Exception = future.result()
                except Exception as exc:  # one bad URL or file never ends the run
                    fetched = exc
                record = _process_safely(inp, fetched, job)
                record["time"] = _now()
                manifest.append(record)
                plan.latest[inp.key] = record
                if inp.kind == "url" and not job.config.keep_downloads and record["status"] == "done":
                    with contextlib.suppress(FileNotFoundError):
                        (job.paths.downloads / _download_name(inp.key)).unlink()
                done_now += 1
                bar.update(1)
                if on_record is not None:
                    on_record(record)
    except KeyboardInterrupt:
        interrupted = True
        logger.warning("interrupted; run the same command again to continue")
    finally:
        pool.shutdown(wait=not interrupted, cancel_futures=True)
    return done_now, interrupted


def _work_for(path: Path) -> Path:
    """The build folder named by ``path``: the build folder itself, or the dataset it made."""
    path = Path(os.path.abspath(path))
    if (path / MANIFEST_NAME).is_file():
        return path
    work = BuildPaths.for_output(path).work
    if (work / MANIFEST_NAME).is_file():
        return work
    raise ConfigError(f"{path}: neither a dataset built by `realface dataset build` nor its build folder")


def export_urls(build: str | os.PathLike, dest: str | os.PathLike) -> tuple[int, int]:
    """Write the publishable URL list of a build: each URL with its kept faces' landmarks.

    One entry per URL that contributed at least one image: ``url``, ``sha256`` (of the file as
    fetched), ``license``, ``source`` and ``faces`` (``box_ltrb`` and ``landmarks_68`` of each kept
    face). ``realface dataset build --urls`` reads the list back and aligns exactly these faces, so
    a set can be rebuilt without redistributing the images.

    Args:
        build: the dataset (folder or zip) or its build folder.
        dest: ``.json`` or ``.csv`` (see :func:`realface.data.sources.write_url_list`).

    Returns:
        ``(entries written, kept faces from local files that have no URL and were left out)``.

    Raises:
        ConfigError: not a build, or no URL contributed a face.
    """
    work = _work_for(Path(build))
    latest = _latest(_read_manifest(work / MANIFEST_NAME))
    entries = []
    local = 0
    for rec in latest.values():
        kept = [f for f in rec.get("faces", ()) if f.get("output")]
        if not kept:
            continue
        if rec.get("kind") != "url":
            local += len(kept)
            continue
        entries.append(
            {
                "url": rec["url"],
                "sha256": rec.get("file_sha256"),
                "license": rec.get("license", ""),
                "source": rec.get("source", ""),
                "faces": [{"box_ltrb": f["box_ltrb"], "landmarks_68": f["landmarks_68"]} for f in kept],
            }
        )
    if local:
        logger.warning("%d kept face(s) come from local files and have no URL; they are left out", local)
    if not entries:
        raise ConfigError(f"{work}: no face from a URL was kept; nothing to export")
    write_url_list(entries, dest)
    return len(entries), local
