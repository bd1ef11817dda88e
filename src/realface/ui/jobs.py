"""The web UI's work without the web: settings, models, the app's folder, and jobs with progress and cancel.

Everything here is plain Python so that it can be tested without a browser; :mod:`realface.ui.app`
only lays out the page and forwards events to these functions.

Files: the app reads and writes only inside its working folder (:class:`Workspace`)::

    workdir/
      uploads/        files received from the browser (Gradio's upload cache)
      previews/       detected-face previews
      runs/<run id>/  one folder per run: composites in the input's format, per-face PNGs, latents,
                      results.zip and run.json (the settings and models used)

The batch tab reads and writes folders of the server, but only below ``UIConfig.batch_root``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import threading
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from realface.errors import Cancelled, ConfigError, RealFaceError
from realface.face import BlendConfig, MaskConfig
from realface.imageio import DEFAULT_MAX_PIXELS
from realface.invert import InvertConfig

__all__ = [
    "UIConfig",
    "Settings",
    "Workspace",
    "ModelStore",
    "Job",
    "JobRegistry",
    "ImageRun",
    "detect_preview",
    "run_images",
    "run_folder",
    "resolve_batch_folder",
    "manifest_rows",
    "weights_rows",
    "fetch_weight",
    "missing_models",
    "readable_error",
]

log = logging.getLogger(__name__)

OUTPUT_FORMATS = ("input", "png", "jpg", "webp")
BASELINE = ""  # the rendering choice that means "no G_rendering: baseline mode"


def readable_error(exc: BaseException) -> str:
    """One line for the page: a :class:`RealFaceError`'s own message, else the type and message
    (the traceback goes to the server log, never to the page)."""
    if isinstance(exc, RealFaceError):
        return str(exc).strip() or f"{type(exc).__name__} (no message); see the server log"
    if isinstance(exc, MemoryError):
        return "out of memory: try fewer images at once or a smaller batch"
    text = str(exc).strip() or "no message"
    return f"unexpected error ({type(exc).__name__}: {text}); see the server log for details"


@dataclass(frozen=True)
class UIConfig:
    """How ``realface ui`` was started (each run's ``run.json`` records the G_real, G_rendering and
    device it used, with the full apply config).

    host/port: where the page is served (127.0.0.1: this machine only). workdir: the app's own
    folder; nothing outside it is served. real: G_real (file or weights id). renderings: G_rendering
    checkpoints offered in the page; models_dir: a folder whose ``*.safetensors``/``*.pkl`` files are
    offered too. lpips_vgg: VGG16 state dict for LPIPS (default: the cached ``tv-vgg16``).
    batch_root: the folder below which the batch tab may read and write (default: the current
    folder). max_upload_mb / max_pixels / max_images: limits on uploads. share: ask Gradio for a
    public link (off by default). batch_size: faces inverted together.
    """

    workdir: Path
    host: str = "127.0.0.1"
    port: int = 7860
    real: str = "sg2ada-ffhq1024"
    renderings: tuple[Path, ...] = ()
    models_dir: Path | None = None
    lpips_vgg: Path | None = None
    device: str = "auto"
    batch_root: Path | None = None
    max_upload_mb: int = 50
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_images: int = 16
    share: bool = False
    batch_size: int = 4

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ConfigError(f"--port must be in 1..65535, got {self.port}")
        for name in ("max_upload_mb", "max_pixels", "max_images", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")

    @property
    def is_local(self) -> bool:
        return self.host in ("127.0.0.1", "localhost", "::1")

    @property
    def batch_folder(self) -> Path:
        return Path(os.path.abspath(self.batch_root if self.batch_root is not None else os.getcwd()))


@dataclass(frozen=True)
class Settings:
    """The page's settings for one run (the same meaning as the ``realface apply`` options)."""

    rendering: str = BASELINE
    steps: int = InvertConfig.steps
    coarse_to_fine: bool = True  # unlike the command line: the page is for trying, often on a CPU
    coarse_resolution: int = InvertConfig.coarse_resolution
    fine_steps: int = InvertConfig.fine_steps
    mask: str = MaskConfig.kind
    feather: float = MaskConfig.feather
    color_correct: bool = BlendConfig.color_correct
    seed: int = InvertConfig.seed
    transfer_layers: str = ""  # W+ layers taken from the inversion, e.g. "0-7"; empty: all (the paper)
    out_format: str = "input"

    def __post_init__(self) -> None:
        if self.out_format not in OUTPUT_FORMATS:
            raise ConfigError(
                f"output format must be one of {', '.join(OUTPUT_FORMATS)}, got {self.out_format!r}"
            )
        if not 0 <= self.feather <= 0.1:
            raise ConfigError(
                f"feather must be in [0, 0.1] (a fraction of the face size), got {self.feather}"
            )
        from realface.options import parse_layers

        parse_layers(self.transfer_layers, what="transfer layers")  # refused now, not in the job thread

    @classmethod
    def from_page(cls, **values: Any) -> Settings:
        """Settings from the page's widgets: numbers arrive as floats (or None when a box is empty)."""
        ints = ("steps", "coarse_resolution", "fine_steps", "seed")
        clean = {}
        for key, value in values.items():
            if value is None:
                raise ConfigError(f"setting {key.replace('_', ' ')!r} is empty")
            if key in ints:
                if float(value) != int(value):
                    raise ConfigError(
                        f"setting {key.replace('_', ' ')!r} must be a whole number, got {value}"
                    )
                value = int(value)
            clean[key] = value
        return cls(**clean)

    def apply_config(self, batch_size: int, max_pixels: int, save_all: bool):
        """The :class:`realface.pipeline.ApplyConfig` of these settings. ``save_all``: also keep the
        aligned input, reconstruction, realistic face and latent of every face (the image tab)."""
        from realface.pipeline import ApplyConfig, SaveOptions, parse_layers

        try:
            mask = MaskConfig(kind=self.mask, feather=float(self.feather))  # type: ignore[arg-type]
        except ValueError as exc:
            raise ConfigError(f"mask: {exc}") from None
        # The command line refuses fine_steps > steps with coarse-to-fine; the page clamps instead.
        fine = min(self.fine_steps, self.steps) if self.coarse_to_fine else self.fine_steps
        return ApplyConfig(
            invert=InvertConfig(
                steps=self.steps,
                seed=self.seed,
                coarse_to_fine=self.coarse_to_fine,
                coarse_resolution=self.coarse_resolution,
                fine_steps=fine,
            ),
            mask=mask,
            blend=BlendConfig(color_correct=self.color_correct),
            save=SaveOptions(aligned=save_all, reconstruction=save_all, realistic=save_all, latents=save_all),
            transfer_layers=parse_layers(self.transfer_layers),
            batch_size=batch_size,
            max_pixels=max_pixels,
        )

    def suffix(self) -> str | None:
        return None if self.out_format == "input" else "." + self.out_format


