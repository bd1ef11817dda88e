"""``realface ui``: a local web page to try the main job on one or a few apparel renders, run a folder
as a resumable batch, and see which weights are present.

:mod:`realface.ui.jobs` gathers the work (no web code, tested directly; one module per concern); :mod:`realface.ui.app` lays out
the Gradio page. Gradio is an optional dependency (``pip install 'realface[ui]'``); it is imported
only when the page is built.
"""

from typing import Any

from realface.ui.config import Settings, UIConfig
from realface.ui.files import Workspace

__all__ = ["UIConfig", "Settings", "launch", "build_app"]


def launch(config: UIConfig, block: bool = True) -> Any:
    """Serve the page (see :func:`realface.ui.app.launch`)."""
    from realface.ui.app import launch as _launch

    return _launch(config, block=block)


def build_app(config: UIConfig) -> tuple[Any, Any, Workspace]:
    """The Gradio Blocks of the page, not launched (see :func:`realface.ui.app.build_app`)."""
    from realface.ui.app import build_app as _build

    return _build(config)
