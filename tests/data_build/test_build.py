"""`realface dataset build` / `export-urls` end to end against a local HTTP server, with real dlib models."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from realface.cli import main
from realface.data import BuildConfig, FetchConfig, build_dataset, read_url_list
from realface.errors import ConfigError
from realface.train.dataset import ImageDataset
from tests.data_build.conftest import write_images

FAST_NET = ["--workers", "4", "--rate", "0", "--timeout", "0.5", "--retries", "1", "--no-progress"]
NAME_RE = r"^\d{5}/img\d{8}\.png$"


def run_cli(*args) -> int:
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def manifest(work: Path) -> dict[str, dict]:
    lines = (work / "manifest.jsonl").read_text().splitlines()
    return {r["key"]: r for r in map(json.loads, lines)}


def url_list(server, path: Path) -> Path:
    """A CSV list of every served case: good, blurred, duplicate, no face, corrupt, 404, slow, cut."""
    rows = [
        ("f", "astronaut.png", "public domain (NASA)", "skimage"),
        ("f", "render.jpg", "CC0", "replicant set"),
        ("f", "render_blur.png", "CC0", "replicant set"),
        ("f", "render_copy.jpg", "CC0", "replicant set"),
        ("f", "noface.png", "", ""),
        ("f", "corrupt.jpg", "", ""),
        ("f", "missing.jpg", "", ""),
        ("slow", "render.jpg", "", ""),
        ("cut", "astronaut.png", "", ""),
    ]
    text = "url,licence,source\n" + "".join(f"{server.url(r, n)},{lic},{src}\n" for r, n, lic, src in rows)
    path.write_text(text)
    return path


def test_build_zip_from_urls_then_resume_and_export(server, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("REALFACE_OFFLINE")
    urls = url_list(server, tmp_path / "urls.csv")
    out = tmp_path / "faces.zip"
    work = tmp_path / "faces.build"
    assert run_cli("dataset", "build", "--urls", urls, "-o", out, "--size", 256, *FAST_NET) == 0
    printed = capsys.readouterr().out
    assert "3 image(s)" in printed and "failed to fetch 3" in printed

    # The dataset: a zip in the StyleGAN2-ADA layout that the training reader takes.
    with zipfile.ZipFile(out) as zf:
        names = sorted(zf.namelist())
        doc = json.loads(zf.read("dataset.json"))
    build_id = json.loads((work / "build_config.json").read_text())["build_id"]
    assert doc == {"labels": None, "realface": {"build_id": build_id}}
    images = [n for n in names if n != "dataset.json"]
    assert images == ["00000/img00000000.png", "00000/img00000001.png", "00000/img00000002.png"]
    ds = ImageDataset(out)
    assert len(ds) == 3 and ds.resolution == 256 and tuple(ds[0].shape) == (3, 256, 256)

    # The manifest: every item's verdict and why.
    m = manifest(work)
    u = {name: server.url("f", name) for name in [*server.files, "missing.jpg"]}
    assert [f["kept"] for f in m[u["astronaut.png"]]["faces"]] == [True, True]
    render = m[u["render.jpg"]]
    assert render["license"] == "CC0" and render["source"] == "replicant set"
    face = render["faces"][0]
    assert face["output"] == "00000/img00000002.png" and len(face["landmarks_68"]) == 68
    assert face["detector"] == "hog" and len(face["box_ltrb"]) == 4
    assert set(face["verdicts"]) == {"size", "pose", "blur", "duplicate"}
    assert all(v["passed"] and v["why"] for v in face["verdicts"].values())
    blur = m[u["render_blur.png"]]["faces"][0]
    assert blur["reason"] == "blur" and not blur["verdicts"]["blur"]["passed"]
    assert "Laplacian variance" in blur["verdicts"]["blur"]["why"] and blur["output"] is None
    dup = m[u["render_copy.jpg"]]["faces"][0]
    assert (
        dup["reason"] == "duplicate" and "from 00000/img00000002.png" in dup["verdicts"]["duplicate"]["why"]
    )
    assert m[u["noface.png"]]["reason"] == "no_face" and m[u["noface.png"]]["faces"] == []
    corrupt = m[u["corrupt.jpg"]]
    assert corrupt["reason"] == "decode" and u["corrupt.jpg"] in corrupt["error"]
    missing = m[u["missing.jpg"]]
    assert missing["status"] == "failed" and "HTTP 404" in missing["error"]
    assert m[server.url("slow", "render.jpg")]["status"] == "failed"
    assert "timed out" in m[server.url("slow", "render.jpg")]["error"]
    assert "connection" in m[server.url("cut", "astronaut.png")]["error"]

    # The summary counts per reason, and the contact sheet.
    summary = json.loads((work / "summary.json").read_text())
    assert summary["images"] == 3
    assert summary["items"] == dict(
        listed=9, done=6, failed=3, decode=1, no_face=1, processed_now=9, skipped=0, not_run=0
    )
    assert summary["faces"] == dict(found=5, kept=3, size=0, pose=0, blur=1, duplicate=1)
    with Image.open(work / "contact_sheet.png") as sheet:
        assert sheet.size == (2 * 128, 2 * 128)
    # Processed downloads are deleted; the cut-off body stays as a .part for the next run to resume.
    assert [p.suffix for p in (work / "downloads").iterdir()] == [".part"]

    # Rerun: done items are not fetched again; failures are retried, and the 404 now exists.
    server.files["missing.jpg"] = server.files["astronaut.png"]
    server.requests.clear()
    assert run_cli("dataset", "build", "--urls", urls, "-o", out, "--size", 256, *FAST_NET) == 0
    fetched = {p for p, _ in server.requests}
    assert fetched == {"/f/missing.jpg", "/slow/render.jpg", "/cut/astronaut.png"}
    m2 = manifest(work)
    assert [f["reason"] for f in m2[u["missing.jpg"]]["faces"]] == ["duplicate", "duplicate"]
    summary = json.loads((work / "summary.json").read_text())
    assert summary["items"]["skipped"] == 6 and summary["items"]["processed_now"] == 3
    assert summary["faces"]["duplicate"] == 3 and summary["images"] == 3

    # Export a publishable list, read it back, and rebuild the same crops without detection.
    for suffix in (".json", ".csv"):
        listing = tmp_path / f"published{suffix}"
        assert run_cli("dataset", "export-urls", out, "-o", listing) == 0
        items = read_url_list(listing)
        assert [i.url for i in items] == [u["astronaut.png"], u["render.jpg"]]
        assert items[1].license == "CC0" and items[1].sha256 is not None
        assert [len(i.faces) for i in items] == [2, 1]
    again = tmp_path / "again"
    assert run_cli("dataset", "build", "--urls", listing, "-o", again, "--size", 256, *FAST_NET) == 0
    ds2 = ImageDataset(again)
    assert ds2.names == tuple(images)
    assert all(
        f["detector"] == "listed" for r in manifest(tmp_path / "again.build").values() for f in r["faces"]
    )
    for i in range(3):
        diff = np.abs(ds2[i].numpy().astype(int) - ds[i].numpy().astype(int))
        assert diff.mean() < 1.0  # landmarks are published rounded to 0.01 px


def test_offline_forbids_downloads(server, tmp_path, capsys):
    assert os.environ["REALFACE_OFFLINE"] == "1"
    urls = url_list(server, tmp_path / "urls.csv")
    assert run_cli("dataset", "build", "--urls", urls, "-o", tmp_path / "o.zip", "--size", 256) == 1
    err = capsys.readouterr().err
    assert "REALFACE_OFFLINE=1 forbids network access" in err and "Traceback" not in err
    assert server.requests == []


def test_interrupted_build_leaves_a_consistent_output(server, tmp_path, monkeypatch, fixture_files):
    folder = write_images(tmp_path / "renders", fixture_files, ["astronaut.png", "render.jpg", "noface.png"])
    out = tmp_path / "set"
    config = BuildConfig(size=256, fetch=FetchConfig(workers=2))
    calls = []

    def stop_after_first(record):
        calls.append(record["key"])
        raise KeyboardInterrupt

    s1 = build_dataset(out, images=folder, config=config, progress=False, on_record=stop_after_first)
    assert s1.interrupted and s1.items["processed_now"] == 1 and s1.items["not_run"] == 2
    assert calls == ["astronaut.png"]
    assert ImageDataset(out).names == ("00000/img00000000.png", "00000/img00000001.png")

    # A crash between writing an image and its manifest line leaves an image nobody accounts for.
    Image.new("RGB", (256, 256)).save(out / "00000" / "img00000007.png")
    (out / "00000" / ".img00000008.png.abcdefgh.png.tmp").write_bytes(b"half")
    s2 = build_dataset(out, images=folder, config=config, progress=False)
    assert not s2.interrupted and s2.items["skipped"] == 1 and s2.items["processed_now"] == 2
    assert sorted(p.name for p in (out / "00000").iterdir()) == [f"img0000000{i}.png" for i in range(3)]
    assert (out / "dataset.json").exists() and s2.images == 3

    # An interrupted rerun into a zip keeps the previous complete zip.
    zout = tmp_path / "set.zip"
    build_dataset(zout, images=folder, config=config, progress=False)
    before = zout.read_bytes()
    (folder / "render2.jpg").write_bytes(fixture_files["astronaut.png"])
    s3 = build_dataset(zout, images=folder, config=config, progress=False, on_record=stop_after_first)
    assert s3.interrupted and zout.read_bytes() == before and len(ImageDataset(zout)) == 3


def test_build_from_a_folder_resumes_and_redoes_changed_files(tmp_path, fixture_files, capsys):
    folder = write_images(tmp_path / "renders", fixture_files, ["render.jpg", "render_blur.png"])
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "set"
    args = ["dataset", "build", "--images", folder, "-o", out, "--size", 256, "--no-progress"]
    assert run_cli(*args) == 0
    m = manifest(tmp_path / "set.build")
    assert set(m) == {"render.jpg", "render_blur.png"} and m["render.jpg"]["kind"] == "file"
    assert ImageDataset(out).names == ("00000/img00000000.png",)

    # Rerun: nothing to do. Then the blurred file is replaced by a sharp one: it is redone.
    assert run_cli(*args) == 0
    assert json.loads((tmp_path / "set.build" / "summary.json").read_text())["items"]["skipped"] == 2
    (folder / "render_blur.png").write_bytes(fixture_files["astronaut.png"])
    os.utime(folder / "render_blur.png", ns=(1, 1))
    assert run_cli(*args) == 0
    m = manifest(tmp_path / "set.build")
    assert [f["kept"] for f in m["render_blur.png"]["faces"]] == [True, True]
    assert len(ImageDataset(out)) == 3

    # Other settings into the same output are refused, naming what changed.
    capsys.readouterr()
    assert run_cli("dataset", "build", "--images", folder, "-o", out, "--size", 512, "--no-progress") == 1
    assert "size 256 -> 512" in capsys.readouterr().err

    # The pose filter, with a limit the render's three-quarter view exceeds (estimated yaw ~ -24°).
    strict, only_render = tmp_path / "strict", write_images(tmp_path / "r2", fixture_files, ["render.jpg"])
    assert (
        run_cli("dataset", "build", "--images", only_render, "-o", strict, "--size", 256, "--max-yaw", 10)
        == 1
    )
    face = manifest(tmp_path / "strict.build")["render.jpg"]["faces"][0]
    assert face["reason"] == "pose" and "estimated yaw" in face["verdicts"]["pose"]["why"]
    assert "no face was kept" in capsys.readouterr().err


def test_output_that_is_not_a_build_is_refused(tmp_path, fixture_files):
    folder = write_images(tmp_path / "renders", fixture_files, ["render.jpg"])
    out = tmp_path / "mine"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(ConfigError, match="not empty"):
        build_dataset(out, images=folder, config=BuildConfig(size=256), progress=False)
    assert (out / "holiday.jpg").read_bytes() == b"x"
    with pytest.raises(ConfigError, match="either a URL list or an image folder"):
        build_dataset(tmp_path / "x", config=BuildConfig(size=256))


def test_existing_zip_is_replaced_only_when_this_build_made_it(tmp_path, fixture_files):
    folder = write_images(tmp_path / "renders", fixture_files, ["render.jpg"])
    config = BuildConfig(size=256, fetch=FetchConfig(workers=1))
    # A zip the user made: refused (nothing written, not even the build folder), replaced with overwrite.
    out = tmp_path / "my_archive.zip"
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("holiday/notes.txt", "precious")
    before = out.read_bytes()
    with pytest.raises(ConfigError, match="my_archive.zip.*not a dataset made by"):
        build_dataset(out, images=folder, config=config, progress=False)
    assert out.read_bytes() == before and not (tmp_path / "my_archive.build").exists()
    # A file that is not a zip at all: refused the same way.
    other = tmp_path / "notes.zip"
    other.write_bytes(b"plain text")
    with pytest.raises(ConfigError, match="notes.zip.*--overwrite"):
        build_dataset(other, images=folder, config=config, progress=False)
    assert other.read_bytes() == b"plain text"

    build_dataset(out, images=folder, config=config, progress=False, overwrite=True)
    with zipfile.ZipFile(out) as zf:
        doc = json.loads(zf.read("dataset.json"))
        assert "holiday/notes.txt" not in zf.namelist()
    work_cfg = json.loads((tmp_path / "my_archive.build" / "build_config.json").read_text())
    assert doc["labels"] is None and doc["realface"]["build_id"] == work_cfg["build_id"]

    # The same build replaces its own zip (a rerun with a new file).
    (folder / "render2.jpg").write_bytes(fixture_files["astronaut.png"])
    s = build_dataset(out, images=folder, config=config, progress=False)
    assert s.images == 3 and len(ImageDataset(out)) == 3

    # A realface dataset of another build (copied over this name) is refused too.
    second = tmp_path / "second.zip"
    build_dataset(second, images=folder, config=config, progress=False)
    second_bytes = second.read_bytes()
    out.write_bytes(second_bytes)
    with pytest.raises(ConfigError, match="another build"):
        build_dataset(out, images=folder, config=config, progress=False)
    assert out.read_bytes() == second_bytes


def _legacy_build_folder(tmp_path: Path, folder: Path, out: Path) -> Path:
    """A build folder as the builder wrote it before its manifest moved onto ``batch.Manifest``: a
    ``.lock`` file, ``build_config.json``, compact one-line JSON records without ``started`` lines,
    and one kept image (the render's face, with the perceptual hash measured for it)."""
    from realface.batch import hash_config

    work = tmp_path / (out.name + ".build")
    work.mkdir()
    (work / ".lock").write_bytes(b"")
    settings = BuildConfig(size=256).result_fields()
    config_hash = hash_config(settings)
    (work / "build_config.json").write_text(
        json.dumps(
            {"config_hash": config_hash, "build_id": "733bff0d06ab4e8285fc347bb7fef2f4", "settings": settings}
        )
    )

    def fingerprint(name: str) -> str:
        st = (folder / name).stat()
        return f"{st.st_size}:{st.st_mtime_ns}"

    common = {"kind": "file", "url": None, "license": "", "source": "", "status": "done"}
    records = [
        {
            "key": "noface.png",
            **common,
            "path": str(folder / "noface.png"),
            "fingerprint": fingerprint("noface.png"),
            "reason": "no_face",
            "error": f"{folder / 'noface.png'}: no face of at least 0 px found",
            "file_sha256": "8483d83d43048b13c5cddd748353f6f9e6a07f2b477b5161b113e5c1e22601b8",
            "image_size": [160, 160],
            "faces": [],
            "config_hash": config_hash,
            "time": "2026-12-03T08:45:28.161+00:00",
        },
        {
            "key": "render.jpg",
            **common,
            "path": str(folder / "render.jpg"),
            "fingerprint": fingerprint("render.jpg"),
            "reason": None,
            "error": None,
            "file_sha256": "e3131d3235d3ae41e3ae77388be2ec5dd4a84e89d7ce9b780706a5c9a4342884",
            "image_size": [640, 640],
            "faces": [
                {
                    "box_ltrb": [167, 288, 322, 442],
                    "landmarks_68": [[199.0, 336.0], [199.0, 354.0]],
                    "detector": "hog",
                    "face": 0,
                    "quad_size": 260.62,
                    "sharpness": 7.13,
                    "phash": "83830f0f0f87971f",
                    "kept": True,
                    "reason": None,
                    "output": "00000/img00000000.png",
                }
            ],
            "config_hash": config_hash,
            "time": "2026-12-03T08:45:29.002+00:00",
        },
    ]
    text = "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in records)
    (work / "manifest.jsonl").write_text(text)
    (out / "00000").mkdir(parents=True)
    Image.new("RGB", (256, 256), (90, 80, 70)).save(out / "00000" / "img00000000.png")
    (out / "dataset.json").write_text('{"labels": null}\n')
    return work


def test_a_build_folder_of_the_earlier_manifest_writer_resumes(tmp_path, fixture_files):
    folder = write_images(tmp_path / "renders", fixture_files, ["noface.png", "render.jpg"])
    out = tmp_path / "set"
    work = _legacy_build_folder(tmp_path, folder, out)
    legacy_lines = (work / "manifest.jsonl").read_text().splitlines()

    (folder / "render_copy.jpg").write_bytes(fixture_files["render_copy.jpg"])
    summary = build_dataset(out, images=folder, config=BuildConfig(size=256), progress=False)

    assert summary.items["skipped"] == 2 and summary.items["processed_now"] == 1
    assert summary.images == 1 and ImageDataset(out).names == ("00000/img00000000.png",)
    lines = (work / "manifest.jsonl").read_text().splitlines()
    assert lines[:2] == legacy_lines and len(lines) == 3
    copy = json.loads(lines[2])
    assert copy["key"] == "render_copy.jpg" and copy["status"] == "done"
    # the duplicate check runs against the face the earlier writer recorded
    assert [f["reason"] for f in copy["faces"]] == ["duplicate"]
    assert "from 00000/img00000000.png" in copy["faces"][0]["verdicts"]["duplicate"]["why"]


def test_a_second_build_into_the_same_folder_is_refused(tmp_path, fixture_files):
    import filelock

    from realface.batch import LOCK_NAME
    from realface.errors import RealFaceError

    folder = write_images(tmp_path / "renders", fixture_files, ["noface.png"])
    out, work = tmp_path / "set", tmp_path / "set.build"
    work.mkdir()
    with filelock.FileLock(str(work / LOCK_NAME)).acquire(timeout=0):
        with pytest.raises(RealFaceError, match=r"another build is already writing into .*set\.build"):
            build_dataset(out, images=folder, config=BuildConfig(size=256), progress=False)
    assert sorted(p.name for p in work.iterdir()) == [LOCK_NAME]
    assert not (work / "manifest.jsonl").exists()
