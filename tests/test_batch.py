"""Tests of the catalogue runner: input collection, manifest, resume, failures, crash safety, locking."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import filelock
import pytest

from realface.batch import (
    LOCK_NAME,
    MANIFEST_NAME,
    SUMMARY_NAME,
    BatchSummary,
    ExtraOutputs,
    ItemContext,
    Manifest,
    ManifestRecord,
    collect_catalogue,
    collect_inputs,
    hash_config,
    item_key,
    output_path_for,
    remove_stale_temporaries,
    run_batch,
)
from realface.errors import RealFaceError
from realface.utils.fs import atomic_path, atomic_write_bytes

# --- helpers --------------------------------------------------------------------------------------


def _touch(path: Path, data: bytes | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if data is not None else f"image {path.name}".encode())
    return path


def _expected_output(input: Path) -> bytes:
    return b"OUT:" + input.read_bytes() + b"." * 4096


class Recorder:
    """A job that writes one output per item atomically and remembers which items it was called for."""

    def __init__(self, fail: dict[str, Exception] | None = None) -> None:
        self.calls: list[str] = []
        self.fail = fail or {}

    def __call__(self, input: Path, ctx: ItemContext) -> list[Path]:
        self.calls.append(ctx.key)
        if ctx.key in self.fail:
            raise self.fail[ctx.key]
        atomic_write_bytes(ctx.output, _expected_output(input))
        return [ctx.output]


def _catalogue(root: Path, n: int = 3) -> list[Path]:
    return [_touch(root / f"img{i}.png") for i in range(n)]


def _run(inputs, job, out, config="cfg", **kw) -> BatchSummary:
    return run_batch(
        inputs, job, out, config_hash=config, roots=kw.pop("roots", [inputs[0].parent]), progress=False, **kw
    )


def _visible_files(folder: Path) -> set[str]:
    return {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    }


# --- collecting inputs ----------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    for rel in ["a.png", "B.JPG", "notes.txt", ".hidden.png", "sub/a.png", "sub/deep/c.webp", ".git/x.png"]:
        _touch(root / rel)
    _touch(tmp_path / "extra" / "d.tif")
    return tmp_path


def test_collect_folders_files_and_duplicates(tree: Path, monkeypatch):
    root = tree / "in"
    found = collect_inputs([root, root / "a.png", tree / "extra" / "d.tif", root / "sub" / "a.png"])
    assert found == [
        root / "B.JPG",
        root / "a.png",
        root / "sub" / "a.png",
        root / "sub" / "deep" / "c.webp",
        tree / "extra" / "d.tif",
    ]
    # a file named explicitly is taken whatever its extension; relative paths become absolute
    monkeypatch.chdir(root)
    assert collect_inputs(["notes.txt", "./sub/../a.png", "a.png"]) == [root / "notes.txt", root / "a.png"]


def test_collect_options(tree: Path):
    root = tree / "in"
    assert collect_inputs([root], recursive=False) == [root / "B.JPG", root / "a.png"]
    assert collect_inputs([root], extensions=[".PNG"]) == [root / "a.png", root / "sub" / "a.png"]
    assert collect_inputs([root], exclude=[root / "sub"]) == [root / "B.JPG", root / "a.png"]


def test_collect_missing_path_is_named(tree: Path):
    missing = tree / "no_such_folder"
    with pytest.raises(RealFaceError, match="no_such_folder"):
        collect_inputs([tree / "in", missing])


def test_output_paths_mirror_the_input_tree(tree: Path):
    root, out = tree / "in", tree / "out"
    roots = [root, tree / "extra" / "d.tif"]
    assert output_path_for(root / "sub" / "a.png", roots, out) == out / "sub" / "a.png"
    assert output_path_for(root / "a.png", roots, out) == out / "a.png"
    assert output_path_for(tree / "extra" / "d.tif", roots, out) == out / "d.tif"
    assert output_path_for(root / "sub" / "deep" / "c.webp", roots, out, suffix=".png") == (
        out / "sub" / "deep" / "c.png"
    )
    # the innermost root wins
    assert item_key(root / "sub" / "deep" / "c.webp", [root, root / "sub"]) == "deep/c.webp"


def test_colliding_outputs_and_output_inside_inputs_are_refused(tree: Path):
    a1, a2 = tree / "in" / "a.png", tree / "in" / "sub" / "a.png"
    job = Recorder()
    with pytest.raises(RealFaceError, match="both be written") as info:
        run_batch([a1, a2], job, tree / "out", config_hash="c", progress=False)
    assert str(a1) in str(info.value) and str(a2) in str(info.value)
    with pytest.raises(RealFaceError, match="inside the output folder"):
        run_batch([a1], job, tree / "in", config_hash="c", progress=False)
    assert job.calls == []
    assert not (tree / "out").exists()


# --- manifest, resume, failures -------------------------------------------------------------------


def test_run_then_rerun_skips_everything(tmp_path: Path):
    inputs, out = _catalogue(tmp_path / "in"), tmp_path / "out"
    job = Recorder()
    s1 = _run(inputs, job, out)
    assert (s1.total, s1.done, s1.skipped, s1.failed, s1.exit_code) == (3, 3, 0, (), 0)
    assert job.calls == ["img0.png", "img1.png", "img2.png"]
    for p in inputs:
        assert (out / p.name).read_bytes() == _expected_output(p)

    records = Manifest(out / MANIFEST_NAME).records()
    assert [(r.key, r.status) for r in records] == [
        (k, s) for k in ("img0.png", "img1.png", "img2.png") for s in ("started", "done")
    ]
    done = records[1]
    assert done.outputs == ("img0.png",) and done.error is None and done.config_hash == "cfg"
    assert done.input == str(inputs[0]) and done.size == inputs[0].stat().st_size

    job2, plans = Recorder(), []
    s2 = _run(inputs + [_touch(tmp_path / "in" / "img3.png")], job2, out, on_plan=lambda *a: plans.append(a))
    assert job2.calls == ["img3.png"] and plans == [(1, 3)]  # (to run, skipped), once, before the first item
    inputs = inputs + [tmp_path / "in" / "img3.png"]
    job2 = Recorder()
    s2 = _run(inputs, job2, out)
    assert job2.calls == []
    assert (s2.done, s2.skipped, s2.exit_code) == (0, 4, 0)
    assert len(Manifest(out / MANIFEST_NAME).records()) == 8
    assert json.loads((out / SUMMARY_NAME).read_text())["skipped"] == 4


def test_failures_are_recorded_and_retried(tmp_path: Path, caplog):
    inputs, out = _catalogue(tmp_path / "in", 4), tmp_path / "out"
    job = Recorder(
        fail={"img1.png": RealFaceError("no face found in img1.png"), "img2.png": ValueError("boom")}
    )
    with caplog.at_level(logging.DEBUG, logger="realface.batch"):
        summary = _run(inputs, job, out)
    assert job.calls == ["img0.png", "img1.png", "img2.png", "img3.png"]
    assert (summary.done, summary.skipped, summary.exit_code) == (2, 0, 1)
    assert summary.failed == (("img1.png", "no face found in img1.png"), ("img2.png", "ValueError: boom"))
    assert "Traceback" in caplog.text  # the unexpected error's traceback is logged at debug level

    state = Manifest(out / MANIFEST_NAME).state()
    assert state["img2.png"].status == "failed" and state["img2.png"].error == "ValueError: boom"
    assert state["img2.png"].outputs == ()
    assert _visible_files(out) == {"img0.png", "img3.png", MANIFEST_NAME, SUMMARY_NAME}
    saved = json.loads((out / SUMMARY_NAME).read_text())
    assert saved["exit_code"] == 1 and saved["failed"][1] == {"key": "img2.png", "error": "ValueError: boom"}
    assert "img2.png: ValueError: boom" in summary.format()

    fixed = Recorder()
    again = _run(inputs, fixed, out)
    assert fixed.calls == ["img1.png", "img2.png"]
    assert (again.done, again.skipped, again.retried, again.exit_code) == (2, 2, 2, 0)


def test_stop_on_error(tmp_path: Path):
    inputs, out = _catalogue(tmp_path / "in", 4), tmp_path / "out"
    job = Recorder(fail={"img1.png": RealFaceError("bad")})
    summary = _run(inputs, job, out, stop_on_error=True)
    assert job.calls == ["img0.png", "img1.png"]
    assert (summary.done, len(summary.failed), summary.not_run, summary.exit_code) == (1, 1, 2, 1)


def test_job_must_return_existing_outputs(tmp_path: Path):
    inputs, out = _catalogue(tmp_path / "in", 1), tmp_path / "out"
    summary = _run(inputs, lambda input, ctx: [ctx.output], out)  # claims an output it never wrote
    assert summary.exit_code == 1 and "do not exist" in summary.failed[0][1]


def test_changed_input_missing_output_or_config_is_redone(tmp_path: Path):
    inputs, out = _catalogue(tmp_path / "in", 4), tmp_path / "out"
    _run(inputs, Recorder(), out)

    inputs[0].write_bytes(b"a different, longer image")  # size changes
    st = inputs[1].stat()
    os.utime(inputs[1], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # only mtime changes
    (out / "img2.png").unlink()  # an output vanished
    job = Recorder()
    summary = _run(inputs, job, out)
    assert job.calls == ["img0.png", "img1.png", "img2.png"]
    assert (summary.done, summary.skipped, summary.redone_changed, summary.redone_config) == (3, 1, 3, 0)
    assert (out / "img0.png").read_bytes() == _expected_output(inputs[0])

    job = Recorder()
    summary = _run(inputs, job, out, config="cfg-2")
    assert job.calls == [p.name for p in inputs]
    assert (summary.done, summary.skipped, summary.redone_config) == (4, 0, 4)
    assert "4 config changed" in summary.format()


def test_hash_config_is_stable_and_sensitive():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Cfg:
        steps: int = 500
        out: Path = Path("x")

    assert hash_config(Cfg()) == hash_config(Cfg())
    assert hash_config(Cfg()) != hash_config(Cfg(steps=501))
    assert hash_config({"b": 1, "a": 2}) == hash_config({"a": 2, "b": 1})


def test_torn_manifest_line_is_ignored(tmp_path: Path, caplog):
    inputs, out = _catalogue(tmp_path / "in", 3), tmp_path / "out"
    _run(inputs, Recorder(), out)
    manifest = Manifest(out / MANIFEST_NAME)
    with open(manifest.path, "ab") as f:  # a crash in the middle of writing a record
        f.write(b'{"key": "img0.png", "input": "/x", "status": "fai')

    with caplog.at_level(logging.WARNING, logger="realface.batch"):
        state = manifest.state()
    assert "ignoring unreadable line 7" in caplog.text
    assert {k: r.status for k, r in state.items()} == {f"img{i}.png": "done" for i in range(3)}

    inputs.append(_touch(inputs[0].parent / "img3.png"))
    job = Recorder()
    summary = _run(inputs, job, out)
    assert job.calls == ["img3.png"] and summary.skipped == 3
    records = manifest.records()  # the record after the torn line is intact, on a line of its own
    assert [(r.key, r.status) for r in records[-2:]] == [("img3.png", "started"), ("img3.png", "done")]
    assert ManifestRecord.from_json(manifest.path.read_text().splitlines()[-1]).status == "done"


def test_keyboard_interrupt_leaves_item_started(tmp_path: Path):
    inputs, out = _catalogue(tmp_path / "in", 4), tmp_path / "out"
    summary = _run(inputs, Recorder(fail={"img1.png": KeyboardInterrupt()}), out)  # type: ignore[dict-item]
    assert summary.interrupted and summary.exit_code == 130
    assert (summary.done, summary.not_run, summary.failed) == (1, 3, ())
    assert Manifest(out / MANIFEST_NAME).state()["img1.png"].status == "started"

    job = Recorder()
    again = _run(inputs, job, out)
    assert job.calls == ["img1.png", "img2.png", "img3.png"] and again.retried == 1


def test_inputs_are_never_modified(tmp_path: Path):
    inputs, out = _catalogue(tmp_path / "in", 3), tmp_path / "out"
    before = {p: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in inputs}
    _run(inputs, Recorder(fail={"img1.png": RuntimeError("x")}), out)
    _run(inputs, Recorder(), out, config="other")
    after = {p: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in inputs}
    assert after == before
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["img0.png", "img1.png", "img2.png"]


def test_progress_bar(tmp_path: Path, capsys):
    inputs, out = _catalogue(tmp_path / "in", 3), tmp_path / "out"
    run_batch(inputs, Recorder(), out, config_hash="c", roots=[inputs[0].parent], progress=True)
    assert "3/3" in capsys.readouterr().err
    run_batch(inputs, Recorder(), out, config_hash="c", roots=[inputs[0].parent], progress=False)
    assert capsys.readouterr().err == ""


def test_stale_temporaries_of_atomic_writes_are_removed(tmp_path: Path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_path(out / "sub" / "a.png") as tmp:
        tmp.write_bytes(b"half")
        temp_name = tmp.name
        raise RuntimeError("simulated crash")
    left = _touch(out / "sub" / temp_name)  # what a killed writer leaves behind
    keep = [_touch(out / "sub" / "a.png"), _touch(out / ".hidden.png"), _touch(out / "notes.tmp")]
    assert remove_stale_temporaries(out) == [left]
    assert not left.exists() and all(p.exists() for p in keep)


# --- crash safety and locking with real processes -------------------------------------------------

_WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from realface.batch import collect_inputs, run_batch
    from realface.utils.fs import atomic_path

    src, out, delay = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])

    def process(input, ctx):
        data = b"OUT:" + input.read_bytes() + b"." * 4096
        with atomic_path(ctx.output) as tmp, open(tmp, "wb") as f:
            f.write(data[:10])
            f.flush()
            time.sleep(delay)  # a slow job, killed while its output is half written
            f.write(data[10:])
        return [ctx.output]

    summary = run_batch(collect_inputs([src]), process, out, config_hash="cfg", roots=[src], progress=False)
    sys.exit(summary.exit_code)
    """
)


