"""Building training sets of aligned faces from URL lists or folders of renders (``realface dataset``).

:func:`build_dataset` fetches, decodes, detects, aligns and filters (:mod:`realface.data.build`);
:func:`read_url_list` / :func:`write_url_list` read and write URL lists
(:mod:`realface.data.sources`); :func:`fetch_url` is the rate-limited, resumable downloader
(:mod:`realface.data.fetch`); the quality measures are in :mod:`realface.data.filters`.
"""

from realface.data.build import BuildConfig, BuildPaths, BuildSummary, build_dataset, export_urls, image_name
from realface.data.fetch import FetchConfig, FetchError, HostRateLimiter, fetch_url
from realface.data.filters import Pose, estimate_pose, hamming, phash, sharpness
from realface.data.sources import SourceItem, UrlListError, read_url_list, write_url_list

__all__ = [
    "BuildConfig",
    "BuildPaths",
    "BuildSummary",
    "FetchConfig",
    "FetchError",
    "HostRateLimiter",
    "Pose",
    "SourceItem",
    "UrlListError",
    "build_dataset",
    "estimate_pose",
    "export_urls",
    "fetch_url",
    "hamming",
    "image_name",
    "phash",
    "read_url_list",
    "sharpness",
    "write_url_list",
]
