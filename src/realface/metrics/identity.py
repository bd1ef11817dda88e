"""Identity similarity between image pairs (input, output): does the output show the same person?

Protocol of the default embedder ``"dlib"`` (:class:`DlibFaceEmbedder`):

1. the largest face of each image is found with :func:`realface.face.detect.detect_faces` (dlib HOG,
   falling back to dlib's CNN detector);
2. dlib's 5-point landmarks (``shape_predictor_5_face_landmarks.dat``, registry id ``dlib-lm5``) are
   located in its box;
3. ``dlib.get_face_chip(image, landmarks, size=150, padding=0.25)`` cuts the aligned 150×150 chip —
   the chip ``compute_face_descriptor(image, landmarks)`` would cut itself;
4. ``dlib.face_recognition_model_v1`` (``dlib_face_recognition_resnet_model_v1.dat``, registry id
   ``dlib-frec``, from ``face_recognition_models``) maps the chip to a 128-d embedding (no jitter).

Per pair: the cosine similarity of the two embeddings and their Euclidean distance; dlib's models are
trained so that a distance below 0.6 means the same person (:data:`DLIB_SAME_PERSON`). Summary over the
pairs where both faces were found: mean and median cosine similarity, mean distance, and the share of
pairs with distance < threshold. A pair where an image cannot be read or shows no face is recorded as
failed with the reason, and left out of the summary.

The paper reports identity similarity 0.57 with CurricularFace (cosine similarity of 512-d embeddings
of 112² crops). dlib's embeddings are a different space, so its cosine values are not comparable with
that number; the embedder ``"curricularface"`` (:class:`CurricularFaceEmbedder`) computes the paper's
metric from the IR-101 backbone (:mod:`realface.nn.irse`), once ``CurricularFace_Backbone.pth`` is in the
weights cache (registry id ``curricularface``, fetched by hand). Its same-person decision still uses
``threshold`` on the embedding distance; dlib's 0.6 does not carry over to CurricularFace's space.
"""

from __future__ import annotations

import functools
import logging
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from realface.errors import ConfigError, FaceError, RealFaceError
from realface.metrics.files import ImagePair, PairSet

__all__ = [
    "DLIB_SAME_PERSON",
    "EMBEDDERS",
    "EMBEDDER_WEIGHTS",
    "FaceEmbedder",
    "CURRICULARFACE_CROP_BOX",
    "CurricularFaceEmbedder",
    "DlibFaceEmbedder",
    "IdentityConfig",
    "IdentityPairResult",
    "IdentityReport",
    "evaluate_identity",
    "register_embedder",
]

log = logging.getLogger(__name__)

DLIB_SAME_PERSON = 0.6
"""dlib's decision threshold on the Euclidean distance of two face embeddings (dlib's documentation)."""

FFHQ_FACE_BOX = (0.22, 0.32, 0.78, 0.88)
"""(left, top, right, bottom) of the face box in an FFHQ-aligned image, in units of its side: about the
box dlib's HOG detector finds there (0.23-0.26, 0.35-0.38, 0.77, 0.88-0.89 on the aligned astronaut,
0.18, 0.25, 0.79, 0.86 on the aligned replicant face of tests/data/align). dlib's 5-point predictor
places the landmarks inside it (:meth:`DlibFaceEmbedder.embed_aligned`)."""


class NoFaceError(FaceError):
    """An image shows no face the embedder could use."""


class FaceEmbedder(Protocol):
    """Maps an RGB image to the embedding of its (largest) face."""

    name: str
    dim: int

    def embed(self, rgb: np.ndarray, source: str = "image") -> np.ndarray:
        """``rgb`` ``[H, W, 3]`` uint8 → ``[dim]`` float64. Raises :class:`NoFaceError` naming ``source``."""
        ...

    def embed_aligned(self, rgb: np.ndarray) -> np.ndarray:
        """The face of an FFHQ-aligned image (a generator's output) ``[R, R, 3]`` uint8 → ``[dim]`` float64,
        without face detection: the face's place is known, so every image has an embedding."""
        ...


EMBEDDERS: dict[str, Callable[..., FaceEmbedder]] = {}
"""Identity embedders by name; each value builds one (keyword arguments from :class:`IdentityConfig`)."""

EMBEDDER_WEIGHTS: dict[str, tuple[str, ...]] = {
    "dlib": ("dlib-lm5", "dlib-frec"),
    "curricularface": ("curricularface",),
}
"""The weights records each embedder loads (both also need the ``dlib`` package)."""


