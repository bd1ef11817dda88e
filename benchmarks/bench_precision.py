"""Does bf16 inversion fit as well as fp32? Final LPIPS, both precisions, same targets and seeds.

In the toy world of ``realface bench transfer`` (the shipped, trained 32 px G_real), each of ``--seeds``
held-out photo renders of known parameters is inverted twice into G_real with the real projector
(:func:`realface.invert.invert`, LPIPS loss at 256, noise optimised), once with ``precision="fp32"``
and once with ``"bf16"``, from the same start and the same per-target seed. The final fit of both is then
measured the same way, in float32: LPIPS and pixel MSE between ``G_real.synthesis(ws, noise)`` and the
target. It prints one row per target, the mean of each column, the paired relative difference of LPIPS
(bf16 / fp32 - 1, mean and 95 % interval over targets) and the seconds per step of each precision
(alternating runs, the same threads).

LPIPS uses seeded random VGG16 weights unless ``--lpips-vgg FILE`` gives the real ones (as in the transfer
benchmark). The acceptance bar of the bf16 path: mean final LPIPS within 2 % of fp32 over >= 8 targets.

    python benchmarks/bench_precision.py                      # 8 targets, 200 steps, 2 threads
    python benchmarks/bench_precision.py --seeds 16 --steps 500 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests._helpers (random VGG16 file)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=8, help="held-out targets")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--lpips-vgg", type=Path, default=None, help="torchvision VGG16 state dict (default: random)"
    )
    ap.add_argument("--world", type=Path, default=None, help="a world folder (default: the shipped one)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from realface.bench.faces import render_photo, sample_params
    from realface.bench.world import load_world
    from realface.invert import InvertConfig, LpipsLoss, invert
    from realface.nn.lpips import load_lpips_vgg
    from realface.precision import cpu_has_bf16
    from tests._helpers import random_vgg16_file

    if not cpu_has_bf16():
        print(
            "note: this CPU has no AVX512_BF16/AMX; bf16 runs emulated (slow), the fit comparison still holds"
        )
    world = load_world(args.world)
    G = world.G_real
    with tempfile.TemporaryDirectory() as d:
        vgg = args.lpips_vgg if args.lpips_vgg is not None else random_vgg16_file(Path(d) / "vgg.pth")
        lpips = load_lpips_vgg(vgg_path=vgg)
    res = G.img_resolution
    targets = render_photo(sample_params(args.seeds, 9000), res)  # [S, 3, R, R]
    loss = LpipsLoss(lpips, 256)
    rows, secs = [], {"fp32": [], "bf16": []}
    print(
        f"{args.seeds} targets, {args.steps} steps, {args.threads} threads, {res} px toy G_real, "
        f"LPIPS VGG: {'given' if args.lpips_vgg else 'random (seeded stand-in)'}"
    )
    print(f"{'target':>6} {'LPIPS fp32':>11} {'LPIPS bf16':>11} {'MSE fp32':>9} {'MSE bf16':>9}")
    for i in range(args.seeds):
        target = targets[i : i + 1]
        out = {}
        for prec in ("fp32", "bf16") if i % 2 == 0 else ("bf16", "fp32"):
            cfg = InvertConfig(steps=args.steps, seed=1000 + i, precision=prec, w_avg_samples=2000)
            t0 = time.perf_counter()
            r = invert(G, target, loss, cfg)
            secs[prec].append((time.perf_counter() - t0) / args.steps)
            with torch.no_grad():
                img = G.synthesis(r.ws, noise_mode="const", noise=r.noise).float()
                out[prec] = (float(lpips(img, target)), float((img - target).square().mean()))
        rows.append(out)
        print(
            f"{i:>6} {out['fp32'][0]:>11.4f} {out['bf16'][0]:>11.4f} {out['fp32'][1]:>9.5f} {out['bf16'][1]:>9.5f}"
        )
    l32 = [r["fp32"][0] for r in rows]
    l16 = [r["bf16"][0] for r in rows]
    rel = [b / a - 1 for a, b in zip(l32, l16, strict=True)]
    m = statistics.mean(rel)
    half = 1.96 * statistics.stdev(rel) / len(rel) ** 0.5 if len(rel) > 1 else float("nan")
    print(
        f"{'mean':>6} {statistics.mean(l32):>11.4f} {statistics.mean(l16):>11.4f} "
        f"{statistics.mean(r['fp32'][1] for r in rows):>9.5f} {statistics.mean(r['bf16'][1] for r in rows):>9.5f}"
    )
    ratio_of_means = statistics.mean(l16) / statistics.mean(l32) - 1
    print(
        f"bf16 vs fp32 final LPIPS: mean of ratios {m:+.2%} [{m - half:+.2%}, {m + half:+.2%}], "
        f"ratio of means {ratio_of_means:+.2%} (bar: within 2 %)"
    )
    print(
        f"seconds per step: fp32 {statistics.median(secs['fp32']):.4f}, bf16 {statistics.median(secs['bf16']):.4f} "
        f"(medians over targets; ratio {statistics.median(secs['bf16']) / statistics.median(secs['fp32']):.2f})"
    )


if __name__ == "__main__":
    main()