def _start_worker(tmp_path: Path, src: Path, out: Path, delay: float) -> subprocess.Popen:
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    return subprocess.Popen([sys.executable, str(script), str(src), str(out), str(delay)], cwd=tmp_path)


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"worker exited early with status {proc.returncode}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("worker did not reach the expected state in time")
        time.sleep(0.01)


def _statuses(out: Path) -> list[tuple[str, str]]:
    return [(r.key, r.status) for r in Manifest(out / MANIFEST_NAME).records()]


def test_kill_9_loses_nothing_and_resumes(tmp_path: Path):
    src, out = tmp_path / "in", tmp_path / "out"
    inputs = [
        _touch(src / ("sub" if i % 2 else "") / f"img{i}.png", f"image {i}".encode() * 50) for i in range(6)
    ]

    def temporaries() -> list[Path]:
        return list(out.rglob(".*.tmp")) if out.exists() else []

    proc = _start_worker(tmp_path, src, out, delay=0.3)
    # kill while the third item's output is being written (two items done, a temp file present)
    _wait_for(lambda: sum(s == "done" for _, s in _statuses(out)) >= 2 and temporaries(), proc)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL

    done_before = {k for k, s in _statuses(out) if s == "done"}
    assert len(done_before) == 2
    assert len(temporaries()) == 1  # the killed write left its hidden temporary file
    # every visible output is complete, and only finished items have one
    visible = _visible_files(out) - {MANIFEST_NAME}
    assert visible == done_before
    by_key = {item_key(p, [src]): p for p in inputs}
    for key in visible:
        assert (out / key).read_bytes() == _expected_output(by_key[key])

    job = Recorder()
    summary = _run(sorted(inputs), job, out, roots=[src])
    assert summary.exit_code == 0 and summary.skipped == 2 and summary.done == 4 and summary.retried == 1
    assert set(job.calls) == set(by_key) - done_before and len(job.calls) == 4
    assert temporaries() == []
    assert _visible_files(out) - {MANIFEST_NAME, SUMMARY_NAME} == set(by_key)
    for key, p in by_key.items():
        assert (out / key).read_bytes() == _expected_output(p)
    done_records = [k for k, s in _statuses(out) if s == "done"]
    assert sorted(done_records) == sorted(by_key)  # every item done exactly once


