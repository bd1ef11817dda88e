"""The main job: turn the rendered faces of an image into photo-realistic faces of the same identity.

Per image (paper Sec. 3.3)::

    load ─► detect faces ─► 68 landmarks ─► FFHQ-align at the generators' resolution
         ─► invert the aligned faces into G_rendering's W+ (batched)
         ─► decode the same W+ with G_real (G_real's own constant noise; the optimised noise is not reused)
         ─► inverse-warp + mask + feather + colour match ─► composite into the original image

Every pixel outside the faces' masks keeps its exact value (see :func:`realface.face.paste_face`).

**Baseline mode** (no ``G_rendering``): the rendered face is inverted directly into ``G_real``
under the paper's sketch and colour losses (Sec. 4.3.2). It is a lower-quality fallback for users who
have not fine-tuned a rendering-style generator, and is labelled as such in logs and outputs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from realface.batch import ExtraOutputs
from realface.errors import ConfigError, FaceError
from realface.face import (
    AlignConfig,
    BlendConfig,
    DetectConfig,
    MaskConfig,
    align_face,
    build_mask,
    find_faces,
    paste_face,
)
from realface.face.align import AlignedFace
from realface.face.detect import Face
from realface.imageio import DEFAULT_MAX_PIXELS, LoadedImage, format_for_path, load_image, save_image
from realface.invert import (
    IdentityLoss,
    InversionResult,
    InvertConfig,
    LpipsLoss,
    TargetLoss,
    invert,
    w_stats,
)
from realface.losses import IdentityLossConfig
from realface.nn.resize import area_downsample
from realface.nn.stylegan2 import Generator
from realface.sampling import make_grid
from realface.utils.fs import atomic_path

if TYPE_CHECKING:
    from realface.batch import BatchSummary
    from realface.nn.lpips import LPIPS

__all__ = [
    "SaveOptions",
    "ApplyConfig",
    "FACE_EXTRAS",
    "OUTPUT_FORMATS",
    "FaceResult",
    "ImageResult",
    "RealFace",
    "transfer",
    "parse_layers",
    "run_info",
    "run_catalogue",
    "plan_catalogue",
    "projector",
    "save_latent",
    "load_latent",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SaveOptions:
    """Per-face extras written beside the composite (all off by default).

    aligned: the aligned input crop; reconstruction: G_rendering's rendering of the latent (how well
    the inversion fits); realistic: G_real's face; latents: W+ and noise as ``.safetensors``; sheet: a
    comparison strip (aligned | reconstruction | realistic | composite crop).
    """

    aligned: bool = False
    reconstruction: bool = False
    realistic: bool = False
    latents: bool = False
    sheet: bool = False


@dataclass(frozen=True)
class ApplyConfig:
    """Everything that decides the output of ``realface apply`` (saved with every run).

    transfer_layers: indices of W+ layers whose latent comes from the inversion; the others take
    G_real's ``w_avg`` (fewer layers trade identity for realism). None: all layers (the paper).
    batch_size: faces optimised together in one inversion batch. baseline_loss: the identity losses
    of the baseline mode (weights and settings; the paper's by default, see
    :class:`realface.losses.IdentityLossConfig`). faces: a FACES.json file or a folder of them
    (:mod:`realface.face.given`): exactly the faces given there are processed and ``detect`` is not
    used; ``face_index`` then picks among them. None (default): faces are detected.
    """

    invert: InvertConfig = field(default_factory=InvertConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    blend: BlendConfig = field(default_factory=BlendConfig)
    save: SaveOptions = field(default_factory=SaveOptions)
    face_index: int | None = None
    transfer_layers: tuple[int, ...] | None = None
    batch_size: int = 4
    max_pixels: int = DEFAULT_MAX_PIXELS
    baseline_loss: IdentityLossConfig = field(default_factory=IdentityLossConfig)
    faces: str | None = None

    def __post_init__(self) -> None:
        from realface.options import check_finite

        check_finite(self)
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}", field="batch_size")
        if self.face_index is not None and self.face_index < 0:
            raise ConfigError(f"face_index must be >= 0, got {self.face_index}", field="face_index")
        if self.max_pixels < 1:
            raise ConfigError(f"max_pixels must be >= 1, got {self.max_pixels}", field="max_pixels")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, default=str)


def parse_layers(spec: str | None, num_ws: int | None = None) -> tuple[int, ...] | None:
    """``'0-7'`` or ``'0,2,4'`` -> W+ layer indices for ``ApplyConfig.transfer_layers``; ``''``, ``'all'``
    or None -> None (every layer, the paper). Bounds: see :func:`realface.options.parse_layers`."""
    from realface.options import parse_layers as _parse

    return _parse(spec, num_ws, what="--transfer-layers")


def transfer(
    G_real: Generator, ws: torch.Tensor, layers: Sequence[int] | None = None, stats_samples: int = 10000
) -> torch.Tensor:
    """Decode W+ latents with G_real using its own constant noise: [N, num_ws, w_dim] -> [N, 3, R, R].

    ``layers``: W+ indices taken from ``ws``; the other layers use G_real's ``w_avg`` (None: all).
    """
    if ws.ndim != 3 or ws.shape[1:] != (G_real.num_ws, G_real.w_dim):
        raise ValueError(f"ws must be [N, {G_real.num_ws}, {G_real.w_dim}], got {tuple(ws.shape)}")
    if layers is not None:
        bad = [i for i in layers if not 0 <= i < G_real.num_ws]
        if bad:
            raise ConfigError(f"transfer layers: {bad[0]} is out of range [0, {G_real.num_ws})")
        keep = torch.zeros(G_real.num_ws, dtype=torch.bool, device=ws.device)
        keep[list(layers)] = True
        avg = w_stats(G_real, stats_samples).w_avg.to(ws.device).reshape(1, 1, -1)
        ws = torch.where(keep.reshape(1, -1, 1), ws, avg)
    with torch.no_grad():
        return G_real.synthesis(ws, noise_mode="const")


def save_latent(
    path: str | os.PathLike, result: InversionResult, index: int, metadata: dict[str, Any]
) -> Path:
    """Write one face's W+ ([1, num_ws, w_dim]) and noise maps as safetensors, atomically."""
    from safetensors.torch import save_file

    tensors = {"ws": result.ws[index : index + 1].detach().cpu().contiguous()}
    for i, n in enumerate(result.noise or []):
        tensors[f"noise.{i}"] = n[index : index + 1].detach().cpu().contiguous()
    meta = {"format": "realface.latent", "version": "1", **{k: str(v) for k, v in metadata.items()}}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return Path(path)


