"""The Gradio page of ``realface ui``: layout and event wiring only (the work is in :mod:`realface.ui.jobs`).

Safety defaults: bound to 127.0.0.1, no public share link, Gradio's analytics and version check off,
system fonts only (nothing is fetched from the internet, by the server or by the browser), uploads
limited in bytes (``max_upload_mb``), count and pixels, and only files below the app's working
folder are served.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from realface.errors import Cancelled, ConfigError, RealFaceError
from realface.face.detect import DETECTORS
from realface.precision import PRECISIONS
from realface.ui.jobs import (
    OUTPUT_FORMATS,
    ImageRun,
    Job,
    JobRegistry,
    ModelStore,
    Settings,
    UIConfig,
    Workspace,
    detect_preview,
    face_choice,
    fetch_weight,
    manifest_rows,
    missing_models,
    parse_selection,
    readable_error,
    resolve_batch_folder,
    run_folder,
    run_images,
    run_in_thread,
    weights_rows,
)

log = logging.getLogger(__name__)

POLL_SECONDS = 0.4
WEIGHT_HEADERS = ["id", "status", "size", "licence", "used for", "path, or how to get it"]
MANIFEST_HEADERS = ["item", "status", "seconds", "outputs / error"]
SETTING_NAMES = (
    "rendering",
    "steps",
    "coarse_to_fine",
    "coarse_resolution",
    "fine_steps",
    "precision",
    "mask",
    "feather",
    "color_correct",
    "seed",
    "transfer_layers",
    "out_format",
    "detector",
    "threshold",
    "min_face_size",
)

CSS = """
#status, #batch-status { min-height: 2.5em; }
.realface-error { color: #b91c1c; }
#weights-table td:nth-child(2), #weights-table td:nth-child(3) { white-space: nowrap; }
"""


def _import_gradio(workspace: Workspace) -> Any:
    """Import Gradio with its uploads kept in the app's folder and its analytics off."""
    os.environ["GRADIO_TEMP_DIR"] = str(workspace.uploads)
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("GRADIO_SSR_MODE", "False")
    try:
        import gradio as gr
    except ImportError as exc:
        raise RealFaceError(
            f"the web UI needs Gradio ({exc}); install it with `pip install 'realface[ui]'`"
        ) from None
    return gr


def _error_md(message: str, label: str = "Error") -> str:
    return f'<span class="realface-error">**{label}:** {_escape(message)}</span>'


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _paths(files: Any) -> list[str]:
    """Upload component value -> file paths (Gradio gives str paths or objects with ``.name``)."""
    if not files:
        return []
    if not isinstance(files, (list, tuple)):
        files = [files]
    return [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in files]


def _follow(jobs: JobRegistry, job: Job, thread: threading.Thread) -> Generator[str, None, None]:
    """The job's status every ``POLL_SECONDS`` until its thread ends. Closed early (the page went away),
    it cancels the job so the work stops too."""
    try:
        yield job.status()
        while thread.is_alive():
            thread.join(POLL_SECONDS)
            yield job.status()
    finally:
        if thread.is_alive():
            job.cancel()
        jobs.finish(job)


@dataclass
class _Page:
    """What the tabs of one page share: Gradio, the app's config, networks, folder and jobs."""

    gr: Any
    config: UIConfig
    store: ModelStore
    workspace: Workspace
    jobs: JobRegistry

    def settings_from(self, values: Sequence[Any]) -> Settings:
        return Settings.from_page(**dict(zip(SETTING_NAMES, values, strict=True)))

    def on_cancel(self, job_id: str) -> str:
        job = self.jobs.get(job_id)
        if job is None:
            return "Nothing is running."
        job.cancel()
        return "**Cancelling** at the next step…"


def build_app(config: UIConfig) -> tuple[Any, Any, Workspace]:
    """The page as a ``gr.Blocks`` (not yet launched). Returns ``(blocks, theme, workspace)``."""
    workspace = Workspace(config.workdir)
    gr = _import_gradio(workspace)
    store = ModelStore(config)
    page = _Page(gr, config, store, workspace, JobRegistry())

    # Gradio's copies of uploads and results older than a week are deleted (checked hourly).
    with gr.Blocks(title="realface", analytics_enabled=False, delete_cache=(3600, 7 * 86400)) as blocks:
        gr.Markdown(
            "# realface\nReplace the CG faces of apparel renders with photo-realistic faces of the same "
            "identity. Every pixel outside the faces stays as it was."
        )
        gr.Markdown(_mode_line(config, store), elem_id="mode")
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                settings = _settings_column(gr, store)
            with gr.Column(scale=3):
                with gr.Tabs():
                    _image_tab(page, settings)
                    _batch_tab(page, settings)
                    _models_tab(page)

    theme = gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )
    return blocks, theme, workspace


