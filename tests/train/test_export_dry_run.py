"""`realface export RUN -o OUT --dry-run`: the plan (checkpoint, network, output, format), nothing written."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_cli_apply import run_cli


def _files(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*")}


def _fake_run(root: Path) -> Path:
    """A run folder laid out as training leaves it (the dry run reads no network, only state.json)."""
    for nimg in (4000, 8000):
        ckpt = root / "run" / "checkpoints" / f"ckpt-{nimg:09d}"
        ckpt.mkdir(parents=True)
        (ckpt / "networks.safetensors").write_bytes(b"")
        (ckpt / "state.json").write_text(json.dumps({"cur_nimg": nimg}))
    return root / "run"


def test_export_dry_run_names_the_latest_checkpoint(tmp_path, capsys):
    run = _fake_run(tmp_path)
    before = _files(tmp_path)
    out = tmp_path / "G_rendering.safetensors"
    assert run_cli("export", run, "-o", out, "--dry-run") == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["checkpoint"] == str(run / "checkpoints" / "ckpt-000008000") and plan["kimg"] == 8.0
    assert (plan["run"], plan["out"], plan["network"]) == (str(run), str(out), "G_ema")
    assert plan["format"].startswith("realface.networks") and plan["out_exists"] is False
    assert _files(tmp_path) == before


def test_export_dry_run_before_training_says_not_present_yet(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_cli("export", "runs/rendering", "-o", "sub/G.safetensors", "--dry-run") == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["checkpoint"].startswith("not present yet: runs/rendering") and plan["kimg"] is None
    assert plan["out"] == "sub/G.safetensors"
    assert not any(tmp_path.iterdir())


def test_export_dry_run_still_checks_its_options(tmp_path, capsys):
    run = _fake_run(tmp_path)
    before = _files(tmp_path)
    assert run_cli("export", run, "-o", tmp_path / "G.pkl", "--dry-run") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {tmp_path / 'G.pkl'}: G_rendering is written")
    empty = tmp_path / "empty_run"
    empty.mkdir()
    assert run_cli("export", empty, "-o", tmp_path / "G.safetensors", "--dry-run") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{empty}: no complete checkpoint found" in err
    assert _files(tmp_path) == before | {str(empty)}
