"""`realface eval …`: FID, identity similarity, LPIPS and L2, and the identity consistency of two generators,
with a table on screen and JSON / CSV reports."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import typer

from realface.cli import app
from realface.cli.common import DEVICE_OPT, LPIPS_VGG_OPT, PROGRESS_OPT, config_option, default_of
from realface.errors import ConfigError
from realface.metrics.consistency import ConsistencyConfig
from realface.metrics.fid import FIDConfig, GeneratorSamplingConfig
from realface.metrics.files import PairSet
from realface.metrics.identity import IdentityConfig
from realface.metrics.similarity import SimilarityConfig

eval_app = typer.Typer(
    name="eval",
    help="Evaluate results: FID of image sets or generators, identity similarity, LPIPS and L2 of pairs, "
    "identity consistency of G_real and G_rendering.",
    no_args_is_help=True,
)
app.add_typer(eval_app, name="eval")

_JSON = typer.Option(None, "--json", help="Also write the results as JSON to this file (atomic).")
_CSV = typer.Option(None, "--csv", help="Also write the results as CSV to this file (atomic).")
_PAIRS = typer.Option(None, "--pairs", help="CSV with columns 'input' and 'output' instead of two folders.")
_INPUTS = typer.Argument(None, help="Folder of input images.")
_OUTPUTS = typer.Argument(None, help="Folder of output images (matched by relative path).")
_INCEPTION_HELP = "Inception weights, pt_inception-2015-12-05-6726825d.pth (default: the registry file)."


def _fmt(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def _table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    cells = [[c.upper() for c in columns]] + [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def _pairs(inputs: Path | None, outputs: Path | None, pairs_csv: Path | None) -> PairSet:
    from realface.metrics.files import match_pairs, read_pairs_csv

    if pairs_csv is not None:
        if inputs is not None or outputs is not None:
            raise ConfigError("give either --pairs CSV or two folders, not both")
        return read_pairs_csv(pairs_csv)
    if inputs is None or outputs is None:
        raise ConfigError("give two folders (inputs, outputs) or --pairs CSV")
    return match_pairs(inputs, outputs)


def _write(
    json_path: Path | None, csv_path: Path | None, doc: dict, rows: list[dict], columns: list[str]
) -> None:
    from realface.metrics.files import write_csv, write_json

    if json_path is not None:
        write_json(json_path, doc)
        typer.echo(f"wrote {json_path}")
    if csv_path is not None:
        write_csv(csv_path, rows, columns)
        typer.echo(f"wrote {csv_path}")


@eval_app.command("fid")
def fid_cmd(
    reference: Path = typer.Argument(..., help="Folder of reference images (or an .npz with mu and sigma)."),
    other: Path = typer.Argument(None, help="Second folder (or .npz); omit when --network is given."),
    network: str = typer.Option(
        None, "--network", help="Generator to sample instead: .pkl, .safetensors or id."
    ),
    num: int = config_option(
        GeneratorSamplingConfig, "num", "--num", help="Images to generate with --network."
    ),
    seed0: int = config_option(
        GeneratorSamplingConfig,
        "seed0",
        "--seed0",
        help="Seed of the first generated image (image i uses seed0 + i).",
    ),
    trunc: float = config_option(
        GeneratorSamplingConfig,
        "truncation_psi",
        "--trunc",
        help="Truncation psi for --network (1 = none, as FID requires).",
    ),
    noise_mode: str = config_option(
        GeneratorSamplingConfig, "noise_mode", "--noise-mode", help="Generator noise: random, const or none."
    ),
    batch: int = config_option(FIDConfig, "batch_size", "--batch", help="Images per forward pass."),
    inception: Path = typer.Option(None, "--inception", help=_INCEPTION_HELP),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write cached statistics."),
    device: str = DEVICE_OPT,
    progress: bool = PROGRESS_OPT,
    json_path: Path = _JSON,
    csv_path: Path = _CSV,
) -> None:
    """Fréchet Inception Distance (pytorch-fid protocol) between two folders, or a generator and a folder."""
    from realface.metrics.fid import InceptionExtractor, compute_fid
    from realface.utils.device import resolve_device

    config = FIDConfig(batch_size=batch, device=device, use_cache=not no_cache, progress=progress)
    sampling = None
    if network is not None:
        sampling = GeneratorSamplingConfig(num=num, seed0=seed0, truncation_psi=trunc, noise_mode=noise_mode)
    if (other is None) == (network is None):
        raise ConfigError("give a second folder or --network, exactly one of them")
    extractor = InceptionExtractor.load(resolve_device(device), inception)
    result = compute_fid(
        reference, other, network=network, sampling=sampling, config=config, extractor=extractor
    )
    row = result.to_dict()
    typer.echo(_table([row], ["metric", "fid", "num_a", "num_b", "cached_a", "cached_b"]))
    _write(json_path, csv_path, row, [row], list(row))


@eval_app.command("identity")
def identity_cmd(
    inputs: Path = _INPUTS,
    outputs: Path = _OUTPUTS,
    pairs_csv: Path = _PAIRS,
    threshold: float = config_option(
        IdentityConfig, "threshold", "--threshold", help="Same person when the embedding distance is below."
    ),
    min_face: int = config_option(
        IdentityConfig, "min_face_size", "--min-face", help="Smallest face box side considered, pixels."
    ),
    model: str = config_option(
        IdentityConfig,
        "model",
        "--model",
        help="Identity embedder: dlib or curricularface (needs the weights record curricularface).",
    ),
    progress: bool = PROGRESS_OPT,
    json_path: Path = _JSON,
    csv_path: Path = _CSV,
) -> None:
    """Identity similarity of pairs: dlib 128-d (default) or CurricularFace 512-d face embeddings, cosine
    similarity and distance (same person below --threshold; 0.6 is dlib's)."""
    from realface.metrics.identity import evaluate_identity

    config = IdentityConfig(model=model, threshold=threshold, min_face_size=min_face, progress=progress)
    report = evaluate_identity(_pairs(inputs, outputs, pairs_csv), config)
    rows = [p.to_row() for p in report.pairs]
    columns = ["name", "cosine", "distance", "same_person", "error"]
    typer.echo(_table(rows, columns))
    summary = report.summary()
    typer.echo(
        f"\n{summary['metric']}: {summary['evaluated']} of {summary['pairs']} pair(s) evaluated, "
        f"mean cosine {_fmt(summary['mean_cosine'])}, median cosine {_fmt(summary['median_cosine'])}, "
        f"mean distance {_fmt(summary['mean_distance'])}, same person {_fmt(summary['same_person_rate'])} "
        f"(distance < {threshold:g})"
    )
    _write(
        json_path,
        csv_path,
        {"summary": summary, "pairs": rows},
        rows,
        ["name", "input", "output", *columns[1:]],
    )


@eval_app.command("similarity")
def similarity_cmd(
    inputs: Path = _INPUTS,
    outputs: Path = _OUTPUTS,
    pairs_csv: Path = _PAIRS,
    size: int = config_option(
        SimilarityConfig,
        "size",
        "--size",
        help="Resize both images to SIZE x SIZE (0: compare at native size).",
    ),
    lpips_vgg: Path = LPIPS_VGG_OPT,
    lpips_heads: Path = typer.Option(None, "--lpips-heads", help="LPIPS v0.1 VGG heads (default: registry)."),
    batch: int = config_option(SimilarityConfig, "batch_size", "--batch", help="Pairs per forward pass."),
    device: str = DEVICE_OPT,
    progress: bool = PROGRESS_OPT,
    json_path: Path = _JSON,
    csv_path: Path = _CSV,
) -> None:
    """LPIPS-VGG and L2 (mean squared error in [-1, 1]) of pairs, both images resized to 256 x 256."""
    from realface.metrics.similarity import evaluate_similarity

    paths = {"lpips_vgg": lpips_vgg, "lpips_heads": lpips_heads}
    config = SimilarityConfig(size=size, batch_size=batch, device=device, progress=progress, **paths)
    report = evaluate_similarity(_pairs(inputs, outputs, pairs_csv), config)
    rows = [p.to_row() for p in report.pairs]
    columns = ["name", "lpips", "l2", "error"]
    typer.echo(_table(rows, columns))
    s = report.summary()
    typer.echo(
        f"\n{s['evaluated']} of {s['pairs']} pair(s) evaluated: LPIPS mean {_fmt(s['mean_lpips'])} "
        f"(median {_fmt(s['median_lpips'])}), L2 mean {_fmt(s['mean_l2'])} (median {_fmt(s['median_l2'])})"
        f"\nprotocol: {s['protocol']}"
    )
    _write(
        json_path, csv_path, {"summary": s, "pairs": rows}, rows, ["name", "input", "output", *columns[1:]]
    )


def _check_report_path(dest: Path | None, inputs: Sequence[object]) -> None:
    """Refuse a report path whose folder is missing or that names one of the inputs."""
    if dest is None:
        return
    if not dest.parent.is_dir():
        raise ConfigError(f"{dest}: the folder {dest.parent} does not exist")
    for given in inputs:
        if given is not None and Path(str(given)).exists() and Path(str(given)).resolve() == dest.resolve():
            raise ConfigError(f"{dest}: the report would overwrite an input; choose another file")


def _summary_rows(report: dict, measures: Sequence[str]) -> list[dict]:
    rows = []
    for m in measures:
        entry = report.get(m)
        if entry is None:
            continue
        lo, hi = entry["ci95"] if entry["ci95"] is not None else (None, None)
        rows.append({"measure": m, "mean": entry["mean"], "ci95_low": lo, "ci95_high": hi})
    return rows


def _network_plan(given: str) -> dict:
    """How a generator argument resolves, without loading or downloading it."""
    from realface.weights import REGISTRY, fetch_plan

    if Path(given).expanduser().exists():
        return {"given": given, "kind": "file", "path": str(Path(given).expanduser())}
    if given in REGISTRY:
        w = fetch_plan(given, verify=False)
        keys = ("path", "destination", "status", "action", "blocked", "licence")
        return {"given": given, "kind": "weights id", **{k: w[k] for k in keys}}
    return {
        "given": given,
        "kind": "file",
        "path": str(Path(given).expanduser()),
        "status": "not present yet",
    }


def _consistency_plan(
    real: str | None,
    rendering: str,
    world: str | None,
    config: ConsistencyConfig,
    fid_ref: Path | None,
    inception: Path | None,
    device: str,
    json_path: Path | None,
) -> dict:
    """The dry-run plan of ``eval consistency``: what would be loaded, measured and written."""
    import importlib.util

    from realface.metrics.consistency import PROTOCOL
    from realface.metrics.fid import STATS_PROTOCOL
    from realface.metrics.identity import EMBEDDER_WEIGHTS
    from realface.weights import fetch_plan

    last = config.seed0 + config.num - 1
    plan: dict = {
        "mode": "embedder" if world is None else "world",
        "real": None if real is None else _network_plan(real),
        "rendering": _network_plan(rendering),
        "num": config.num,
        "seeds": f"{config.seed0}-{last}",
        "truncation_psi": config.truncation_psi,
        "noise_mode": config.noise_mode,
        "batch": config.batch_size,
        "device": device,
    }
    if world is None:
        weights = [fetch_plan(i, verify=False) for i in EMBEDDER_WEIGHTS.get(config.embedder, ())]
        dlib_found = importlib.util.find_spec("dlib") is not None
        plan["metrics"] = ["cosine", "distance", f"same_person (distance < {config.threshold:g})"]
        plan["identity_model"] = {
            "embedder": config.embedder,
            "threshold": config.threshold,
            "dlib_package": "installed" if dlib_found else "missing",
            "weights": {w["id"]: w["status"] for w in weights},
            "available": dlib_found and all(w["path"] is not None for w in weights),
        }
        plan["protocol"] = PROTOCOL
    else:
        from realface.bench.world import default_world_path

        folder = default_world_path() if world == "default" else Path(world)
        plan["world"] = {"given": world, "path": str(folder), "present": folder.is_dir()}
        plan["metrics"] = ["param_error", "param_error_truth", "param_error_real_truth", "l2"]
        plan["protocol"] = "toy world: face parameters read back by the world's regressor"
    plan["fid"] = None
    if fid_ref is not None:
        net = {"path": str(inception), "status": "given"} if inception is not None else None
        if net is None:
            w = fetch_plan("fid-inception", verify=False)
            net = {"id": w["id"], "path": w["path"], "status": w["status"]}
        plan["fid"] = {"reference": str(fid_ref), "protocol": STATS_PROTOCOL, "inception": net}
    plan["out"] = None if json_path is None else str(json_path)
    return plan


@eval_app.command("consistency")
def consistency_cmd(
    real: str = typer.Option(
        None, "--real", help="G_real: .pkl, .safetensors or weights id (not with --world)."
    ),
    rendering: str = typer.Option(
        ..., "--rendering", help="G_rendering, fine-tuned from G_real: .pkl, .safetensors or weights id."
    ),
    num: int = config_option(
        ConsistencyConfig, "num", "--num", help="Shared latents (pairs of faces) to compare."
    ),
    seed: int = config_option(
        ConsistencyConfig, "seed0", "--seed", help="Seed of the first latent (latent i uses seed + i)."
    ),
    trunc: float = config_option(
        ConsistencyConfig, "truncation_psi", "--trunc", help="Truncation psi of G_real's mapping (1 = none)."
    ),
    noise_mode: str = config_option(
        ConsistencyConfig, "noise_mode", "--noise-mode", help="Generator noise: const, random or none."
    ),
    embedder: str = typer.Option(
        None,
        "--embedder",
        help=f"Identity embedder: {default_of(ConsistencyConfig, 'embedder')} (default) or curricularface "
        "(needs the weights record curricularface). Not with --world.",
    ),
    threshold: float = typer.Option(
        None,
        "--threshold",
        help="Same person when the embedding distance is below "
        f"(default {default_of(ConsistencyConfig, 'threshold'):g}, dlib's).",
    ),
    world: str = typer.Option(
        None,
        "--world",
        help="'default' (the toy world shipped with realface) or a toy-world folder: measure the "
        "face-parameter error between the two generators instead of an embedder's similarity.",
    ),
    fid_ref: Path = typer.Option(
        None, "--fid-ref", help="Folder of images (or .npz statistics): also report FID of G_rendering."
    ),
    inception: Path = typer.Option(None, "--inception", help=_INCEPTION_HELP + " For --fid-ref."),
    batch: int = config_option(ConsistencyConfig, "batch_size", "--batch", help="Latents per forward pass."),
    device: str = DEVICE_OPT,
    progress: bool = PROGRESS_OPT,
    json_path: Path = typer.Option(
        None, "--json", "-o", help="Also write the report as JSON to this file (atomic)."
    ),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Print the resolved configuration (generators, latents, metrics and their weights, FID "
        "protocol, report path) as JSON and exit; no network is loaded and nothing is written.",
    ),
) -> None:
    """Identity consistency of G_real and G_rendering (paper Table 1): the same latents decoded by both,
    identity similarity of the pairs with mean and 95 % interval; optionally FID of G_rendering."""
    from realface.checkpoints import load_generator, resolve_network_path
    from realface.metrics.consistency import check_shared_space, identity_consistency
    from realface.metrics.files import write_json
    from realface.utils.device import resolve_device

    config = ConsistencyConfig(
        num=num,
        seed0=seed,
        truncation_psi=trunc,
        noise_mode=noise_mode,
        batch_size=batch,
        embedder=embedder or default_of(ConsistencyConfig, "embedder"),
        progress=progress,
        **({} if threshold is None else {"threshold": threshold}),
    )
    if world is not None:
        if real is not None:
            raise ConfigError(
                "--real: not used with --world (the toy world's own G_real is the real generator)"
            )
        if embedder is not None or threshold is not None:
            raise ConfigError(
                "--embedder / --threshold: not used with --world (identity is read as face parameters)"
            )
        if trunc != 1 or noise_mode != "const":
            raise ConfigError("--trunc / --noise-mode: the toy-world protocol uses psi 1 and constant noise")
    elif real is None:
        raise ConfigError("give --real (the G_real generator), or --world default for the toy world")
    if fid_ref is not None and not fid_ref.exists():
        raise ConfigError(f"--fid-ref {fid_ref}: no such folder or .npz file")
    if dry_run:
        _check_report_path(json_path, [real, rendering, fid_ref])
        plan = _consistency_plan(real, rendering, world, config, fid_ref, inception, device, json_path)
        typer.echo(json.dumps(plan, indent=2))
        return
    rendering_path = resolve_network_path(rendering)
    real_path = None if real is None else resolve_network_path(real)
    _check_report_path(json_path, [real_path, rendering_path, fid_ref])

    doc: dict = {"rendering": str(rendering_path)}
    if world is not None:
        from realface.bench.consistency import toy_consistency
        from realface.bench.world import load_world

        w = load_world(None if world == "default" else world)  # the toy world runs on the CPU
        G_rendering = load_generator(rendering_path)
        check_shared_space(w.G_real, G_rendering)
        report = toy_consistency(w, G_rendering, num=num, seed0=seed, batch=batch)
        doc.update(mode="world", world=str(w.path), **report)
        measures = ["param_error", "param_error_truth", "param_error_real_truth", "l2"]
    else:
        dev = resolve_device(device)
        G_real, G_rendering = load_generator(real_path, dev), load_generator(rendering_path, dev)
        report = identity_consistency(G_real, G_rendering, config)
        doc.update(mode="embedder", real=str(real_path), **report)
        measures = ["cosine", "distance"]
    rows = _summary_rows(doc, measures)
    if world is None:
        rows.append(
            {"measure": f"same_person (distance < {config.threshold:g})", "mean": doc["same_person_rate"]}
        )
    doc["fid"] = None
    if fid_ref is not None:
        from realface.metrics.fid import InceptionExtractor, compute_fid

        sampling = GeneratorSamplingConfig(num=num, seed0=seed, truncation_psi=trunc, noise_mode=noise_mode)
        fid_config = FIDConfig(batch_size=batch, device=device, progress=progress)
        extractor = InceptionExtractor.load(resolve_device(device), inception)
        result = compute_fid(
            fid_ref, network=rendering_path, sampling=sampling, config=fid_config, extractor=extractor
        )
        doc["fid"] = result.to_dict()
        rows.append({"measure": result.metric, "mean": result.fid})
    typer.echo(_table(rows, ["measure", "mean", "ci95_low", "ci95_high"]))
    typer.echo(f"\n{doc['num']} shared latents (seeds {seed}-{seed + num - 1}); protocol: {doc['protocol']}")
    if world is None and not doc["mapping_shared"]:
        typer.echo("note: the two mapping networks differ; both faces are decoded from G_real's mapping")
    if json_path is not None:
        write_json(json_path, doc)
        typer.echo(f"wrote {json_path}")