def _settings_column(gr: Any, store: ModelStore) -> list[Any]:
    """The settings shared by the image and batch tabs; their values arrive in SETTING_NAMES order."""
    gr.Markdown("### Settings")
    defaults = Settings()
    choices = store.rendering_choices()
    rendering = gr.Dropdown(
        choices=choices,
        value=store.default_rendering(),
        label="G_rendering checkpoint",
        info="Your fine-tuned rendering-style generator (`realface train`, `realface export`).",
        elem_id="rendering",
    )
    steps = gr.Number(
        value=defaults.steps, precision=0, minimum=1, maximum=5000, label="Steps", elem_id="steps"
    )
    coarse = gr.Checkbox(
        value=defaults.coarse_to_fine,
        label="Coarse-to-fine (most steps at low resolution; much faster on a CPU)",
        elem_id="coarse",
    )
    coarse_res = gr.Dropdown(
        choices=[64, 128, 256, 512],
        value=defaults.coarse_resolution,
        label="Coarse resolution",
        elem_id="coarse-res",
    )
    fine_steps = gr.Number(
        value=defaults.fine_steps,
        precision=0,
        minimum=0,
        maximum=5000,
        label="Full-resolution steps at the end",
        elem_id="fine-steps",
    )
    precision = gr.Radio(
        choices=list(PRECISIONS),
        value=defaults.precision,
        label="Precision",
        info="auto: bf16 where the CPU has AVX512_BF16/AMX (or the GPU bf16), else fp32 (the reference)",
        elem_id="precision",
    )
    mask = gr.Radio(
        choices=["auto", "landmarks", "parsing"],
        value=defaults.mask,
        label="Mask",
        elem_id="mask",
        info="parsing needs the bisenet-79999 weights; auto uses them when present",
    )
    feather = gr.Slider(
        minimum=0.0,
        maximum=0.05,
        step=0.002,
        value=defaults.feather,
        label="Feather (fraction of face size)",
        elem_id="feather",
    )
    color = gr.Checkbox(value=defaults.color_correct, label="Colour matching (Lab)", elem_id="color")
    seed = gr.Number(value=defaults.seed, precision=0, label="Seed", elem_id="seed")
    layers = gr.Textbox(
        value=defaults.transfer_layers,
        label="Transfer layers",
        placeholder="all",
        info="W+ layers taken from the inversion, e.g. 0-7 (others: G_real's mean): "
        "fewer layers trade identity for realism. Empty: all (the paper).",
        elem_id="layers",
    )
    out_format = gr.Radio(
        choices=[
            ("same as input", "input"),
            ("PNG (lossless)", "png"),
            ("JPEG", "jpg"),
            ("WebP", "webp"),
        ],
        value=defaults.out_format,
        label="Output format",
        elem_id="format",
    )
    assert [v for _, v in out_format.choices] == list(OUTPUT_FORMATS)
    detector = gr.Radio(
        choices=list(DETECTORS),
        value=defaults.detector,
        label="Face detector",
        info="blazeface: turned heads and large canvases; hog / cnn: dlib's detectors",
        elem_id="detector",
    )
    threshold = gr.Textbox(  # a text box: an empty gr.Number reads as 0, a real threshold
        value="" if defaults.threshold is None else str(defaults.threshold),
        label="Detection threshold",
        placeholder="detector's default",
        info="Least score a face needs; empty: the detector's own (0.65 for blazeface, 0 for hog/cnn)",
        elem_id="threshold",
    )
    min_face = gr.Number(
        value=defaults.min_face_size,
        precision=0,
        minimum=0,
        label="Minimum face size (px)",
        elem_id="min-face",
    )
    settings = [
        rendering,
        steps,
        coarse,
        coarse_res,
        fine_steps,
        precision,
        mask,
        feather,
        color,
        seed,
        layers,
        out_format,
        detector,
        threshold,
        min_face,
    ]
    return settings