def register_embedder(name: str) -> Callable:
    def deco(factory: Callable[..., FaceEmbedder]) -> Callable[..., FaceEmbedder]:
        if name in EMBEDDERS:
            raise ValueError(f"identity embedder {name!r} registered twice")
        EMBEDDERS[name] = factory
        return factory

    return deco


@functools.cache
def _dlib_models() -> tuple:
    import dlib

    from realface.weights import weight_path

    lm5 = dlib.shape_predictor(str(weight_path("dlib-lm5")))
    frec = dlib.face_recognition_model_v1(str(weight_path("dlib-frec")))
    return lm5, frec


@register_embedder("dlib")
class DlibFaceEmbedder:
    """dlib's 128-d ResNet face embedding of 150×150 chips aligned on 5 landmarks (module docstring).

    Args:
        min_face_size: faces with a box side below this many pixels are ignored. Default 32.
        upsample: detector upsampling (finds smaller faces). Default 1.
        cnn_fallback: try dlib's CNN detector when HOG finds nothing. Default True.
    """

    name = "dlib"
    dim = 128
    chip_size = 150
    chip_padding = 0.25

    def __init__(self, min_face_size: int = 32, upsample: int = 1, cnn_fallback: bool = True) -> None:
        from realface.face.detect import DetectConfig

        self.detect_config = DetectConfig(  # the metric's protocol: dlib's HOG box for dlib's 5 points
            detector="hog", upsample=upsample, cnn_fallback=cnn_fallback, min_face_size=min_face_size
        )
        self._lm5, self._frec = _dlib_models()

    def chip(self, rgb: np.ndarray, source: str = "image") -> np.ndarray:
        """The aligned ``[150, 150, 3]`` uint8 chip of the largest face."""
        import dlib

        from realface.face.detect import detect_faces

        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"{source}: expected uint8 RGB [H, W, 3], got {rgb.shape} {rgb.dtype}")
        rgb = np.ascontiguousarray(rgb)
        found = detect_faces(rgb, self.detect_config)
        if not found:
            raise NoFaceError(f"{source}: no face of at least {self.detect_config.min_face_size} px found")
        left, top, right, bottom = found[0].box
        shape = self._lm5(rgb, dlib.rectangle(left, top, right, bottom))
        chip = np.asarray(dlib.get_face_chip(rgb, shape, size=self.chip_size, padding=self.chip_padding))
        assert chip.shape == (self.chip_size, self.chip_size, 3), chip.shape
        return chip

    def aligned_chip(self, rgb: np.ndarray) -> np.ndarray:
        """The ``[150, 150, 3]`` uint8 chip of an FFHQ-aligned image ``[R, R, 3]`` uint8: the 5 landmarks
        are placed by dlib's predictor inside :data:`FFHQ_FACE_BOX` (no detection, so it never fails)."""
        import dlib

        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected uint8 RGB [H, W, 3], got {rgb.shape} {rgb.dtype}")
        rgb = np.ascontiguousarray(rgb)
        h, w = rgb.shape[:2]
        left, top, right, bottom = FFHQ_FACE_BOX
        box = dlib.rectangle(round(left * w), round(top * h), round(right * w), round(bottom * h))
        shape = self._lm5(rgb, box)
        chip = np.asarray(dlib.get_face_chip(rgb, shape, size=self.chip_size, padding=self.chip_padding))
        assert chip.shape == (self.chip_size, self.chip_size, 3), chip.shape
        return chip

    def _descriptor(self, chip: np.ndarray) -> np.ndarray:
        emb = np.asarray(self._frec.compute_face_descriptor(chip), np.float64)  # [128]
        if emb.shape != (self.dim,):
            raise RuntimeError(f"dlib returned an embedding of shape {emb.shape}, expected ({self.dim},)")
        return emb

    def embed(self, rgb: np.ndarray, source: str = "image") -> np.ndarray:
        return self._descriptor(self.chip(rgb, source))

    def embed_aligned(self, rgb: np.ndarray) -> np.ndarray:
        return self._descriptor(self.aligned_chip(rgb))


CURRICULARFACE_CROP_BOX = (0.123, 0.113, 0.877, 0.867)
"""(left, top, right, bottom) of the square cut from an FFHQ-aligned image for CurricularFace, in units of its
side, then resized to 112×112: the least-squares scale and shift that map dlib's eye centres, nose tip and
mouth corners on the aligned fixtures of tests/data/align onto the usual 5-point template of 112² face
crops (eyes (38.3, 51.7) and (73.5, 51.5), nose (56.0, 71.7), mouth corners (41.5, 92.4) and (70.7, 92.2)),
the frame the IR-101 was trained on; centred across, so a mirrored image gives the mirrored crop. Eyes land
within 4 px of the template, nose tip and mouth corners within 7 px (tests/metrics/test_identity_curricularface.py)."""


