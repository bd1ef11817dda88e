"""`realface apply --workers N`: images run in worker processes give the same outputs and one manifest
as one process; a failing image is recorded as in one process; a killed worker fails only its image
and a rerun finishes the rest; a job whose setup fails stops before any image starts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from realface.batch import ItemContext, run_batch
from realface.errors import RealFaceError
from realface.workers import WorkerJob
from tests.conftest import data_file
from tests.test_cli_apply import run_cli


@pytest.fixture
def models(apply_models):
    m = apply_models
    return ["--real", m["real"], "--rendering", m["rendering"], "--lpips-vgg", m["vgg"]]


def _manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines() if line.strip()]


def _looks(folder: Path, n: int) -> Path:
    folder.mkdir()
    src = Image.open(data_file("images", "replicant_face_00000.jpg"))
    for i in range(n):
        src.rotate(2 * i).save(folder / f"look{i}.png")  # a different image each, same face
    return folder


def _files(out: Path) -> dict[str, bytes]:
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name not in ("manifest.jsonl", "summary.json", ".batch.lock")
    }


def _latent(path: Path) -> tuple[dict, dict]:
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        return f.metadata(), {k: f.get_tensor(k).tobytes() for k in f.keys()}


def test_two_workers_write_what_one_process_writes(tmp_path, models, monkeypatch):
    import torch

    cat = _looks(tmp_path / "cat", 3)
    (cat / "broken.png").write_bytes(b"this is not an image")
    args = [cat, *models, "--steps", "3", "--no-progress", "--mask", "landmarks", "--save-latents"]
    # The workers run single-threaded; the reference run in this process does too (same thread count).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert run_cli("apply", "-o", tmp_path / "one", "--workers", "1", *args) == 1
    finally:
        torch.set_num_threads(threads)
    assert run_cli("apply", "-o", tmp_path / "two", "--workers", "2", *args) == 1

    one, two = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert "look2.png" in two and "look0_face0_latent.safetensors" in two
    assert sorted(one) == sorted(two)
    for name in one:  # inversion is seeded per image: bit-identical outputs
        if name.endswith(".safetensors"):  # the header's key order is not fixed: compare the contents
            assert _latent(tmp_path / "one" / name) == _latent(tmp_path / "two" / name), name
        else:
            assert one[name] == two[name], name

    records = _manifest(tmp_path / "two")
    keys = ["broken.png", "look0.png", "look1.png", "look2.png"]
    assert sorted(r["key"] for r in records if r["status"] == "started") == keys
    final = {r["key"]: r for r in records if r["status"] != "started"}
    assert sorted(final) == keys and len(records) == 8
    assert {k: r["status"] for k, r in final.items()} == {
        "broken.png": "failed",
        "look0.png": "done",
        "look1.png": "done",
        "look2.png": "done",
    }
    failed_alone = {r["key"]: r["error"] for r in _manifest(tmp_path / "one") if r["status"] == "failed"}
    assert (
        final["broken.png"]["error"] == failed_alone["broken.png"]
        and "broken.png" in failed_alone["broken.png"]
    )
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["done"] == 3 and summary["failed"][0]["key"] == "broken.png"


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def _start_two_workers(args: list) -> tuple[subprocess.Popen, list[int]]:
    """``realface apply ARGS --workers 2`` in a subprocess, once both workers run an image; with the
    workers' process ids."""
    out = Path(args[args.index("-o") + 1])
    cmd = [sys.executable, "-m", "realface", "apply", *args, "--workers", "2"]
    proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 180
    while time.time() < deadline:
        if (out / "manifest.jsonl").exists() and sum(r["status"] == "started" for r in _manifest(out)) >= 2:
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("the workers did not start two images within 180 s")
    workers = [p for p in _children(proc.pid) if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()]
    assert len(workers) == 2, workers
    return proc, workers


linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads a process's children from /proc"
)


@linux_only
def test_a_killed_worker_fails_its_image_and_a_rerun_finishes(tmp_path, models):
    cat = _looks(tmp_path / "cat", 4)
    out = tmp_path / "out"
    args = [cat, "-o", out, *models, "--steps", "25", "--no-progress", "--mask", "landmarks"]
    proc, workers = _start_two_workers(args)
    try:
        os.kill(workers[0], signal.SIGKILL)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err.decode()
    records = _manifest(out)
    failed = [r for r in records if r["status"] == "failed"]
    assert len(failed) == 1 and "killed by SIGKILL" in failed[0]["error"]
    done_before = {r["key"] for r in records if r["status"] == "done"}
    assert len(done_before) == 3  # the other worker ran the remaining images

    assert run_cli("apply", *args, "--workers", "2") == 0
    records = _manifest(out)
    for i in range(4):
        key = f"look{i}.png"
        assert sum(r["key"] == key and r["status"] == "done" for r in records) == 1, key
        Image.open(out / key).load()
    rerun = records[len(records) - 2 :]
    assert [(r["key"], r["status"]) for r in rerun] == [
        (failed[0]["key"], "started"),
        (failed[0]["key"], "done"),
    ]
    assert not [p for p in out.rglob("*.tmp")]