def _image_tab(page: _Page, settings: list[Any]) -> None:
    """The image tab: upload renders, tick faces, run, and compare before / after."""
    gr, config, store, workspace, jobs = page.gr, page.config, page.store, page.workspace, page.jobs
    with gr.Tab("Image", id="image"):
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(
                    file_count="multiple",
                    file_types=["image"],
                    label=f"Apparel renders (up to {config.max_images}, {config.max_upload_mb} MB each)",
                    elem_id="upload",
                )
                detected = gr.Gallery(label="Detected faces", columns=2, height=320, elem_id="detected")
                faces = gr.CheckboxGroup(label="Faces to replace", elem_id="faces")
                with gr.Row():
                    run = gr.Button("Run", variant="primary", elem_id="run")
                    cancel = gr.Button("Cancel", variant="stop", elem_id="cancel")
            with gr.Column(scale=2):
                status = gr.Markdown(
                    "Upload one or more apparel renders (JPEG, PNG, WebP, TIFF).",
                    elem_id="status",
                )
                pick = gr.Dropdown(label="Result", choices=[], elem_id="result-pick")
                before_after = gr.ImageSlider(label="Before / after", type="filepath", elem_id="before-after")
                face_tiles = gr.Gallery(
                    label="Per face: input · reconstruction · realistic",
                    columns=3,
                    elem_id="face-tiles",
                )
                downloads = gr.File(
                    label="Downloads (full resolution, the chosen format; latents; all as zip)",
                    file_count="multiple",
                    interactive=False,
                    elem_id="downloads",
                )
        job_id = gr.State("")
        results = gr.State([])

    def on_upload(files, *values):
        paths = _paths(files)
        if not paths:
            return (
                [],
                gr.update(choices=[], value=[]),
                "Upload one or more apparel renders (JPEG, PNG, WebP, TIFF).",
            )
        try:
            detect = page.settings_from(values).detect_config()
            detections = detect_preview(paths, workspace, config, detect)
        except Exception as exc:  # noqa: BLE001 - shown in the page
            return [], gr.update(choices=[], value=[]), _error_md(readable_error(exc))
        gallery, choices, notes = [], [], []
        for i, d in enumerate(detections):
            if d.error:
                notes.append(_error_md(d.error))
                continue
            gallery.append((str(d.preview), f"{d.name}: {len(d.labels)} face(s)"))
            choices += [(label, face_choice(i, j)) for j, label in enumerate(d.labels)]
        found = sum(len(d.labels) for d in detections)
        head = f"{found} face(s) found in {len(detections) - len(notes)} of {len(detections)} image(s)."
        if found:
            head += " Untick the faces to leave as they are, then press **Run**."
        return gallery, gr.update(choices=choices, value=[v for _, v in choices]), "\n\n".join([head, *notes])

    def show_result(results: list[dict], pick: Any) -> tuple[Any, list[Any], list[Any]]:
        if not results:
            return None, [], []
        index = int(pick) if pick is not None and str(pick).isdigit() and int(pick) < len(results) else 0
        r = results[index]
        if r["error"]:
            return None, [], []
        before_after = (r["before"], r["after"])
        return before_after, [(p, c) for p, c in r["faces"]], r["downloads"]

    def on_run(files, faces, *values):
        """Generator: yields (status, job id, picker, before/after, faces, downloads, results)."""
        no = gr.skip()
        paths = _paths(files)
        try:
            settings = page.settings_from(values)
            if not paths:
                raise ConfigError("upload an image first")
            selection = parse_selection(faces or [], len(paths))
        except Exception as exc:  # noqa: BLE001
            yield _error_md(readable_error(exc)), "", no, no, no, no, no
            return
        job = jobs.new()
        thread, box = run_in_thread(
            lambda: run_images(job, store, workspace, config, settings, paths, selection)
        )
        with contextlib.closing(_follow(jobs, job, thread)) as statuses:
            for text in statuses:
                yield text, job.id, no, no, no, no, no
        if "error" in box:
            error = box["error"]
            if isinstance(error, Cancelled):
                yield "**Cancelled.** Nothing was written for the unfinished image.", "", no, no, no, no, no
            else:
                yield _error_md(readable_error(error)), "", no, no, no, no, no
            return
        run_dir, runs = box["result"]
        results = [r.to_dict() for r in runs]
        lines = [_summary(runs, time.monotonic() - job.started, run_dir)]
        lines += [_error_md(f"{r.name}: {r.error}") for r in runs if r.error]
        ok = [i for i, r in enumerate(runs) if r.error is None]
        picker = gr.update(choices=[(runs[i].name, str(i)) for i in ok], value=str(ok[0]) if ok else None)
        shown = show_result(results, ok[0] if ok else None)
        yield "\n\n".join(lines), "", picker, *shown, results

    upload.change(
        on_upload, inputs=[upload, *settings], outputs=[detected, faces, status], concurrency_limit=2
    )
    # Detection settings changed: detect again, so the ticked indices are the ones the run will find.
    for widget in settings[-3:]:
        widget.change(
            on_upload, inputs=[upload, *settings], outputs=[detected, faces, status], concurrency_limit=2
        )
    run.click(
        on_run,
        inputs=[upload, faces, *settings],
        outputs=[status, job_id, pick, before_after, face_tiles, downloads, results],
        concurrency_id="work",
        concurrency_limit=1,
        show_progress="minimal",
    )
    cancel.click(page.on_cancel, inputs=job_id, outputs=status, queue=False)
    pick.change(show_result, inputs=[results, pick], outputs=[before_after, face_tiles, downloads])


