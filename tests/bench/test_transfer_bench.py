"""`realface bench transfer --quick`: the real training and inversion code end to end on the shipped world,
the statistics the report rests on, and the ablation script of benchmarks/ on the same quick run."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

from realface.bench.transfer import CONSISTENCY_ROWS, ROWS, TransferBenchConfig, mean_ci
from realface.errors import ConfigError
from tests.benchmarks._load import load_benchmark
from tests.test_cli_apply import run_cli

ablation = load_benchmark("bench_transfer_ablation")


def test_mean_ci_matches_hand_computed_t_interval():
    m, lo, hi = mean_ci([1.0, 2.0, 3.0, 4.0])
    # mean 2.5, sd 1.29099, t(0.975, 3) = 3.182446 -> half width 2.054275
    assert m == 2.5 and math.isclose(hi - m, 2.054275, rel_tol=1e-5) and math.isclose(m - lo, hi - m)
    assert all(math.isnan(v) for v in mean_ci([1.0])[1:])


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="style"):
        TransferBenchConfig(style="oil")
    with pytest.raises(ConfigError, match="held_out"):
        TransferBenchConfig(held_out=1)
    with pytest.raises(ConfigError, match="kimg"):
        TransferBenchConfig(kimg=float("nan"))
    with pytest.raises(ConfigError, match="consistency_num"):
        TransferBenchConfig(consistency_num=1)
    with pytest.raises(ConfigError, match="space must be 'w' or 'w\\+', got 'z'"):
        TransferBenchConfig(space="z")
    assert TransferBenchConfig().consistency_num == 512 and TransferBenchConfig.quick().consistency_num == 8


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One `realface bench transfer --quick` run, shared by the tests of its results and of the ablations."""
    out = tmp_path_factory.mktemp("bench_transfer") / "bench"
    assert run_cli("bench", "transfer", "--quick", "-o", out, "--lpips-vgg", "random", "--no-progress") == 0
    return out


def test_bench_transfer_quick(quick_run):
    out = quick_run
    res = json.loads((out / "results.json").read_text())
    assert [r["row"] for r in res["rows"]] == list(ROWS)
    for r in res["rows"]:
        for m in ("lpips", "l2", "param_error"):
            lo, hi = r[m]["ci95"]
            assert lo <= r[m]["mean"] <= hi and np.isfinite([lo, hi]).all()
        assert 0 < r["l2"]["mean"] < 1
    n = res["config"]["held_out"]
    assert all(len(v["l2"]) == n for v in res["per_sample"].values())
    # The paired difference is the mean of the per-sample differences.
    c = next(c for c in res["comparisons"] if (c["a"], c["b"]) == ("full", "direct"))
    d = np.mean(np.asarray(res["per_sample"]["full"]["l2"]) - np.asarray(res["per_sample"]["direct"]["l2"]))
    assert math.isclose(c["l2"]["mean_diff"], d, rel_tol=1e-9, abs_tol=1e-12)
    # The identity-consistency table: one entry per rendering generator, 8 shared latents in quick mode.
    assert [c["row"] for c in res["consistency"]] == list(CONSISTENCY_ROWS)
    for c in res["consistency"]:
        assert c["num"] == 8 and c["protocol"].startswith("toy-consistency")
        for m in ("param_error", "param_error_truth", "l2", "lpips"):
            lo, hi = c[m]["ci95"]
            assert c[m]["mean"] >= 0 and lo <= c[m]["mean"] <= hi and np.isfinite([lo, hi]).all()
    report = (out / "results.md").read_text()
    assert "4 inversion steps in W, fine-tuning" in report
    assert (
        "| paired difference" in report and "identity consistency with G_real on 8 shared latents" in report
    )
    assert all(label in report for label in CONSISTENCY_ROWS.values())
    assert (out / "examples.png").is_file()
    assert (out / "run_full" / "stats.jsonl").is_file() and (
        out / "run_no_identity" / "stats.jsonl"
    ).is_file()


def test_bench_transfer_identity_options_reach_the_config(tmp_path, monkeypatch):
    import realface.bench.transfer as transfer

    seen = []

    def fake_run(out, cfg, lpips_vgg=None, progress=True):
        seen.append(cfg)
        raise SystemExit(0)  # the configuration is all this test needs; nothing is trained

    monkeypatch.setattr(transfer, "run_transfer_bench", fake_run)
    assert run_cli("bench", "transfer", "--quick", "-o", tmp_path / "b") == 0
    assert seen[-1].identity.sketch_weight == 5e-6 and seen[-1].identity.color_weight == 375.0
    assert not seen[-1].identity.scale_to_resolution
    assert run_cli("bench", "transfer", "-o", tmp_path / "b", "--scale-losses", "--color-weight", "3750") == 0
    assert seen[-1].identity.scale_to_resolution and seen[-1].identity.color_weight == 3750.0
    assert seen[-1].steps == 200  # the full sizes: --quick was not given
    assert seen[-1].freeze_res == 0
    assert run_cli("bench", "transfer", "-o", tmp_path / "b", "--freeze-res", "8") == 0
    assert seen[-1].freeze_res == 8 and seen[-1].space == "w"
    assert run_cli("bench", "transfer", "-o", tmp_path / "b", "--space", "w+") == 0
    assert seen[-1].space == "w+"
    assert TransferBenchConfig().identity.color_weight == 375.0


def _run_ablation(monkeypatch, *argv):
    monkeypatch.setattr(sys, "argv", ["bench_transfer_ablation.py", *map(str, argv)])
    ablation.main()


def test_ablation_reproduces_the_benchmark_and_resumes(quick_run, tmp_path, monkeypatch, capsys):
    """``benchmarks/bench_transfer_ablation.py`` on the quick run: its default setting reproduces the
    benchmark's own rows, the other settings really change the inversion, and a rerun resumes."""
    run = quick_run
    bench = json.loads((run / "results.json").read_text())
    out = tmp_path / "ablation"
    settings = "default,w+,decode_optimised_noise,coarse_layers_0-3"
    _run_ablation(monkeypatch, "--run", run, "-o", out, "--only", settings)
    doc = json.loads((out / "ablation.json").read_text())
    res = doc["results"]
    assert list(res) == settings.split(",")
    # The default setting is the benchmark's: same generators, faces, seeds and LPIPS network.
    for row in ("full", "no_identity", "direct"):
        for m in ("lpips", "l2", "param_error"):
            np.testing.assert_allclose(res["default"]["rows"][row][m], bench["per_sample"][row][m], rtol=1e-5)
    # Every other setting changes the faces (W+ instead of W, the decode noise, the decoded layers).
    assert doc["base"]["space"] == "w" == bench["config"]["space"]
    for name in ("w+", "decode_optimised_noise", "coarse_layers_0-3"):
        for row in ("full", "direct"):
            assert not np.allclose(res[name]["rows"][row]["l2"], res["default"]["rows"][row]["l2"]), (
                name,
                row,
            )
    report = (out / "ablation.md").read_text()
    assert "| coarse_layers_0-3 | full |" in report and "Paired difference setting − default" in report
    capsys.readouterr()
    _run_ablation(monkeypatch, "--run", run, "-o", out, "--only", "default")
    assert "default: done before, skipped" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="unknown settings"):
        _run_ablation(monkeypatch, "--run", run, "-o", out, "--only", "bogus")
    with pytest.raises(SystemExit, match="results.json: not found"):
        _run_ablation(monkeypatch, "--run", tmp_path / "nothing", "-o", out)
