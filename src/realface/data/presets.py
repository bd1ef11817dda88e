"""Training-set presets: public sets of rendered faces, one command away (``realface dataset build --preset``).

A :class:`DatasetPreset` is a record in the manner of the weights registry
(:mod:`realface.weights.registry`): where the archives are, their sizes and hashes where the publisher
gives them, the licence (its terms in our words, and the address of the full text), whether it forbids
commercial use, how the archive is laid out and how faces are taken from it (the set's own landmarks
where it ships them, else detection). Every fact names the page it comes from (``source``); a fact the
pages do not give is ``None`` and said so in ``unconfirmed``, never guessed.

:func:`build_preset` downloads the archives (resumable ``.part`` files, verified when a hash is
published, like weights), checks **every** member name of an archive before anything is extracted
(``..``, absolute paths, drive letters, backslashes and symbolic links are refused), extracts only the
images it will use (``limit``) with their landmark files, and hands them to
:func:`realface.data.build.build_dataset` with the licence and source of each image. The preset's own
folder, ``<output stem>.preset/`` beside the output, holds ``archives/`` (downloads), ``images/``
(the extracted members) and ``preset.json`` (the record with its licence text, as used). The build folder
gets the same ``preset.json``; every manifest line carries the licence name and address and the
archive member it came from; ``preset_report.json`` gives the share of faces the filters kept.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import stat
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import numpy as np

from realface.batch import folder_lock
from realface.data.build import FILTERS, BuildConfig, BuildPaths, BuildSummary, _check_output, build_dataset
from realface.data.fetch import FetchConfig, FetchError, fetch_url
from realface.data.sources import SourceItem
from realface.errors import ConfigError, RealFaceError
from realface.utils.fs import atomic_write_text
from realface.weights.cache import offline_reason, sha256_file

__all__ = [
    "ArchiveError",
    "DatasetPreset",
    "PRESETS",
    "PresetArchive",
    "PresetReport",
    "build_preset",
    "check_archive",
    "get_preset",
    "preset_plan",
]

logger = logging.getLogger(__name__)

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_PAGE_HOSTS = ("drive.google.com", "docs.google.com")
LANDMARK_FORMATS = ("facesynthetics-ldmks", "aflw2k3d-mat")
"""How a preset's landmark files are read: ``facesynthetics-ldmks`` (a text file of 70 ``x y`` rows,
the 68 iBUG points then two pupils; the first 68 are used), ``aflw2k3d-mat`` (a MATLAB file whose
``pt3d_68`` array holds x, y, z rows of 68 points; x and y are used)."""
MAX_MEMBER_BYTES = 256 << 20
"""Largest archive member extracted (an image of a render set is a few MB; a larger one is skipped)."""
PRESET_JSON = "preset.json"
REPORT_JSON = "preset_report.json"


class ArchiveError(RealFaceError):
    """A preset archive is unusable: not a zip, unsafe member names, no images in it."""


@dataclasses.dataclass(frozen=True)
class PresetArchive:
    """One downloadable archive of a preset.

    Attributes:
        url: where it is published (a web page for Google Drive: never fetched, see :attr:`manual`).
        file_name: the archive's name on disk.
        images: faces (images) it holds as the publisher states, or ``None`` when not stated.
        size: exact byte count when published (checked), else ``None``.
        size_text: the size as the publisher states it (display only), or ``None``.
        sha256: the published SHA-256, or ``None`` (no publisher gives one today).
    """

    url: str
    file_name: str
    images: int | None = None
    size: int | None = None
    size_text: str | None = None
    sha256: str | None = None

    def __post_init__(self) -> None:
        if urlparse(self.url).scheme not in ("http", "https"):
            raise ValueError(f"archive URL must be http(s): {self.url!r}")
        if "/" in self.file_name or "\\" in self.file_name or self.file_name in ("", ".", ".."):
            raise ValueError(f"archive file_name must be a plain name: {self.file_name!r}")
        if self.sha256 is not None and not _SHA256_RE.match(self.sha256):
            raise ValueError(f"sha256 must be 64 lower-case hex digits: {self.sha256!r}")

    @property
    def manual(self) -> bool:
        """Whether the link opens a web page (Google Drive) that must be downloaded by hand."""
        return (urlparse(self.url).hostname or "").lower() in _PAGE_HOSTS


@dataclasses.dataclass(frozen=True)
class DatasetPreset:
    """A public set of rendered faces (see the module docstring).

    Attributes:
        name: the id given to ``--preset``.
        title: the set's name as its publisher writes it.
        homepage: the publisher's page.
        archives: the archives, in the order they are used.
        license_name: short licence name.
        license_url: the full licence text.
        license_text: the licence's terms in brief, shown before any download and stored with the build.
        non_commercial: the licence forbids commercial use (flagged everywhere, as weights are).
        renderer: how the faces were made, as the publisher says.
        image_size: the images' size as published (text), or ``None`` when not stated.
        layout: the archive's layout, in words.
        image_pattern: regular expression a member name (below the archive's root) must match to be an
            image of the set (other members, e.g. segmentation masks, are ignored).
        landmark_suffix: how the landmark file of an image is named: the image's name without its
            extension plus this suffix (``None``: the set ships no landmarks; faces are detected).
        landmark_format: one of :data:`LANDMARK_FORMATS`, with ``landmark_suffix``.
        source: where each fact above comes from (page addresses).
        unconfirmed: facts the pages do not give, and what is done without them.
    """

    name: str
    title: str
    homepage: str
    archives: tuple[PresetArchive, ...]
    license_name: str
    license_url: str
    license_text: str
    non_commercial: bool
    renderer: str
    image_size: str | None
    layout: str
    image_pattern: str
    landmark_suffix: str | None
    landmark_format: str | None
    source: tuple[str, ...]
    unconfirmed: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError(f"preset name must be lower-case letters, digits and '-': {self.name!r}")
        if not self.archives:
            raise ValueError(f"preset {self.name} has no archive")
        if (self.landmark_suffix is None) != (self.landmark_format is None):
            raise ValueError(f"preset {self.name}: landmark_suffix and landmark_format go together")
        if self.landmark_format is not None and self.landmark_format not in LANDMARK_FORMATS:
            raise ValueError(f"preset {self.name}: unknown landmark_format {self.landmark_format!r}")
        re.compile(self.image_pattern)

    @property
    def faces_from(self) -> str:
        """``"landmarks"`` (the set's own) or ``"detection"``."""
        return "landmarks" if self.landmark_format else "detection"

    def license_line(self) -> str:
        """The licence as stored in every manifest line: name, flag and address."""
        flag = " [NON-COMMERCIAL]" if self.non_commercial else ""
        return f"{self.license_name}{flag} {self.license_url}"

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON (``realface dataset presets --json``, ``preset.json``)."""
        doc = dataclasses.asdict(self)
        doc["faces_from"] = self.faces_from
        doc["archives"] = [{**dataclasses.asdict(a), "manual": a.manual} for a in self.archives]
        return doc


_RUDA = (
    "Research Use of Data Agreement v1.0 (R-UDA), in brief: the data may be used only for computational use "
    "in non-commercial research; neither the data nor any Result may be used in a commercial offering, and "
    "models trained on the data (a fine-tuned G_rendering among them) are Results; no money may be taken for "
    "using or passing on the data; whoever passes it on must keep its attribution and bind the recipient to "
    "the R-UDA; no warranty. This summary is not the agreement: read the full text before downloading: {url}"
)

PRESETS: dict[str, DatasetPreset] = {
    p.name: p
    for p in (
        DatasetPreset(
            name="replicantface",
            title="Replicantface",
            homepage="https://github.com/DaWelter/replicantface",
            archives=(
                PresetArchive(
                    url="https://drive.google.com/file/d/1lF2hWGPKuXahIvg-0CtZG154d82_w19k/view?usp=drive_link",
                    file_name="replicantface.zip",
                    images=100_000,
                ),
            ),
            license_name="MIT",
            license_url="https://github.com/DaWelter/replicantface/blob/main/license.txt",
            license_text=(
                "MIT License (repository of Replicantface, copyright 2025 Michael Welter): use, copy, modify "
                "and distribute freely, keeping the copyright and permission notice; no warranty. The "
                "repository's licence file does not say whether it also covers the rendered images on Google "
                "Drive. Full text: https://github.com/DaWelter/replicantface/blob/main/license.txt"
            ),
            non_commercial=False,
            renderer="Blender with the Human Generator (HumGen3D) add-on",
            image_size="640 x 640 JPEG",
            layout=(
                "images (.jpg) with one .mat label file each (AFLW2k-3D / 300W-LP format: Pose_Para, pt3d_68, "
                "roi); segmentation masks omitted"
            ),
            image_pattern=r"(?i)^(?:.*/)?[^/]+\.jpe?g$",
            landmark_suffix=".mat",
            landmark_format="aflw2k3d-mat",
            source=(
                "https://github.com/DaWelter/replicantface/blob/main/readme.md, version of 2025-11-01 (100000 "
                "faces, 68 3d landmarks in AFLW2k-3D / 300W-LP format, Google Drive link, Blender + Human "
                "Generator)",
                "https://github.com/DaWelter/replicantface/blob/main/doc/dataset.md (640 x 640 jpg, .mat labels "
                "with pt3d_68)",
                "https://github.com/DaWelter/replicantface/blob/main/license.txt (MIT)",
            ),
            unconfirmed=(
                "archive size: not published (None)",
                "sha256: not published (None)",
                "archive type and folder layout inside it: not published; a zip whose .jpg files have a .mat "
                "file of the same name beside them is assumed, and the member names are checked before use",
                "the page gives pt3d_68 as '3 x 64'; its name and the AFLW2k-3D format say 68 points: a file "
                "without 68 points is not used and that face is detected instead",
                "whether the MIT licence of the repository covers the rendered images: not stated",
                "the link is a Google Drive page, not a file: download it by hand and pass --images-from",
            ),
        ),
        DatasetPreset(
            name="facesynthetics",
            title="Microsoft Face Synthetics",
            homepage="https://github.com/microsoft/FaceSynthetics",
            archives=(
                PresetArchive(
                    url="https://facesyntheticspubwedata.z6.web.core.windows.net/iccv-2021/dataset_100000.zip",
                    file_name="dataset_100000.zip",
                    images=100_000,
                    size_text="32GB",
                ),
            ),
            license_name="Research Use of Data Agreement v1.0 (R-UDA)",
            license_url="https://github.com/microsoft/FaceSynthetics/blob/main/LICENSE.txt",
            license_text=_RUDA.format(
                url="https://github.com/microsoft/FaceSynthetics/blob/main/LICENSE.txt"
            ),
            non_commercial=True,
            renderer="Microsoft's synthetic face pipeline (ICCV 2021, 'Fake It Till You Make It')",
            image_size="512 x 512",
            layout=(
                "flat: {id}.png (render), {id}_seg.png (segmentation), {id}_ldmks.txt (70 landmarks, x y per "
                "row: the iBUG 68 then two pupil centres; projections of 3D points, so the jaw and brow points do not follow "
                "the visible outline)"
            ),
            image_pattern=r"^(?:.*/)?\d+\.png$",
            landmark_suffix="_ldmks.txt",
            landmark_format="facesynthetics-ldmks",
            source=(
                "https://github.com/microsoft/FaceSynthetics/blob/main/README.md, version of 2025-07-08 "
                "(100,000 images at 512 x 512, non-commercial research, archive URLs and sizes 34MB / 320MB / "
                "32GB, a single zip with the files at its root, 70 landmarks in the iBUG 68 scheme plus 2 pupil "
                "centres)",
                "https://github.com/microsoft/FaceSynthetics/blob/main/LICENSE.txt (Research Use of Data "
                "Agreement v1.0; earlier versions of the repository had a Computational Use of Data Agreement "
                "with the same non-commercial restriction)",
            ),
            unconfirmed=(
                "exact archive size in bytes: only '32GB' is published (size None)",
                "sha256: not published (None)",
                "the archive is also published in four parts (dataset_100000.zip.001-.004); the preset uses "
                "the single zip",
            ),
        ),
        DatasetPreset(
            name="digiface1m",
            title="Microsoft DigiFace-1M",
            homepage="https://github.com/microsoft/DigiFace1M",
            archives=tuple(
                PresetArchive(
                    url=f"https://facesyntheticspubwedata.z6.web.core.windows.net/wacv-2023/{name}",
                    file_name=name,
                    images=images,
                )
                for name, images in (
                    ("subjects_0-1999_72_imgs.zip", 2000 * 72),
                    ("subjects_2000-3999_72_imgs.zip", 2000 * 72),
                    ("subjects_4000-5999_72_imgs.zip", 2000 * 72),
                    ("subjects_6000-7999_72_imgs.zip", 2000 * 72),
                    ("subjects_8000-9999_72_imgs.zip", 2000 * 72),
                    ("subjects_100000-133332_5_imgs.zip", 33333 * 5),
                    ("subjects_133333-166665_5_imgs.zip", 33333 * 5),
                    ("subjects_166666-199998_5_imgs.zip", 33333 * 5),
                )
            ),
            license_name="Research Use of Data Agreement v1.0 (R-UDA)",
            license_url="https://github.com/microsoft/DigiFace1M/blob/main/LICENSE",
            license_text=_RUDA.format(url="https://github.com/microsoft/DigiFace1M/blob/main/LICENSE"),
            non_commercial=True,
            renderer="Microsoft's synthetic face pipeline (WACV 2023, 'DigiFace-1M')",
            image_size=None,
            layout="one folder per subject, {subject}/{n}.png, cropped colour images",
            image_pattern=r"^(?:.*/)?\d+\.png$",
            landmark_suffix=None,
            landmark_format=None,
            source=(
                "https://github.com/microsoft/DigiFace1M/blob/main/README.md, version of 2024-11-28 (720K "
                "images of 10K identities at 72 each, 500K of 100K identities at 5 each, the 8 archive URLs, "
                "layout subj_id/k.png, cropped colour images, non-commercial research)",
                "https://github.com/microsoft/DigiFace1M/blob/main/LICENSE (Research Use of Data Agreement v1.0)",
            ),
            unconfirmed=(
                "archive sizes: not published (None)",
                "sha256: not published (None)",
                "image size: the README says 'cropped' without a size (None); small crops are rejected by the "
                "size filter at large --size, which the build's report shows",
                "images per archive: derived from the subject ranges in the file names times the images per "
                "identity the README gives",
                "landmarks: none are shipped; faces are detected",
            ),
        ),
    )
}


def get_preset(name: str | DatasetPreset) -> DatasetPreset:
    """The registered preset ``name`` (a record passes through)."""
    if isinstance(name, DatasetPreset):
        return name
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"--preset {name!r}: unknown; known presets: {', '.join(sorted(PRESETS))}"
        ) from None


# --- archives -------------------------------------------------------------------------------------


def _unsafe_reason(info: zipfile.ZipInfo) -> str | None:
    """Why a member may not be extracted (escapes the root, or is a link), or None."""
    from realface.train.dataset import _unsafe_member_reason

    reason = _unsafe_member_reason(info.filename)
    if reason is None and stat.S_ISLNK(info.external_attr >> 16):
        reason = "is a symbolic link"
    return reason


def check_archive(path: Path) -> zipfile.ZipFile:
    """Open a preset archive and check every member name; the caller closes it.

    Raises:
        ArchiveError: not a zip, or a member is unsafe (every unsafe one is named, none is extracted).
    """
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise ArchiveError(f"{path}: not a readable zip archive ({exc})") from None
    bad = [f"{i.filename!r} {r}" for i in zf.infolist() if (r := _unsafe_reason(i))]
    if bad:
        zf.close()
        shown = "; ".join(bad[:5]) + (f"; ... ({len(bad) - 5} more)" if len(bad) > 5 else "")
        raise ArchiveError(f"{path}: refused, unsafe member name(s): {shown}; nothing was extracted")
    return zf


def _read_landmarks(path: Path, fmt: str) -> tuple[tuple[float, float], ...]:
    """The 68 (x, y) points of one landmark file (:data:`LANDMARK_FORMATS`); ValueError if malformed."""
    if fmt == "facesynthetics-ldmks":
        rows = [line.split() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        pts = np.asarray(rows, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[0] < 68 or pts.shape[1] < 2:
            raise ValueError(f"expected at least 68 rows of 'x y'; got shape {pts.shape}")
        pts = pts[:68, :2]
    else:
        from scipy.io import loadmat

        doc = loadmat(str(path))
        raw = np.asarray(doc.get("pt3d_68"), dtype=np.float64)
        if raw.ndim != 2 or raw.shape[0] < 2 or raw.shape[1] != 68:
            raise ValueError(f"expected pt3d_68 of shape (3, 68); got {raw.shape}")
        pts = raw[:2].T
    if not np.isfinite(pts).all():
        raise ValueError("landmarks are not finite")
    return tuple((round(float(x), 3), round(float(y), 3)) for x, y in pts)


def _extract(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path) -> None:
    """Extract one (already checked) member to ``dest`` atomically; kept if already complete."""
    if dest.is_file() and dest.stat().st_size == info.file_size:
        return
    from realface.utils.fs import atomic_path

    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(dest) as tmp, zf.open(info) as src, open(tmp, "wb") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError) as exc:
        raise ArchiveError(f"{zf.filename}: member {info.filename!r} cannot be read ({exc})") from None


def _members(
    zf: zipfile.ZipFile, preset: DatasetPreset
) -> list[tuple[zipfile.ZipInfo, zipfile.ZipInfo | None]]:
    """(image, landmark file or None) pairs of an archive, in name order."""
    pattern = re.compile(preset.image_pattern)
    infos = {i.filename: i for i in zf.infolist() if not i.is_dir()}
    pairs = []
    for name in sorted(infos):
        if not pattern.match(name):
            continue
        if infos[name].file_size > MAX_MEMBER_BYTES:
            logger.warning("%s: %s is larger than %d bytes; skipped", zf.filename, name, MAX_MEMBER_BYTES)
            continue
        lm = None
        if preset.landmark_suffix:
            lm = infos.get(str(PurePosixPath(name).with_suffix("")) + preset.landmark_suffix)
            lm = lm if lm is not None and lm.file_size <= MAX_MEMBER_BYTES else None
        pairs.append((infos[name], lm))
    return pairs


# --- plan and build -------------------------------------------------------------------------------


def _preset_folder(output: str | os.PathLike) -> Path:
    out = Path(os.path.abspath(os.fspath(output)))
    stem = out.name[: -len(".zip")] if out.suffix.lower() == ".zip" else out.name
    return out.with_name(stem + ".preset")


def preset_plan(
    preset: str | DatasetPreset,
    output: str | os.PathLike,
    *,
    config: BuildConfig | None = None,
    limit: int | None = None,
    images_from: Sequence[str | os.PathLike] = (),
) -> dict[str, Any]:
    """What :func:`build_preset` would do, as JSON (``--dry-run``): nothing is fetched or written."""
    rec = get_preset(preset)
    config = config or BuildConfig()
    folder = _preset_folder(output)
    local = [str(Path(os.path.abspath(p))) for p in images_from]
    return {
        "preset": rec.name,
        "title": rec.title,
        "output": str(Path(os.path.abspath(output))),
        "preset_folder": str(folder),
        "build_folder": str(BuildPaths.for_output(output).work),
        "license": rec.license_line(),
        "non_commercial": rec.non_commercial,
        "faces_from": rec.faces_from,
        "limit": limit,
        "archives": local
        or [
            {
                "url": a.url,
                "file": str(folder / "archives" / a.file_name),
                "sha256": a.sha256,
                "size": a.size,
                "size_text": a.size_text,
                "manual": a.manual,
            }
            for a in rec.archives
        ],
        "settings": config.result_fields(),
    }


@dataclasses.dataclass(frozen=True)
class PresetReport:
    """A preset build's outcome: the build's summary plus the share of faces the filters kept.

    Attributes:
        preset: the preset's name.
        images_extracted: images taken from the archives (``limit`` applied).
        with_landmarks: of those, how many came with usable landmarks of the set's own.
        summary: the :class:`~realface.data.build.BuildSummary`.
    """

    preset: str
    images_extracted: int
    with_landmarks: int
    summary: BuildSummary

    @property
    def kept_share(self) -> float | None:
        """Faces kept / faces found (``None`` when no face was found)."""
        found = self.summary.faces["found"]
        return self.summary.faces["kept"] / found if found else None

    def filter_shares(self) -> dict[str, float | None]:
        """Per filter, the share of found faces it rejected."""
        found = self.summary.faces["found"]
        return {name: (self.summary.faces[name] / found if found else None) for name in FILTERS}

    def caption(self) -> str:
        """One line: the preset and the share kept (shown on the contact sheet)."""
        fa = self.summary.faces
        share = "n/a" if self.kept_share is None else f"{100 * self.kept_share:.1f} %"
        return f"preset {self.preset}: kept {fa['kept']} of {fa['found']} faces ({share})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "images_extracted": self.images_extracted,
            "with_landmarks": self.with_landmarks,
            "faces_found": self.summary.faces["found"],
            "faces_kept": self.summary.faces["kept"],
            "kept_share": self.kept_share,
            "rejected_share": self.filter_shares(),
        }

    def format(self) -> str:
        shares = ", ".join(
            f"{k} {'n/a' if v is None else f'{100 * v:.1f} %'}" for k, v in self.filter_shares().items()
        )
        return (
            f"{self.summary.format()}\n  {self.caption()}; rejected: {shares}\n"
            f"  extracted {self.images_extracted} image(s), {self.with_landmarks} with the set's own landmarks"
        )


def _fetch_archives(
    rec: DatasetPreset, folder: Path, fetch: FetchConfig, show: Callable[[str], None]
) -> Iterator[tuple[Path, PresetArchive | None]]:
    """Download the archives one at a time, as they are needed (``limit`` may stop early)."""
    archives = folder / "archives"
    archives.mkdir(parents=True, exist_ok=True)
    for arc in rec.archives:
        dest = archives / arc.file_name
        if arc.manual and not dest.is_file():
            raise ConfigError(
                f"--preset {rec.name}: {arc.url} is a web page, not a file; download it by hand, then pass "
                f"--images-from FILE (or put it at {dest})"
            )
        if not dest.is_file():
            offline = offline_reason()
            if offline:
                raise ConfigError(
                    f"--preset {rec.name}: {arc.url} is still to download but {offline} forbids it"
                )
            show(f"downloading {arc.url} ({arc.size_text or 'size not published'}) to {dest}")
        limit = arc.size if arc.size is not None else 1 << 46
        if not (dest.is_file() and arc.sha256 is None):  # a complete file without a hash: nothing to check
            try:
                fetch_url(
                    arc.url, dest, sha256=arc.sha256, config=dataclasses.replace(fetch, max_bytes=limit)
                )
            except FetchError as exc:
                raise ConfigError(f"--preset {rec.name}: {exc} (run the command again to resume)") from None
        if arc.size is not None and dest.stat().st_size != arc.size:
            dest.unlink()
            raise ConfigError(
                f"--preset {rec.name}: {arc.url}: size differs from the published {arc.size} bytes"
            )
        if arc.sha256 is None:
            logger.warning("%s: no sha256 is published for this archive; it could not be verified", arc.url)
        yield dest, arc


def _local_archives(
    rec: DatasetPreset, paths: Sequence[str | os.PathLike]
) -> list[tuple[Path, PresetArchive | None]]:
    by_name = {a.file_name: a for a in rec.archives}
    out: list[tuple[Path, PresetArchive | None]] = []
    for p in paths:
        path = Path(os.path.abspath(p))
        if not path.is_file():
            raise ConfigError(f"--images-from {path}: not a file")
        arc = by_name.get(path.name)
        if arc is not None and arc.sha256 is not None and sha256_file(path) != arc.sha256:
            raise ConfigError(
                f"--images-from {path}: sha256 differs from the one published for {arc.file_name}"
            )
        out.append((path, arc))
    return out


def build_preset(
    preset: str | DatasetPreset,
    output: str | os.PathLike,
    *,
    config: BuildConfig | None = None,
    limit: int | None = None,
    images_from: Sequence[str | os.PathLike] = (),
    work: str | os.PathLike | None = None,
    progress: bool = True,
    overwrite: bool = False,
    show: Callable[[str], None] | None = None,
) -> PresetReport:
    """Download (or take), check and extract a preset's archives, then build the dataset from them.

    Args:
        preset: a name in :data:`PRESETS`, or a :class:`DatasetPreset`.
        output: the dataset (folder or ``.zip``), as for :func:`~realface.data.build.build_dataset`.
        config: the build's settings (its ``fetch`` part paces the archive downloads).
        limit: use at most this many images (the first ones in archive order), or all.
        images_from: archives downloaded by hand, used instead of downloading.
        work: the build folder (default beside the output).
        progress: show the build's progress bar.
        overwrite: as for :func:`~realface.data.build.build_dataset`.
        show: called with the licence text (before any download) and other notices; default: log them.

    Raises:
        ConfigError: unknown preset, a download failed (rerun resumes it) or mismatched its hash, a
            manual-only archive was not given, or no image was found.
        ArchiveError: an archive is not a zip or has unsafe member names.
    """
    rec = get_preset(preset)
    config = config or BuildConfig()
    say = show or logger.warning
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be at least 1; got {limit}")
    folder = _preset_folder(output)
    paths = BuildPaths.for_output(output, work)
    _check_output(paths, overwrite)  # an output that is not ours is refused before any download
    flag = " [NON-COMMERCIAL: research use only]" if rec.non_commercial else ""
    say(f"{rec.title} is licensed under {rec.license_name}{flag}:\n{rec.license_text}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {folder}: {exc.strerror or exc}") from None
    record_text = json.dumps(rec.to_dict(), indent=2) + "\n"
    with folder_lock(folder, job="preset download", what="preset folder"):
        atomic_write_text(folder / PRESET_JSON, record_text)
        archives = (
            _local_archives(rec, images_from)
            if images_from
            else _fetch_archives(rec, folder, config.fetch, say)
        )
        items, extracted, with_lm = _extract_all(rec, archives, folder / "images", limit)
    if not extracted:
        raise ConfigError(f"--preset {rec.name}: no image matching the preset's layout in the archive(s)")
    summary = build_dataset(
        output,
        images=folder / "images",
        file_items=items,
        config=config,
        work=work,
        progress=progress,
        overwrite=overwrite,
        caption=lambda s: PresetReport(rec.name, extracted, with_lm, s).caption(),
    )
    report = PresetReport(rec.name, extracted, with_lm, summary)
    atomic_write_text(paths.work / PRESET_JSON, record_text)
    atomic_write_text(paths.work / REPORT_JSON, json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def _extract_all(
    rec: DatasetPreset, archives: Iterable[tuple[Path, PresetArchive | None]], dest: Path, limit: int | None
) -> tuple[Mapping[str, SourceItem], int, int]:
    """Check each archive, extract its images (up to ``limit`` in all) and read their landmarks.
    Returns the per-image source items keyed by their path below ``dest``, the count and how many
    have landmarks."""
    items: dict[str, SourceItem] = {}
    with_lm = 0
    bad_lm = 0
    for path, arc in archives:
        stem = PurePosixPath(path.name).stem
        with check_archive(path) as zf:
            pairs = _members(zf, rec)
            if limit is not None:
                pairs = pairs[: limit - len(items)]
            for image, lm in pairs:
                key = f"{stem}/{image.filename}"
                _extract(zf, image, dest / key)
                faces: tuple[tuple[tuple[float, float], ...], ...] = ()
                if lm is not None and rec.landmark_format is not None:
                    lm_path = dest / f"{stem}/{lm.filename}"
                    _extract(zf, lm, lm_path)
                    try:
                        faces = (_read_landmarks(lm_path, rec.landmark_format),)
                        with_lm += 1
                    except (OSError, ValueError, NotImplementedError) as exc:
                        bad_lm += 1
                        logger.debug("%s: unusable landmarks (%s); the face is detected", lm.filename, exc)
                url = arc.url if arc is not None else path.as_uri()
                items[key] = SourceItem(
                    url=url,
                    license=rec.license_line(),
                    source=f"{rec.title} ({rec.name}): {path.name}!{image.filename}",
                    faces=faces,
                )
        if limit is not None and len(items) >= limit:
            break  # before the next archive is fetched
    if bad_lm:
        logger.warning("%d landmark file(s) could not be read; those faces are detected instead", bad_lm)
    if rec.landmark_format and items and not with_lm:
        logger.warning("no image of %s came with its landmark file; faces are detected", rec.name)
    return items, len(items), with_lm