def test_concurrent_run_into_same_folder_is_refused(tmp_path: Path):
    src, out = tmp_path / "in", tmp_path / "out"
    inputs = _catalogue(src, 2)
    proc = _start_worker(tmp_path, src, out, delay=5.0)
    try:
        _wait_for(lambda: (out / MANIFEST_NAME).exists() and bool(_statuses(out)), proc)
        job = Recorder()
        with pytest.raises(RealFaceError, match="another batch is already writing into"):
            _run(inputs, job, out)
        assert job.calls == [] and _statuses(out) == [("img0.png", "started")]
    finally:
        proc.kill()
        proc.wait(timeout=10)
    summary = _run(inputs, Recorder(), out)  # once the other run is gone, the folder is usable again
    assert summary.done == 2 and summary.exit_code == 0


# --- collisions and stale outputs -----------------------------------------------------------------

FACES = ExtraOutputs(pattern=r"_face\d+_.+", label="_face<N>_*")


class FaceJob:
    """A job that writes a composite plus ``faces`` per-face sheets beside it (``STEM_face<i>_sheet.png``)."""

    def __init__(self, faces: int) -> None:
        self.faces = faces
        self.calls: list[str] = []

    def __call__(self, input: Path, ctx: ItemContext) -> list[Path]:
        self.calls.append(ctx.key)
        stem = ctx.output.with_suffix("")
        written = []
        for i in range(self.faces):
            extra = stem.with_name(f"{stem.name}_face{i}_sheet.png")
            atomic_write_bytes(extra, f"sheet {i} of {ctx.key}, {self.faces} faces".encode())
            written.append(extra)
        atomic_write_bytes(ctx.output, _expected_output(input))
        return [*written, ctx.output]