@functools.cache
def _ir101(path: str, units: tuple[int, ...]) -> torch.nn.Module:
    from realface.nn.irse import load_ir101

    return load_ir101(path, units=units)


@register_embedder("curricularface")
class CurricularFaceEmbedder:
    """CurricularFace's IR-101 512-d embedding (the paper's identity metric), flip-averaged and l2-normalised.

    The face crop: the face is FFHQ-aligned on dlib's 68 landmarks (:func:`realface.face.align.align_face`,
    256 px; a generator's output already is), :data:`CURRICULARFACE_CROP_BOX` of it is resized to 112×112
    (bilinear, antialiased), normalised to [-1, 1] and embedded with :func:`realface.nn.irse.embed_flip`.

    Args:
        min_face_size: faces with a box side below this many pixels are ignored. Default 32.
        upsample: detector upsampling. Default 1.
        cnn_fallback: try dlib's CNN detector when HOG finds nothing. Default True.
        path: the ``CurricularFace_Backbone.pth`` file; default None: the weights record ``curricularface``
            (``realface weights import curricularface PATH``); its absence raises the registry's
            :class:`~realface.errors.WeightsError`, which says how to get it.
        units: units per stage of the backbone; default IR-101's (3, 13, 30, 3).
    """

    name = "curricularface"
    dim = 512
    chip_size = 112

    def __init__(
        self,
        min_face_size: int = 32,
        upsample: int = 1,
        cnn_fallback: bool = True,
        path: str | Path | None = None,
        units: tuple[int, ...] | None = None,
    ) -> None:
        from realface.face.detect import DetectConfig
        from realface.nn.irse import IR101_UNITS

        if path is None:
            from realface.weights import weight_path

            path = weight_path("curricularface")
        self.detect_config = DetectConfig(  # the same detection protocol as the dlib embedder
            detector="hog", upsample=upsample, cnn_fallback=cnn_fallback, min_face_size=min_face_size
        )
        self._net = _ir101(str(Path(path).resolve()), tuple(units or IR101_UNITS))

    def aligned_chip(self, rgb: np.ndarray) -> np.ndarray:
        """The ``[112, 112, 3]`` float32 chip in [0, 1] of an FFHQ-aligned image ``[R, R, 3]`` uint8."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected uint8 RGB [H, W, 3], got {rgb.shape} {rgb.dtype}")
        h, w = rgb.shape[:2]
        left, top, right, bottom = CURRICULARFACE_CROP_BOX
        crop = rgb[round(top * h) : round(bottom * h), round(left * w) : round(right * w)]  # [h', w', 3]
        x = (
            torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None].float() / 255.0
        )  # [1, 3, h', w']
        x = F.interpolate(x, size=(self.chip_size, self.chip_size), mode="bilinear", antialias=True)
        chip = x[0].permute(1, 2, 0).clamp(0, 1).numpy()  # [112, 112, 3]
        assert chip.shape == (self.chip_size, self.chip_size, 3), chip.shape
        return chip

    def embed_chip(self, chip: np.ndarray) -> np.ndarray:
        """``[512]`` float64 unit vector of a ``[112, 112, 3]`` chip in [0, 1]."""
        from realface.nn.irse import embed_flip, preprocess

        x = torch.from_numpy(np.ascontiguousarray(chip, np.float32)).permute(2, 0, 1)[
            None
        ]  # [1, 3, 112, 112]
        with torch.no_grad():
            emb = embed_flip(self._net, preprocess(x))[0]  # [512]
        return emb.double().numpy()

    def embed(self, rgb: np.ndarray, source: str = "image") -> np.ndarray:
        from realface.face.align import AlignConfig, align_face
        from realface.face.detect import find_faces

        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"{source}: expected uint8 RGB [H, W, 3], got {rgb.shape} {rgb.dtype}")
        try:
            faces = find_faces(np.ascontiguousarray(rgb), self.detect_config, source=source)
        except FaceError as exc:
            raise NoFaceError(str(exc)) from None
        aligned = align_face(rgb, faces[0].landmarks_array, AlignConfig(output_size=256))
        return self.embed_chip(self.aligned_chip(aligned.to_uint8()))  # from [256, 256, 3]

    def embed_aligned(self, rgb: np.ndarray) -> np.ndarray:
        return self.embed_chip(self.aligned_chip(rgb))


@dataclass(frozen=True)
class IdentityConfig:
    """Options of :func:`evaluate_identity`.

    Attributes:
        model: name in :data:`EMBEDDERS`. Default ``"dlib"``.
        threshold: Euclidean distance below which a pair counts as the same person. Default 0.6 (dlib's).
        min_face_size: smallest face box side, pixels. Default 32.
        progress: show a progress bar. Default True.
    """

    model: str = "dlib"
    threshold: float = DLIB_SAME_PERSON
    min_face_size: int = 32
    progress: bool = True

    def __post_init__(self) -> None:
        if self.model not in EMBEDDERS:
            raise ConfigError(f"unknown identity model {self.model!r}; known: {', '.join(sorted(EMBEDDERS))}")
        if self.threshold <= 0:
            raise ConfigError(f"the same-person threshold must be positive, got {self.threshold}")


@dataclass(frozen=True)
class IdentityPairResult:
    """One pair: cosine similarity and Euclidean distance of the embeddings, or the reason it failed."""

    name: str
    input: Path
    output: Path
    cosine: float | None = None
    distance: float | None = None
    same_person: bool | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_row(self) -> dict:
        return {
            "name": self.name,
            "input": str(self.input),
            "output": str(self.output),
            "cosine": self.cosine,
            "distance": self.distance,
            "same_person": self.same_person,
            "error": self.error,
        }


@dataclass(frozen=True)
class IdentityReport:
    """Per-pair results and the summary (over successful pairs)."""

    model: str
    threshold: float
    pairs: tuple[IdentityPairResult, ...]
    unmatched: int = 0

    @property
    def ok(self) -> list[IdentityPairResult]:
        return [p for p in self.pairs if p.ok]

    def summary(self) -> dict:
        ok = self.ok
        cos = [p.cosine for p in ok if p.cosine is not None]
        dist = [p.distance for p in ok if p.distance is not None]
        same = [bool(p.same_person) for p in ok]
        return {
            "metric": f"identity_{self.model}",
            "pairs": len(self.pairs),
            "evaluated": len(ok),
            "failed": len(self.pairs) - len(ok),
            "unmatched": self.unmatched,
            "mean_cosine": statistics.fmean(cos) if cos else None,
            "median_cosine": statistics.median(cos) if cos else None,
            "mean_distance": statistics.fmean(dist) if dist else None,
            "same_person_rate": (sum(same) / len(same)) if same else None,
            "threshold": self.threshold,
            "protocol": _protocol(self.model),
        }


def _protocol(model: str) -> str | None:
    from realface.metrics import METRICS

    info = METRICS.get(f"identity_{model}")
    return None if info is None else info.protocol


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """``a·b / (‖a‖‖b‖)`` of two vectors ``[D]``."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0 or nb == 0:
        raise ValueError("cosine similarity of a zero vector")
    return float(a @ b) / (na * nb)


def evaluate_identity(
    pairs: PairSet, config: IdentityConfig | None = None, embedder: FaceEmbedder | None = None
) -> IdentityReport:
    """Compare the faces of every pair (module docstring); failures are recorded per pair, never raised."""
    from realface.imageio import load_image

    config = config or IdentityConfig()
    embedder = embedder or EMBEDDERS[config.model](min_face_size=config.min_face_size)
    memo: dict[Path, np.ndarray | str] = {}

    def embedding(path: Path) -> np.ndarray | str:
        if path not in memo:
            try:
                memo[path] = embedder.embed(load_image(path).rgb8(), source=str(path))
            except RealFaceError as exc:  # unreadable image, no face, missing weights → message
                memo[path] = str(exc)
        return memo[path]

    results: list[IdentityPairResult] = []
    pair: ImagePair
    for pair in tqdm(pairs.pairs, unit="pair", desc="identity", disable=not config.progress):
        a, b = embedding(pair.input), embedding(pair.output)
        errors = [e for e in (a, b) if isinstance(e, str)]
        if errors:
            log.warning("identity: pair %s failed: %s", pair.name, "; ".join(errors))
            results.append(IdentityPairResult(pair.name, pair.input, pair.output, error="; ".join(errors)))
            continue
        assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray)
        dist = float(np.linalg.norm(a - b))
        results.append(
            IdentityPairResult(
                pair.name,
                pair.input,
                pair.output,
                cosine=cosine_similarity(a, b),
                distance=dist,
                same_person=dist < config.threshold,
            )
        )
    return IdentityReport(
        model=config.model,
        threshold=config.threshold,
        pairs=tuple(results),
        unmatched=len(pairs.unmatched_inputs) + len(pairs.unmatched_outputs),
    )