def load_latent(path: str | os.PathLike) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    """(ws [1, num_ws, w_dim], noise maps or None) from a latent file written by :func:`save_latent`."""
    from safetensors import SafetensorError, safe_open

    from realface.errors import CheckpointError

    try:
        with safe_open(str(path), framework="pt") as f:
            if (f.metadata() or {}).get("format") != "realface.latent":
                raise CheckpointError(f"{path}: not a realface latent file")
            ws = f.get_tensor("ws")
            keys = sorted((k for k in f.keys() if k.startswith("noise.")), key=lambda k: int(k.split(".")[1]))
            noise = [f.get_tensor(k) for k in keys] or None
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: unreadable latent file ({exc})") from exc
    return ws, noise


@dataclass
class FaceResult:
    """One processed face: where it is, its latent and the images made from it."""

    face: Face
    aligned: np.ndarray  # [R, R, 3] float32 in [0, 1]
    realistic: np.ndarray  # [R, R, 3] float32 in [0, 1]
    loss: float
    reconstruction: np.ndarray | None = None  # [R, R, 3] float32 in [0, 1]


@dataclass
class ImageResult:
    """The composite (same size, mode, bit depth and alpha as the input) and its faces."""

    image: LoadedImage
    faces: list[FaceResult]
    inversion: InversionResult | None = None


