"""`ganserve interpolate`, `ganserve arithmetic`: latent-space walks and vector arithmetic."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import typer

from ..errors import plural
from ..latent_ops import check_method
from ..latents import check_index
from . import app
from .options import BACKEND_OPT, MODEL_ARG, TRUNCATION_OPT, check_folder_of, parse_ints

GIF_MIN_SIZE = 128  # default GIF upscaling makes frames at least this many pixels on a side
SCALE_HELP = "Integer upscale factor, nearest neighbour (default: {})."


@app.command()
def interpolate(
    model: Optional[str] = MODEL_ARG,
    seeds: str = typer.Option(..., "--seeds", help="Comma-separated seeds, one keyframe each (at least 2)."),
    steps: int = typer.Option(16, "--steps", help="Frames from one keyframe to the next, both counted."),
    index: int = typer.Option(0, "--index", help="Keyframe k is image INDEX of seed k."),
    method: str = typer.Option("slerp", "--method", help="slerp or lerp."),
    loop: bool = typer.Option(False, "--loop", help="Walk back to the first keyframe (a seamless GIF)."),
    out: Path = typer.Option(Path("walk.gif"), "--out", "-o",
                             help=".gif: an animation; .png, .jpg, .webp: a strip or grid of the frames."),
    duration: int = typer.Option(80, "--duration", help="GIF: milliseconds per frame."),
    scale: Optional[int] = typer.Option(None, "--scale", help=SCALE_HELP.format(
        f"GIF frames at least {GIF_MIN_SIZE} px, others 1")),
    nrow: Optional[int] = typer.Option(None, "--nrow", help="Stills: frames per row (default: up to 16)."),
    truncation: Optional[float] = TRUNCATION_OPT,
    backend: str = BACKEND_OPT,
) -> None:
    """Walk through the latents of several seeds: an animated GIF or a strip of frames."""
    from ..generator import Generator
    from ..images import image_format, make_grid, save_gif, save_image, upscale

    keyframes = [(seed, index) for seed in parse_ints(seeds, "--seeds")]
    if len(keyframes) < 2:
        raise ValueError(f"--seeds needs at least 2 seeds (one keyframe each), got {seeds!r}")
    if steps < 2:
        raise ValueError(f"--steps must be at least 2 (both keyframes count), got {steps}")
    check_index(index, "--index", minimum=0)
    check_method(method, "--method")
    fmt = image_format(out)  # an unwritable extension or a missing folder fails before any work
    check_folder_of(out, "--out")
    check_index(duration, "--duration", minimum=1)
    if nrow is not None:
        check_index(nrow, "--nrow", minimum=1)
    gen = Generator.load(model, backend=backend)
    image_format(out, gen.image_shape[-1])
    frames = gen.walk(keyframes, steps, method, loop, truncation=truncation)
    if fmt == "GIF":
        save_gif(upscale(frames, scale, GIF_MIN_SIZE), out, duration)
    else:
        save_image(make_grid(upscale(frames, scale), nrow=nrow or min(len(frames), 16)), out)
    typer.echo(f"wrote {len(frames)} frames ({len(keyframes)} keyframes, {method}{', loop' if loop else ''}) "
               f"from {gen.model.path or 'memory'} to {out}")


@app.command()
def arithmetic(
    model: Optional[str] = MODEL_ARG,
    seed: int = typer.Option(0, "--seed", help="The images named by --a, --b, --c are images of this seed."),
    a: str = typer.Option(..., "--a", help="Comma-separated image indices, averaged: the first term."),
    b: Optional[str] = typer.Option(None, "--b", help="Indices averaged and subtracted."),
    c: Optional[str] = typer.Option(None, "--c", help="Indices averaged and added."),
    neighbors: int = typer.Option(8, "--neighbors", help="How many jittered neighbours of the result."),
    jitter: float = typer.Option(0.25, "--jitter", help="Scale of the neighbours' Gaussian noise."),
    jitter_seed: int = typer.Option(0, "--jitter-seed", help="Seed of the neighbours' noise."),
    out: Path = typer.Option(Path("arithmetic.png"), "--out", "-o", help="The grid image."),
    scale: Optional[int] = typer.Option(None, "--scale", help=SCALE_HELP.format("1")),
    truncation: Optional[float] = TRUNCATION_OPT,
    backend: str = BACKEND_OPT,
) -> None:
    """Vector arithmetic, mean(a) - mean(b) + mean(c), as in the DCGAN paper.

    The grid has one row per term (its mean, then the images averaged) and a last row with the
    result and its neighbours, so the first column reads a, b, c, result.
    """
    from ..generator import Generator
    from ..images import image_format, make_grid, save_image, upscale

    check_index(seed, "--seed", minimum=0)
    check_index(neighbors, "--neighbors", minimum=0)
    groups = [(w, parse_ints(text, f"--{name}"), name)
              for w, text, name in ((1.0, a, "a"), (-1.0, b, "b"), (1.0, c, "c")) if text is not None]
    if not jitter >= 0:  # NaN fails this too
        raise ValueError(f"--jitter must be >= 0, got {jitter}")
    image_format(out)
    check_folder_of(out, "--out")
    gen = Generator.load(model, backend=backend)
    image_format(out, gen.image_shape[-1])
    terms = [(w, [(seed, i) for i in indices]) for w, indices, _ in groups]
    found = gen.arithmetic(terms, neighbors=neighbors, jitter=jitter, jitter_seed=jitter_seed, truncation=truncation)
    rows = [[found[k], *(gen.sample(1, seed, start=i, truncation=truncation)[0] for i in indices)]
            for k, (_, indices, _) in enumerate(groups)]
    rows.append(list(found[len(groups):]))  # the result, then its neighbours
    cols = max(len(row) for row in rows)
    blank = np.zeros_like(found[0])
    tiles = np.stack([tile for row in rows for tile in row + [blank] * (cols - len(row))])
    save_image(make_grid(upscale(tiles, scale), nrow=cols), out)
    formula = " ".join(f"{'-' if w < 0 else '+'} mean({name})" for w, _, name in groups)
    typer.echo(f"wrote {formula.lstrip('+ ')} and {plural(neighbors, 'neighbour')} (jitter {jitter}) to {out}")
