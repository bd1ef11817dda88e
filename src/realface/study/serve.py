"""``realface study serve``: the participants' page (Gradio), one item at a time.

The page shows a short instruction, the item's candidates in the participant's own order (labelled
A, B, ... left to right), and, when the study has references, the rendered input with the question
"same person?". Nothing the browser receives names a method: candidates are PNG files named by random
codes, the choices are letters, and which letter is which method is worked out on the server from
the participant code (:func:`realface.study.votes.candidate_order`).

The server takes the protections of ``realface ui``: bound to 127.0.0.1 unless told otherwise, the
``Host`` header checked (:class:`realface.ui.app.HostCheck`, a 421 answer for other names), no share
link, no analytics, only the study's images served, and, as the page takes no files, every upload
refused.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from realface.errors import ConfigError, RealFaceError
from realface.study.config import ServeConfig
from realface.study.create import Item, Study
from realface.study.votes import IDENTITY_ANSWERS, VoteLog, candidate_order, check_code
from realface.ui.app import HostCheck, _check_port, _escape, _import_gradio, allowed_host_names
from realface.ui.config import readable_error
from realface.ui.files import Workspace

__all__ = ["ServeConfig", "build_study_app", "serve_study"]

log = logging.getLogger(__name__)

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
INSTRUCTION = (
    "Each page shows the same portrait made in different ways. **Pick the one that looks most like a "
    "real photograph.** There are no right answers; go with your first impression. Enter your "
    "participant code to start, or to continue where you left off."
)
CSS = ".study-error { color: #b91c1c; } #progress { min-height: 2.5em; }"


class NoUploads:
    """ASGI middleware: the study page takes no files, so Gradio's upload route answers 403."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path", "").rstrip("/").endswith("/upload"):
            await send(
                {
                    "type": "http.response.start",
                    "status": 403,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8")],
                }
            )
            await send({"type": "http.response.body", "body": b"refused: this page takes no uploads\n"})
            return
        await self.app(scope, receive, send)


def _error(message: str) -> str:
    return f'<span class="study-error">**Error:** {_escape(message)}</span>'