class Workspace:
    """The app's own folder (see the module docstring). Created on first use."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(os.path.abspath(root))
        for sub in ("uploads", "previews", "runs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    @property
    def uploads(self) -> Path:
        return self.root / "uploads"

    def new_folder(self, kind: str) -> Path:
        """A fresh folder ``<kind>/<date-time>-<random>`` (unique even for simultaneous calls)."""
        name = f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        folder = self.root / kind / name
        folder.mkdir(parents=True)
        return folder

    def contains(self, path: str | os.PathLike) -> bool:
        p = Path(os.path.realpath(path))
        return p == self.root or self.root in p.parents


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def resolve_batch_folder(root: Path, text: str, what: str, must_exist: bool) -> Path:
    """A folder typed in the batch tab, relative to ``root`` unless absolute; it must lie below ``root``
    (after resolving ``..`` and links) so the page cannot read or write elsewhere on the server."""
    text = (text or "").strip()
    if not text:
        raise ConfigError(f"{what}: enter a folder (relative to {root})")
    path = Path(os.path.realpath(root / os.path.expanduser(text)))
    real_root = Path(os.path.realpath(root))
    if not _within(path, real_root):
        raise ConfigError(
            f"{what}: {text} is outside the batch folder {root} (start the UI with --batch-root)"
        )
    if must_exist and not path.is_dir():
        raise ConfigError(f"{what}: {path} is not a folder")
    return path


class ModelStore:
    """Loads G_real, the G_rendering checkpoints and LPIPS once and keeps them (thread-safe)."""

    def __init__(self, config: UIConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._nets: dict[str, Any] = {}
        self._device = None

    @property
    def device(self):
        if self._device is None:
            from realface.utils.device import resolve_device

            self._device = resolve_device(self.config.device)
        return self._device

    def rendering_choices(self) -> list[tuple[str, str]]:
        """(label, value) pairs for the page: the baseline and every offered checkpoint."""
        choices = [
            ("none: baseline mode (lower quality; fine-tune a G_rendering for best results)", BASELINE)
        ]
        seen = set()
        files = [Path(p) for p in self.config.renderings]
        if self.config.models_dir is not None and Path(self.config.models_dir).is_dir():
            for pattern in ("*.safetensors", "*.pkl"):
                files += sorted(Path(self.config.models_dir).glob(pattern))
        for f in files:
            value = os.path.abspath(f)
            if value not in seen:
                seen.add(value)
                choices.append((f.name, value))
        return choices

    def default_rendering(self) -> str:
        choices = self.rendering_choices()
        return choices[1][1] if len(choices) > 1 else BASELINE

    def check_rendering(self, value: str) -> Path | None:
        """The checkpoint for a page value; only the offered files are accepted."""
        if value == BASELINE:
            return None
        if value not in {v for _, v in self.rendering_choices()}:
            raise ConfigError(f"G_rendering {value!r} is not one of the offered checkpoints")
        return Path(value)

    def _get(self, key: str, load: Callable[[], Any]) -> Any:
        with self._lock:
            if key not in self._nets:
                self._nets[key] = load()
            return self._nets[key]

    def job(self, rendering: str, apply_config):
        """A :class:`realface.pipeline.RealFace` for the chosen checkpoint (networks loaded once)."""
        from realface.checkpoints import load_generator
        from realface.nn.lpips import load_lpips_vgg
        from realface.pipeline import RealFace

        path = self.check_rendering(rendering)
        dev = self.device
        G_real = self._get("real", lambda: load_generator(self.config.real, device=dev))
        G_rendering = None
        if path is not None:
            G_rendering = self._get(f"rendering:{path}", lambda: load_generator(path, device=dev))
        lpips = self._get("lpips", lambda: load_lpips_vgg(device=dev, vgg_path=self.config.lpips_vgg))
        return RealFace(G_real, G_rendering, lpips, apply_config, device=dev)


# --- jobs: progress and cancel ------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


@dataclass
class Job:
    """One run started from the page: a cancel flag and a progress record that the page polls.

    ``step_callback`` is given to the inversion; it raises :class:`~realface.errors.Cancelled` at the
    next step once :meth:`cancel` was called.
    """

    id: str = field(default_factory=lambda: secrets.token_hex(8))
    started: float = field(default_factory=time.monotonic)
    phase: str = "starting"
    item: int = 0
    items: int = 0
    item_name: str = ""
    step: int = 0
    steps: int = 0
    loss: float | None = None
    item_started: float = field(default_factory=time.monotonic)
    item_seconds: list[float] = field(default_factory=list)
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        if self._cancel.is_set():
            raise Cancelled("cancelled from the page")

    def begin_item(self, index: int, total: int, name: str) -> None:
        self.check()
        self.item, self.items, self.item_name = index, total, name
        self.step, self.steps, self.loss = 0, 0, None
        self.phase = "detecting faces"
        self.item_started = time.monotonic()

    def end_item(self) -> None:
        self.item_seconds.append(time.monotonic() - self.item_started)

    def step_callback(self, step: int, total: int, loss) -> None:
        self.phase = "inverting"
        self.step, self.steps = step + 1, total
        self.loss = float(loss.mean())
        self.check()

    def eta(self) -> float | None:
        """Seconds left: the current image from its step rate, the others from the mean image time."""
        now = time.monotonic()
        current = None
        if self.steps and self.step:
            current = (now - self.item_started) / self.step * (self.steps - self.step)
        left_items = max(0, self.items - self.item)
        if self.item_seconds:
            per_item = sum(self.item_seconds) / len(self.item_seconds)
        elif current is not None:
            per_item = (now - self.item_started) + current
        else:
            return None
        return (current or 0.0) + left_items * per_item

    def status(self) -> str:
        parts = [f"**{self.phase.capitalize()}**"]
        if self.items:
            parts.append(f"image {self.item}/{self.items} ({self.item_name})")
        if self.steps:
            parts.append(f"step {self.step}/{self.steps}")
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        parts.append(f"elapsed {_duration(time.monotonic() - self.started)}")
        eta = self.eta()
        if eta is not None:
            parts.append(f"ETA {_duration(eta)}")
        if self.cancelled:
            parts.append("cancelling…")
        return " · ".join(parts)


class JobRegistry:
    """The jobs the page has started, by id, so that the Cancel button finds the running one."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def new(self) -> Job:
        job = Job()
        with self._lock:
            self._jobs[job.id] = job
        return job

    def get(self, job_id: str | None) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id or "")

    def finish(self, job: Job) -> None:
        with self._lock:
            self._jobs.pop(job.id, None)


