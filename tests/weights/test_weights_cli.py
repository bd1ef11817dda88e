"""End-to-end tests of `realface weights …` through the real entry point (errors become one line + exit 1)."""

from __future__ import annotations

import pytest

from realface.cli import main
from realface.weights import REGISTRY
from realface.weights.cache import cached_file_path
from tests.weights._support import make_record, payload, sha256


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_list_shows_status_paths_and_licences(capsys, home):
    code, out, _ = run(capsys, "weights", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"cache: {home / 'weights'}"
    for id_ in REGISTRY:
        assert any(line.startswith(id_ + " ") for line in lines), id_
    lm68 = next(line for line in lines if line.startswith("dlib-lm68 "))
    assert "package" in lm68 and lm68.endswith("shape_predictor_68_face_landmarks.dat")
    vgg = next(line for line in lines if line.startswith("tv-vgg16 "))
    assert "missing" in vgg and str(home / "weights" / "tv-vgg16" / "vgg16-397923af.pth") in vgg
    dfe = next(line for line in lines if line.startswith("dfe-sketch "))
    assert "manual" in dfe
    ffhq_index = next(i for i, line in enumerate(lines) if line.startswith("sg2ada-ffhq1024 "))
    assert "[NON-COMMERCIAL]" in lines[ffhq_index + 1] and "licence: NVIDIA" in lines[ffhq_index + 1]
    bsd_index = next(i for i, line in enumerate(lines) if line.startswith("lpips-vgg-v0.1 "))
    assert "BSD-2-Clause" in lines[bsd_index + 1] and "NON-COMMERCIAL" not in lines[bsd_index + 1]


def test_fetch_path_verify_pin_with_a_local_server(capsys, monkeypatch, file_server, online, home):
    data = payload(9000)
    pinned = make_record(file_server.add("/a.bin", data), data, id="cli-pinned")
    unpinned = make_record(file_server.add("/u.bin", data[:4000]), None, id="cli-unpinned", filename="u.bin")
    monkeypatch.setitem(REGISTRY, pinned.id, pinned)
    monkeypatch.setitem(REGISTRY, unpinned.id, unpinned)
    monkeypatch.setenv("REALFACE_HTTP_BACKOFF", "0.01")

    code, out, err = run(capsys, "weights", "fetch", "--no-progress", "cli-pinned", "cli-unpinned")
    assert code == 0, err
    dest = cached_file_path(pinned, home)
    assert f"ok       cli-pinned  {dest}" in out
    assert dest.read_bytes() == data

    code, out, _ = run(capsys, "weights", "path", "cli-pinned")
    assert (code, out.strip()) == (0, str(dest))

    code, out, _ = run(capsys, "weights", "verify", "--no-progress", "cli-pinned", "cli-unpinned", "tv-vgg16")
    assert code == 0
    assert f"ok       cli-pinned  {dest}" in out and "missing  tv-vgg16" in out

    code, out, _ = run(capsys, "weights", "pin")
    assert code == 0
    assert f"cli-pinned  sha256={sha256(data)}  size=9000  pinned" in out
    assert f"cli-unpinned  sha256={sha256(data[:4000])}  size=4000  UNPINNED" in out
    assert f'registry: sha256="{sha256(data[:4000])}", size=4_000,' in out

    dest.write_bytes(b"\0" * len(data))
    code, out, err = run(capsys, "weights", "verify", "--no-progress", "cli-pinned")
    assert code == 1 and "BAD      cli-pinned" in out
    assert err.startswith("error: 1 weight file(s) failed verification: cli-pinned")


def test_path_of_a_missing_file_is_one_actionable_line(capsys, home):
    code, out, err = run(capsys, "weights", "path", "tv-vgg16")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: weight 'tv-vgg16'")
    assert "realface weights import tv-vgg16 PATH" in err
    assert "run `realface weights fetch tv-vgg16`" in err
    assert "Traceback" not in err
    code, out, err = run(capsys, "weights", "path", "dfe-sketch")  # manual-only: import, never fetch
    assert code == 1 and "realface weights import dfe-sketch PATH" in err
    assert "realface weights fetch dfe-sketch" not in err


def test_fetch_needs_ids_or_all(capsys):
    code, _, err = run(capsys, "weights", "fetch")
    assert code == 1 and "--all" in err
    code, _, err = run(capsys, "weights", "fetch", "nope")
    assert code == 1 and "unknown weight id 'nope'" in err


def test_fetch_all_offline_reports_each_missing_file_and_fails(capsys, home):
    code, out, err = run(capsys, "weights", "fetch", "--all", "--no-progress")
    assert code == 1
    assert "ok       dlib-lm68" in out  # package-shipped files are there
    assert "FAILED   tv-vgg16" in err and "offline mode" in err
    assert "realface weights fetch tv-vgg16" in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "tv-vgg16" in errors[0]
    assert "dfe-sketch" not in err  # manual-only: listed as skipped, not a failure
    assert "skipped  dfe-sketch" in out and "realface weights import dfe-sketch PATH" in out
    assert "curricularface" not in err + out  # optional records are not part of --all


def test_fetch_all_skips_manual_only_records_and_succeeds(capsys, monkeypatch, file_server, online, home):
    data = payload(5000)
    downloadable = make_record(file_server.add("/all.bin", data), data, id="all-net")
    manual = make_record(
        "https://drive.google.com/open?id=xyz",
        None,
        id="all-manual",
        manual_only=True,
        manual_hint="unzip it",
    )
    monkeypatch.setattr("realface.cli.weights.REGISTRY", {r.id: r for r in (downloadable, manual)})
    monkeypatch.setitem(REGISTRY, downloadable.id, downloadable)
    monkeypatch.setitem(REGISTRY, manual.id, manual)

    code, out, err = run(capsys, "weights", "fetch", "--all", "--no-progress")
    assert code == 0, err
    assert f"ok       all-net  {cached_file_path(downloadable, home)}" in out
    assert "skipped  all-manual  (manual download: download it from https://drive.google.com" in out
    assert "(unzip it), then `realface weights import all-manual PATH`" in out
    assert "note: 1 manual-only weight(s) were skipped: all-manual" in out
    assert "error:" not in err


def test_fetch_of_one_bad_weight_is_exactly_one_error_line(capsys, home):
    code, out, err = run(capsys, "weights", "fetch", "--no-progress", "tv-vgg16")
    assert code == 1 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: weight 'tv-vgg16'")
    assert "run `realface weights fetch tv-vgg16`" in lines[0]
    code, out, err = run(capsys, "weights", "fetch", "--no-progress", "tv-vgg16", "fid-inception")
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and len(errors) == 1 and "tv-vgg16, fid-inception" in errors[0]


def test_import_good_and_bad_file(capsys, monkeypatch, tmp_path, home):
    data = payload(3000)
    record = make_record(
        "http://127.0.0.1:9/x", data, id="cli-import", license="Custom NC", non_commercial=True
    )
    monkeypatch.setitem(REGISTRY, record.id, record)
    good = tmp_path / "good.bin"
    good.write_bytes(data)
    bad = tmp_path / "bad.bin"
    bad.write_bytes(payload(3000, seed=4))

    code, out, err = run(capsys, "weights", "import", "cli-import", str(bad))
    assert code == 1 and "nothing was imported" in err and str(bad) in err
    assert not cached_file_path(record, home).exists()

    code, out, err = run(capsys, "weights", "import", "cli-import", str(good))
    assert code == 0, err
    assert f"imported cli-import  {cached_file_path(record, home)}" in out
    assert "licence: Custom NC [NON-COMMERCIAL]" in out
    assert cached_file_path(record, home).read_bytes() == data


@pytest.mark.parametrize("command", ["list", "verify", "pin"])
def test_commands_accept_an_explicit_cache_dir(capsys, tmp_path, command):
    explicit = tmp_path / "explicit-cache"
    code, out, _ = run(capsys, "weights", command, "--cache-dir", str(explicit))
    assert code == 0
    if command == "list":
        assert out.splitlines()[0] == f"cache: {explicit / 'weights'}"
    else:
        assert "dlib-lm68" in out
        assert not (explicit / "weights").exists()  # read-only commands


def _tree(root) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()} if root.exists() else {}


