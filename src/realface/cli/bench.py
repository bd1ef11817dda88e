"""`realface bench transfer`: the method measured where ground truth exists."""

from __future__ import annotations

from pathlib import Path

import typer

from realface.cli import app

bench_app = typer.Typer(help="Controlled benchmarks of the method.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("transfer")
def transfer(
    out: Path = typer.Option(
        Path("runs/bench_transfer"), "--out", "-o", help="Folder for the runs and results."
    ),
    quick: bool = typer.Option(False, "--quick", help="Tiny sizes (a smoke run, minutes on CPU)."),
    lpips_vgg: Path = typer.Option(None, "--lpips-vgg", help="VGG16 state dict for LPIPS (default: cached)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Fine-tune on T(G_real(w)) renders, invert held-out renders, compare with the truth G_real(w*).

    Rows: full method, fine-tuning without identity losses, baseline (direct inversion into G_real).
    Writes OUT/results.json and OUT/results.md.
    """
    from realface.metrics.transfer import TransferBenchConfig, run_transfer_bench

    cfg = TransferBenchConfig.quick() if quick else TransferBenchConfig()
    rows = run_transfer_bench(
        out, cfg, lpips_vgg=None if lpips_vgg is None else str(lpips_vgg), progress=progress
    )
    width = max(len(r["row"]) for r in rows)
    typer.echo(f"{'row':<{width}}  {'LPIPS':>8}  {'L2':>8}")
    for r in rows:
        typer.echo(f"{r['row']:<{width}}  {r['lpips']:>8.4f}  {r['l2']:>8.4f}")
    typer.echo(f"results: {out / 'results.md'}")