def run_in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Start ``fn`` in a daemon thread; the returned dict gets ``result`` or ``error`` when it ends."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - reported to the page, never re-raised in a thread
            if not isinstance(exc, (Cancelled, RealFaceError)):
                log.exception("job failed")
            box["error"] = exc
        if "result" not in box and "error" not in box:  # never a job that ends with neither
            box["error"] = RuntimeError("the job stopped without a result")

    thread = threading.Thread(target=target, name="realface-job", daemon=True)
    thread.start()
    return thread, box


# --- the image tab --------------------------------------------------------------------------------------


def _face_label(name: str, index: int, face) -> str:
    left, top, right, bottom = face.box
    return f"{name} · face {index} ({right - left + 1} px)"


PREVIEW_SIDE = 2048
"""Longest side of the images shown in the page (downloads keep the full resolution)."""


def _shrink(rgb: np.ndarray, max_side: int):
    """``(PIL image at most max_side px, scale)`` of an 8-bit RGB array."""
    from PIL import Image

    img = Image.fromarray(rgb)
    scale = min(1.0, max_side / max(img.size))
    if scale < 1:
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, Image.BILINEAR)
    return img, scale


def _write_preview(rgb: np.ndarray, path: Path, max_side: int = PREVIEW_SIDE) -> Path:
    """An 8-bit PNG for the browser (which cannot show TIFF, and need not load a 100 MP image)."""
    from realface.utils.fs import atomic_path

    img, _ = _shrink(rgb, max_side)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return path


