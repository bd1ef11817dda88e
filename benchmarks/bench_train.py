"""Training throughput: images per second and memory of `realface train` iterations, all losses on.

FFHQ config-f shapes (channel_base 32768, random weights, random D), a folder of random images, the
paper's losses (adversarial, R1 every 16, path length every 4, sketch and colour identity terms with a
random-weight VGG16 for LPIPS: only speed is measured), ADA on. Each configuration runs ``--warmup``
iterations first (covering one R1 and one path-length iteration), then times ``--iters`` iterations.
Regularisation iterations are included in proportion only if ``--iters`` is a multiple of 16.

    python benchmarks/bench_train.py                           # CPU: 256 (batch 4) and 1024 (batch 2)
    python benchmarks/bench_train.py --device cuda --res 1024 --batch 32 --iters 16 --precision fp16
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests._helpers (random VGG16 file)


def run(res: int, batch: int, iters: int, warmup: int, device: str, precision: str) -> dict:
    import numpy as np
    import torch
    from PIL import Image

    from realface.checkpoints import save_networks
    from realface.nn.stylegan2 import Discriminator, Generator, config_f_kwargs
    from realface.train.loop import TrainConfig, Trainer
    from tests._helpers import random_vgg16_file

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        torch.manual_seed(0)
        G = Generator(**config_f_kwargs(res, num_fp16_res=0, conv_clamp=256))
        D = Discriminator(
            c_dim=0,
            img_resolution=res,
            img_channels=3,
            channel_base=32768,
            channel_max=512,
            conv_clamp=256,
            epilogue_kwargs={"mbstd_group_size": min(4, batch)},
        )
        save_networks({"G_ema": G, "D": D}, d / "real.safetensors")
        (d / "data").mkdir()
        rng = np.random.default_rng(0)
        for i in range(8):
            Image.fromarray(rng.integers(0, 255, (res, res, 3), dtype=np.uint8)).save(d / "data" / f"{i}.png")
        cfg = TrainConfig(
            data=str(d / "data"),
            real=str(d / "real.safetensors"),
            out=str(d / "run"),
            kimg=1e6,
            batch=batch,
            workers=2,
            lpips_vgg=str(random_vgg16_file(d / "vgg.pth")),
            precision=precision,
            snap=10**6,
        )
        t = Trainer(cfg, device=device)
        for _ in range(warmup):
            t.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for _ in range(iters):
            t.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        secs = time.perf_counter() - t0
        mem = (
            torch.cuda.max_memory_allocated() / 2**30
            if device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        )
        return {
            "res": res,
            "batch": batch,
            "img_s": iters * batch / secs,
            "s_iter": secs / iters,
            "mem_gb": mem,
        }


def main() -> None:
    from realface.utils.memory import keep_freed_memory

    keep_freed_memory()  # as the realface command does
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--res", type=int, nargs="+", default=[256, 1024])
    ap.add_argument(
        "--batch", type=int, nargs="+", default=None, help="one per resolution (CPU default 4, 2)"
    )
    ap.add_argument("--iters", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32")
    args = ap.parse_args()
    batches = args.batch or [4 if r <= 256 else 2 for r in args.res]
    print(
        f"{'res':>5} {'batch':>5} {'img/s':>8} {'s/iter':>8} {'peak GiB':>9}  ({args.device}, {args.precision})"
    )
    for res, batch in zip(args.res, batches, strict=True):
        r = run(res, batch, args.iters, args.warmup, args.device, args.precision)
        print(f"{r['res']:>5} {r['batch']:>5} {r['img_s']:>8.3f} {r['s_iter']:>8.2f} {r['mem_gb']:>9.2f}")


if __name__ == "__main__":
    main()