def test_same_output_from_two_inputs_is_refused_before_any_work(tmp_path: Path):
    src, out = tmp_path / "in", tmp_path / "out"
    inputs = [_touch(src / "x.jpg"), _touch(src / "x.png"), _touch(src / "z.png")]
    job = Recorder()
    with pytest.raises(RealFaceError, match="1 output collision") as info:
        _run(inputs, job, out, suffix=".png")
    assert "x.jpg and x.png both write x.png" in str(info.value)
    assert job.calls == [] and not out.exists()
    assert _run(inputs, job, out).done == 3  # without --format the outputs differ: no collision


def test_reserved_per_face_names_are_refused(tmp_path: Path):
    src, out = tmp_path / "in", tmp_path / "out"
    inputs = [_touch(src / "y.jpg"), _touch(src / "y_face0_sheet.png")]
    job = FaceJob(1)
    with pytest.raises(RealFaceError, match="output collision") as info:
        _run(inputs, job, out, extras=FACES)
    message = str(info.value)
    assert "y_face0_sheet.png writes y_face0_sheet.png" in message and "y_face<N>_* of y.jpg" in message
    assert "\n" not in message and job.calls == [] and not out.exists()
    # the same stem twice: both items would write x_face0_sheet.png
    same = [_touch(src / "x.jpg"), _touch(src / "x.png")]
    with pytest.raises(RealFaceError, match="x.jpg and x.png both write x_face<N>_"):
        _run(same, job, out, extras=FACES)
    assert not out.exists()
    # a job without extras reserves nothing: the same inputs are fine
    assert _run(inputs, Recorder(), out).done == 2 and _run(same, Recorder(), out).done == 2