def _to_unit(img: torch.Tensor) -> np.ndarray:
    """[N, 3, R, R] in [-1, 1] -> [N, R, R, 3] float32 in [0, 1]."""
    return ((img.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


class RealFace:
    """The realism-transfer pipeline around two generators that share one W+ space.

    ``G_real``: the photo-real generator (FFHQ). ``G_rendering``: the rendering-style generator
    fine-tuned from it, or None for the baseline mode. ``lpips``: an LPIPS-VGG module
    (:func:`realface.nn.lpips.load_lpips_vgg`), used as the inversion loss (and, in baseline mode,
    inside the colour loss).

    Raises:
        ConfigError: the generators do not share the W+ space, or ``config.transfer_layers`` names a
            layer G_real does not have (checked here, before any image is read).
    """

    def __init__(
        self,
        G_real: Generator,
        G_rendering: Generator | None,
        lpips: LPIPS,
        config: ApplyConfig = ApplyConfig(),
        device: torch.device | str = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.G_real = G_real.to(self.device).eval().requires_grad_(False)
        self.G_rendering = G_rendering.to(self.device).eval().requires_grad_(False) if G_rendering else None
        if self.G_rendering is not None:
            a, b = self.G_rendering, self.G_real
            if (a.num_ws, a.w_dim, a.img_resolution) != (b.num_ws, b.w_dim, b.img_resolution):
                raise ConfigError(
                    "G_rendering and G_real must share the W+ space and resolution: got "
                    f"{(a.num_ws, a.w_dim, a.img_resolution)} vs {(b.num_ws, b.w_dim, b.img_resolution)}"
                )
        lpips.to(self.device).eval().requires_grad_(False)  # in place, as for every module
        self.lpips = lpips
        self.config = config
        self.resolution = self.G_real.img_resolution
        layers = config.transfer_layers
        bad = [i for i in layers or () if not 0 <= i < self.G_real.num_ws]
        if bad:  # checked here, before any image work, rather than after a whole inversion
            raise ConfigError(
                f"transfer_layers: layer {bad[0]} is out of range for G_real, which has {self.G_real.num_ws} "
                f"W+ layers (0-{self.G_real.num_ws - 1})",
                field="transfer_layers",
            )
        if self.baseline:
            log.warning(
                "baseline mode: no G_rendering given, inverting directly into G_real under the sketch and "
                "colour losses; expect lower identity fidelity than with a fine-tuned G_rendering"
            )

    @classmethod
    def from_weights(
        cls,
        rendering: str | os.PathLike | None = None,
        real: str | os.PathLike = "sg2ada-ffhq1024",
        config: ApplyConfig = ApplyConfig(),
        device: torch.device | str = "auto",
        lpips: LPIPS | None = None,
        lpips_vgg: str | os.PathLike | None = None,
        download: bool = True,
        progress: bool = False,
    ) -> RealFace:
        """Load the three networks the pipeline needs and build it, as ``realface apply`` does.

        Args:
            rendering: the fine-tuned G_rendering (a ``.safetensors``/``.pkl`` file or a weights id);
                ``None`` for the baseline mode.
            real: G_real, a file or a weights id (default: the official FFHQ 1024 generator).
            config: the pipeline's settings.
            device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.
            lpips: an already built LPIPS module; default: LPIPS-VGG from ``lpips_vgg`` (a VGG16 state
                dict) or the cached ``tv-vgg16``.
            download: fetch missing registered weights (when not offline); every missing one is named
                in one error otherwise.

        Example (tiny random generators written to a temporary folder; real use passes file names or
        weights ids)::

            >>> import tempfile, realface
            >>> from realface.nn.lpips import LPIPS
            >>> folder = tempfile.mkdtemp()
            >>> kw = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
            ...           mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=64, channel_max=8))
            >>> _ = realface.save_networks({"G": realface.Generator(**kw)}, f"{folder}/real.safetensors")
            >>> _ = realface.save_networks({"G": realface.Generator(**kw)}, f"{folder}/rendering.safetensors")
            >>> job = realface.RealFace.from_weights(
            ...     rendering=f"{folder}/rendering.safetensors", real=f"{folder}/real.safetensors",
            ...     device="cpu", lpips=LPIPS())
            >>> job.resolution, job.baseline
            (16, False)

        Raises:
            MissingWeightsError: registered weights are absent and cannot be fetched (all are listed).
            CheckpointError: a network file is broken or not a generator.
            ConfigError: the two generators do not share one W+ space.
        """
        from realface.checkpoints import load_generator
        from realface.nn.lpips import load_lpips_vgg
        from realface.utils.device import resolve_device
        from realface.weights import apply_weight_ids, require_weights

        ids = apply_weight_ids(real, lpips_vgg, config.mask.kind, config.detect.detector)
        ids = [i for i in ids if i not in ("tv-vgg16", "lpips-vgg-v0.1")] if lpips is not None else ids
        if rendering is not None:
            from realface.weights import REGISTRY

            if str(rendering) in REGISTRY:
                ids.append(str(rendering))
        require_weights(ids, download=download, progress=progress)
        dev = resolve_device(str(device)) if not isinstance(device, torch.device) else device
        G_real = load_generator(real, device=dev)
        G_rendering = load_generator(rendering, device=dev) if rendering is not None else None
        if lpips is None:
            lpips = load_lpips_vgg(device=dev, vgg_path=lpips_vgg)
        return cls(G_real, G_rendering, lpips, config, device=dev)

    @property
    def baseline(self) -> bool:
        return self.G_rendering is None

    @property
    def inversion_generator(self) -> Generator:
        return self.G_real if self.G_rendering is None else self.G_rendering

    def inversion_loss(self) -> TargetLoss:
        res = self.config.invert.loss_resolution
        if not self.baseline:
            return LpipsLoss(self.lpips, resolution=res)
        return IdentityLoss(self.config.baseline_loss, self.lpips)

    # ---------------------------------------------------------------------------------------------

    def find_faces(self, image: LoadedImage, select: Sequence[int] | None = None) -> list[Face]:
        """The image's faces, largest first (or, with ``config.faces``, the faces given for it in file
        order), restricted to ``select`` (indices into that order) when given, else to
        ``config.face_index`` when set.

        Raises:
            FaceError: no face found, a requested index is absent, or the faces file is missing, bad
                or made for another image.
        """
        if self.config.faces is not None:
            from realface.face.given import load_given_faces

            path = Path(image.path)
            faces = load_given_faces(Path(self.config.faces), path, image.size, image.rgb8())
        else:
            faces = find_faces(image.rgb8(), self.config.detect, source=str(image.path))
        if select is None and self.config.face_index is not None:
            select = [self.config.face_index]
        if select is not None:
            missing = [i for i in select if not 0 <= i < len(faces)]
            if missing:
                raise FaceError(
                    f"{image.path}: face index {', '.join(map(str, missing))} requested but "
                    f"{len(faces)} face(s) found"
                )
            if not select:
                raise FaceError(f"{image.path}: no face selected")
            faces = [faces[i] for i in dict.fromkeys(select)]
        return faces

    def invert_faces(
        self, aligned: np.ndarray, progress: Callable[[int, int, torch.Tensor], None] | None = None
    ) -> InversionResult:
        """Invert aligned faces [F, R, R, 3] (float [0, 1]) in batches of ``config.batch_size``."""
        G = self.inversion_generator
        targets = torch.from_numpy(aligned).permute(0, 3, 1, 2).to(self.device) * 2 - 1  # [F, 3, R, R]
        loss = self.inversion_loss()
        parts = []
        for start in range(0, len(targets), self.config.batch_size):
            chunk = targets[start : start + self.config.batch_size]
            parts.append(invert(G, chunk, loss, self.config.invert, callback=progress))
        if len(parts) == 1:
            return parts[0]
        noises = [p.noise for p in parts if p.noise is not None]
        noise = [torch.cat(maps) for maps in zip(*noises, strict=True)] if noises else None
        steps = min(p.loss_history.shape[0] for p in parts)
        return InversionResult(
            ws=torch.cat([p.ws for p in parts]),
            noise=noise,
            loss_history=torch.cat([p.loss_history[:steps] for p in parts], dim=1),
            steps_run=max(p.steps_run for p in parts),
            final_loss=torch.cat([p.final_loss for p in parts]),
        )

    def process(
        self,
        image: LoadedImage,
        progress: Callable[[int, int, torch.Tensor], None] | None = None,
        faces: Sequence[int] | None = None,
    ) -> ImageResult:
        """All faces of one image (or the ``faces`` indices of :meth:`find_faces`'s order): returns the
        composite and per-face results; nothing is written."""
        found = self.find_faces(image, faces)
        rgb = image.rgb8() if image.bit_depth == 8 else image.rgb_float()
        aligned = [self._align(rgb, f) for f in found]
        crops = np.stack([a.image for a in aligned]).astype(np.float32)  # [F, R, R, 3]
        inv = self.invert_faces(crops, progress)
        realistic = _to_unit(transfer(self.G_real, inv.ws, self.config.transfer_layers))  # [F, R, R, 3]
        recon = None
        if self.config.save.reconstruction or self.config.save.sheet:
            with torch.no_grad():
                recon = _to_unit(
                    self.inversion_generator.synthesis(inv.ws, noise_mode="const", noise=inv.noise)
                )
        pixels = image.pixels.copy()
        results = []
        for i, (face, al) in enumerate(zip(found, aligned, strict=True)):
            mask = build_mask(rgb, face.landmarks_array, al.alignment, self.config.mask)
            paste_face(pixels, realistic[i], al.alignment, mask, self.config.blend, out=pixels)
            results.append(
                FaceResult(
                    face=face.with_alignment(al.alignment),
                    aligned=crops[i],
                    realistic=realistic[i],
                    loss=float(inv.final_loss[i]),
                    reconstruction=None if recon is None else recon[i],
                )
            )
        return ImageResult(image=image.with_pixels(pixels), faces=results, inversion=inv)

    def run_file(
        self,
        src: str | os.PathLike,
        dst: str | os.PathLike,
        progress: Callable[[int, int, torch.Tensor], None] | None = None,
    ) -> list[Path]:
        """Process ``src`` and write the composite to ``dst`` (format from its suffix, else the input's)
        plus the extras chosen in ``config.save`` beside it. Returns every path written."""
        src, dst = Path(src), Path(dst)
        if dst.exists() and dst.resolve() == src.resolve():
            raise ConfigError(f"{dst}: refusing to overwrite the input image")
        image = load_image(src, max_pixels=self.config.max_pixels)
        return self.write_outputs(self.process(image, progress), dst)

    def write_outputs(self, result: ImageResult, dst: str | os.PathLike) -> list[Path]:
        """Write the composite to ``dst`` (format from its suffix, else the input's) and the extras of
        ``config.save`` beside it (``<stem>_face<i>_<kind>``), each atomically. Returns every path."""
        dst = Path(dst)
        written = self._write_extras(result, dst)
        written.append(save_image(result.image, dst, format=format_for_path(dst) or result.image.format))
        return written

    def _write_extras(self, result: ImageResult, dst: Path) -> list[Path]:
        opts = self.config.save
        written: list[Path] = []

        def png(arr: np.ndarray, path: Path) -> None:
            with atomic_path(path) as tmp:
                Image.fromarray(arr).save(tmp, format="PNG")
            written.append(path)

        stem = dst.with_suffix("")
        mode = "baseline" if self.baseline else "transfer"
        for i, fr in enumerate(result.faces):
            base = Path(f"{stem}_face{i}")
            if opts.aligned:
                png(_u8(fr.aligned), base.with_name(base.name + "_aligned.png"))
            if opts.reconstruction and fr.reconstruction is not None:
                png(_u8(fr.reconstruction), base.with_name(base.name + "_reconstruction.png"))
            if opts.realistic:
                png(_u8(fr.realistic), base.with_name(base.name + "_realistic.png"))
            if opts.latents and result.inversion is not None:
                meta = {"mode": mode, "loss": fr.loss, "steps": result.inversion.steps_run, "face": i}
                written.append(
                    save_latent(base.with_name(base.name + "_latent.safetensors"), result.inversion, i, meta)
                )
            if opts.sheet:
                tiles = [_u8(fr.aligned)]
                if fr.reconstruction is not None:
                    tiles.append(_u8(fr.reconstruction))
                tiles.append(_u8(fr.realistic))
                tiles.append(self._composite_crop(result.image, fr))
                png(make_grid(tiles, cols=len(tiles)), base.with_name(base.name + "_sheet.png"))
        return written

    def _align(self, rgb: np.ndarray, face: Face) -> AlignedFace:
        """FFHQ-align a face at the generators' resolution R (aligned at 256 and area-reduced when R < 256)."""
        R = self.resolution
        size = R if R in (256, 512, 1024) else 256
        if R > 1024:
            raise ConfigError(f"generators of resolution {R} are not supported (at most 1024)")
        crop = align_face(rgb, face.landmarks_array, AlignConfig(output_size=size))
        if size == R:
            return crop
        img = torch.from_numpy(np.ascontiguousarray(crop.image)).permute(2, 0, 1)[None]  # [1, 3, S, S]
        small = area_downsample(img, R)[0].permute(1, 2, 0).numpy()  # [R, R, 3]
        return AlignedFace(
            image=np.ascontiguousarray(small, dtype=np.float32), alignment=crop.alignment.resized(R)
        )

    def _composite_crop(self, image: LoadedImage, fr: FaceResult) -> np.ndarray:
        """The final composite re-aligned to the face's crop (for the comparison sheet)."""
        rgb = image.rgb8() if image.bit_depth == 8 else image.rgb_float()
        return self._align(rgb, fr.face).to_uint8()


# --- catalogues -------------------------------------------------------------------------------------

StepCallback = Callable[[int, int, torch.Tensor], None]

OUTPUT_FORMATS: tuple[str, ...] = ("png", "jpg", "webp")
"""The formats a catalogue's composites can be written in (``--format``; ``jpeg`` is read as ``jpg``)."""

FACE_EXTRAS = ExtraOutputs(pattern=r"_face\d+_.+", label="_face<N>_*")
"""The per-face files of :meth:`RealFace.write_outputs` beside a composite ``STEM.png``:
``STEM_face<i>_<kind>`` (``_aligned.png``, ``_sheet.png``, ``_latent.safetensors``, ...)."""


def run_info(real: str | os.PathLike, rendering: str | os.PathLike | None, config: ApplyConfig) -> dict:
    """What decides a catalogue's outputs: the two generators and the config (saved as ``config.json``;
    its :func:`realface.batch.hash_config` tells which finished images are still valid). The command
    line and the web UI build it the same way, so either can resume the other's run."""
    return {
        "real": str(real),
        "rendering": None if rendering is None else str(rendering),
        "mode": "baseline" if rendering is None else "transfer",
        "config": json.loads(config.to_json()),
    }


def plan_catalogue(
    inputs: Sequence[str | os.PathLike], outdir: str | os.PathLike, config: ApplyConfig, suffix: str | None
) -> tuple[list[Path], list[Path]]:
    """The (images, input folders) of a catalogue run into ``outdir``, checked as
    :func:`run_catalogue` checks them, without writing anything: call it before loading models.

    Raises:
        ConfigError: ``suffix`` is not one of :data:`OUTPUT_FORMATS`.
        RealFaceError: an input is missing, there is no image, ``outdir`` is a file, or outputs
            collide (see :func:`realface.batch.check_plan`).
    """
    from realface.batch import check_plan, collect_catalogue

    if suffix is not None and format_for_path(f"x{suffix}") is None:
        raise ConfigError(f"output format {suffix!r} is not one of {', '.join(OUTPUT_FORMATS)}")
    items = collect_catalogue(list(inputs), outdir)
    roots = [Path(p) for p in inputs if Path(p).is_dir()]
    check_plan(items, outdir, roots=roots, suffix=suffix, extras=_face_extras(config))
    return items, roots


def _face_extras(config: ApplyConfig) -> ExtraOutputs | None:
    return FACE_EXTRAS if any(dataclasses.astuple(config.save)) else None


def run_catalogue(
    job: RealFace,
    inputs: Sequence[str | os.PathLike],
    outdir: str | os.PathLike,
    info: dict,
    *,
    suffix: str | None = None,
    progress: bool = True,
    stop_on_error: bool = False,
    step_callback: Callable[[Any], tuple[StepCallback | None, Callable[[], None]]] | None = None,
    on_plan: Callable[[int, int], None] | None = None,
) -> BatchSummary:
    """Run ``job`` over images and folders (searched recursively) into ``outdir`` with the resumable
    manifest of :func:`realface.batch.run_batch`; returns its :class:`~realface.batch.BatchSummary`.

    ``info``: :func:`run_info` of the job (written to ``outdir/config.json`` once the folder's lock is
    held; its hash keys the manifest). ``suffix``: output format as an extension (one of
    :data:`OUTPUT_FORMATS` with a dot, e.g. ``.png``), default the input's. The per-face extras of
    ``config.save`` are reserved as :data:`FACE_EXTRAS` (colliding names are refused before any work;
    a redone image's stale per-face files are removed).
    ``step_callback(ctx)`` gives each image a per-step callback and a function called when the image
    ends (progress bars, cancellation); raising :class:`realface.errors.Cancelled` from the callback
    stops the run like Ctrl-C. ``on_plan(to run, skipped)`` is called once before the first image.
    """
    from realface.batch import hash_config, run_batch

    out = Path(outdir)
    items, roots = plan_catalogue(inputs, out, job.config, suffix)

    def process(path: Path, ctx: Any) -> list[Path]:
        callback, close = step_callback(ctx) if step_callback is not None else (None, lambda: None)
        try:
            return job.run_file(path, ctx.output, progress=callback)
        finally:
            close()

    return run_batch(
        items,
        process,
        out,
        config_hash=hash_config(info),
        roots=roots,
        suffix=suffix,
        progress=progress,
        stop_on_error=stop_on_error,
        on_plan=on_plan,
        extras=_face_extras(job.config),
        files={"config.json": json.dumps(info, indent=2, sort_keys=True) + "\n"},
    )


def projector(
    G: Generator,
    lpips: LPIPS,
    config: ApplyConfig = ApplyConfig(),
    device: torch.device | str = "cpu",
) -> RealFace:
    """A :class:`RealFace` whose :meth:`~RealFace.invert_faces` projects aligned faces into ``G``.

    ``G`` serves as both generators, so the inversion loss is LPIPS (``lpips``) as in the full mode;
    ``config.invert`` and ``config.batch_size`` decide the inversion. ``realface invert`` runs on it.
    """
    return RealFace(G, G, lpips, config, device=device)
