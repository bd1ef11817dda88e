"""Inversion speed: seconds per step and per face, FFHQ config-f shapes with random weights.

Uses the real projector (:func:`realface.invert.invert`) with the real LPIPS-VGG architecture (random
VGG16 weights: only speed is measured). For each resolution, batch size and coarse-to-fine setting it
times individual steps through the progress callback (the first step of each phase is a warm-up and
is not counted) and extrapolates to a full run of ``--steps`` steps:

    per face = (coarse steps x coarse step time + fine steps x full step time) / batch

    python benchmarks/bench_invert.py                         # CPU: 256 and 1024, batch 1 and 4
    python benchmarks/bench_invert.py --device cuda --batch 8 --res 1024
    python benchmarks/bench_invert.py --quality               # LPIPS reached vs seconds (proxy, see below)
    python benchmarks/bench_invert.py --against-official ~/stylegan2-ada-pytorch --pairs 2 --threads 1

``--against-official DIR`` compares one projector step, like for like, with NVIDIA's official
StyleGAN2-ADA code checked out by the user in DIR (it is imported from there, never shipped here). At each
resolution one random-weight config-f generator is built with the official code (``num_fp16_res=0``:
float16 blocks are far slower on CPUs; ``conv_clamp=256`` as config-f), pickled the official way and
loaded into realface by its safe pickle reader, so both sides run the same weights. The official
``projector.project`` (LPIPS-VGG feature distance at 256 plus the noise regulariser, Adam) and realface's
``invert`` with the same work (full resolution, no coarse-to-fine, fp32, noise optimised, noise
regulariser weight 1e5, LPIPS at 256, 10000 W samples) then run in alternating child processes (official,
realface, official, ... ``--pairs`` times), each with the same thread count and allocator setting. A
step's time is the process CPU time (and the wall time) between consecutive optimiser steps, after a
warm-up; the median over ``--steps-timed`` steps is the child's figure, and the ratio realface/official
is reported as the median over pairs with its min-max. The official projector reads its VGG16
(TorchScript ``vgg16.pt``) from a URL; ``--vgg16 FILE`` gives it that file, otherwise it gets a
TorchScript stand-in written from realface's LPIPS-VGG with the random weights realface uses (same
layers, same cost).

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
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

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


# --- like-for-like comparison with the official code (--against-official) -------------------------

OFFICIAL_CONV_CLAMP = 256  # config-f (official train.py sets conv_clamp=256 for every config)
OFFICIAL_UNUSED_IMPORTS = ("requests", "imageio")
W_AVG_SAMPLES = 10000  # the official projector's default; realface's InvertConfig default too
REALFACE_SETTINGS = (
    "realface: invert() at full resolution (no coarse-to-fine), fp32, noise optimised, noise "
    "regulariser 1e5, LpipsLoss at 256, 10000 W samples"
)


@dataclass(frozen=True)
class PairSummary:
    """Medians of the per-child step times and the ratio realface/official over pairs (median, min, max)."""

    official: float
    realface: float
    ratio: float
    ratio_min: float
    ratio_max: float


def summarize(official: list[float], realface: list[float]) -> PairSummary:
    """Summarise alternating runs: ``official[i]`` and ``realface[i]`` are the step times of pair ``i``.

    The ratio is taken within each pair (the two children ran back to back, under the same load), then
    its median, min and max over pairs are reported.
    """
    if not official or len(official) != len(realface):
        raise ValueError(
            f"need one official and one realface time per pair, got {len(official)}/{len(realface)}"
        )
    if min(official) <= 0 or min(realface) <= 0:
        raise ValueError("step times must be positive")
    ratios = [r / o for o, r in zip(official, realface, strict=True)]
    return PairSummary(
        official=statistics.median(official),
        realface=statistics.median(realface),
        ratio=statistics.median(ratios),
        ratio_min=min(ratios),
        ratio_max=max(ratios),
    )


def step_intervals(stamps: list[float], warmup: int = 1) -> list[float]:
    """Times between consecutive optimiser steps, dropping the first ``warmup`` intervals."""
    gaps = [b - a for a, b in zip(stamps[:-1], stamps[1:], strict=True)]
    return gaps[warmup:]


class Vgg16StandIn(torch.nn.Module):
    """The call signature of the official ``vgg16.pt``: ``vgg16(x, resize_images=False, return_lpips=True)``
    with ``x`` in [0, 255], returning ``[N, D]`` features whose squared distance summed is LPIPS.

    Built on realface's LPIPS-VGG (:meth:`LPIPS.features`), so it runs the same layers at the same cost.
    The official projector never asks for resizing or plain features; other flags are refused.
    """

    def __init__(self, lpips: torch.nn.Module, size: int = 256):
        super().__init__()
        self.inner = torch.jit.trace(_FlatFeatures(lpips), torch.zeros(1, 3, size, size), check_trace=False)

    def forward(
        self, x: torch.Tensor, resize_images: bool = False, return_lpips: bool = True
    ) -> torch.Tensor:
        if resize_images or not return_lpips:
            raise RuntimeError("this VGG16 stand-in supports only resize_images=False, return_lpips=True")
        return self.inner(x)


class _FlatFeatures(torch.nn.Module):
    def __init__(self, lpips: torch.nn.Module):
        super().__init__()
        self.lpips = lpips

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.lpips.features(x / 127.5 - 1)  # type: ignore[operator]  # [0, 255] -> [-1, 1]
        return torch.cat([f.flatten(1) for f in feats], dim=1)  # [N, D]


def write_vgg16_standin(lpips: torch.nn.Module, path: Path) -> Path:
    """Script :class:`Vgg16StandIn` around ``lpips`` and save it as TorchScript at ``path``."""
    with warnings.catch_warnings():  # tracing and TorchScript deprecation notes
        warnings.simplefilter("ignore")
        torch.jit.script(Vgg16StandIn(lpips)).save(str(path))
    return path


def _import_official(official_dir: Path | str) -> None:
    """Put the official checkout first on ``sys.path``. Its ``dnnlib.util`` imports ``requests`` (for
    downloads) and ``projector.py`` imports ``imageio`` (for its command line's output files); neither is
    used by what this benchmark calls, so when one is not installed an empty module stands in."""
    import importlib.util
    import types

    sys.path.insert(0, str(official_dir))
    for name in OFFICIAL_UNUSED_IMPORTS:
        if name not in sys.modules and importlib.util.find_spec(name) is None:
            sys.modules.setdefault(name, types.ModuleType(name))


def _build_official_pickle(official_dir: Path, res: int, path: Path) -> torch.nn.Module:
    """One random-weight config-f generator built by the official code, pickled as its training does."""
    import pickle

    _import_official(official_dir)
    from training.networks import Discriminator as OfficialDiscriminator  # type: ignore[import-not-found]
    from training.networks import Generator as OfficialGenerator  # type: ignore[import-not-found]

    torch.manual_seed(0)
    G = (
        OfficialGenerator(
            z_dim=512,
            c_dim=0,
            w_dim=512,
            img_resolution=res,
            img_channels=3,
            mapping_kwargs=dict(num_layers=8),
            synthesis_kwargs=dict(
                channel_base=32768, channel_max=512, num_fp16_res=0, conv_clamp=OFFICIAL_CONV_CLAMP
            ),
        )
        .eval()
        .requires_grad_(False)
    )
    D = OfficialDiscriminator(  # legacy.load_network_pkl requires one
        c_dim=0,
        img_resolution=res,
        img_channels=3,
        channel_base=32768,
        channel_max=512,
        num_fp16_res=0,
        conv_clamp=OFFICIAL_CONV_CLAMP,
        epilogue_kwargs=dict(mbstd_group_size=4),
    ).eval()
    with open(path, "wb") as f:  # persistence records: the official pickle layout (source included)
        pickle.dump(dict(G=G, D=D, G_ema=G, augment_pipe=None, training_set_kwargs=None), f)
    return G


def same_images(official_G: torch.nn.Module, path: Path) -> float:
    """Largest pixel difference between the official generator and realface's load of its pickle."""
    from realface.checkpoints import load_generator

    G = load_generator(path, cache=False)
    z = torch.randn(1, 512, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        a = official_G(z, None, noise_mode="const")
        b = G(z, None, noise_mode="const")
    return float((a - b).abs().max())


class _TimedAdam(torch.optim.Adam):
    """Adam that records process CPU time and wall time after every step."""

    cpu: list[float] = []
    wall: list[float] = []

    def step(self, *args, **kwargs):  # type: ignore[override]
        out = super().step(*args, **kwargs)
        _TimedAdam.cpu.append(time.process_time())
        _TimedAdam.wall.append(time.perf_counter())
        return out


def run_child(kind: str, spec_json: str) -> None:
    """One timed run (``kind`` official or realface); prints one JSON line with the step times."""
    import json

    spec = json.loads(spec_json)
    if spec["allocator"] == "keep":
        from realface.utils.memory import keep_freed_memory

        keep_freed_memory()
    torch.set_num_threads(int(spec["threads"]))
    steps = int(spec["steps_timed"]) + 2  # step 1 and the first interval are warm-up
    res = int(spec["res"])
    gen = torch.Generator().manual_seed(1)
    target = torch.rand(3, res, res, generator=gen) * 2 - 1  # [3, R, R] in [-1, 1]
    torch.optim.Adam = _TimedAdam  # type: ignore[misc]  # both projectors look it up at call time
    if kind == "official":
        _import_official(spec["official_dir"])
        import dnnlib  # type: ignore[import-not-found]
        import legacy  # type: ignore[import-not-found]
        import projector  # type: ignore[import-not-found]

        with open(spec["pickle"], "rb") as f:
            G = legacy.load_network_pkl(f)["G_ema"]
        vgg = spec["vgg16"]
        dnnlib.util.open_url = lambda *a, **k: open(vgg, "rb")
        projector.project(
            G, (target + 1) * 127.5, num_steps=steps, w_avg_samples=W_AVG_SAMPLES, device=torch.device("cpu")
        )
    elif kind == "realface":
        from realface.checkpoints import load_generator
        from realface.invert import InvertConfig, LpipsLoss, invert
        from realface.nn.lpips import load_lpips_vgg

        G = load_generator(spec["pickle"], cache=False)
        lpips = load_lpips_vgg(vgg_path=spec["vgg_state"])
        cfg = InvertConfig(
            steps=steps,
            w_avg_samples=W_AVG_SAMPLES,
            optimize_noise=True,
            noise_reg_weight=1e5,
            loss_resolution=256,
            coarse_to_fine=False,
            precision=spec.get("precision", "fp32"),
        )
        invert(G, target[None], LpipsLoss(lpips, 256), cfg)
    else:
        raise SystemExit(f"unknown child kind {kind!r}")
    cpu = step_intervals(_TimedAdam.cpu)
    wall = step_intervals(_TimedAdam.wall)
    print(json.dumps(dict(cpu=statistics.median(cpu), wall=statistics.median(wall))))


def _child_env(threads: int, allocator: str) -> dict[str, str]:
    import os

    import realface

    env = dict(os.environ)
    paths = [str(Path(realface.__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1])]
    env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    if allocator == "system":
        env["REALFACE_MALLOC"] = "system"
    return env


def _run_one(kind: str, spec: dict, env: dict[str, str]) -> tuple[float, float]:
    import json
    import subprocess

    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", kind, json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise SystemExit(f"bench_invert: the {kind} child failed (exit {proc.returncode}):\n{tail}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return float(out["cpu"]), float(out["wall"])


def compare(args: argparse.Namespace) -> None:
    """Alternate official and realface children at each resolution and print the ratio table."""
    import os

    from realface.nn.lpips import load_lpips_vgg
    from tests._helpers import random_vgg16_file

    official_dir = args.against_official.resolve()
    env = _child_env(args.threads, args.allocator)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        vgg_state = random_vgg16_file(d / "vgg_random.pth")
        if args.vgg16 is not None:
            vgg16 = args.vgg16.resolve()
            vgg_note = f"official projector VGG16: {vgg16}; realface LPIPS: random VGG16 weights"
        else:
            vgg16 = write_vgg16_standin(load_lpips_vgg(vgg_path=vgg_state), d / "vgg16_standin.pt")
            vgg_note = (
                "official projector VGG16: TorchScript stand-in written from realface's LPIPS-VGG with the "
                "same random weights realface uses (same layers and cost)"
            )
        for res in args.res:
            pkl = d / f"official_{res}.pkl"
            diff = same_images(_build_official_pickle(official_dir, res, pkl), pkl)
            print(f"  {res}px: realface's load of the official pickle matches its images to {diff:.1e}")
            if diff > 1e-3:
                raise SystemExit(f"bench_invert: realface's generator differs from the official one ({diff})")
            spec = dict(
                res=res,
                pickle=str(pkl),
                official_dir=str(official_dir),
                vgg16=str(vgg16),
                vgg_state=str(vgg_state),
                threads=args.threads,
                allocator=args.allocator,
                steps_timed=args.steps_timed,
                precision=args.precision,
            )
            times: dict[str, list[tuple[float, float]]] = {"official": [], "realface": []}
            for pair in range(args.pairs):
                for kind in ("official", "realface"):
                    t = _run_one(kind, spec, env)
                    times[kind].append(t)
                    print(
                        f"  {res}px pair {pair + 1}/{args.pairs} {kind}: {t[0]:.2f} s CPU, {t[1]:.2f} s wall"
                    )
            cpu = summarize([t[0] for t in times["official"]], [t[0] for t in times["realface"]])
            wall = summarize([t[1] for t in times["official"]], [t[1] for t in times["realface"]])
            rows.append((res, cpu, wall))
    print()
    print(format_table(rows))
    print(
        f"settings: threads {args.threads}, allocator {args.allocator} in both, the same official-built "
        f"config-f random weights (num_fp16_res=0, conv_clamp={OFFICIAL_CONV_CLAMP}), {args.pairs} pair(s), "
        f"median of {args.steps_timed} timed step(s) per child, torch {torch.__version__}, "
        f"{os.cpu_count()} CPU(s)"
    )
    print(REALFACE_SETTINGS.replace("fp32", args.precision))
    print(vgg_note)


def format_table(rows: list[tuple[int, PairSummary, PairSummary]]) -> str:
    """The result table: per resolution, CPU-time and wall-time medians and ratios [min-max]."""
    lines = [
        f"{'res':>5} {'official s/step':>16} {'realface s/step':>16} {'ratio realface/official':>32}",
    ]
    for res, cpu, wall in rows:
        for what, s in (("CPU", cpu), ("wall", wall)):
            rng = f"{s.ratio:.2f} [{s.ratio_min:.2f}-{s.ratio_max:.2f}]"
            lines.append(f"{res:>5} {s.official:>12.2f} {what:<4}{s.realface:>12.2f} {what:<4}{rng:>31}")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    """The command line of this benchmark (all modes)."""
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
    official = ap.add_argument_group("like-for-like comparison with the official code")
    official.add_argument("--against-official", metavar="DIR", type=Path, default=None)
    official.add_argument("--pairs", type=int, default=3, help="official/realface child pairs per resolution")
    official.add_argument("--steps-timed", type=int, default=2, help="steps timed per child after warm-up")
    official.add_argument("--threads", type=int, default=1, help="torch threads in every child")
    official.add_argument("--allocator", choices=("keep", "system"), default="keep")
    official.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="realface's precision (the official projector always runs fp32; name it with the ratio)",
    )
    official.add_argument("--vgg16", type=Path, default=None, help="the official vgg16.pt (TorchScript)")
    official.add_argument("--quick", action="store_true", help="smoke test: 64 px, one pair")
    official.add_argument("--child", nargs=2, metavar=("KIND", "SPEC"), help=argparse.SUPPRESS)
    return ap


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check the arguments; ``--quick`` sets 64 px and one pair."""
    ap = parser()
    args = ap.parse_args(argv)
    if args.quick:
        args.res, args.pairs = [64], 1
    if args.pairs < 1 or args.steps_timed < 1 or args.threads < 1:
        ap.error("--pairs, --steps-timed and --threads must be at least 1")
    if args.against_official is not None and args.child is None:
        d = args.against_official
        if not (d / "projector.py").is_file() or not (d / "training" / "networks.py").is_file():
            ap.error(f"{d}: not a checkout of stylegan2-ada-pytorch (no projector.py / training/networks.py)")
        if args.vgg16 is not None and not args.vgg16.is_file():
            ap.error(f"{args.vgg16}: no such file")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child is not None:
        run_child(args.child[0], args.child[1])
        return
    if args.against_official is not None:
        compare(args)
        return
    from realface.utils.memory import keep_freed_memory

    keep_freed_memory()  # as the realface command does
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
