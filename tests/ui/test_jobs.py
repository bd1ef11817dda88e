"""The web UI's work layer (no browser): settings, folder checks, progress and cancel, the image tab's
runs with tiny generators, the batch tab against the command line's manifest, and the models table."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from realface.batch import MANIFEST_NAME
from realface.errors import Cancelled, ConfigError, WeightsError
from realface.face import DetectConfig, find_faces
from realface.imageio import load_image
from realface.ui.jobs import (
    Job,
    JobRegistry,
    ModelStore,
    Settings,
    UIConfig,
    Workspace,
    detect_preview,
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
from realface.weights import REGISTRY
from tests.conftest import data_file
from tests.test_cli_apply import run_cli
from tests.test_pipeline import garment_and_background

FAST = dict(steps=3, coarse_to_fine=False, mask="landmarks")


@pytest.fixture
def env(tmp_path, tiny_models):
    config = UIConfig(
        workdir=tmp_path / "work",
        real=str(tiny_models["real"]),
        renderings=(tiny_models["rendering"],),
        lpips_vgg=tiny_models["vgg"],
        device="cpu",
        batch_root=tmp_path,
    )
    return config, ModelStore(config), Workspace(config.workdir)


def _settings(store, **kw):
    return Settings(rendering=store.default_rendering(), **{**FAST, **kw})


# --- settings and checks -----------------------------------------------------------------------------


def test_settings_from_page_validates_and_maps_to_apply_config():
    s = Settings.from_page(
        steps=12.0, seed=7.0, feather=0.02, mask="landmarks", out_format="png", fine_steps=50
    )
    assert (s.steps, s.seed) == (12, 7) and isinstance(s.steps, int)
    cfg = s.apply_config(batch_size=2, max_pixels=1000, save_all=True)
    assert cfg.invert.steps == 12 and cfg.invert.seed == 7 and cfg.mask.feather == 0.02
    assert cfg.mask.kind == "landmarks" and cfg.batch_size == 2 and cfg.max_pixels == 1000
    assert (
        cfg.save.latents and cfg.save.reconstruction and cfg.invert.fine_steps == 12
    )  # clamped to steps (coarse-to-fine)
    assert Settings(steps=12, coarse_to_fine=False).apply_config(1, 1, False).invert.fine_steps == 50
    assert s.suffix() == ".png" and Settings().suffix() is None
    with pytest.raises(ConfigError, match="steps"):
        Settings.from_page(steps=None)
    with pytest.raises(ConfigError, match="whole number"):
        Settings.from_page(steps=2.5)
    with pytest.raises(ConfigError, match="output format"):
        Settings(out_format="gif")
    with pytest.raises(ConfigError, match="mask"):
        Settings(mask="ellipse").apply_config(1, 1, False)
    assert cfg.transfer_layers is None
    assert Settings(transfer_layers="0-2, 5").apply_config(1, 1, False).transfer_layers == (0, 1, 2, 5)
    with pytest.raises(ConfigError, match="transfer layers 'eyes'"):
        Settings(transfer_layers="eyes").apply_config(1, 1, False)


def test_detection_settings_map_to_the_detect_config():
    assert Settings().detect_config() == DetectConfig()  # the page's defaults are the library's
    s = Settings.from_page(detector="hog", threshold=None, min_face_size=30.0)
    cfg = s.apply_config(1, 1, False).detect
    assert (cfg.detector, cfg.threshold, cfg.min_face_size) == ("hog", None, 30)
    assert Settings.from_page(threshold=" 0.9 ").detect_config().score_threshold == 0.9
    assert Settings.from_page(threshold="").threshold is None
    with pytest.raises(ConfigError, match="'threshold' must be a number or empty, got 'high'"):
        Settings.from_page(threshold="high")
    with pytest.raises(ConfigError, match="detection: unknown detector 'mtcnn'"):
        Settings(detector="mtcnn")
    with pytest.raises(ConfigError, match="whole number"):
        Settings.from_page(min_face_size=20.5)


def test_batch_folders_must_stay_below_the_root(tmp_path):
    root = tmp_path / "root"
    (root / "cat").mkdir(parents=True)
    assert resolve_batch_folder(root, "cat", "input", must_exist=True) == (root / "cat").resolve()
    assert (
        resolve_batch_folder(root, str(root / "new"), "output", must_exist=False) == (root / "new").resolve()
    )
    for bad in ("../", "/etc", "cat/../../x"):
        with pytest.raises(ConfigError, match="outside the batch folder"):
            resolve_batch_folder(root, bad, "input", must_exist=False)
    os.symlink(tmp_path, root / "escape")
    with pytest.raises(ConfigError, match="outside"):
        resolve_batch_folder(root, "escape", "input", must_exist=True)
    with pytest.raises(ConfigError, match="not a folder"):
        resolve_batch_folder(root, "missing", "input", must_exist=True)
    with pytest.raises(ConfigError, match="enter a folder"):
        resolve_batch_folder(root, "  ", "input", must_exist=True)


def test_job_progress_eta_and_cancel():
    job = Job()
    job.begin_item(1, 2, "a.jpg")
    job.step_callback(9, 100, torch.tensor([0.5, 0.25]))
    text = job.status()
    assert "image 1/2 (a.jpg)" in text and "step 10/100" in text and "loss 0.3750" in text and "ETA" in text
    job.cancel()
    with pytest.raises(Cancelled):
        job.step_callback(10, 100, torch.tensor([0.5]))
    assert "cancelling" in job.status()
    jobs = JobRegistry()
    j = jobs.new()
    assert jobs.get(j.id) is j and jobs.get("nope") is None
    jobs.finish(j)
    assert jobs.get(j.id) is None


def test_parse_selection():
    assert parse_selection(["0:1", "0:0", "2:0"], 3) == {0: [1, 0], 2: [0]}
    with pytest.raises(ConfigError, match="names image 3"):
        parse_selection(["3:0"], 3)
    with pytest.raises(ConfigError, match="bad face selection"):
        parse_selection(["x"], 1)


def test_readable_error_has_no_traceback():
    assert readable_error(ConfigError("steps must be >= 1")) == "steps must be >= 1"
    text = readable_error(ValueError("boom"))
    assert "ValueError: boom" in text and "Traceback" not in text


def test_bad_requests_are_refused_at_once_and_job_errors_always_have_a_message():
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="transfer layers"):
        Settings(transfer_layers="0-99999999")
    assert time.perf_counter() - t0 < 1.0
    assert Settings(transfer_layers="0-7").transfer_layers == "0-7"
    assert readable_error(ConfigError()).strip()  # an error without a message still says something
    for exc in (ValueError(), ConfigError(""), KeyError("x")):

        def fail(exc=exc):
            raise exc

        thread, box = run_in_thread(fail)
        thread.join(10)
        assert "error" in box and readable_error(box["error"]).strip(), exc


def test_only_offered_checkpoints_can_be_chosen(env, tmp_path):
    config, store, _ = env
    values = [v for _, v in store.rendering_choices()]
    assert values[0] == "" and values[1] == os.path.abspath(config.renderings[0])
    assert store.check_rendering("") is None
    with pytest.raises(ConfigError, match="not one of the offered"):
        store.check_rendering(str(tmp_path / "other.safetensors"))


# --- the image tab ----------------------------------------------------------------------------------------


def test_detect_preview_draws_faces_and_reports_bad_files(env, tmp_path):
    config, _, ws = env
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    noface = tmp_path / "grey.png"
    Image.new("RGB", (200, 200), (90, 90, 90)).save(noface)
    out = detect_preview([data_file("images", "replicant_face_00000.jpg"), broken, noface], ws, config)
    assert len(out[0].labels) == 1 and out[0].error is None and ws.contains(out[0].preview)
    preview = np.asarray(Image.open(out[0].preview))
    assert preview.shape[2] == 3 and ((preview == (255, 40, 40)).all(axis=2)).sum() > 100  # the red box
    assert (
        "broken.jpg" in out[1].error and "not an image" in out[1].error and str(tmp_path) not in out[1].error
    )
    assert "no face" in out[2].error
    (face,) = find_faces(load_image(data_file("images", "replicant_face_00000.jpg")).rgb8())
    assert out[0].labels[0].endswith(f"px, score {face.score:.2f})")  # the detector's score shown
    strict = detect_preview(
        [data_file("images", "replicant_face_00000.jpg")], ws, config, DetectConfig(threshold=0.999)
    )
    assert strict[0].labels == () and "threshold 0.999" in strict[0].error  # the page's detection settings
    with pytest.raises(ConfigError, match="at most 16"):
        detect_preview([broken] * 17, ws, config)


def test_run_images_writes_composite_latents_and_zip_and_keeps_garment(env, tmp_path):
    config, store, ws = env
    src = data_file("images", "replicant_face_00000.jpg")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    job = Job()
    steps_seen = []
    original = job.step_callback
    job.step_callback = lambda step, total, loss: (
        steps_seen.append((step, total)),
        original(step, total, loss),
    )
    run_dir, runs = run_images(job, store, ws, config, _settings(store, out_format="png"), [src, broken])
    info = json.loads((run_dir / "run.json").read_text())
    assert ws.contains(run_dir) and info["mode"] == "transfer" and info["device"] == "cpu"
    assert (
        info["rendering"] == os.path.abspath(config.renderings[0]) and info["config"]["invert"]["steps"] == 3
    )
    ok, bad = runs
    assert bad.composite is None and "broken.jpg" in bad.error
    assert ok.error is None and ok.composite == run_dir / "replicant_face_00000_realface.png"
    assert ok.face_count == 1 and [c.split(" · ")[1].split(" ")[0] for _, c in ok.faces] == [
        "input",
        "reconstruction",
        "realistic",
    ]
    names = {p.name for p in ok.downloads}
    assert names == {
        ok.composite.name,
        "replicant_face_00000_realface_face0_latent.safetensors",
        "results.zip",
    }
    with zipfile.ZipFile(run_dir / "results.zip") as zf:
        assert ok.composite.name in zf.namelist() and "run.json" in zf.namelist()
    out = np.asarray(Image.open(ok.composite).convert("RGB"))
    orig = np.asarray(Image.open(src).convert("RGB"))
    keep = garment_and_background(data_file("images", "replicant_face_00000_mask.png"))
    assert np.array_equal(out[keep], orig[keep]) and not np.array_equal(out, orig)
    assert steps_seen == [(0, 3), (1, 3), (2, 3)]  # progress went through every step

    # Same format as the input by default; a face selection that names no face is refused.
    _, runs = run_images(Job(), store, ws, config, _settings(store), [src], {0: [0]})
    assert runs[0].composite.suffix == ".jpg" and Image.open(runs[0].composite).format == "JPEG"
    with pytest.raises(ConfigError, match="no face selected"):
        run_images(Job(), store, ws, config, _settings(store), [src], {})
    _, runs = run_images(Job(), store, ws, config, _settings(store), [src], {0: [3]})
    assert "face index 3 requested but 1 face(s) found" in runs[0].error


def test_tiff_input_keeps_its_format_and_the_page_gets_png_previews(env, tmp_path):
    config, store, ws = env
    src = tmp_path / "look.tif"
    Image.open(data_file("images", "replicant_face_00000.jpg")).save(src, format="TIFF")
    _, (run,) = run_images(Job(), store, ws, config, _settings(store), [src])
    assert run.composite.name == "look_realface.tif" and Image.open(run.composite).format == "TIFF"
    for preview in (run.before, run.after):
        with Image.open(preview) as im:
            assert im.format == "PNG" and im.size == (640, 640)
    assert np.array_equal(np.asarray(Image.open(run.before)), np.asarray(Image.open(src).convert("RGB")))
    assert np.array_equal(
        np.asarray(Image.open(run.after)), np.asarray(Image.open(run.composite).convert("RGB"))
    )


def test_previews_are_capped_in_size(tmp_path):
    from realface.ui.files import PREVIEW_SIDE, write_preview

    wide = np.zeros((100, 3000, 3), np.uint8)
    with Image.open(write_preview(wide, tmp_path / "p.png")) as im:
        assert im.size == (PREVIEW_SIDE, 68)


def test_run_images_cancel_stops_and_missing_weights_are_readable(env, tmp_path):
    config, store, ws = env
    job = Job()
    job.cancel()
    with pytest.raises(Cancelled):
        run_images(
            job, store, ws, config, _settings(store), [data_file("images", "replicant_face_00000.jpg")]
        )
    no_weights = UIConfig(workdir=tmp_path / "w2", device="cpu")  # G_real: the registry's FFHQ id, offline
    with pytest.raises(WeightsError) as info:
        run_images(
            Job(), ModelStore(no_weights), ws, no_weights, Settings(), [data_file("images", "astronaut.png")]
        )
    assert "sg2ada-ffhq1024" in readable_error(info.value) and "realface weights import" in str(info.value)


# --- the batch tab ----------------------------------------------------------------------------------------


def _catalogue(root):
    (root / "tops").mkdir(parents=True)
    (root / "tops" / "a.jpg").write_bytes(data_file("images", "replicant_face_00000.jpg").read_bytes())
    (root / "tops" / "broken.png").write_bytes(b"not an image")
    return root


def test_batch_tab_shares_the_manifest_with_the_command_line(env, tmp_path, tiny_models):
    config, store, _ = env
    cat = _catalogue(tmp_path / "cat")
    out = tmp_path / "out"
    settings = _settings(store)
    summary = run_folder(Job(), store, config, settings, cat, out)
    assert (summary.done, len(summary.failed)) == (1, 1) and (out / "tops" / "a.jpg").is_file()
    rows = {r[0]: r for r in manifest_rows(out)}
    assert rows["tops/a.jpg"][1] == "done" and rows["tops/broken.png"][1] == "failed"
    assert "not an image" in rows["tops/broken.png"][3]
    # The same settings from the command line: the finished image is skipped (same config hash).
    code = run_cli(
        "apply", cat, "-o", out, "--real", config.real, "--rendering", config.renderings[0],
        "--lpips-vgg", tiny_models["vgg"], "--steps", "3", "--full-resolution", "--mask", "landmarks",
        "--no-progress",
    )  # fmt: skip
    assert code == 1  # broken.png fails again
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped"] == 1 and summary["done"] == 0


def test_batch_tab_cancel_keeps_the_item_for_the_next_run(env, tmp_path):
    config, store, _ = env
    cat = _catalogue(tmp_path / "cat")
    (cat / "tops" / "broken.png").unlink()
    out = tmp_path / "out"
    job = Job()
    original = job.step_callback

    def cancel_at_second_step(step, total, loss):
        if step == 1:
            job.cancel()
        original(step, total, loss)

    job.step_callback = cancel_at_second_step  # type: ignore[method-assign]
    summary = run_folder(job, store, config, _settings(store), cat, out)
    assert summary.interrupted and summary.done == 0 and not (out / "tops" / "a.jpg").exists()
    records = [json.loads(line) for line in (out / MANIFEST_NAME).read_text().splitlines()]
    assert [r["status"] for r in records] == ["started"]
    (cat / "tops" / "b.jpg").write_bytes((cat / "tops" / "a.jpg").read_bytes())
    job = Job()
    summary = run_folder(job, store, config, _settings(store), cat, out)
    assert summary.done == 2 and (out / "tops" / "a.jpg").is_file()
    assert (job.item, job.items) == (2, 2)
    (cat / "tops" / "c.jpg").write_bytes((cat / "tops" / "a.jpg").read_bytes())
    job = Job()
    summary = run_folder(job, store, config, _settings(store), cat, out)
    assert (summary.done, summary.skipped) == (1, 2)
    assert (job.item, job.items) == (1, 1)  # progress counts only the images still to run
    assert "image 1/1 (tops/c.jpg)" in job.status()


def test_batch_tab_refuses_bad_folders(env, tmp_path):
    config, store, _ = env
    cat = _catalogue(tmp_path / "cat")
    with pytest.raises(ConfigError, match="must differ"):
        run_folder(Job(), store, config, _settings(store), cat, cat)
    with pytest.raises(ConfigError, match="lies inside the output folder"):
        run_folder(Job(), store, config, _settings(store), cat / "tops", cat)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no images found"):
        run_folder(Job(), store, config, _settings(store), empty, tmp_path / "o")


# --- the models tab ---------------------------------------------------------------------------------------


def test_weights_table_and_fetch_offline():
    rows = {r[0]: r for r in weights_rows()}
    assert set(rows) == set(REGISTRY)
    ffhq = rows["sg2ada-ffhq1024"]
    assert ffhq[1] == "missing" and "NON-COMMERCIAL" in ffhq[3]
    assert "realface weights fetch sg2ada-ffhq1024" in ffhq[5]
    assert rows["dlib-lm68"][1].startswith("present")  # shipped with face_recognition_models
    assert "realface weights import" in rows["dfe-sketch"][5]  # manual download
    with pytest.raises(WeightsError, match="offline"):
        fetch_weight("tv-vgg16")


def test_missing_models_are_named(env, tmp_path):
    config, _, _ = env
    assert missing_models(config) is None
    bare = UIConfig(workdir=tmp_path / "w", renderings=(tmp_path / "gone.safetensors",))
    text = missing_models(bare)
    assert "G_real (`sg2ada-ffhq1024`" in text and "LPIPS VGG16 (`tv-vgg16`" in text
    assert "gone.safetensors" in text


def test_model_store_loads_each_network_once(env):
    config, store, _ = env
    calls = []
    lock = threading.Lock()

    def load():
        with lock:
            calls.append(1)
        return object()

    threads = [threading.Thread(target=store._get, args=("x", load)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1


# --- the command -----------------------------------------------------------------------------------------


def test_ui_command_checks_its_options_before_serving(tmp_path, capsys):
    assert run_cli("ui", "--rendering", tmp_path / "missing.safetensors", "--workdir", tmp_path / "w") == 1
    assert "--rendering" in capsys.readouterr().err
    assert run_cli("ui", "--models", tmp_path / "nope", "--workdir", tmp_path / "w") == 1
    assert "not a folder" in capsys.readouterr().err
    assert run_cli("ui", "--port", "70000", "--workdir", tmp_path / "w") == 1
    err = capsys.readouterr().err
    assert "--port must be in 1..65535" in err and "Traceback" not in err
    with socket.socket() as busy:  # a taken port fails before the page is built
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert run_cli("ui", "--port", port, "--workdir", tmp_path / "w") == 1
    err = capsys.readouterr().err
    assert f"cannot serve on 127.0.0.1:{port}" in err and "Traceback" not in err
    assert run_cli("ui", "--help") == 0
    assert "127.0.0.1" in capsys.readouterr().out


def test_missing_gradio_is_a_readable_error(monkeypatch, tmp_path):
    import sys

    from realface.errors import RealFaceError
    from realface.ui.app import _import_gradio

    for key in ("GRADIO_TEMP_DIR", "GRADIO_ANALYTICS_ENABLED", "GRADIO_SSR_MODE"):
        monkeypatch.setenv(key, "unchanged")  # restored after the test
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio -> ImportError
    with pytest.raises(RealFaceError, match=r"pip install 'realface\[ui\]'"):
        _import_gradio(Workspace(tmp_path / "w"))
    assert os.environ["GRADIO_TEMP_DIR"] == str(tmp_path / "w" / "uploads")
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"


def test_a_page_that_goes_away_cancels_its_job():
    from realface.ui.app import _follow
    from realface.ui.jobs import run_in_thread

    jobs = JobRegistry()
    job = jobs.new()

    def work():
        while True:
            job.check()  # raises Cancelled once the job is cancelled
            time.sleep(0.01)

    thread, box = run_in_thread(work)
    statuses = _follow(jobs, job, thread)
    assert "Starting" in next(statuses)
    statuses.close()  # what Gradio does when the browser disconnects
    thread.join(5)
    assert not thread.is_alive() and isinstance(box["error"], Cancelled) and jobs.get(job.id) is None
