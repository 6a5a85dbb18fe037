"""`ganserve generate`: sharded, resumable bulk generation."""

from __future__ import annotations

from typing import Optional

import typer

from ..errors import plural
from . import app
from .options import BACKEND_OPT, MODEL_ARG, TRUNCATION_OPT, check_ints, progress


@app.command()
def generate(
    model: Optional[str] = MODEL_ARG,
    n: int = typer.Option(..., "--n", "-n", help="Total images of the run (all shards)."),
    out: str = typer.Option(..., "--out", "-o",  # str: a Path would turn "" into "."
                            help="Output folder, shared by every process of the run."),
    seed: int = typer.Option(0, "--seed", help="Image j comes from latent (seed, j)."),
    shard_size: int = typer.Option(1000, "--shard-size", help="Consecutive images per shard."),
    fmt: str = typer.Option("png", "--format", help="png (a folder per shard), tar (WebDataset) or npz."),
    shard_index: int = typer.Option(0, "--shard-index", envvar="GANSERVE_SHARD_INDEX",
                                    help="This process makes shards i, i+k, ... (k = --num-shards)."),
    num_shards: int = typer.Option(1, "--num-shards", envvar="GANSERVE_NUM_SHARDS",
                                   help="Processes sharing the run."),
    backend: str = BACKEND_OPT,
    workers: Optional[int] = typer.Option(None, "--workers", "-w", help="PNG encoding processes (default: CPUs)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size",
                                             help="Images per forward pass (default: the backend's)."),
    truncation: Optional[float] = TRUNCATION_OPT,
    png_compression: int = typer.Option(6, "--png-compression", help="zlib level 0-9."),
) -> None:
    """Generate N images in shards; re-running the same command resumes (finished shards are kept)."""
    from ..batch import FORMATS, Interrupted, RunParams, images_in, shards_for
    from ..batch import generate as run
    from ..generator import Generator

    if fmt not in FORMATS:
        raise ValueError(f"unknown --format {fmt!r}; choose one of {', '.join(FORMATS)}")
    RunParams(n, seed, shard_size, fmt, truncation, "", "", (1, 1, 1)).check()  # --n, --seed, --shard-size
    check_ints((batch_size, "--batch-size", 1), (workers, "--workers", 0))
    mine = shards_for(n, shard_size, shard_index, num_shards)
    gen = Generator.load(model, backend=backend)
    total = images_in(mine, n, shard_size)
    with progress(total, f"generate ({gen.backend})") as bar:
        def log(message: str) -> None:
            # Not bar.write: it draws a bar still hidden by its delay, which close() then leaves unfinished.
            bar.clear()
            typer.echo(message, err=True)

        try:
            summary = run(gen, out, n=n, seed=seed, shard_size=shard_size, fmt=fmt, shard_index=shard_index,
                          num_shards=num_shards, workers=workers, batch_size=batch_size, truncation=truncation,
                          compress_level=png_compression, progress=bar.update, log=log)
        except Interrupted as e:
            bar.close()
            typer.echo(f"interrupted by {e}: finished shards are kept in {out}; run the same command again "
                       f"to resume", err=True)
            raise typer.Exit(128 + e.signum) from None
    state = "the run is complete" if summary["complete"] else "other shards are still missing"
    typer.echo(f"made {plural(summary['made'], 'image')} in {plural(summary['shards'], 'shard')} "
               f"({summary['skipped']} already done) in {out}; {state}")