def _draw_faces(rgb: np.ndarray, faces, max_side: int = 1024) -> np.ndarray:
    """A preview: the image (at most ``max_side`` px) with each face's box and index."""
    from PIL import ImageDraw

    img, scale = _shrink(rgb, max_side)
    draw = ImageDraw.Draw(img)
    width = max(2, round(max(img.size) / 300))
    for i, face in enumerate(faces):
        l, t, r, b = (v * scale for v in face.box)
        draw.rectangle([l, t, r, b], outline=(255, 40, 40), width=width)
        draw.rectangle([l, max(0, t - 14 - width), l + 14 + 8 * len(str(i)), t], fill=(255, 40, 40))
        draw.text((l + 4, max(0, t - 13 - width)), str(i), fill=(255, 255, 255))
    return np.asarray(img)


@dataclass(frozen=True)
class Detection:
    """The faces found in one uploaded image, for the page."""

    source: Path
    name: str
    preview: Path | None
    labels: tuple[str, ...]
    error: str | None = None


def detect_preview(
    uploads: Sequence[str | os.PathLike], workspace: Workspace, config: UIConfig
) -> list[Detection]:
    """Find the faces of each upload and draw them; an unreadable image or one without faces gets an
    error message instead (the others are still shown)."""

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
            faces = find_faces(rgb, DetectConfig(), source=name)
        except RealFaceError as exc:
            out.append(Detection(src, name, None, (), readable_error(exc).replace(str(src), name)))
            continue
        preview = _write_preview(_draw_faces(rgb, faces), folder / f"{i:02d}_{src.stem}.png")
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


def _unique_stems(paths: Sequence[Path]) -> list[str]:
    stems, seen = [], set()
    for p in paths:
        stem, k = p.stem, 1
        while stem in seen:
            k += 1
            stem = f"{p.stem}-{k}"
        seen.add(stem)
        stems.append(stem)
    return stems


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
    stems = _unique_stems(sources)
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
        res.before = _write_preview(image.rgb8(), run_dir / f".{stems[i]}_before.png")
        res.after = _write_preview(result.image.rgb8(), run_dir / f".{stems[i]}_after.png")
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


# --- the batch tab --------------------------------------------------------------------------------------