def test_collisions_are_all_counted_and_the_first_few_listed(tmp_path: Path):
    src = tmp_path / "in"
    inputs = [_touch(src / f"p{i}.{ext}") for i in range(7) for ext in ("jpg", "png")]
    with pytest.raises(RealFaceError, match="^7 output collision") as info:
        _run(inputs, Recorder(), tmp_path / "out", suffix=".png")
    message = str(info.value)
    assert message.count("both write") == 5 and "and 2 more" in message
    assert "p0.jpg and p0.png both write p0.png" in message


def test_output_that_is_an_input_through_a_link_is_refused(tmp_path: Path):
    src = tmp_path / "in"
    inputs = [_touch(src / "a.png")]
    out = tmp_path / "out"
    out.symlink_to(src, target_is_directory=True)
    before = inputs[0].read_bytes()
    with pytest.raises(RealFaceError, match=r"a.png writes a.png, which is the input .*in/a.png"):
        _run(inputs, Recorder(), out)
    assert inputs[0].read_bytes() == before and sorted(p.name for p in src.iterdir()) == ["a.png"]


def test_extras_that_would_overwrite_an_input_are_refused(tmp_path: Path):
    src = tmp_path / "in"
    a, sheet = _touch(src / "a.png"), _touch(src / "a_face0_sheet.png")
    out = tmp_path / "out"
    out.symlink_to(src, target_is_directory=True)  # the outputs would land beside the inputs
    with pytest.raises(RealFaceError) as info:
        _run([a, sheet], FaceJob(1), out, extras=FACES, suffix=".jpg")
    assert f"the extras a_face<N>_* of a.png would overwrite the input {sheet}" in str(info.value)
    assert sorted(p.name for p in src.iterdir()) == ["a.png", "a_face0_sheet.png"]