def _batch_tab(page: _Page, settings: list[Any]) -> None:
    """The batch tab: ``realface apply`` on a folder of the server, with its manifest."""
    gr, config, store, jobs = page.gr, page.config, page.store, page.jobs
    with gr.Tab("Batch", id="batch"):
        gr.Markdown(
            "Process a folder of the server, as `realface apply FOLDER -o OUT`: the same "
            "manifest, so a stopped batch continues where it stopped, from here or from the "
            f"command line. Folders are relative to `{config.batch_folder}` and must lie inside it."
        )
        with gr.Row():
            batch_in = gr.Textbox(label="Input folder", elem_id="batch-in")
            batch_out = gr.Textbox(label="Output folder", elem_id="batch-out")
        with gr.Row():
            batch_run = gr.Button("Run batch", variant="primary", elem_id="batch-run")
            batch_cancel = gr.Button("Cancel", variant="stop", elem_id="batch-cancel")
        batch_status = gr.Markdown(elem_id="batch-status")
        batch_table = gr.Dataframe(
            headers=MANIFEST_HEADERS,
            column_widths=["25%", "10%", "10%", "55%"],
            wrap=True,
            label="Manifest",
            interactive=False,
            elem_id="batch-table",
        )
        batch_job = gr.State("")

    def on_batch(in_text, out_text, *values):
        no = gr.skip()
        try:
            settings = page.settings_from(values)
            root = config.batch_folder
            in_dir = resolve_batch_folder(root, in_text, "input folder", must_exist=True)
            out_dir = resolve_batch_folder(root, out_text, "output folder", must_exist=False)
        except Exception as exc:  # noqa: BLE001
            yield _error_md(readable_error(exc)), "", no
            return
        job = jobs.new()
        thread, box = run_in_thread(lambda: run_folder(job, store, config, settings, in_dir, out_dir))
        with contextlib.closing(_follow(jobs, job, thread)) as statuses:
            for text in statuses:
                yield text, job.id, no
        rows = manifest_rows(out_dir)
        if "error" in box:
            yield _error_md(readable_error(box["error"])), "", rows
            return
        summary = box["result"]
        text = _escape(summary.format()).replace("\n", "  \n")
        if summary.interrupted:
            text = "**Cancelled.** Run the batch again to continue where it stopped.  \n" + text
        yield text, "", rows

    batch_run.click(
        on_batch,
        inputs=[batch_in, batch_out, *settings],
        outputs=[batch_status, batch_job, batch_table],
        concurrency_id="work",
        concurrency_limit=1,
        show_progress="minimal",
    )
    batch_cancel.click(page.on_cancel, inputs=batch_job, outputs=batch_status, queue=False)


def _models_tab(page: _Page) -> None:
    """The models tab: which weights are present, their licences, and fetching one."""
    gr = page.gr
    with gr.Tab("Models", id="models"):
        gr.Markdown(
            "External weights: what is present, under which licence, and how to get what is "
            "missing. Non-commercial terms are flagged."
        )
        weights = gr.Markdown(_weights_table, elem_id="weights-table")
        with gr.Row():
            from realface.weights import REGISTRY

            weight_pick = gr.Dropdown(
                choices=[r.id for r in REGISTRY.values() if not r.manual_only],
                label="Weight",
                elem_id="weight-pick",
            )
            fetch = gr.Button("Fetch", elem_id="fetch")
            refresh = gr.Button("Refresh", elem_id="refresh")
        weights_msg = gr.Markdown(elem_id="weights-msg")

    def on_weights_refresh():
        return _weights_table()

    def on_fetch(weight_id):
        try:
            if not weight_id:
                raise ConfigError("choose a weight first")
            message = f"Fetched {fetch_weight(weight_id)}"
        except Exception as exc:  # noqa: BLE001
            message = _error_md(readable_error(exc))
        return message, _weights_table()

    refresh.click(on_weights_refresh, outputs=weights)
    fetch.click(on_fetch, inputs=weight_pick, outputs=[weights_msg, weights], concurrency_limit=1)