def test_fetch_dry_run_plans_without_downloading_or_writing(capsys, monkeypatch, file_server, online, home):
    import json

    data = payload(6000)
    have = make_record(file_server.add("/have.bin", data), data, id="dry-have", non_commercial=True)
    bad = make_record(file_server.add("/bad.bin", data), data, id="dry-bad", filename="bad.bin")
    need = make_record(file_server.add("/need.bin", data), data, id="dry-need", filename="need.bin")
    for r in (have, bad, need):
        monkeypatch.setitem(REGISTRY, r.id, r)

    code, out, err = run(capsys, "weights", "fetch", "dry-need", "--dry-run")  # an empty cache stays absent
    assert code == 0, err
    (row,) = json.loads(out)["weights"]
    assert (row["status"], row["action"], row["path"]) == ("missing", "download", None)
    assert row["urls"] == [file_server.url("/need.bin")] and row["size"] == 6000
    assert row["sha256"] == sha256(data) and row["licence"] == "licence: test licence"
    assert row["destination"] == str(cached_file_path(need, home))
    assert not home.exists() and file_server.requests == []

    for r, body in ((have, data), (bad, b"\0" * len(data))):
        cached_file_path(r, home).parent.mkdir(parents=True)
        cached_file_path(r, home).write_bytes(body)
    before = _tree(home)
    code, out, err = run(capsys, "weights", "fetch", "dry-have", "dry-bad", "dry-need", "--dry-run")
    assert code == 0, err
    plan = json.loads(out)
    rows = {w["id"]: w for w in plan["weights"]}
    assert plan["cache"] == str(home / "weights") and plan["download_bytes"] == 2 * 6000
    assert rows["dry-have"]["status"] == "present in the cache, verified"
    assert rows["dry-have"]["action"] == "none" and rows["dry-have"]["licence"].endswith("[NON-COMMERCIAL]")
    assert rows["dry-bad"]["status"].startswith("present in the cache but bad")
    assert rows["dry-bad"]["action"] == "download"
    assert _tree(home) == before and file_server.requests == []  # the bad copy is not deleted


def test_fetch_dry_run_of_an_unknown_id_is_the_usual_error(capsys, home):
    code, out, err = run(capsys, "weights", "fetch", "tv-vgg16", "no-such-weight", "--dry-run")
    assert (code, out) == (1, "")
    assert err.count("\n") == 1 and err.startswith("error: unknown weight id 'no-such-weight'")
    assert not home.exists()
