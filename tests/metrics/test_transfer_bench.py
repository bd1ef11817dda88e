"""`realface bench transfer --quick`: the real training and inversion code end to end on tiny sizes."""

from __future__ import annotations

import json

import torch

from realface.metrics.transfer import rendering_style
from tests._helpers import random_vgg16_file
from tests.test_cli_apply import run_cli


def test_rendering_style_is_fixed_and_changes_images():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    a, b = rendering_style(x), rendering_style(x)
    assert torch.equal(a, b) and a.shape == x.shape and a.min() >= -1 and a.max() <= 1
    assert (a - x).abs().mean() > 0.05
    levels = torch.unique(((a + 1) / 2 * 255).round())
    assert len(levels) < 40  # posterised


def test_bench_transfer_quick(tmp_path):
    vgg = random_vgg16_file(tmp_path / "vgg16.pth")
    out = tmp_path / "bench"
    assert run_cli("bench", "transfer", "--quick", "-o", out, "--lpips-vgg", vgg, "--no-progress") == 0
    res = json.loads((out / "results.json").read_text())
    rows = {r["row"].split(" (")[0]: r for r in res["rows"]}
    assert set(rows) == {
        "full method",
        "fine-tuned without identity losses",
        "baseline",
        "reference: the rendering itself vs the truth",
    }
    for r in res["rows"]:
        assert r["lpips"] >= 0 and 0 < r["l2"] < 4
    assert (out / "results.md").read_text().count("|") > 10
    assert (out / "run_full" / "stats.jsonl").is_file() and (
        out / "run_no_identity" / "stats.jsonl"
    ).is_file()
