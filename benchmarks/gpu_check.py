"""One script for a CUDA machine: the GPU paths of realface, timed, in under 8 minutes.

Sections (each has a time budget; a part that would exceed what is left of it is skipped, with the
reason printed):

- ``tests``: the suite's tests on device-dependent code (``pytest -k`` on cuda/gpu/fp16/bf16/precision/
  device in the test ids, this script's own test excepted), run in a child pytest; its summary line is
  reported (today the suite has no CUDA-only test, so the selection may be empty: pytest exit status 5).
- ``invert``: inversion at 1024 (config-f, random weights) for batch 1 and 8 in fp32, with the official
  float16 blocks (``num_fp16_res=4``, ``conv_clamp=256``) and under bf16 autocast: seconds per face for
  500 steps, extrapolated from the median of timed steps, and agreement with fp32 after the same steps
  (LPIPS and mean squared difference between the fp32 generator's images of the two results).
- ``train``: ``realface.train`` iterations at 1024, batch 32, fp16 and bf16 (img/s, peak GPU memory),
  random-weight G and D, all losses, ADA on.
- ``ddp``: two processes training together (``torch.multiprocessing``) over NCCL, one GPU each; with a
  single GPU both ranks share it over gloo (NCCL refuses two ranks on one device). Checks that the
  two ranks end with identical generator weights.
- ``apply``: ``realface apply`` end to end (a child process) on config-f random weights.

    python benchmarks/gpu_check.py --out gpu_check.json
    python benchmarks/gpu_check.py --cpu-smoke --out smoke.json   # every section, tiny models, CPU, gloo

All weights are random, so the figures measure speed and numerical agreement, not image quality.
Targets (README): <= 2 s per face at batch 8 on an H100-class GPU, >= 17 img/s training at 1024.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests._helpers (random VGG16 file)

BUDGETS_S = {"tests": 75.0, "invert": 150.0, "train": 110.0, "ddp": 50.0, "apply": 55.0}  # 440 s in all
SMOKE_BUDGETS_S = {"tests": 20.0, "invert": 20.0, "train": 15.0, "ddp": 30.0, "apply": 60.0}
TOTAL_S = 470.0  # the whole script on a GPU: under 8 minutes
SMOKE_TOTAL_S = 10**6  # the smoke run is bounded by its tiny sizes, not by a clock
MIN_SECTION_S = 5.0
TEST_SELECTION = "(cuda or gpu or fp16 or bf16 or precision or device) and not gpu_check"  # not itself


@dataclass(frozen=True)
class Setup:
    """What the sections run: the device, model sizes and step counts (GPU or ``--cpu-smoke``)."""

    device: str
    smoke: bool
    res: int
    invert_batches: tuple[int, ...]
    invert_steps: int
    train_batch: int
    train_iters: int
    apply_steps: int
    budgets: dict[str, float] = field(default_factory=dict)


def gpu_setup() -> Setup:
    return Setup("cuda", False, 1024, (1, 8), 20, 32, 4, 50, dict(BUDGETS_S))


def smoke_setup() -> Setup:
    return Setup("cpu", True, 32, (1, 2), 3, 2, 1, 2, dict(SMOKE_BUDGETS_S))


def generator_kwargs(s: Setup, fp16_blocks: bool = False) -> dict[str, Any]:
    """Config-f at ``s.res`` (tiny channels on a smoke run); fp16 blocks as the official training."""
    from realface.nn.stylegan2 import config_f_kwargs

    kw = config_f_kwargs(s.res, num_fp16_res=4 if fp16_blocks else 0, conv_clamp=256)
    if s.smoke:
        kw.update(z_dim=64, w_dim=64, mapping_kwargs={"num_layers": 2})
        kw["synthesis_kwargs"].update(channel_base=256, channel_max=32)
    return kw


def discriminator(s: Setup, batch: int) -> torch.nn.Module:
    from realface.nn.stylegan2 import Discriminator

    sk = generator_kwargs(s)["synthesis_kwargs"]
    return Discriminator(
        c_dim=0,
        img_resolution=s.res,
        img_channels=3,
        channel_base=sk["channel_base"],
        channel_max=sk["channel_max"],
        conv_clamp=256,
        epilogue_kwargs={"mbstd_group_size": min(4, batch)},
    )


class Section:
    """A section's clock: ``fits(estimate)`` says whether a part of ``estimate`` seconds still fits."""

    def __init__(self, name: str, budget: float):
        self.name, self.budget, self.t0 = name, budget, time.perf_counter()
        self.result: dict[str, Any] = {"status": "ok", "budget_s": budget, "parts": [], "skipped": []}

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.t0)

    def fits(self, what: str, estimate: float) -> bool:
        if estimate <= self.left():
            return True
        reason = (
            f"{what}: needs about {estimate:.0f} s, {max(self.left(), 0):.0f} s left of {self.budget:.0f} s"
        )
        print(f"  [{self.name}] skipped {reason}")
        self.result["skipped"].append(reason)
        return False

    def add(self, part: dict[str, Any]) -> None:
        print(f"  [{self.name}] " + ", ".join(f"{k}={_fmt(v)}" for k, v in part.items()))
        self.result["parts"].append(part)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _peak_gib(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _lpips(device: str, d: Path) -> torch.nn.Module:
    from realface.nn.lpips import load_lpips_vgg
    from tests._helpers import random_vgg16_file

    return load_lpips_vgg(device=device, vgg_path=random_vgg16_file(d / "vgg.pth"))


# --- sections -----------------------------------------------------------------------------------


def section_tests(s: Setup, sec: Section, d: Path) -> None:
    """The suite's device-dependent tests in a child pytest (collected only on a smoke run)."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", "-k", TEST_SELECTION]
    if s.smoke:  # collect only, from one file: the check is that the selection and the child work
        cmd[cmd.index("tests")] = "tests/nn/test_stylegan2.py"
        cmd.append("--collect-only")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(_src_dir()), str(ROOT)]))
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=max(sec.left(), 1)
        )
    except subprocess.TimeoutExpired:
        sec.fits("pytest", float("inf"))
        return
    tail = (proc.stdout.strip().splitlines() or [""])[-1]
    part: dict[str, Any] = {"selection": TEST_SELECTION, "summary": tail, "rc": proc.returncode}
    part["seconds"] = time.perf_counter() - t0
    part["mode"] = "collect-only" if s.smoke else "run"
    if s.smoke and proc.returncode not in (0, 5):
        sec.result["status"] = "failed"
    if not s.smoke and proc.returncode not in (0, 5):  # 5: nothing selected
        sec.result["status"] = "failed"
    sec.add(part)


def _time_invert(G, targets, lpips, steps: int, precision: str, device: str):
    from realface.invert import InvertConfig, LpipsLoss, invert

    stamps: list[float] = []

    def cb(step, total, loss):
        _sync(device)
        stamps.append(time.perf_counter())

    cfg = InvertConfig(steps=steps, w_avg_samples=1000, precision=precision)
    t0 = time.perf_counter()
    res = invert(G, targets, LpipsLoss(lpips, 256), cfg, callback=cb)
    gaps = [b - a for a, b in zip([t0] + stamps[:-1], stamps, strict=True)]
    return res, statistics.median(gaps[1:] if len(gaps) > 1 else gaps)


def section_invert(s: Setup, sec: Section, d: Path) -> None:
    """Seconds per face for 500 steps and agreement with fp32, batch x {fp32, fp16 blocks, bf16}."""
    from realface.nn.stylegan2 import Generator

    dev = s.device
    torch.manual_seed(0)
    G32 = Generator(**generator_kwargs(s)).eval().requires_grad_(False).to(dev)
    G16 = Generator(**generator_kwargs(s, fp16_blocks=True)).eval().requires_grad_(False)
    G16.load_state_dict(G32.state_dict())
    G16 = G16.to(dev)
    lpips = _lpips(dev, d)
    if dev == "cpu":
        sec.result["note"] = "off CUDA the float16 blocks run in float32 (realface's block dtype rule)"
    estimate = 0.0
    for batch in s.invert_batches:
        with torch.no_grad():
            targets = G32(torch.randn(batch, G32.z_dim, device=dev), None, truncation_psi=0.7)
        ref = None
        for mode, G, precision in (
            ("fp32", G32, "fp32"),
            ("fp16-blocks", G16, "fp32"),
            ("bf16", G32, "bf16"),
        ):
            if mode != "fp32" and ref is None:
                sec.result["skipped"].append(f"batch {batch} {mode}: no fp32 reference to compare with")
                continue
            if not sec.fits(f"batch {batch} {mode}", estimate):
                continue
            t0 = time.perf_counter()
            res, step_s = _time_invert(G, targets, lpips, s.invert_steps, precision, dev)
            with torch.no_grad():
                img = G32.synthesis(res.ws, noise_mode="const", noise=res.noise)  # [N, 3, R, R]
            part: dict[str, Any] = {
                "batch": batch,
                "mode": mode,
                "steps": s.invert_steps,
                "s_per_step": step_s,
                "s_per_face_500": 500 * step_s / batch,
                "final_loss": float(res.final_loss.mean()),
            }
            if ref is None:
                ref = img
            else:
                with torch.no_grad():
                    part["lpips_vs_fp32"] = float(lpips(img, ref).mean())
                    part["mse_vs_fp32"] = float((img - ref).square().mean())
            sec.add(part)
            estimate = time.perf_counter() - t0  # the next part costs about as much (batch 8: more)
        estimate *= 1.5


def _training_folder(s: Setup, d: Path, batch: int, G, D) -> tuple[Path, Path, Path]:
    import numpy as np
    from PIL import Image

    from realface.checkpoints import save_networks
    from tests._helpers import random_vgg16_file

    save_networks({"G_ema": G, "D": D}, d / "real.safetensors")
    data = d / "data"
    if not data.is_dir():
        data.mkdir()
        rng = np.random.default_rng(0)
        for i in range(max(batch, 8)):
            img = rng.integers(0, 255, (s.res, s.res, 3), dtype=np.uint8)
            Image.fromarray(img).save(data / f"{i}.png")
    return d / "real.safetensors", data, random_vgg16_file(d / "vgg_train.pth")


def _write_training_inputs(s: Setup, d: Path, batch: int) -> tuple[Path, Path, Path]:
    from realface.nn.stylegan2 import Generator

    torch.manual_seed(0)
    return _training_folder(s, d, batch, Generator(**generator_kwargs(s)), discriminator(s, batch))


def _trainer(s: Setup, d: Path, batch: int, precision: str, out: str, device: str, write: bool = True):
    from realface.train.loop import TrainConfig, Trainer

    if write:
        real, data, vgg = _write_training_inputs(s, d, batch)
    else:  # written by the parent (DDP ranks must not write the same files)
        real, data, vgg = d / "real.safetensors", d / "data", d / "vgg_train.pth"
    cfg = TrainConfig(
        data=str(data),
        real=str(real),
        out=str(d / out),
        kimg=1e6,
        batch=batch,
        workers=0 if s.smoke else 4,
        lpips_vgg=str(vgg),
        precision=precision,
        snap=10**6,
    )
    return Trainer(cfg, device=device)


def section_train(s: Setup, sec: Section, d: Path) -> None:
    """img/s and peak memory of training iterations (all losses, ADA) in fp16 and bf16."""
    if s.device == "cpu":
        sec.result["note"] = "off CUDA realface.train runs fp16 and bf16 in float32 (it warns so)"
    estimate = 0.0
    for precision in ("fp16", "bf16"):
        if not sec.fits(f"training {precision}", estimate):
            continue
        t_start = time.perf_counter()
        t = _trainer(s, d, s.train_batch, precision, f"run_{precision}", s.device)
        t.step()  # warm-up (also the first R1 and path-length iteration)
        _sync(s.device)
        if s.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for _ in range(s.train_iters):
            t.step()
        _sync(s.device)
        secs = time.perf_counter() - t0
        sec.add(
            {
                "precision": precision,
                "res": s.res,
                "batch": s.train_batch,
                "iters": s.train_iters,
                "img_s": s.train_iters * s.train_batch / secs,
                "peak_gib": _peak_gib(s.device),
            }
        )
        del t
        estimate = time.perf_counter() - t_start


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ddp_batch(s: Setup, world: int) -> int:
    return (2 if s.smoke else 8) * world


def _ddp_worker(rank: int, world: int, backend: str, port: int, s: Setup, d: str, q) -> None:
    import torch.distributed as dist

    if s.smoke:
        torch.set_num_threads(1)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        device = s.device
        if device == "cuda":
            device = f"cuda:{rank % torch.cuda.device_count()}"
            torch.cuda.set_device(device)
        t = _trainer(s, Path(d), _ddp_batch(s, world), "fp32", "run_ddp", device, write=False)
        t.step()
        _sync(device)
        t0 = time.perf_counter()
        iters = 2
        for _ in range(iters):
            t.step()
        _sync(device)
        secs = time.perf_counter() - t0
        flat = torch.cat([p.detach().flatten().float() for p in t.G.parameters()])
        ref = flat.clone()
        dist.broadcast(ref, src=0)
        diff = (flat - ref).abs().max()
        dist.all_reduce(diff, op=dist.ReduceOp.MAX)
        if rank == 0:
            q.put(
                {
                    "backend": backend,
                    "world": world,
                    "s_per_iter": secs / iters,
                    "max_weight_diff": float(diff),
                }
            )
    finally:
        dist.destroy_process_group()


def section_ddp(s: Setup, sec: Section, d: Path) -> None:
    """Two ranks training together; their generator weights must stay identical."""
    import torch.multiprocessing as mp

    if s.device == "cuda":
        backend = "nccl" if torch.cuda.device_count() >= 2 else "gloo"
        if backend == "gloo":
            sec.result["note"] = (
                "one GPU: NCCL refuses two ranks on one device, so both ranks used gloo on it"
            )
    else:
        backend = "gloo"
    _write_training_inputs(s, d, _ddp_batch(s, 2))  # once, before the ranks start
    ctx = mp.get_context("spawn")
    q = ctx.SimpleQueue()
    mp.start_processes(
        _ddp_worker, args=(2, backend, _free_port(), s, str(d), q), nprocs=2, start_method="spawn"
    )
    part = q.get()
    if part["max_weight_diff"] != 0.0:
        sec.result["status"] = "failed"
    sec.add(part)


def section_apply(s: Setup, sec: Section, d: Path) -> None:
    """``realface apply`` on one catalogue image with random config-f G_real / G_rendering."""
    from realface.checkpoints import save_networks
    from realface.nn.stylegan2 import Generator
    from tests._helpers import random_vgg16_file

    image = ROOT / "tests" / "data" / "images" / "replicant_face_00000.jpg"
    if not image.is_file():
        raise FileNotFoundError(f"{image}: the test image is missing (see tests/data/FIXTURES.md)")
    torch.manual_seed(0)
    G = Generator(**generator_kwargs(s))
    save_networks({"G": G}, d / "apply_real.safetensors")
    torch.manual_seed(1)
    save_networks({"G_ema": Generator(**generator_kwargs(s))}, d / "apply_rendering.safetensors")
    vgg = random_vgg16_file(d / "apply_vgg.pth")
    out = d / "apply_out"
    cmd = [
        sys.executable, "-m", "realface", "apply", str(image), "-o", str(out),
        "--real", str(d / "apply_real.safetensors"), "--rendering", str(d / "apply_rendering.safetensors"),
        "--lpips-vgg", str(vgg), "--steps", str(s.apply_steps), "--device", s.device,
        "--batch", "1", "--no-progress", "--mask", "landmarks",
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(_src_dir()), str(ROOT)]))
    env.setdefault("REALFACE_HOME", str(d / "home"))
    if s.smoke:
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if os.environ.get("GPU_CHECK_DEBUG"):
        print(" ".join(cmd))
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=max(sec.left(), 1))
    except subprocess.TimeoutExpired:
        sec.fits("realface apply", float("inf"))
        return
    outputs = sorted(p.name for p in out.rglob("*") if p.is_file()) if out.is_dir() else []
    part = {
        "rc": proc.returncode,
        "seconds": time.perf_counter() - t0,
        "steps": s.apply_steps,
        "files": outputs,
    }
    if proc.returncode != 0:
        part["error"] = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        sec.result["status"] = "failed"
    sec.add(part)


SECTIONS: dict[str, Callable[[Setup, Section, Path], None]] = {
    "tests": section_tests,
    "invert": section_invert,
    "train": section_train,
    "ddp": section_ddp,
    "apply": section_apply,
}


def _src_dir() -> Path:
    import realface

    return Path(realface.__file__).resolve().parents[1]


def run(s: Setup, only: list[str] | None = None) -> dict[str, Any]:
    """Run the sections in order; each one's failure is recorded and the next one still runs."""
    report: dict[str, Any] = {
        "device": s.device,
        "smoke": s.smoke,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if s.device == "cuda" else None,
        "sections": {},
    }
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name, fn in SECTIONS.items():
            if only and name not in only:
                continue
            left = (SMOKE_TOTAL_S if s.smoke else TOTAL_S) - (time.perf_counter() - t0)
            budget = min(s.budgets[name], left)
            print(f"== {name} (budget {budget:.0f} s)")
            sec = Section(name, budget)
            if budget < MIN_SECTION_S:
                reason = f"{name}: only {max(left, 0):.0f} s left of the script's {TOTAL_S:.0f} s"
                print(f"  [{name}] skipped {reason}")
                sec.result.update(status="skipped", skipped=[reason], seconds=0.0)
                report["sections"][name] = sec.result
                continue
            d = Path(tmp) / name
            d.mkdir()
            try:
                fn(s, sec, d)
            except Exception as exc:  # one broken section must not hide the others
                sec.result["status"] = "failed"
                sec.result["error"] = f"{type(exc).__name__}: {exc}"
                print(f"  [{name}] FAILED: {sec.result['error']}")
                traceback.print_exc(limit=3)
            if sec.result["status"] == "ok" and not sec.result["parts"] and sec.result["skipped"]:
                sec.result["status"] = "skipped"  # every part was over the budget
            sec.result["seconds"] = time.perf_counter() - sec.t0
            report["sections"][name] = sec.result
            if s.device.startswith("cuda"):
                torch.cuda.empty_cache()
    report["total_s"] = time.perf_counter() - t0
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="also write the report as JSON here")
    ap.add_argument("--cpu-smoke", action="store_true", help="every section on tiny models on CPU (gloo)")
    ap.add_argument("--only", nargs="+", choices=sorted(SECTIONS), help="run these sections only")
    args = ap.parse_args(argv)
    if args.cpu_smoke:
        s = smoke_setup()
    else:
        if not torch.cuda.is_available():
            ap.error("no CUDA device found (use --cpu-smoke to test the script on a CPU)")
        s = gpu_setup()
    if s.smoke:
        torch.set_num_threads(1)
    report = run(s, args.only)
    print(f"== done in {report['total_s']:.0f} s")
    for name, r in report["sections"].items():
        print(f"  {name:<7} {r['status']:<7} {r['seconds']:>6.1f} s  skipped: {len(r['skipped'])}")
    if args.out is not None:
        from realface.utils.fs import atomic_write_text

        atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    return 0 if all(r["status"] != "failed" for r in report["sections"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
