"""The image tab's work: detect and preview the faces of uploads, then run the chosen faces."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from realface.errors import Cancelled, ConfigError, RealFaceError
from realface.ui.config import Settings, UIConfig, readable_error
from realface.ui.files import Workspace, draw_faces, unique_stems, write_preview
from realface.ui.models import ModelStore
from realface.ui.progress import Job

if TYPE_CHECKING:
    from realface.face import DetectConfig, Face

__all__ = ["Detection", "ImageRun", "detect_preview", "face_choice", "parse_selection", "run_images"]

log = logging.getLogger(__name__)


def _face_label(name: str, index: int, face: Face) -> str:
    left, top, right, bottom = face.box
    return f"{name} · face {index} ({right - left + 1} px, score {face.score:.2f})"


@dataclass(frozen=True)
class Detection:
    """The faces found in one uploaded image, for the page."""

    source: Path
    name: str
    preview: Path | None
    labels: tuple[str, ...]
    error: str | None = None


def detect_preview(
    uploads: Sequence[str | os.PathLike],
    workspace: Workspace,
    config: UIConfig,
    detect: DetectConfig | None = None,
) -> list[Detection]:
    """Find the faces of each upload with ``detect`` (default :class:`DetectConfig`, as the run's
    :attr:`Settings.detect_config` must be for the face indices to match) and draw them with their
    index and score; an unreadable image or one without faces gets an error message instead (the
    others are still shown)."""

    from realface.face import DetectConfig, find_faces
    from realface.imageio import load_image

    if len(uploads) > config.max_images:
        raise ConfigError(f"{len(uploads)} images uploaded; at most {config.max_images} at a time")
    folder = workspace.new_folder("previews")
    out = []
    for i, src in enumerate(uploads):
        src = Path(src)
        name = src.name
        try:
            image = load_image(src, max_pixels=config.max_pixels)
            rgb = image.rgb8()
            faces = find_faces(rgb, detect or DetectConfig(), source=name)
        except RealFaceError as exc:
            out.append(Detection(src, name, None, (), readable_error(exc).replace(str(src), name)))
            continue
        preview = write_preview(draw_faces(rgb, faces), folder / f"{i:02d}_{src.stem}.png")
        out.append(Detection(src, name, preview, tuple(_face_label(name, j, f) for j, f in enumerate(faces))))
    return out


def face_choice(image_index: int, face_index: int) -> str:
    return f"{image_index}:{face_index}"


def parse_selection(values: Sequence[str], count: int) -> dict[int, list[int]]:
    """Checkbox values ``"<image>:<face>"`` -> {image index: [face indices]}."""
    chosen: dict[int, list[int]] = {}
    for v in values:
        try:
            i, j = (int(x) for x in str(v).split(":"))
        except ValueError:
            raise ConfigError(f"bad face selection {v!r}") from None
        if not 0 <= i < count:
            raise ConfigError(f"face selection {v!r} names image {i}, but {count} image(s) are loaded")
        chosen.setdefault(i, []).append(j)
    return chosen


@dataclass
class ImageRun:
    """The outcome of one image of the image tab (paths inside the run folder)."""

    source: Path
    name: str
    composite: Path | None = None
    before: Path | None = None  # PNG previews of the input and the composite, for the page
    after: Path | None = None
    faces: list[tuple[Path, str]] = field(default_factory=list)
    downloads: list[Path] = field(default_factory=list)
    face_count: int = 0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": str(self.source),
            "name": self.name,
            "composite": None if self.composite is None else str(self.composite),
            "before": None if self.before is None else str(self.before),
            "after": None if self.after is None else str(self.after),
            "faces": [[str(p), c] for p, c in self.faces],
            "downloads": [str(p) for p in self.downloads],
            "face_count": self.face_count,
            "error": self.error,
        }


def run_images(
    job: Job,
    store: ModelStore,
    workspace: Workspace,
    config: UIConfig,
    settings: Settings,
    uploads: Sequence[str | os.PathLike],
    selection: dict[int, list[int]] | None = None,
) -> tuple[Path, list[ImageRun]]:
    """Process uploaded images into a new run folder; returns (run folder, one :class:`ImageRun` each).

    ``selection``: image index -> face indices to replace (None: every face; an image missing from
    it is left out). A failing image gets its error and the others go on; :class:`Cancelled` stops.
    """

    from realface.imageio import load_image
    from realface.utils.fs import atomic_path, atomic_write_text

    sources = [Path(u) for u in uploads]
    if not sources:
        raise ConfigError("upload an image first")
    if len(sources) > config.max_images:
        raise ConfigError(f"{len(sources)} images uploaded; at most {config.max_images} at a time")
    todo = [i for i in range(len(sources)) if selection is None or selection.get(i)]
    if not todo:
        raise ConfigError("no face selected: tick at least one face")
    apply_cfg = settings.apply_config(config.batch_size, config.max_pixels, save_all=True)
    job.phase = "loading models"
    pipeline = store.job(settings.rendering, apply_cfg)
    run_dir = workspace.new_folder("runs")
    info = {
        "settings": dataclasses.asdict(settings),
        "real": str(config.real),
        "rendering": str(store.check_rendering(settings.rendering) or ""),
        "device": str(store.device),
        "mode": "baseline" if pipeline.baseline else "transfer",
        "config": json.loads(apply_cfg.to_json()),
        "inputs": [s.name for s in sources],
    }
    atomic_write_text(run_dir / "run.json", json.dumps(info, indent=2, sort_keys=True) + "\n")
    stems = unique_stems(sources)
    results: list[ImageRun] = []
    for n, i in enumerate(todo):
        src = sources[i]
        res = ImageRun(source=src, name=src.name)
        results.append(res)
        job.begin_item(n + 1, len(todo), src.name)
        try:
            image = load_image(src, max_pixels=config.max_pixels)
            ext = settings.suffix() or src.suffix.lower() or ".png"
            dst = run_dir / f"{stems[i]}_realface{ext}"
            result = pipeline.process(image, job.step_callback, None if selection is None else selection[i])
            job.phase = "writing"
            written = pipeline.write_outputs(result, dst)
        except Cancelled:
            raise
        except Exception as exc:  # one bad image must not stop the others
            if not isinstance(exc, RealFaceError):
                log.exception("%s failed", src)
            res.error = readable_error(exc).replace(str(src), src.name)
            job.end_item()
            continue
        res.composite = dst
        res.face_count = len(result.faces)
        res.before = write_preview(image.rgb8(), run_dir / f".{stems[i]}_before.png")
        res.after = write_preview(result.image.rgb8(), run_dir / f".{stems[i]}_after.png")
        picks = list(dict.fromkeys(selection[i])) if selection is not None else range(len(result.faces))
        base = dst.with_suffix("")
        for k, (fr, face_no) in enumerate(zip(result.faces, picks, strict=True)):
            for kind, caption in (
                ("aligned", "input"),
                ("reconstruction", "reconstruction"),
                ("realistic", "realistic"),
            ):
                path = Path(f"{base}_face{k}_{kind}.png")  # written by write_outputs (config.save)
                if path.is_file():
                    res.faces.append((path, f"face {face_no} · {caption} (loss {fr.loss:.3f})"))
        res.downloads = [dst] + [p for p in written if p.suffix == ".safetensors"]
        job.end_item()
    done = [r for r in results if r.composite is not None]
    if done:
        zip_path = run_dir / "results.zip"
        with atomic_path(zip_path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
            for p in sorted(run_dir.iterdir()):
                if p.is_file() and not p.name.startswith(".") and p != zip_path:
                    zf.write(p, p.name)
        for r in done:
            r.downloads.append(zip_path)
    return run_dir, results
