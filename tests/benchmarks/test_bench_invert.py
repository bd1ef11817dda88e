"""The parts of the like-for-like benchmark that are ours: arguments, the summary, the VGG16 stand-in.

The comparison itself needs the official code checked out by the user; it is not available here."""

from __future__ import annotations

import pytest
import torch

from realface.nn.lpips import LPIPS
from tests.benchmarks._load import load_benchmark

bench = load_benchmark("bench_invert")


def _fake_checkout(root):
    (root / "training").mkdir(parents=True)
    (root / "projector.py").write_text("")
    (root / "training" / "networks.py").write_text("")
    return root


def test_arguments_defaults_quick_and_refusals(tmp_path, capsys):
    official = _fake_checkout(tmp_path / "official")
    args = bench.parse_args(["--against-official", str(official)])
    assert (args.res, args.pairs, args.steps_timed, args.threads, args.allocator, args.vgg16) == (
        [256, 1024],
        3,
        2,
        1,
        "keep",
        None,
    )
    quick = bench.parse_args(["--against-official", str(official), "--quick", "--allocator", "system"])
    assert (quick.res, quick.pairs, quick.allocator) == ([64], 1, "system")
    cases = [
        (["--against-official", str(tmp_path)], "not a checkout of stylegan2-ada-pytorch"),
        (["--against-official", str(official), "--pairs", "0"], "must be at least 1"),
        (["--against-official", str(official), "--vgg16", str(tmp_path / "no.pt")], "no.pt: no such file"),
        (["--against-official", str(official), "--allocator", "mine"], "invalid choice"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exc:
            bench.parse_args(argv)
        assert exc.value.code == 2
        assert message in capsys.readouterr().err


def test_summary_takes_ratios_within_pairs():
    s = bench.summarize([2.0, 4.0, 3.0], [1.0, 3.0, 3.0])
    assert (s.official, s.realface) == (3.0, 3.0)
    assert (s.ratio, s.ratio_min, s.ratio_max) == (0.75, 0.5, 1.0)  # 1/2, 3/4, 3/3
    table = bench.format_table([(1024, s, s)])
    assert "0.75 [0.50-1.00]" in table and table.splitlines()[1].split()[0] == "1024"
    with pytest.raises(ValueError, match="one official and one realface time per pair"):
        bench.summarize([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="positive"):
        bench.summarize([0.0], [1.0])
    assert bench.step_intervals([0.0, 1.0, 3.0, 6.0]) == [2.0, 3.0]  # the first interval is warm-up


@pytest.mark.parametrize("size", [256, 64])
def test_vgg16_stand_in_has_the_official_call_and_gives_lpips(tmp_path, size):
    torch.manual_seed(0)
    lpips = LPIPS().eval().requires_grad_(False)  # random VGG, unit heads
    path = bench.write_vgg16_standin(lpips, tmp_path / "vgg16.pt")
    vgg16 = torch.jit.load(str(path)).eval()
    a = torch.rand(2, 3, size, size) * 255
    b = torch.rand(2, 3, size, size) * 255
    fa = vgg16(a, resize_images=False, return_lpips=True)
    fb = vgg16(b, resize_images=False, return_lpips=True)
    assert fa.ndim == 2 and fa.shape[0] == 2 and torch.equal(vgg16(a), fa)
    expected = lpips(a / 127.5 - 1, b / 127.5 - 1)  # the reference formulation, heads on the differences
    torch.testing.assert_close((fa - fb).square().sum(dim=1), expected, rtol=1e-4, atol=1e-6)
    with pytest.raises(Exception, match="resize_images=False, return_lpips=True"):
        vgg16(a, resize_images=True, return_lpips=True)
