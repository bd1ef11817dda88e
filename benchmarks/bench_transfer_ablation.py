"""Which inversion settings make realism transfer work? Ablations on a finished `realface bench transfer` run.

`realface bench transfer -o RUN` fine-tunes two G_rendering (with and without the identity losses) in the
toy world and inverts 32 held-out CG renders with one setting of the projector. This script takes those
fine-tuned generators (the last checkpoint of ``RUN/run_full`` and ``RUN/run_no_identity``), the same
held-out faces (same parameters, same per-face seeds, same LPIPS network) and re-runs the inversion under
other settings, one change at a time from the benchmark's own (200 steps, lr 0.1, W, noise maps optimised,
latent noise 0.05, decode with G_real's constant noise; runs from before ``--space`` inverted in W+):

- steps 100 / 500; peak learning rate 0.03 / 0.3;
- W (``InvertConfig.space="w"``, one latent per face as the official projector) and W+ (one per layer,
  the paper's); one of them is the run's own setting;
- noise: maps not optimised; no latent noise (``initial_noise_factor=0``); decode with the noise maps the
  inversion optimised instead of G_real's constant noise;
- decoding only the coarse layers (the last two settings reuse the default setting's inversion): ``--transfer-layers 0-3`` of `realface apply` (W+ layers 4 and up
  from G_real's w_avg).

For each setting and each of the rows ``full`` (G_rendering with identity losses), ``no_identity`` and
``direct`` (into G_real), it reports LPIPS, L2 and parameter error to the true photo (mean and 95 %
interval), then the paired difference of each setting against the default one (same faces), and of
``full`` and ``no_identity`` against ``direct`` within each setting. Results go to ``--out`` (JSON and
Markdown, written atomically after every setting; a rerun skips the settings already there).

    realface bench transfer -o runs/bench_transfer --lpips-vgg random
    python benchmarks/bench_transfer_ablation.py --run runs/bench_transfer -o runs/ablation
    python benchmarks/bench_transfer_ablation.py --run runs/bench_transfer -o runs/ablation --only default,w
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "steps_100": {"steps": 100},
    "steps_500": {"steps": 500},
    "lr_0.03": {"lr": 0.03},
    "lr_0.3": {"lr": 0.3},
    "w": {"space": "w"},
    "w+": {"space": "w+"},
    "no_noise_maps": {"optimize_noise": False},
    "no_latent_noise": {"initial_noise_factor": 0.0},
    "decode_optimised_noise": {"keep_noise": True},
    "coarse_layers_0-3": {"transfer_layers": (0, 1, 2, 3)},
}
ROWS = ("full", "no_identity", "direct")


def _fmt(mean_ci: tuple[float, float, float], digits: int = 4) -> str:
    m, lo, hi = mean_ci
    return f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _report(doc: dict) -> str:
    from realface.bench.transfer import METRICS, paired_difference
    from realface.metrics.consistency import mean_ci

    res = doc["results"]
    lines = [
        "# Inversion ablations in the toy world",
        "",
        f"run {doc['run']}, {doc['held_out']} held-out faces, precision {doc['precision']}, "
        f"base setting {doc['base']}",
        "",
        "| setting | row | LPIPS | L2 | parameter error | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in res.items():
        for row in ROWS:
            v = entry["rows"][row]
            cells = [_fmt(mean_ci(v[m])) if m != "param_error" else _fmt(mean_ci(v[m]), 3) for m in METRICS]
            lines.append(f"| {name} | {row} | " + " | ".join(cells) + f" | {entry['seconds'][row]:.0f} |")
    lines += ["", "Paired difference setting − default (same row, same faces):", ""]
    lines += ["| setting | row | ΔLPIPS | ΔL2 |", "|---|---|---|---|"]
    if "default" in res:
        for name, entry in res.items():
            if name == "default":
                continue
            for row in ROWS:
                d = paired_difference(entry["rows"][row], res["default"]["rows"][row])
                cells = [
                    f"{d[m]['mean_diff']:+.4f} [{d[m]['ci95'][0]:+.4f}, {d[m]['ci95'][1]:+.4f}]"
                    for m in ("lpips", "l2")
                ]
                lines.append(f"| {name} | {row} | " + " | ".join(cells) + " |")
    lines += ["", "Paired difference row − direct within each setting:", ""]
    lines += ["| setting | row | ΔLPIPS | ΔL2 | verdict (LPIPS / L2) |", "|---|---|---|---|---|"]
    for name, entry in res.items():
        for row in ("full", "no_identity"):
            d = paired_difference(entry["rows"][row], entry["rows"]["direct"])
            cells = [
                f"{d[m]['mean_diff']:+.4f} [{d[m]['ci95'][0]:+.4f}, {d[m]['ci95'][1]:+.4f}]"
                for m in ("lpips", "l2")
            ]
            verdict = f"{d['lpips']['verdict']} / {d['l2']['verdict']}".replace("a better", f"{row} better")
            verdict = verdict.replace("b better", "direct better")
            lines.append(f"| {name} | {row} | " + " | ".join(cells) + f" | {verdict} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="folder of a finished `realface bench transfer`")
    ap.add_argument("-o", "--out", type=Path, required=True, help="folder for ablation.json / ablation.md")
    ap.add_argument(
        "--only", default="", help="comma-separated settings (default: all): " + ", ".join(VARIANTS)
    )
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()

    from realface.bench.faces import render_photo, sample_params
    from realface.bench.transfer import (
        TransferBenchConfig,
        decode_faces,
        invert_faces,
        render_style,
        score_faces,
    )
    from realface.bench.world import load_world
    from realface.checkpoints import load_generator
    from realface.errors import ConfigError
    from realface.invert import InvertConfig, LpipsLoss
    from realface.nn.lpips import load_lpips_vgg
    from realface.precision import resolve_precision
    from realface.train.loop import latest_checkpoint
    from realface.utils.fs import atomic_write_text

    if args.threads:
        torch.set_num_threads(args.threads)
    results_file = args.run / "results.json"
    if not results_file.is_file():
        sys.exit(f"error: {results_file}: not found (run `realface bench transfer -o {args.run}` first)")
    bench = json.loads(results_file.read_text())
    cfg_doc = dict(bench["config"])
    cfg_doc.pop("identity", None)
    cfg_doc.setdefault("space", "w+")  # results of runs from before the option inverted in W+
    cfg = TransferBenchConfig(**cfg_doc)
    only = [v for v in args.only.split(",") if v] or list(VARIANTS)
    unknown = [v for v in only if v not in VARIANTS]
    if unknown:
        sys.exit(f"error: --only: unknown settings {unknown}; known: {', '.join(VARIANTS)}")

    world = load_world(cfg.world)
    G_real, res = world.G_real, world.G_real.img_resolution
    vgg = args.run / "random_vgg16.pth"
    if not str(bench["lpips_vgg"]).startswith("random"):
        vgg = Path(bench["lpips_vgg"]) if Path(bench["lpips_vgg"]).is_file() else None
    lpips = load_lpips_vgg(vgg_path=str(vgg) if vgg else None)
    generators = {
        "full": load_generator(
            latest_checkpoint(args.run / "run_full") / "networks.safetensors", which="G_ema"
        ),
        "no_identity": load_generator(
            latest_checkpoint(args.run / "run_no_identity") / "networks.safetensors", which="G_ema"
        ),
        "direct": G_real,
    }
    for G in generators.values():
        G.eval().requires_grad_(False)
    p_star = sample_params(cfg.held_out, cfg.seed + 2)  # the benchmark's held-out faces
    rendered = render_style(p_star, cfg.style, res)
    truth = render_photo(p_star, res)
    precision = resolve_precision(cfg.precision, "cpu")
    base = InvertConfig(steps=cfg.steps, seed=cfg.seed, precision=precision, space=cfg.space)
    loss = LpipsLoss(lpips, 256)

    out_json = args.out / "ablation.json"
    args.out.mkdir(parents=True, exist_ok=True)
    doc = json.loads(out_json.read_text()) if out_json.is_file() else {}
    if doc and doc.get("run") != str(args.run):
        sys.exit(f"error: {out_json}: holds ablations of another run ({doc.get('run')}); use another --out")
    doc.update(
        run=str(args.run),
        held_out=cfg.held_out,
        precision=precision,
        base=dataclasses.asdict(base),
        results=doc.get("results", {}),
    )
    inversions: dict[tuple[str, str], tuple[torch.Tensor, list[torch.Tensor] | None, float]] = {}

    def inverted(row: str, icfg: InvertConfig) -> tuple[torch.Tensor, Any, float]:
        """The latents, noise maps and seconds of one row under one inversion setting (made once)."""
        key = (json.dumps(dataclasses.asdict(icfg), sort_keys=True), row)
        if key not in inversions:
            t0 = time.time()
            ws, noise = invert_faces(generators[row], rendered, loss, icfg, cfg.inversion_batch, cfg.seed)
            inversions[key] = (ws, noise, time.time() - t0)
        return inversions[key]

    for name in only:
        if name in doc["results"]:
            print(f"{name}: done before, skipped")
            continue
        over = dict(VARIANTS[name])
        keep_noise = bool(over.pop("keep_noise", False))
        layers = over.pop("transfer_layers", None)
        try:
            icfg = dataclasses.replace(base, **over)
        except ConfigError as exc:
            sys.exit(f"error: setting {name}: {exc}")
        rows: dict[str, Any] = {}
        seconds: dict[str, float] = {}
        for row in ROWS:
            ws, noise, seconds[row] = inverted(row, icfg)
            faces = decode_faces(G_real, ws, noise if keep_noise else None, layers)
            rows[row] = score_faces(faces, truth, p_star, lpips, world.regressor)
            print(f"{name} {row}: LPIPS {sum(rows[row]['lpips']) / cfg.held_out:.4f} ({seconds[row]:.0f} s)")
        doc["results"][name] = {"overrides": VARIANTS[name], "rows": rows, "seconds": seconds}
        atomic_write_text(out_json, json.dumps(doc, indent=2) + "\n")
        atomic_write_text(args.out / "ablation.md", _report(doc))
    print(_report(doc))


if __name__ == "__main__":
    main()