def _weights_table() -> str:
    """The weights as a Markdown table (wraps long licence texts, commands stay copyable)."""

    def cell(text: str) -> str:
        return _escape(str(text)).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(WEIGHT_HEADERS) + " |", "|" + "---|" * len(WEIGHT_HEADERS)]
    for row in weights_rows():
        row = list(row)
        row[0] = f"`{row[0]}`"
        if row[1] == "missing" or row[1].startswith("missing "):
            row[1] = f"**{row[1]}**"
        lines.append("| " + " | ".join(cell(c) for c in row) + " |")
    return "\n".join(lines)


def _mode_line(config: UIConfig, store: ModelStore) -> str:
    n = len(store.rendering_choices()) - 1
    line = (
        f"G_real: `{config.real}` · G_rendering checkpoints offered: {n} · device: `{store.device}` · "
        f"working folder: `{config.workdir}`"
    )
    missing = missing_models(config)
    if missing:
        line += "\n\n" + _error_md(missing + " See the Models tab.", label="Missing weights")
    return line


def _summary(runs: list[ImageRun], seconds: float, run_dir: Path) -> str:
    ok = sum(r.error is None for r in runs)
    faces = sum(r.face_count for r in runs)
    return (
        f"**Done** in {seconds:.0f} s: {ok} of {len(runs)} image(s), {faces} face(s). Saved in `{run_dir}`."
    )


def _check_port(host: str, port: int) -> None:
    """Fail before anything is built when the address cannot be served on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does: TIME_WAIT is fine
        try:
            s.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot serve on {host}:{port} ({exc.strerror or exc}); choose another --port or --host"
            ) from None


def launch(config: UIConfig, block: bool = True) -> Any:
    """Build and serve the page. ``block=False`` returns at once (the server runs in a thread)."""
    _check_port(config.host, config.port)
    blocks, theme, workspace = build_app(config)
    if not config.is_local:
        log.warning("serving on %s: the page is reachable from other machines", config.host)
    if config.share:
        log.warning("--share: Gradio will open a public link to this page")
    blocks.queue(default_concurrency_limit=1, max_size=32)
    try:
        return _serve(blocks, config, theme, workspace, block)
    except OSError as exc:  # the port was taken between the check and the start
        raise ConfigError(f"cannot serve on {config.host}:{config.port}: {exc}") from None


LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
ANY_ADDRESS = ("0.0.0.0", "::")


def allowed_host_names(host: str) -> frozenset[str] | None:
    """The ``Host`` names the page answers when bound to ``host``: the local names and ``host``
    itself; None (any name) when bound to every address (``0.0.0.0`` or ``::``)."""
    if host in ANY_ADDRESS:
        return None
    return frozenset((*LOCAL_HOSTS, host.strip("[]").lower()))


def _host_name(value: str) -> str:
    """``'[::1]:7860'`` -> ``'::1'``; ``'LocalHost:80'`` -> ``'localhost'``."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class HostCheck:
    """ASGI middleware against DNS rebinding: a request whose ``Host`` header names another host is
    answered 421 with a plain-text reason, before the app sees it."""

    def __init__(self, app: Any, allowed: frozenset[str] | None) -> None:
        self.app, self.allowed = app, allowed

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.allowed is not None and scope["type"] in ("http", "websocket"):
            headers = dict(scope.get("headers") or [])
            name = _host_name(headers.get(b"host", b"").decode("latin-1"))
            if name not in self.allowed:
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                body = (
                    f"refused: the Host header {name!r} is not a name of this server "
                    f"({', '.join(sorted(self.allowed))}); start it with --host to serve other names\n"
                ).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 421,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8")],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def _serve(blocks: Any, config: UIConfig, theme: Any, workspace: Workspace, block: bool) -> Any:
    from starlette.middleware import Middleware

    return blocks.launch(
        app_kwargs={"middleware": [Middleware(HostCheck, allowed=allowed_host_names(config.host))]},
        server_name=config.host,
        server_port=config.port,
        share=config.share,
        inbrowser=False,
        show_error=False,
        quiet=False,
        allowed_paths=[str(workspace.root)],
        max_file_size=f"{config.max_upload_mb}mb",
        ssr_mode=False,
        mcp_server=False,
        enable_monitoring=False,
        footer_links=["gradio"],
        theme=theme,
        css=CSS,
        prevent_thread_lock=not block,
    )
