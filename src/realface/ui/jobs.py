"""The web UI's work without the web, in one namespace: settings, files, models, and jobs with progress
and cancel.

Everything here is plain Python so that it can be tested without a browser; :mod:`realface.ui.app`
only lays out the page and forwards events to these functions. The code lives in one module per
concern:

- :mod:`realface.ui.config`: :class:`UIConfig` (how the app was started) and :class:`Settings` (one run);
- :mod:`realface.ui.files`: the app's own folder, the folders the batch tab may touch, previews;
- :mod:`realface.ui.models`: the networks, loaded once;
- :mod:`realface.ui.progress`: a job's progress, ETA, status line and cancel, and its thread;
- :mod:`realface.ui.imagejob`, :mod:`realface.ui.batchjob`, :mod:`realface.ui.weightsjob`: the work of
  the image, batch and models tabs.
"""

from __future__ import annotations

from realface.ui.batchjob import manifest_rows, run_folder
from realface.ui.config import BASELINE, OUTPUT_FORMATS, Settings, UIConfig, readable_error
from realface.ui.files import PREVIEW_SIDE, Workspace, resolve_batch_folder, write_preview
from realface.ui.imagejob import Detection, ImageRun, detect_preview, face_choice, parse_selection, run_images
from realface.ui.models import ModelStore
from realface.ui.progress import Job, JobRegistry, run_in_thread
from realface.ui.weightsjob import fetch_weight, missing_models, weights_rows

__all__ = [
    "BASELINE",
    "OUTPUT_FORMATS",
    "PREVIEW_SIDE",
    "UIConfig",
    "Settings",
    "Workspace",
    "ModelStore",
    "Job",
    "JobRegistry",
    "Detection",
    "ImageRun",
    "detect_preview",
    "face_choice",
    "parse_selection",
    "run_images",
    "run_in_thread",
    "run_folder",
    "resolve_batch_folder",
    "manifest_rows",
    "weights_rows",
    "fetch_weight",
    "missing_models",
    "readable_error",
    "write_preview",
]
