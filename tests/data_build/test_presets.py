"""`realface dataset build --preset` and `dataset presets`: archives laid out like each public set, served
on 127.0.0.1 (success, an interrupted download resumed, a wrong hash, unsafe member names)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from realface.data import BuildConfig, FetchConfig
from realface.data.presets import PRESETS, ArchiveError, DatasetPreset, PresetArchive, build_preset
from realface.errors import ConfigError
from tests.data_build.test_build import run_cli

NET = FetchConfig(workers=1, rate_per_host=0, timeout=2, retries=0)
CONFIG = BuildConfig(size=256, fetch=NET, cnn_fallback=False)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _zip(members: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name in links:  # a symbolic link member, as `zip --symlinks` stores it
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def _png(data: bytes) -> bytes:
    buf = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def render_landmarks() -> np.ndarray:
    """68 landmarks of the served render (the input a set's own landmark file would give)."""
    from realface.face import DetectConfig, find_faces
    from tests.conftest import data_file

    rgb = np.asarray(Image.open(data_file("images", "replicant_face_00000.jpg")).convert("RGB"))
    faces = find_faces(rgb, DetectConfig(cnn_fallback=False, min_face_size=0))
    assert len(faces) == 1
    return np.asarray(faces[0].landmarks, dtype=np.float64)  # [68, 2]


def _ldmks(points: np.ndarray) -> bytes:
    """A Face Synthetics landmark file: 70 rows 'x y' (68 iBUG points, then two pupils)."""
    pupils = [points[36:42].mean(0), points[42:48].mean(0)]
    return "".join(f"{x:.3f} {y:.3f}\n" for x, y in [*points, *pupils]).encode()


def facesynthetics_zip(files: dict[str, bytes], points: np.ndarray) -> bytes:
    """Three renders with their _seg.png and _ldmks.txt: one kept, one blurred, one duplicate."""
    members = {}
    for i, name in enumerate(("render.jpg", "render_blur.png", "render_copy.jpg")):
        members[f"{i:06d}.png"] = _png(files[name])
        members[f"{i:06d}_seg.png"] = _png(files["noface.png"])  # not an image of the set: ignored
        members[f"{i:06d}_ldmks.txt"] = _ldmks(points)
    return _zip(members)


def _preset(base: DatasetPreset, *archives: PresetArchive) -> DatasetPreset:
    return dataclasses.replace(base, archives=tuple(archives))


def _served(server, route: str, name: str, data: bytes, sha256: str | None) -> PresetArchive:
    server.files[name] = data
    return PresetArchive(url=server.url(route, name), file_name=name, sha256=sha256)


def _manifest(work: Path) -> list[dict]:
    return [json.loads(line) for line in (work / "manifest.jsonl").read_text().splitlines()]


# --- the registry ---------------------------------------------------------------------------------


def test_registry_records_licences_flags_and_sources(capsys):
    assert {"replicantface", "facesynthetics", "digiface1m"} <= set(PRESETS)
    assert PRESETS["facesynthetics"].non_commercial and PRESETS["digiface1m"].non_commercial
    assert not PRESETS["replicantface"].non_commercial and PRESETS["replicantface"].license_name == "MIT"
    assert PRESETS["facesynthetics"].faces_from == "landmarks"
    assert PRESETS["digiface1m"].faces_from == "detection"
    assert len(PRESETS["digiface1m"].archives) == 8
    assert PRESETS["replicantface"].archives[0].manual
    for p in PRESETS.values():
        assert p.source and all("https://" in s for s in p.source)
        assert p.license_url in p.license_text
        for a in p.archives:  # no publisher gives a hash: each record says so
            assert a.sha256 is None
        assert any("sha256" in u and "None" in u for u in p.unconfirmed)
    assert run_cli("dataset", "presets", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [p["name"] for p in listed] == list(PRESETS)
    assert run_cli("dataset", "presets") == 0
    text = capsys.readouterr().out
    assert text.count("[NON-COMMERCIAL]") == 2 and "--images-from" in text


def test_dry_run_prints_the_plan_without_network(tmp_path, capsys):
    # REALFACE_OFFLINE is set by the test suite: a dry run must not try the network
    assert run_cli("dataset", "build", "--preset", "facesynthetics", "-o", tmp_path / "fs.zip", "--size", 512,
                   "--limit", 5, "--dry-run") == 0  # fmt: skip
    plan = json.loads(capsys.readouterr().out)
    assert plan["limit"] == 5 and plan["non_commercial"] is True and "NON-COMMERCIAL" in plan["license"]
    assert plan["archives"][0]["url"].endswith("/dataset_100000.zip")
    assert plan["settings"]["size"] == 512
    assert not any(tmp_path.iterdir())


def test_preset_options_are_checked(tmp_path, capsys):
    assert run_cli("dataset", "build", "--preset", "nosuch", "-o", tmp_path / "x.zip") == 1
    assert "unknown; known presets" in capsys.readouterr().err
    folder = tmp_path / "imgs"
    folder.mkdir()
    assert run_cli("dataset", "build", "--images", folder, "--limit", 3, "-o", tmp_path / "x.zip") == 1
    assert "go with --preset" in capsys.readouterr().err


# --- builds from served archives ------------------------------------------------------------------


def test_facesynthetics_layout_builds_with_its_landmarks(server, tmp_path, monkeypatch, fixture_files,
                                                         render_landmarks):  # fmt: skip
    monkeypatch.delenv("REALFACE_OFFLINE")
    data = facesynthetics_zip(fixture_files, render_landmarks)
    preset = _preset(PRESETS["facesynthetics"], _served(server, "f", "dataset_100.zip", data, _sha(data)))
    shown: list[tuple[str, int]] = []
    report = build_preset(
        preset,
        tmp_path / "fs.zip",
        config=CONFIG,
        progress=False,
        show=lambda t: shown.append((t, len(server.requests))),
    )
    # the licence text came first, before any request
    assert shown[0][1] == 0 and preset.license_text in shown[0][0] and "NON-COMMERCIAL" in shown[0][0]
    assert report.images_extracted == 3 and report.with_landmarks == 3
    fa = report.summary.faces
    assert (fa["found"], fa["kept"], fa["blur"], fa["duplicate"]) == (3, 1, 1, 1)
    assert report.kept_share == pytest.approx(1 / 3)
    assert report.filter_shares()["blur"] == pytest.approx(1 / 3)
    assert "kept 1 of 3 faces (33.3 %)" in report.format()
    work = tmp_path / "fs.build"
    stored = json.loads((work / "preset_report.json").read_text())
    assert stored["kept_share"] == pytest.approx(1 / 3) and stored["preset"] == "facesynthetics"
    assert json.loads((work / "preset.json").read_text())["license_text"] == preset.license_text
    records = _manifest(work)
    assert len(records) == 3
    for rec in records:
        assert rec["license"] == preset.license_line() and "NON-COMMERCIAL" in rec["license"]
        assert "dataset_100.zip!" in rec["source"]
        assert [f["detector"] for f in rec["faces"]] == ["listed"]
    with zipfile.ZipFile(tmp_path / "fs.zip") as zf:
        assert sorted(n for n in zf.namelist() if n.endswith(".png")) == ["00000/img00000000.png"]
    with Image.open(work / "contact_sheet.png") as sheet:  # one thumbnail below the caption band
        assert sheet.height == 128 + 20
        band = np.asarray(sheet.convert("L"))[:20]
        assert band.max() > 200  # the caption's text
    fetched = server.count("/f/dataset_100.zip")
    again = build_preset(preset, tmp_path / "fs.zip", config=CONFIG, progress=False, show=lambda t: None)
    assert server.count("/f/dataset_100.zip") == fetched == 1  # the archive is not fetched again
    assert again.summary.items["skipped"] == 3 and again.summary.faces["kept"] == 1


def test_interrupted_download_resumes(server, tmp_path, monkeypatch, fixture_files, render_landmarks):
    monkeypatch.delenv("REALFACE_OFFLINE")
    data = facesynthetics_zip(fixture_files, render_landmarks)
    preset = _preset(
        PRESETS["facesynthetics"], _served(server, "cutonce", "dataset_100.zip", data, _sha(data))
    )
    out = tmp_path / "fs.zip"
    with pytest.raises(ConfigError, match="run the command again to resume"):
        build_preset(preset, out, config=CONFIG, progress=False, show=lambda t: None)
    part = tmp_path / "fs.preset" / "archives" / "dataset_100.zip.part"
    assert 0 < part.stat().st_size < len(data) and not out.exists()
    report = build_preset(preset, out, config=CONFIG, progress=False, show=lambda t: None)
    assert report.summary.faces["kept"] == 1
    ranges = [rng for path, rng in server.requests if path.endswith("dataset_100.zip")]
    assert ranges[0] is None and ranges[-1] == f"bytes={len(data) // 3}-"
    assert (tmp_path / "fs.preset" / "archives" / "dataset_100.zip").read_bytes() == data


def test_wrong_hash_is_refused(server, tmp_path, monkeypatch, fixture_files, render_landmarks):
    monkeypatch.delenv("REALFACE_OFFLINE")
    data = facesynthetics_zip(fixture_files, render_landmarks)
    preset = _preset(PRESETS["facesynthetics"], _served(server, "f", "dataset_100.zip", data, "0" * 64))
    with pytest.raises(ConfigError, match="does not match"):
        build_preset(preset, tmp_path / "fs.zip", config=CONFIG, progress=False, show=lambda t: None)
    folder = tmp_path / "fs.preset"
    assert not (folder / "archives" / "dataset_100.zip").exists()
    assert not (folder / "images").exists() and not (tmp_path / "fs.zip").exists()


@pytest.mark.parametrize(
    "members, links, why",
    [
        ({"../evil.png": b"x"}, (), "contains '..'"),
        ({"/abs/evil.png": b"x"}, (), "absolute path"),
        ({"a\\..\\evil.png": b"x"}, (), "backslash"),
        ({}, ("000001.png",), "symbolic link"),
    ],
)
def test_unsafe_member_names_are_refused_before_extraction(server, tmp_path, monkeypatch, fixture_files, members,
                                                           links, why):  # fmt: skip
    monkeypatch.delenv("REALFACE_OFFLINE")
    good = {"000000.png": _png(fixture_files["render.jpg"])}
    data = _zip({**good, **members}, links)
    preset = _preset(PRESETS["facesynthetics"], _served(server, "f", "dataset_100.zip", data, None))
    with pytest.raises(ArchiveError, match=why) as err:
        build_preset(preset, tmp_path / "out" / "fs.zip", config=CONFIG, progress=False, show=lambda t: None)
    assert "nothing was extracted" in str(err.value) and "dataset_100.zip" in str(err.value)
    assert not (tmp_path / "out" / "fs.preset" / "images").exists()
    assert not (tmp_path / "evil.png").exists() and not (tmp_path / "out" / "evil.png").exists()


def test_digiface_layout_detects_faces_and_limit_stops_downloads(
    server, tmp_path, monkeypatch, fixture_files
):
    monkeypatch.delenv("REALFACE_OFFLINE")
    first = _zip({"0/0.png": _png(fixture_files["render.jpg"]), "0/1.png": _png(fixture_files["noface.png"]),
                  "1/0.png": _png(fixture_files["astronaut.png"])})  # fmt: skip
    second = _zip({"2/0.png": _png(fixture_files["render.jpg"])})
    preset = _preset(
        PRESETS["digiface1m"],
        _served(server, "f", "subjects_0-1999_72_imgs.zip", first, _sha(first)),
        _served(server, "f", "subjects_2000-3999_72_imgs.zip", second, _sha(second)),
    )
    report = build_preset(
        preset, tmp_path / "dg", config=CONFIG, limit=2, progress=False, show=lambda t: None
    )
    assert report.images_extracted == 2 and report.with_landmarks == 0
    assert server.count("/f/subjects_2000-3999_72_imgs.zip") == 0  # --limit reached in the first archive
    records = {r["key"]: r for r in _manifest(tmp_path / "dg.build")}
    assert sorted(records) == ["subjects_0-1999_72_imgs/0/0.png", "subjects_0-1999_72_imgs/0/1.png"]
    assert records["subjects_0-1999_72_imgs/0/1.png"]["reason"] == "no_face"
    faces = records["subjects_0-1999_72_imgs/0/0.png"]["faces"]
    assert len(faces) == 1 and faces[0]["detector"] != "listed"
    assert report.summary.faces["found"] == 1 and report.kept_share == report.summary.faces["kept"] / 1


def test_replicantface_is_taken_from_a_hand_downloaded_archive(tmp_path, fixture_files, render_landmarks):
    from scipy.io import savemat

    preset = PRESETS["replicantface"]
    with pytest.raises(ConfigError, match="download it by hand"):
        build_preset(preset, tmp_path / "rf.zip", config=CONFIG, progress=False, show=lambda t: None)
    mat = io.BytesIO()
    pt3d = np.vstack([render_landmarks.T, np.zeros((1, 68))])  # [3, 68]: x, y, z rows
    savemat(mat, {"pt3d_68": pt3d, "Pose_Para": np.zeros((1, 7))})
    archive = tmp_path / "replicantface.zip"
    archive.write_bytes(_zip({"faces/face_00000.jpg": fixture_files["render.jpg"],
                              "faces/face_00000.mat": mat.getvalue()}))  # fmt: skip
    code = run_cli("dataset", "build", "--preset", "replicantface", "--images-from", archive, "-o",
                   tmp_path / "rf.zip", "--size", 256, "--no-cnn", "--no-progress")  # fmt: skip
    assert code == 0
    (rec,) = _manifest(tmp_path / "rf.build")
    assert rec["faces"][0]["detector"] == "listed" and rec["faces"][0]["kept"]
    assert rec["license"].startswith("MIT ") and "NON-COMMERCIAL" not in rec["license"]
    got = np.asarray(rec["faces"][0]["landmarks_68"])
    assert np.allclose(got, render_landmarks, atol=1e-2)
    assert archive.read_bytes()  # the user's archive is only read


def test_an_output_that_is_not_a_build_is_refused_before_downloading(server, tmp_path, monkeypatch):
    monkeypatch.delenv("REALFACE_OFFLINE")
    preset = _preset(PRESETS["facesynthetics"], _served(server, "f", "dataset_100.zip", b"not fetched", None))
    out = tmp_path / "mine.zip"
    out.write_bytes(b"a file of the user's")
    with pytest.raises(ConfigError, match="not a dataset made by"):
        build_preset(preset, out, config=CONFIG, progress=False, show=lambda t: None)
    assert server.requests == [] and out.read_bytes() == b"a file of the user's"


def test_an_unsafe_hand_downloaded_archive_is_refused_by_the_command(tmp_path, fixture_files):
    from tests.robustness._cli import assert_refused, run_realface, snapshot

    archive = tmp_path / "dataset_100000.zip"
    archive.write_bytes(_zip({"000000.png": _png(fixture_files["render.jpg"]), "../../escape.png": b"x"}))
    before = snapshot(archive)
    run = run_realface("dataset", "build", "--preset", "facesynthetics", "--images-from", archive,
                       "-o", tmp_path / "fs.zip", "--no-progress")  # fmt: skip
    assert_refused(run, archive, inputs=before, outputs=[tmp_path / "fs.zip", tmp_path.parent / "escape.png"])
    assert "contains '..'" in run.error_lines[0]
    assert run.stderr.index("Research Use of Data Agreement") < run.stderr.index("error:")  # licence first


def test_a_hand_downloaded_archive_with_another_hash_is_refused(tmp_path, fixture_files):
    data = _zip({"000000.png": _png(fixture_files["render.jpg"])})
    arc = PresetArchive(
        url="https://example.org/dataset_100.zip", file_name="dataset_100.zip", sha256=_sha(data)
    )
    preset = _preset(PRESETS["facesynthetics"], arc)
    archive = tmp_path / "dataset_100.zip"
    archive.write_bytes(data + b"changed")
    with pytest.raises(ConfigError, match="sha256 differs"):
        build_preset(preset, tmp_path / "fs.zip", config=CONFIG, images_from=[archive], show=lambda t: None)
    assert not (tmp_path / "fs.preset" / "images").exists()


def test_a_corrupt_member_is_one_clear_error(tmp_path, fixture_files):
    data = bytearray(_zip({"000000.png": _png(fixture_files["render.jpg"])}))
    data[100:140] = bytes(40)  # inside the member's stored bytes: its CRC no longer matches
    archive = tmp_path / "dataset_100000.zip"
    archive.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="member '000000.png' cannot be read"):
        build_preset(
            "facesynthetics", tmp_path / "fs.zip", config=CONFIG, images_from=[archive], show=lambda t: None
        )
    assert not [
        p
        for p in (tmp_path / "fs.preset").rglob("*")
        if p.is_file() and p.name not in ("preset.json", ".batch.lock")
    ]
