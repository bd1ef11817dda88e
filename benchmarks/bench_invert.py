"""Inversion speed: seconds per step and per face, FFHQ config-f shapes with random weights.

Uses the real projector (:func:`realface.invert.invert`) with the real LPIPS-VGG architecture (random
VGG16 weights: only speed is measured). For each resolution, batch size and coarse-to-fine setting it
times individual steps through the progress callback (the first step of each phase is a warm-up and
is not counted) and extrapolates to a full run of ``--steps`` steps:

    per face = (coarse steps x coarse step time + fine steps x full step time) / batch

    python benchmarks/bench_invert.py                         # CPU: 256 and 1024, batch 1 and 4
    python benchmarks/bench_invert.py --device cuda --batch 8 --res 1024
    python benchmarks/bench_invert.py --quality               # LPIPS reached vs seconds (proxy, see below)

``--quality`` measures the trade-off of coarse-to-fine on a proxy problem, since no trained weights are
available here: the shipped tiny StyleGAN2-ADA fixture (64 px, official architecture, random weights)
must reproduce an image it made itself from a known latent (noise included), under LPIPS with random
VGG16 weights. Coarse resolutions 32 and 16 are 1/2 and 1/4 of the output, as 512 and 256 are of 1024.
It reports the final LPIPS and pixel MSE against the target, and seconds, for the same number of steps.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests._helpers (random VGG16 file)


def build(res: int, device: str):
    import torch

    from realface.nn.lpips import load_lpips_vgg
    from realface.nn.stylegan2 import Generator, config_f_kwargs
    from tests._helpers import random_vgg16_file

    torch.manual_seed(0)
    G = (
        Generator(**config_f_kwargs(res, num_fp16_res=0, conv_clamp=None))
        .eval()
        .requires_grad_(False)
        .to(device)
    )
    with tempfile.TemporaryDirectory() as d:
        lpips = load_lpips_vgg(device=device, vgg_path=random_vgg16_file(Path(d) / "vgg.pth"))
    return G, lpips


def time_phase(G, lpips, batch: int, coarse: bool, measured: int, coarse_res: int, device: str) -> float:
    """Median seconds of one step (coarse or full resolution) over ``measured`` steps after a warm-up."""
    import torch

    from realface.invert import InvertConfig, LpipsLoss, invert

    n = measured + 1  # the first timed step is a warm-up
    if coarse:  # n coarse steps, then one full-resolution step that is not timed
        cfg = InvertConfig(
            steps=n + 1, coarse_to_fine=True, coarse_resolution=coarse_res, fine_steps=1, w_avg_samples=1000
        )
    else:
        cfg = InvertConfig(steps=n, w_avg_samples=1000)
    targets = torch.rand(batch, 3, G.img_resolution, G.img_resolution, device=device) * 2 - 1
    stamps = []
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def cb(step, total, loss):
        sync()
        stamps.append(time.perf_counter())

    t0 = time.perf_counter()
    invert(G, targets, LpipsLoss(lpips, 256), cfg, callback=cb)
    times = [b - a for a, b in zip([t0] + stamps[:-1], stamps, strict=True)][:n]
    return statistics.median(times[1:])


def quality(steps: int, fine_steps: int, seeds: int) -> None:
    import torch

    from realface.checkpoints import load_generator
    from realface.invert import InvertConfig, LpipsLoss, invert
    from realface.nn.lpips import load_lpips_vgg
    from tests._helpers import random_vgg16_file

    root = Path(__file__).resolve().parents[1]
    G = load_generator(root / "tests/data/stylegan2-ada/sg2ada_tiny64.pkl", cache=False)
    with tempfile.TemporaryDirectory() as d:
        lpips = load_lpips_vgg(vgg_path=random_vgg16_file(Path(d) / "vgg.pth"))
    print(
        f"{'mode':>10} {'LPIPS':>8} {'MSE':>8} {'seconds':>8}   ({steps} steps, {seeds} targets, 64 px proxy)"
    )
    for mode, cr in (("full-res", None), ("c2f@32", 32), ("c2f@16", 16)):
        lp, mse, secs = [], [], 0.0
        for s in range(seeds):
            torch.manual_seed(100 + s)
            with torch.no_grad():
                target = G(torch.randn(1, G.z_dim), None, truncation_psi=0.7, noise_mode="random")
            cfg = InvertConfig(steps=steps, w_avg_samples=2000)
            if cr is not None:
                cfg = InvertConfig(
                    steps=steps,
                    w_avg_samples=2000,
                    coarse_to_fine=True,
                    coarse_resolution=cr,
                    fine_steps=fine_steps,
                )
            t0 = time.perf_counter()
            res = invert(G, target, LpipsLoss(lpips, 256), cfg)
            secs += time.perf_counter() - t0
            with torch.no_grad():
                img = G.synthesis(res.ws, noise_mode="const", noise=res.noise)
                lp.append(float(lpips(img, target)))
                mse.append(float((img - target).square().mean()))
        print(f"{mode:>10} {statistics.mean(lp):>8.4f} {statistics.mean(mse):>8.4f} {secs / seeds:>8.1f}")


def main() -> None:
    from realface.utils.memory import keep_freed_memory

    keep_freed_memory()  # as the realface command does
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--res", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=500, help="steps of the extrapolated full run")
    ap.add_argument("--fine-steps", type=int, default=50)
    ap.add_argument("--coarse-res", type=int, nargs="+", default=[256, 128])
    ap.add_argument("--measured", type=int, default=2, help="steps timed per phase (after one warm-up)")
    ap.add_argument("--quality", action="store_true", help="coarse-to-fine trade-off on the 64 px proxy")
    ap.add_argument("--seeds", type=int, default=3, help="targets for --quality")
    args = ap.parse_args()
    if args.quality:
        quality(args.steps, args.fine_steps, args.seeds)
        return
    print(f"{'res':>5} {'batch':>5} {'mode':>14} {'s/step':>8} {'s/face (500)':>13}")
    for res in args.res:
        G, lpips = build(res, args.device)
        for batch in args.batch:
            full = time_phase(G, lpips, batch, False, args.measured, 256, args.device)
            print(f"{res:>5} {batch:>5} {'full-res':>14} {full:>8.2f} {args.steps * full / batch:>13.1f}")
            for cr in args.coarse_res:
                if cr >= res:
                    continue
                coarse = time_phase(G, lpips, batch, True, args.measured, cr, args.device)
                per_face = ((args.steps - args.fine_steps) * coarse + args.fine_steps * full) / batch
                print(f"{res:>5} {batch:>5} {f'c2f@{cr}':>14} {coarse:>8.2f} {per_face:>13.1f}")


if __name__ == "__main__":
    main()