@linux_only
def test_ctrl_c_stops_the_workers_and_keeps_the_run_resumable(tmp_path, models):
    cat = _looks(tmp_path / "cat", 3)
    out = tmp_path / "out"
    args = [cat, "-o", out, *models, "--steps", "200", "--no-progress", "--mask", "landmarks"]
    proc, workers = _start_two_workers(args)
    try:
        proc.send_signal(signal.SIGINT)  # to the parent alone: it must stop its workers itself
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert not [pid for pid in workers if _running(pid)]  # stopped, not left running
    records = _manifest(out)
    assert [r["status"] for r in records] == ["started", "started"]  # both run again next time
    assert json.loads((out / "summary.json").read_text())["interrupted"] is True


@linux_only
def test_kill_9_of_the_command_ends_its_workers(tmp_path, models):
    cat = _looks(tmp_path / "cat", 3)
    out = tmp_path / "out"
    args = [cat, "-o", out, *models, "--steps", "200", "--no-progress", "--mask", "landmarks"]
    proc, workers = _start_two_workers(args)
    proc.kill()
    proc.communicate(timeout=60)
    deadline = time.time() + 10
    while time.time() < deadline and any(_running(pid) for pid in workers):
        time.sleep(0.05)
    assert not [pid for pid in workers if _running(pid)]
    assert [r["status"] for r in _manifest(out)] == ["started", "started"]
    assert run_cli("apply", *args, "--steps", "2", "--workers", "2") == 0  # a new config: all three run
    assert sum(r["status"] == "done" for r in _manifest(out)) == 3


def _running(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def _failing_setup():
    raise RealFaceError("G_real.safetensors: not a generator")


def _copy_setup():
    from realface.utils.fs import atomic_write_bytes

    def process(path: Path, ctx: ItemContext) -> list[Path]:
        atomic_write_bytes(ctx.output, path.read_bytes()[::-1])
        return [ctx.output]

    return process


def test_a_failing_setup_stops_before_any_item_starts(tmp_path):
    items = []
    for i in range(3):
        items.append(tmp_path / f"in{i}.txt")
        items[-1].write_text(f"item {i}")
    out = tmp_path / "out"
    with pytest.raises(RealFaceError, match="not a generator"):
        run_batch(items, WorkerJob(_failing_setup, 2), out, config_hash="c", progress=False)
    assert not (out / "manifest.jsonl").exists()

    summary = run_batch(items, WorkerJob(_copy_setup, 2), out, config_hash="c", progress=False)
    assert summary.done == 3 and summary.exit_code == 0
    assert [(out / f"in{i}.txt").read_text() for i in range(3)] == [f"{i} meti" for i in range(3)]


def test_worker_counts_are_checked():
    with pytest.raises(RealFaceError, match="at least 1"):
        WorkerJob(_copy_setup, 0)


def test_default_workers_fit_in_the_available_memory(monkeypatch):
    import torch

    from realface import workers

    monkeypatch.setattr(workers, "usable_cpus", lambda: 8)
    monkeypatch.setattr(workers, "available_memory", lambda: 10 * 2**30)
    cpu = torch.device("cpu")
    assert workers.default_apply_workers(cpu) == 8  # no estimate: one per CPU
    assert workers.default_apply_workers(cpu, 2 * 2**30) == 4  # 80 % of 10 GiB holds four 2 GiB workers
    assert workers.default_apply_workers(cpu, 64 * 2**30) == 1  # never fewer than one
    assert workers.default_apply_workers(torch.device("meta"), 1) == 1  # not the CPU: one
    monkeypatch.setattr(workers, "available_memory", lambda: None)
    assert workers.default_apply_workers(cpu, 64 * 2**30) == 8  # memory unknown: not capped


def test_worker_memory_counts_weights_and_activations():
    import torch

    from realface.workers import ACTIVATION_BYTES_1024, worker_memory

    net = torch.nn.Linear(10, 10)  # 110 float32 parameters
    net.register_buffer("b", torch.zeros(5, dtype=torch.float64))  # 40 bytes
    assert worker_memory([net, None], 1024, 1) == 110 * 4 + 40 + ACTIVATION_BYTES_1024
    assert worker_memory([net], 512, 2) == 110 * 4 + 40 + ACTIVATION_BYTES_1024 // 2