def build_study_app(study: Study) -> tuple[Any, Workspace]:
    """The page as a ``gr.Blocks`` (not launched) and its working folder (``<study>/.serve``)."""
    workspace = Workspace(study.root / ".serve")
    gr = _import_gradio(workspace)
    votes = VoteLog(study)
    most = max(len(it.candidates) for it in study.items)
    letters = list(LETTERS[:most])
    total = len(study.items)
    hidden = gr.update(visible=False)

    with gr.Blocks(title=study.name, analytics_enabled=False, delete_cache=(3600, 86400)) as blocks:
        gr.Markdown(f"# {_escape(study.name)}\n{INSTRUCTION}")
        with gr.Row():
            code_box = gr.Textbox(label="Participant code", max_lines=1, elem_id="code")
            start = gr.Button("Start / continue", elem_id="start")
        progress = gr.Markdown("", elem_id="progress")
        with gr.Row():
            reference = gr.Image(
                label="Rendered input",
                type="filepath",
                interactive=False,
                buttons=[],
                visible=False,
                elem_id="reference",
            )
            images = [
                gr.Image(
                    label=letter,
                    type="filepath",
                    interactive=False,
                    buttons=[],
                    visible=False,
                    elem_id=f"candidate-{letter}",
                )
                for letter in letters
            ]
        choice = gr.Radio(choices=[], label="Most realistic", visible=False, elem_id="choice")
        identity = gr.Radio(
            choices=list(IDENTITY_ANSWERS),
            label="Is the face you picked the same person as the rendered input?",
            visible=False,
            elem_id="identity",
        )
        submit = gr.Button("Submit vote", variant="primary", visible=False, elem_id="submit")
        participant = gr.State("")
        current = gr.State("")

    def show(code: str, message: str = "") -> list[Any]:
        """Outputs for ``code``'s next item (or the end): progress, reference, images, choice,
        identity, submit, participant, current."""
        item: Item | None = votes.next_item(code)
        done = len(votes.done(code))
        if item is None:
            text = f"**All {total} items done.** Thank you; you can close this page."
            return [text, hidden, *[hidden] * most, hidden, hidden, hidden, code, ""]
        order = candidate_order(study, code, item)
        text = f"**Item {done + 1} of {total}**" + (f"  \n{message}" if message else "")
        pics = [
            gr.update(value=str(study.candidate_path(item, c)), visible=True, label=letters[i])
            for i, c in enumerate(order)
        ]
        pics += [gr.update(value=None, visible=False)] * (most - len(order))
        ask = study.identity_question and item.reference
        ref = gr.update(value=str(study.reference_path(item)), visible=True) if item.reference else hidden
        return [
            text,
            ref,
            *pics,
            gr.update(choices=letters[: len(order)], value=None, visible=True),
            gr.update(value=None, visible=ask),
            gr.update(visible=True),
            code,
            item.id,
        ]

    def on_start(code: str) -> list[Any]:
        try:
            code = check_code(code)
        except RealFaceError as exc:
            return [_error(str(exc)), *[gr.skip()] * (most + 6)]
        return show(code)

    def on_submit(code: str, item_id: str, letter: str | None, answer: str | None) -> list[Any]:
        skip = [gr.skip()] * (most + 6)
        if not code or not item_id:
            return [_error("enter your participant code first"), *skip]
        if not letter or letter not in letters:
            return [_error("pick the most realistic image first"), *skip]
        try:
            item = study.item(item_id)
            if study.identity_question and item.reference and answer is None:
                raise ConfigError("answer the question about the person too")
            votes.record(code, item_id, letters.index(letter), answer)
        except Exception as exc:  # noqa: BLE001 - shown in the page
            return [_error(readable_error(exc)), *skip]
        return show(code, "Vote saved.")

    with blocks:
        outputs = [progress, reference, *images, choice, identity, submit, participant, current]
        start.click(on_start, inputs=code_box, outputs=outputs, concurrency_limit=4)
        code_box.submit(on_start, inputs=code_box, outputs=outputs, concurrency_limit=4)
        submit.click(
            on_submit, inputs=[participant, current, choice, identity], outputs=outputs, concurrency_limit=1
        )
    return blocks, workspace


def serve_study(root: str | os.PathLike, config: ServeConfig | None = None, block: bool = True) -> Any:
    """Serve the study in ``root``. While it runs (``block=True``) it holds the study folder's lock,
    so a second server on the same votes file is refused."""
    from realface.batch import folder_lock

    config = config or ServeConfig()
    study = Study.load(root)
    for item in study.items:
        for path in [study.candidate_path(item, c) for c in item.candidates] + (
            [study.reference_path(item)] if item.reference else []
        ):
            if not path.is_file():
                raise RealFaceError(f"{path}: missing; the study folder is incomplete (make it again)")
    _check_port(config.host, config.port)
    if config.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s: the page is reachable from other machines", config.host)
    if not block:
        return _launch(study, config, block)
    with folder_lock(Path(root), job="study serve", what="study folder"):
        return _launch(study, config, block)


def _launch(study: Study, config: ServeConfig, block: bool) -> Any:
    from starlette.middleware import Middleware

    blocks, _ = build_study_app(study)
    blocks.queue(default_concurrency_limit=1, max_size=64)
    import gradio as gr

    try:
        return blocks.launch(
            app_kwargs={
                "middleware": [
                    Middleware(HostCheck, allowed=allowed_host_names(config.host)),
                    Middleware(NoUploads),
                ]
            },
            server_name=config.host,
            server_port=config.port,
            share=False,
            inbrowser=False,
            show_error=False,
            allowed_paths=[str(study.root / "items")],
            max_file_size="1kb",
            ssr_mode=False,
            mcp_server=False,
            enable_monitoring=False,
            footer_links=["gradio"],
            theme=gr.themes.Default(
                font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
            ),
            css=CSS,
            prevent_thread_lock=not block,
        )
    except OSError as exc:
        raise ConfigError(f"cannot serve on {config.host}:{config.port}: {exc}") from None
