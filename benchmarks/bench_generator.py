"""Generator speed and memory: forward, and forward+backward with respect to W+.

FFHQ config-f shapes (channel_base 32768, channel_max 512, 8 mapping layers), random weights, batch 1,
noise_mode='const', eval mode (the inversion setting). Each configuration runs in its own process so
that peak memory is measured per configuration (CPU: peak RSS above the process's baseline after
building the network; CUDA: torch.cuda.max_memory_allocated).

    python benchmarks/bench_generator.py                     # CPU, 256 and 1024
    python benchmarks/bench_generator.py --device cuda --res 1024 --batch 8
    python benchmarks/bench_generator.py --channels-last     # compare memory formats
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(res: int, device: str, batch: int, repeats: int, channels_last: bool, impl: str) -> dict:
    import torch

    from realface.nn.stylegan2 import Generator, config_f_kwargs

    torch.manual_seed(0)
    G = (
        Generator(**config_f_kwargs(res, num_fp16_res=4, conv_clamp=256))
        .eval()
        .requires_grad_(False)
        .to(device)
    )
    if channels_last:
        G = G.to(memory_format=torch.channels_last)
    ws = G.mapping(torch.randn(batch, 512, device=device), None).detach()
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    base_rss = _rss_mib()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()

    def fwd():
        with torch.no_grad():
            G.synthesis(ws, noise_mode="const", impl=impl)

    def fwd_bwd():
        w = ws.clone().requires_grad_(True)
        img = G.synthesis(w, noise_mode="const", impl=impl)
        img.square().mean().backward()

    out = {"res": res, "device": device, "batch": batch, "channels_last": channels_last, "upsample": impl}
    for name, fn in (("forward", fwd), ("forward_backward", fwd_bwd)):
        fn()  # warm-up
        sync()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t0)
        out[f"{name}_s"] = statistics.median(times)
    out["peak_mem_mib"] = (
        torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else _rss_mib() - base_rss
    )
    return out


def main() -> None:
    from realface.utils.memory import keep_freed_memory

    keep_freed_memory()  # as the realface command does
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--res", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--upsample", default="fast", choices=["fast", "ref"])
    ap.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        r = run_one(args.res[0], args.device, args.batch, args.repeats, args.channels_last, args.upsample)
        print(json.dumps(r))
        return
    rows = []
    for res in args.res:
        cmd = [
            sys.executable,
            __file__,
            "--_child",
            "--res",
            str(res),
            "--device",
            args.device,
            "--batch",
            str(args.batch),
            "--repeats",
            str(args.repeats),
            "--upsample",
            args.upsample,
        ]
        if args.channels_last:
            cmd.append("--channels-last")
        rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
    print(
        f"{'res':>5} {'device':>7} {'batch':>5} {'ch_last':>7} {'upsample':>8} {'fwd s':>8} {'fwd+bwd s':>10} {'peak MiB':>9}"
    )
    for r in rows:
        print(
            f"{r['res']:>5} {r['device']:>7} {r['batch']:>5} {str(r['channels_last']):>7} {r['upsample']:>8} "
            f"{r['forward_s']:>8.3f} {r['forward_backward_s']:>10.3f} {r['peak_mem_mib']:>9.0f}"
        )


if __name__ == "__main__":
    main()
