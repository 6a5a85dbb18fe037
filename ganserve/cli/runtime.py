"""`ganserve sample`, `ganserve info`: the runtime commands."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import typer

from ..errors import plural
from ..latents import check_index
from . import app
from .options import BACKEND_OPT, MODEL_ARG, TRUNCATION_OPT, check_folder_of, check_ints, parse_ints, progress


@app.command()
def sample(
    model: Optional[str] = MODEL_ARG,
    n: int = typer.Option(64, "--n", "-n", help="Number of images."),
    seed: int = typer.Option(0, "--seed", help="Latent seed; image i comes from latent (seed, start + i)."),
    start: int = typer.Option(0, "--start", help="Global index of the first image."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write one PNG per image here ({index:08d}.png)."),
    grid: Optional[Path] = typer.Option(None, "--grid", help="Write all images tiled into this one image file."),
    nrow: Optional[int] = typer.Option(None, "--nrow", help="Images per grid row (default: square)."),
    truncation: Optional[float] = TRUNCATION_OPT,
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Images per forward pass."),
    backend: str = BACKEND_OPT,
) -> None:
    """Sample images from a generator: PNG files and/or one grid image (default: samples.png)."""
    from ..generator import Generator
    from ..images import image_format, make_grid, save_image
    from ..latents import check_range

    check_ints((n, "--n", 1), (seed, "--seed", 0), (start, "--start", 0), (batch_size, "--batch-size", 1),
               (nrow, "--nrow", 1))
    if out is None and grid is None:
        grid = Path("samples.png")
    if grid is not None:  # an unwritable extension or a missing folder fails before any work
        image_format(grid)
        check_folder_of(grid, "--grid")
    gen = Generator.load(model, backend=backend)
    check_range(start, n, gen.latent_dim)
    if grid is not None:
        image_format(grid, gen.image_shape[-1])
        _check_grid_fits(n, gen.image_shape)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    kept = [] if grid is not None else None
    with progress(n, f"sampling ({gen.backend})") as bar:
        for first, images in gen.iter_batches(n, seed=seed, batch_size=batch_size, start=start,
                                              truncation=truncation):
            if out is not None:
                for i, image in enumerate(images):
                    save_image(image, out / f"{first + i:08d}.png")
            if kept is not None:
                kept.append(images)
            bar.update(len(images))
    if grid is not None:
        import numpy as np

        save_image(make_grid(np.concatenate(kept), nrow=nrow), grid)
    where = " and ".join(str(p) for p in (out, grid) if p is not None)
    typer.echo(f"wrote {plural(n, 'image')} from {gen.model.path or 'memory'} ({gen.backend} backend) to {where}")


def _check_grid_fits(n: int, image_shape: tuple[int, ...]) -> None:
    """A grid holds every image in memory twice (the images, then the tiled picture): refuse one that
    cannot fit before any is made."""
    from .._system import total_memory

    need, have = 2 * n * math.prod(image_shape), total_memory()
    if have is not None and need > have // 2:
        raise MemoryError(f"--grid of {plural(n, 'image')} needs about {need / 2**30:.1f} GiB of memory, "
                          f"more than half of this machine's {have / 2**30:.1f} GiB; write files with --out "
                          f"alone, or use `ganserve generate`")


@app.command()
def info(
    model: Optional[str] = MODEL_ARG,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Describe a model: architecture, files, metadata, and the backends that can run it."""
    from ..backends import available_backends
    from ..model_io import load_model

    m = load_model(model)
    c = m.config
    files = sorted(p.name for p in m.path.iterdir() if p.is_file()) if m.path else []
    facts = {
        "path": str(m.path),
        "preset": c.preset,
        "latent_dim": c.latent_dim,
        "output_shape": list(c.output_shape),
        "value_range": list(c.value_range),
        "parameters": c.num_params(),
        "layers": len(c.layers),
        "config_sha256": c.digest(),
        "model_sha256": m.model_hash,
        "files": files,
        "available_backends": available_backends(),
        "metadata": m.metadata,
    }
    if as_json:
        typer.echo(json.dumps(facts, indent=2, sort_keys=True))
        return
    for key, value in facts.items():
        if key == "metadata":
            continue
        typer.echo(f"{key:18s} {value if not isinstance(value, list) else ', '.join(map(str, value))}")
    typer.echo("layers:")
    shapes = c.layer_shapes()
    for i, spec in enumerate(c.layers):
        args = ", ".join(f"{k}={v}" for k, v in spec.items() if k != "type")
        typer.echo(f"  {i:2d} {spec['type']:17s} {str(shapes[i + 1]):16s} {args}")
    if m.metadata:
        typer.echo("metadata:")
        typer.echo("  " + json.dumps(m.metadata, indent=2, sort_keys=True).replace("\n", "\n  "))


@app.command()
def bench(
    model: Optional[str] = MODEL_ARG,
    batch: str = typer.Option("1,64", "--batch", "--batch-size", help="Comma-separated batch sizes."),
    backends: Optional[str] = typer.Option(None, "--backends", "--backend", "-b",
                                           help="Comma-separated names (default: all usable)."),
    rounds: int = typer.Option(3, "--rounds", help="Interleaved timing rounds."),
    seconds: float = typer.Option(1.0, "--seconds", help="Timed seconds per backend per round."),
) -> None:
    """Time every usable backend on a model, side by side (images/s to uint8 on the host)."""
    from ..backends import AUTO_ORDER, unavailable_reason
    from ..benchmark import compare_backends, format_table
    from ..model_io import load_model

    sizes = parse_ints(batch, "--batch", minimum=1)
    check_index(rounds, "--rounds", minimum=1)
    if not 0 < seconds < math.inf:  # NaN fails this too
        raise ValueError(f"--seconds must be a finite number more than 0, got {seconds}")
    names = None if backends is None else [b.strip() for b in backends.split(",") if b.strip()]
    if names == []:
        raise ValueError(f"--backends names no backend ({backends!r}); leave it out for every usable one")
    chosen = [(name, opts) for name, opts in AUTO_ORDER if (names is None or name in names)]
    if names is not None:
        unknown = sorted(set(names) - {name for name, _ in AUTO_ORDER})
        if unknown:
            raise ValueError(f"unknown backend(s) {unknown}; known: {sorted({n for n, _ in AUTO_ORDER})}")
    chosen = [(n, o) for n, o in chosen if names is not None or unavailable_reason(n, o.get("device", "auto")) is None]
    m = load_model(model)
    typer.echo(f"{m.path}: {2 * m.config.macs() / 1e9:.3f} GFLOP per image")
    for size in sizes:
        results = compare_backends(m, chosen, batch=size, rounds=rounds, min_seconds=seconds)
        typer.echo(format_table(results, reference="numpy"))
        chosen = [(r["backend"], r["options"]) for r in results if "error" not in r]  # unavailable: said once