def test_files_are_written_only_under_the_lock(tmp_path: Path):
    inputs, out = _catalogue(tmp_path / "in", 1), tmp_path / "out"
    s = _run(inputs, Recorder(), out, files={"config.json": "first\n"})
    assert s.done == 1 and (out / "config.json").read_text() == "first\n"
    lock = filelock.FileLock(str(out / LOCK_NAME))
    with lock.acquire(timeout=0):  # another batch is running in this folder
        before = {p: p.read_bytes() for p in out.iterdir()}
        with pytest.raises(RealFaceError, match="another batch is already writing"):
            _run(inputs, Recorder(), out, files={"config.json": "second\n"}, config="other")
        assert {p: p.read_bytes() for p in out.iterdir()} == before


def test_redone_item_replaces_outputs_and_removes_stale_extras(tmp_path: Path):
    src, out = tmp_path / "in", tmp_path / "out"
    inputs = [_touch(src / "a.png"), _touch(src / "b.png")]
    _run(inputs, FaceJob(3), out, extras=FACES)
    assert _visible_files(out) >= {f"{s}_face{i}_sheet.png" for s in "ab" for i in range(3)}
    _touch(out / "a_face7_sheet.png", b"left by a run killed before its record")
    _touch(out / "a_notes.txt", b"a user's file, not a reserved name")

    job = FaceJob(1)
    summary = _run(inputs, job, out, extras=FACES, config="one face")
    assert summary.done == 2 and job.calls == ["a.png", "b.png"]
    assert _visible_files(out) == {
        "a.png",
        "b.png",
        "a_face0_sheet.png",
        "b_face0_sheet.png",
        "a_notes.txt",
        MANIFEST_NAME,
        SUMMARY_NAME,
    }
    assert (out / "a_face0_sheet.png").read_bytes() == b"sheet 0 of a.png, 1 faces"

    # a run without extras still removes the per-face files its earlier record lists
    _run(inputs, Recorder(), out, config="no extras")
    assert _visible_files(out) == {"a.png", "b.png", "a_notes.txt", MANIFEST_NAME, SUMMARY_NAME}


def test_stale_outputs_of_another_item_are_kept(tmp_path: Path):
    src, out = tmp_path / "in", tmp_path / "out"
    x_jpg = _touch(src / "x.jpg")
    _run([x_jpg], Recorder(), out, suffix=".png")  # x.jpg -> x.png
    x_png = _touch(src / "x.png")
    job = Recorder()
    summary = _run([x_jpg, x_png], job, out)  # now x.jpg -> x.jpg, and x.png -> x.png
    assert summary.done == 2 and sorted(job.calls) == ["x.jpg", "x.png"]
    assert (out / "x.png").read_bytes() == _expected_output(x_png)  # not removed as x.jpg's old output
    assert (out / "x.jpg").read_bytes() == _expected_output(x_jpg)


def test_no_items_is_an_error(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RealFaceError, match="no input images"):
        run_batch(
            [], Recorder(), tmp_path / "out", config_hash="c", roots=[tmp_path / "empty"], progress=False
        )
    assert not (tmp_path / "out").exists()
    with pytest.raises(RealFaceError, match=f"no input images found in {tmp_path / 'empty'}"):
        collect_catalogue([tmp_path / "empty"], tmp_path / "out")
    with pytest.raises(RealFaceError, match="is the output folder"):
        collect_catalogue([tmp_path / "empty"], tmp_path / "empty")
    image = _touch(tmp_path / "a.jpg")
    with pytest.raises(RealFaceError, match="is an input image, not a folder"):
        collect_catalogue([image], image)