def run_folder(
    job: Job,
    store: ModelStore,
    config: UIConfig,
    settings: Settings,
    input_dir: Path,
    output_dir: Path,
):
    """``realface apply INPUT -o OUTPUT`` from the page: the same manifest, resume and config hash
    (a run started here can be continued from the command line and back). Returns the summary."""
    from realface.batch import collect_inputs
    from realface.pipeline import run_catalogue, run_info

    if output_dir == input_dir:
        raise ConfigError("the output folder must differ from the input folder")
    if _within(input_dir, output_dir):
        raise ConfigError(f"the input folder {input_dir} lies inside the output folder {output_dir}")
    items = collect_inputs([input_dir], exclude=[output_dir])
    if not items:
        raise ConfigError(f"{input_dir}: no images found (looked for .jpg, .png, .webp, .tif)")
    apply_cfg = settings.apply_config(config.batch_size, config.max_pixels, save_all=False)
    job.phase = "loading models"
    pipeline = store.job(settings.rendering, apply_cfg)
    rendering = store.check_rendering(settings.rendering)
    info = run_info(config.real, rendering, apply_cfg)
    plan = {"run": len(items), "started": 0}

    def on_plan(to_run: int, skipped: int) -> None:
        plan["run"] = to_run
        job.phase = f"{skipped} already done; starting" if skipped else "starting"

    def step_callback(ctx):
        plan["started"] += 1
        job.begin_item(plan["started"], plan["run"], ctx.key)
        return job.step_callback, job.end_item

    return run_catalogue(
        pipeline,
        [input_dir],
        output_dir,
        info,
        suffix=settings.suffix(),
        progress=False,
        step_callback=step_callback,
        on_plan=on_plan,
    )


def manifest_rows(outdir: Path) -> list[list[Any]]:
    """The latest record of each item of a batch folder: [item, status, seconds, outputs or error]."""
    from realface.batch import MANIFEST_NAME, Manifest

    path = outdir / MANIFEST_NAME
    if not path.is_file():
        return []
    rows = []
    for key, rec in sorted(Manifest(path).state().items()):
        detail = rec.error if rec.status == "failed" else ", ".join(rec.outputs)
        seconds = None if rec.seconds is None else round(float(rec.seconds), 1)
        rows.append([key, rec.status, seconds, detail or ""])
    return rows


# --- the models tab -------------------------------------------------------------------------------------


def weights_rows() -> list[list[str]]:
    """One row per registered weight: id, status, size, licence, use, and how to get it."""
    from realface.weights import REGISTRY, licence_line, locate, size_short

    rows = []
    for record in REGISTRY.values():
        path, kind = locate(record)
        status = {
            "cache": "present",
            "package": "present (package)",
            "foreign": "found",
            "missing": "missing",
        }[kind]
        if kind == "missing":
            if record.manual_only:
                how = f"manual download ({record.manual_hint or record.urls[0]}), then `realface weights import {record.id} FILE`"
            else:
                how = f"`realface weights fetch {record.id}` or `realface weights import {record.id} FILE`"
            if record.optional:
                status += " (optional)"
        else:
            how = str(path)
        licence = licence_line(record).removeprefix("licence: ")
        rows.append([record.id, status, size_short(record), licence, record.used_for, how])
    return rows


def missing_models(config: UIConfig) -> str | None:
    """A sentence naming the networks the page cannot run without, or None when all are there."""
    from realface.weights import REGISTRY, locate

    missing = []
    for what, ref in (("G_real", config.real), ("LPIPS VGG16", config.lpips_vgg or "tv-vgg16")):
        ref = str(ref)
        if ref in REGISTRY:
            if locate(ref)[0] is None:
                missing.append(
                    f"{what} (`{ref}`: `realface weights fetch {ref}` or `realface weights import`)"
                )
        elif not Path(ref).is_file():
            missing.append(f"{what} (no file {ref})")
    for path in config.renderings:
        if not Path(path).is_file():
            missing.append(f"G_rendering (no file {path})")
    if not missing:
        return None
    return "Runs will fail until these are present: " + "; ".join(missing) + "."


def fetch_weight(weight_id: str) -> str:
    """Download (or locate) one weight; returns a one-line report (errors raise :class:`RealFaceError`)."""
    from realface.weights import get_record, weight_path

    record = get_record(weight_id)
    path = weight_path(record, download=True, progress=False)
    return f"{record.id}: {path}"
