"""`realface eval …`: FID, identity similarity, LPIPS and L2, with a table on screen and JSON / CSV reports."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import typer

from realface.cli import app
from realface.cli.common import DEVICE_OPT, PROGRESS_OPT
from realface.errors import ConfigError

eval_app = typer.Typer(
    name="eval",
    help="Evaluate results: FID of image sets or generators, identity similarity, LPIPS and L2 of pairs.",
    no_args_is_help=True,
)
app.add_typer(eval_app, name="eval")

_JSON = typer.Option(None, "--json", help="Also write the results as JSON to this file (atomic).")
_CSV = typer.Option(None, "--csv", help="Also write the results as CSV to this file (atomic).")
_DEVICE = DEVICE_OPT
_PROGRESS = PROGRESS_OPT
_PAIRS = typer.Option(None, "--pairs", help="CSV with columns 'input' and 'output' instead of two folders.")


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


def _pairs(inputs: Path | None, outputs: Path | None, pairs_csv: Path | None):
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
    num: int = typer.Option(50000, "--num", help="Images to generate with --network."),
    seed0: int = typer.Option(
        0, "--seed0", help="Seed of the first generated image (image i uses seed0 + i)."
    ),
    trunc: float = typer.Option(
        1.0, "--trunc", help="Truncation psi for --network (1 = none, as FID requires)."
    ),
    noise_mode: str = typer.Option("random", "--noise-mode", help="Generator noise: random, const or none."),
    batch: int = typer.Option(50, "--batch", help="Images per forward pass."),
    inception: Path = typer.Option(
        None, "--inception", help="pt_inception-2015-12-05-6726825d.pth (default: the registry file)."
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write cached statistics."),
    device: str = _DEVICE,
    progress: bool = _PROGRESS,
    json_path: Path = _JSON,
    csv_path: Path = _CSV,
) -> None:
    """Fréchet Inception Distance (pytorch-fid protocol) between two folders, or a generator and a folder."""
    from realface.metrics.fid import FIDConfig, GeneratorSamplingConfig, InceptionExtractor, compute_fid
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
    inputs: Path = typer.Argument(None, help="Folder of input images."),
    outputs: Path = typer.Argument(None, help="Folder of output images (matched by relative path)."),
    pairs_csv: Path = _PAIRS,
    threshold: float = typer.Option(
        0.6, "--threshold", help="Same person when the embedding distance is below."
    ),
    min_face: int = typer.Option(32, "--min-face", help="Smallest face box side considered, pixels."),
    model: str = typer.Option("dlib", "--model", help="Identity embedder (registered: dlib)."),
    progress: bool = _PROGRESS,
    json_path: Path = _JSON,
    csv_path: Path = _CSV,
) -> None:
    """Identity similarity of pairs: dlib 128-d face embeddings, cosine similarity and distance (< 0.6: same)."""
    from realface.metrics.identity import IdentityConfig, evaluate_identity

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
    inputs: Path = typer.Argument(None, help="Folder of input images."),
    outputs: Path = typer.Argument(None, help="Folder of output images (matched by relative path)."),
    pairs_csv: Path = _PAIRS,
    size: int = typer.Option(
        256, "--size", help="Resize both images to SIZE x SIZE (0: compare at native size)."
    ),
    lpips_vgg: Path = typer.Option(
        None, "--lpips-vgg", help="torchvision VGG16 state dict (default: registry)."
    ),
    lpips_heads: Path = typer.Option(None, "--lpips-heads", help="LPIPS v0.1 VGG heads (default: registry)."),
    batch: int = typer.Option(16, "--batch", help="Pairs per forward pass."),
    device: str = _DEVICE,
    progress: bool = _PROGRESS,
    json_path: Path = _JSON,
    csv_path: Path = _CSV,
) -> None:
    """LPIPS-VGG and L2 (mean squared error in [-1, 1]) of pairs, both images resized to 256 x 256."""
    from realface.metrics.similarity import SimilarityConfig, evaluate_similarity

    config = SimilarityConfig(
        size=size,
        batch_size=batch,
        device=device,
        lpips_vgg=lpips_vgg,
        lpips_heads=lpips_heads,
        progress=progress,
    )
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
