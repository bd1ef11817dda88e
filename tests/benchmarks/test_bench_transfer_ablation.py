"""``benchmarks/bench_transfer_ablation.py`` on a quick `realface bench transfer` run: its default setting
reproduces the benchmark's own rows, the other settings really change the inversion, and a rerun
resumes."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from tests.benchmarks._load import load_benchmark
from tests.test_cli_apply import run_cli

ablation = load_benchmark("bench_transfer_ablation")


def _run(monkeypatch, *argv):
    monkeypatch.setattr(sys, "argv", ["bench_transfer_ablation.py", *map(str, argv)])
    ablation.main()


def test_ablation_reproduces_the_benchmark_and_resumes(tmp_path, monkeypatch, capsys):
    run = tmp_path / "bench"
    assert run_cli("bench", "transfer", "--quick", "-o", run, "--lpips-vgg", "random", "--no-progress") == 0
    bench = json.loads((run / "results.json").read_text())
    out = tmp_path / "ablation"
    settings = "default,w,decode_optimised_noise,coarse_layers_0-3"
    _run(monkeypatch, "--run", run, "-o", out, "--only", settings)
    doc = json.loads((out / "ablation.json").read_text())
    res = doc["results"]
    assert list(res) == settings.split(",")
    # The default setting is the benchmark's: same generators, faces, seeds and LPIPS network.
    for row in ("full", "no_identity", "direct"):
        for m in ("lpips", "l2", "param_error"):
            np.testing.assert_allclose(res["default"]["rows"][row][m], bench["per_sample"][row][m], rtol=1e-5)
    # Every other setting changes the faces (W, the decode noise, the decoded layers).
    for name in ("w", "decode_optimised_noise", "coarse_layers_0-3"):
        for row in ("full", "direct"):
            assert not np.allclose(res[name]["rows"][row]["l2"], res["default"]["rows"][row]["l2"]), (
                name,
                row,
            )
    report = (out / "ablation.md").read_text()
    assert "| coarse_layers_0-3 | full |" in report and "Paired difference setting − default" in report
    capsys.readouterr()
    _run(monkeypatch, "--run", run, "-o", out, "--only", "default")
    assert "default: done before, skipped" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="unknown settings"):
        _run(monkeypatch, "--run", run, "-o", out, "--only", "bogus")
    with pytest.raises(SystemExit, match="results.json: not found"):
        _run(monkeypatch, "--run", tmp_path / "nothing", "-o", out)
