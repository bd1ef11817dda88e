"""Catalogue throughput on the CPU: ``realface apply --workers 1`` with two torch threads against
``--workers 2`` (two single-threaded worker processes), in faces per hour.

Usage: ``python benchmarks/bench_workers.py [--images 6] [--steps 50] [--repeat 2] [--json FILE]``

The job is the 64 px fixture generator (tests/data/stylegan2-ada/sg2ada_tiny64.pkl) as G_real and
G_rendering, a random-weight LPIPS-VGG, and ``--images`` rotated copies of the replicant face fixture
(one face each, landmark mask). Each run is the whole command in a fresh process into a fresh output
folder, A B A B alternating so that a change in the machine's load hits both alike. Two figures per
run: the wall time of the command (start-up, model loading and worker start included), and the steady
rate between the first ``started`` and the last finished record of the manifest. Printed: the median
and min–max of each, and the ratio of the medians (B / A). The output folders are compared too: the
two settings must write the same composites.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"

SETTINGS = {  # name -> (extra arguments, torch threads of the command's process)
    "A: --workers 1, 2 threads": (["--workers", "1"], 2),
    "B: --workers 2, 1 thread each": (["--workers", "2"], 1),
}


def make_models(folder: Path) -> list[str]:
    """The tiny generators and a random VGG16 file; ``apply``'s model arguments."""
    import torch
    import torchvision

    from realface.checkpoints import convert_pickle

    pkl = DATA / "stylegan2-ada" / "sg2ada_tiny64.pkl"
    real = convert_pickle(pkl, folder / "real.safetensors", only=("G",))
    rendering = convert_pickle(pkl, folder / "rendering.safetensors", only=("G_ema",))
    torch.manual_seed(0)
    features = torchvision.models.vgg16(weights=None).features
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, folder / "vgg16.pth")
    return ["--real", str(real), "--rendering", str(rendering), "--lpips-vgg", str(folder / "vgg16.pth")]


def make_catalogue(folder: Path, n: int) -> Path:
    from PIL import Image

    folder.mkdir(parents=True)
    src = Image.open(DATA / "images" / "replicant_face_00000.jpg")
    for i in range(n):
        src.rotate(2 * i).save(folder / f"look{i:03d}.png")
    return folder


def run_once(cat: Path, out: Path, models: list[str], steps: int, extra: list[str], threads: int) -> dict:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "REALFACE_HOME": str(out.parent / "home"),
        "REALFACE_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [sys.executable, "-m", "realface", "apply", str(cat), "-o", str(out), *models]
    cmd += ["--steps", str(steps), "--no-progress", "--mask", "landmarks", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"realface apply failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines() if line]
    done = [r for r in records if r["status"] == "done"]
    if len(done) != len(list(cat.iterdir())):
        raise SystemExit(f"{out}: {len(done)} faces done, expected one per image of {cat}")
    first = min(datetime.fromisoformat(r["time"]) for r in records if r["status"] == "started")
    last = max(datetime.fromisoformat(r["time"]) for r in done)
    return {
        "images": len(done),
        "wall_s": wall,
        "faces_per_hour_wall": 3600 * len(done) / wall,
        "faces_per_hour_steady": 3600 * len(done) / max(1e-6, (last - first).total_seconds()),
    }


def summarise(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=6, help="images in the catalogue (default 6)")
    parser.add_argument("--steps", type=int, default=50, help="inversion steps per face (default 50)")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each setting, alternating")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_workers_") as tmp:
        root = Path(tmp)
        (root / "models").mkdir()
        models = make_models(root / "models")
        cat = make_catalogue(root / "catalogue", args.images)
        runs: dict[str, list[dict]] = {name: [] for name in SETTINGS}
        outputs: dict[str, bytes] = {}
        for r in range(args.repeat):
            for k, (name, (extra, threads)) in enumerate(SETTINGS.items()):
                out = root / f"out_{'AB'[k]}{r}"  # a fresh folder for every run
                res = run_once(cat, out, models, args.steps, extra, threads)
                runs[name].append(res)
                print(
                    f"{name}: {res['images']} faces in {res['wall_s']:.1f} s; "
                    f"{res['faces_per_hour_wall']:.0f} faces/h (wall), "
                    f"{res['faces_per_hour_steady']:.0f} faces/h (steady)",
                    flush=True,
                )
                composite = b"".join((out / p.name).read_bytes() for p in sorted(cat.iterdir()))
                outputs.setdefault(name, composite)
        same = len(set(outputs.values())) == 1
    result: dict = {"images": args.images, "steps": args.steps, "cpus": os.cpu_count(), "settings": {}}
    for name, rs in runs.items():
        result["settings"][name] = {
            kind: summarise([x[kind] for x in rs])
            for kind in ("faces_per_hour_wall", "faces_per_hour_steady")
        }
    a, b = (result["settings"][n] for n in SETTINGS)
    for kind in ("faces_per_hour_wall", "faces_per_hour_steady"):
        result[f"ratio_{kind}"] = b[kind]["median"] / a[kind]["median"]
    result["same_composites"] = same
    print()
    for name, s in result["settings"].items():
        w, st = s["faces_per_hour_wall"], s["faces_per_hour_steady"]
        print(
            f"{name:32s} wall {w['median']:7.0f} faces/h ({w['min']:.0f}–{w['max']:.0f}); "
            f"steady {st['median']:7.0f} ({st['min']:.0f}–{st['max']:.0f})"
        )
    print(
        f"B / A: {result['ratio_faces_per_hour_wall']:.2f}× (wall), "
        f"{result['ratio_faces_per_hour_steady']:.2f}× (steady); same composites: {same}"
    )
    if args.json is not None:
        from realface.utils.fs import atomic_write_text

        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
