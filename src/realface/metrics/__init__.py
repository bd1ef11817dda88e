"""Metrics: FID, identity similarity, LPIPS/L2, identity consistency. They depend only on networks and images.

:data:`METRICS` names every metric as upstream does, the protocol in the name (``fid50k_full``: 50 000
generated images against the full reference set), and says how it is computed; reports carry these
names. The implementations live in :mod:`realface.metrics.fid`, :mod:`realface.metrics.identity`,
:mod:`realface.metrics.similarity` and :mod:`realface.metrics.consistency` (two generators on shared
latents, the paper's Table 1 protocol); ``realface eval`` is their command-line front end. The controlled
transfer benchmark is an experiment that uses them, in :mod:`realface.bench` (``realface bench transfer``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["MetricInfo", "METRICS", "register_metric"]


@dataclass(frozen=True)
class MetricInfo:
    """A registered metric.

    Attributes:
        name: the name reports use (``fid50k_full``, ``identity_dlib``, …).
        kind: ``"set"`` (compares two distributions) or ``"pair"`` (averages over matched image pairs).
        lower_is_better: the direction of improvement.
        protocol: one line stating how the number is computed.
        module: the module that implements it.
    """

    name: str
    kind: Literal["set", "pair"]
    lower_is_better: bool
    protocol: str
    module: str


METRICS: dict[str, MetricInfo] = {}
"""Every metric by name."""


def register_metric(info: MetricInfo) -> MetricInfo:
    if info.name in METRICS:
        raise ValueError(f"metric {info.name!r} registered twice")
    METRICS[info.name] = info
    return info


_FID = (
    "pytorch-fid Inception-v3 pool3 (pt_inception-2015-12-05), bilinear resize to 299, [0,1]->[-1,1]; "
    "Frechet distance of the feature Gaussians"
)
register_metric(
    MetricInfo("fid_full", "set", True, f"{_FID}; every image of both folders", "realface.metrics.fid")
)
register_metric(
    MetricInfo(
        "fid50k_full",
        "set",
        True,
        f"{_FID}; 50000 images of the generator (seeds 0-49999, psi 1) against every image of the folder",
        "realface.metrics.fid",
    )
)
register_metric(
    MetricInfo(
        "identity_dlib",
        "pair",
        False,
        "dlib ResNet 128-d embedding of 150px chips aligned on 5 landmarks; cosine similarity, "
        "Euclidean distance, same person when distance < 0.6",
        "realface.metrics.identity",
    )
)
register_metric(
    MetricInfo(
        "identity_consistency_dlib",
        "pair",
        False,
        "the same generate.py latents through G_real's mapping, decoded by G_real and G_rendering; dlib 128-d "
        "embeddings of the FFHQ-aligned faces (5 landmarks in a fixed box, no detection); cosine similarity "
        "and distance per pair, mean and 95% Student-t interval",
        "realface.metrics.consistency",
    )
)
register_metric(
    MetricInfo(
        "identity_curricularface",
        "pair",
        False,
        "CurricularFace IR-101 512-d embedding of the face FFHQ-aligned on 68 landmarks, box "
        "(0.123, 0.113, 0.877, 0.867) resized to 112px, [-1,1]; flip-averaged, l2-normalised; cosine similarity "
        "and Euclidean distance",
        "realface.metrics.identity",
    )
)
register_metric(
    MetricInfo(
        "identity_consistency_curricularface",
        "pair",
        False,
        "the same generate.py latents through G_real's mapping, decoded by G_real and G_rendering; "
        "CurricularFace IR-101 embeddings (flip-averaged, l2-normalised) of the FFHQ-aligned faces, box "
        "(0.123, 0.113, 0.877, 0.867) resized to 112px; cosine similarity and distance per pair, mean and 95% "
        "Student-t interval",
        "realface.metrics.consistency",
    )
)
register_metric(
    MetricInfo(
        "lpips_vgg256",
        "pair",
        True,
        "LPIPS-VGG v0.1 of both images resized to 256x256, [-1,1]",
        "realface.metrics.similarity",
    )
)
register_metric(
    MetricInfo(
        "l2_256",
        "pair",
        True,
        "mean squared error of both images resized to 256x256, in [-1,1]",
        "realface.metrics.similarity",
    )
)
