"""`realface bench transfer --quick`: the real training and inversion code end to end on the shipped world,
and the statistics the report rests on."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from realface.bench.transfer import CONSISTENCY_ROWS, ROWS, TransferBenchConfig, mean_ci
from realface.errors import ConfigError
from tests.test_cli_apply import run_cli


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
    assert TransferBenchConfig().consistency_num == 512 and TransferBenchConfig.quick().consistency_num == 8


def test_bench_transfer_quick(tmp_path):
    out = tmp_path / "bench"
    assert run_cli("bench", "transfer", "--quick", "-o", out, "--lpips-vgg", "random", "--no-progress") == 0
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
    assert TransferBenchConfig().identity.color_weight == 375.0
