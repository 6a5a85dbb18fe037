"""`ganserve interpolate`, `ganserve arithmetic`: latent-space walks and vector arithmetic."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from . import app
from .runtime import BACKEND_OPT, MODEL_ARG

GIF_MIN_SIZE = 128  # default GIF upscaling makes frames at least this many pixels on a side
TRUNCATION_OPT = typer.Option(None, "--truncation", "--psi", help="Draw latents from a normal truncated at psi.")
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
    from ..images import image_format, make_grid, save_image

    keyframes = [(seed, index) for seed in parse_ints(seeds, "--seeds")]
    if len(keyframes) < 2:
        raise ValueError(f"--seeds needs at least 2 seeds (one keyframe each), got {seeds!r}")
    if steps < 2:
        raise ValueError(f"--steps must be at least 2 (both keyframes count), got {steps}")
    fmt = image_format(out)  # an unwritable extension fails before any work
    check_positive(duration, "--duration")
    if nrow is not None:
        check_positive(nrow, "--nrow")
    gen = Generator.load(model, backend=backend)
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
    from ..images import image_format, make_grid, save_image

    groups = [(w, parse_ints(text, name)) for w, text, name in ((1.0, a, "--a"), (-1.0, b, "--b"), (1.0, c, "--c"))
              if text is not None]
    image_format(out)
    gen = Generator.load(model, backend=backend)
    terms = [(w, [(seed, i) for i in indices]) for w, indices in groups]
    found = gen.arithmetic(terms, neighbors=neighbors, jitter=jitter, jitter_seed=jitter_seed, truncation=truncation)
    rows = [[found[k], *(gen.sample(1, seed, start=i, truncation=truncation)[0] for i in indices)]
            for k, (_, indices) in enumerate(groups)]
    rows.append(list(found[len(groups):]))  # the result, then its neighbours
    cols = max(len(row) for row in rows)
    blank = np.zeros_like(found[0])
    tiles = np.stack([tile for row in rows for tile in row + [blank] * (cols - len(row))])
    save_image(make_grid(upscale(tiles, scale), nrow=cols), out)
    formula = " ".join(f"{'-' if w < 0 else '+'} mean({name})" for (w, _), name in zip(groups, "abc"))
    typer.echo(f"wrote {formula.lstrip('+ ')} and {neighbors} neighbours (jitter {jitter}) to {out}")


# --- helpers


def parse_ints(text: str, option: str) -> list[int]:
    """A comma-separated list of non-negative ints, such as "1,2,3", else a ValueError naming `option`."""
    if not text.strip():
        raise ValueError(f"{option} is empty; give comma-separated indices such as 1,2,3")
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"{option} must be comma-separated non-negative ints such as 1,2,3, got {text!r}") from None
    if min(values) < 0:
        raise ValueError(f"{option} must be comma-separated non-negative ints such as 1,2,3, got {text!r}")
    return values


def check_positive(value: int, option: str) -> int:
    if value < 1:
        raise ValueError(f"{option} must be at least 1, got {value}")
    return value


def upscale(images: np.ndarray, scale: int | None, min_size: int = 1) -> np.ndarray:
    """uint8 (n, H*s, W*s, C) by nearest neighbour; `scale` None picks s so both sides reach `min_size`."""
    if scale is None:
        scale = max(1, math.ceil(min_size / min(images.shape[1:3])))
    check_positive(scale, "--scale")
    return images.repeat(scale, axis=1).repeat(scale, axis=2)


def save_gif(frames: np.ndarray, path: Path, duration: int) -> Path:
    """An animated GIF of uint8 frames (n, H, W, C), `duration` ms each, looping forever; atomically.

    Pillow merges identical consecutive frames (adding up their durations), so a walk that stands
    still has fewer frames in the file than it rendered.
    """
    from ..images import to_pil
    from .._files import atomic_path

    pictures = [to_pil(frame) for frame in frames]
    with atomic_path(path) as tmp:
        pictures[0].save(tmp, format="GIF", save_all=True, append_images=pictures[1:], duration=duration, loop=0)
    return path
