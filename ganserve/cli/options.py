"""Arguments and small parsers shared by the commands."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ..latents import check_index, check_truncation

MODEL_ARG = typer.Argument(None, help="Model directory or shipped model name (default: the shipped model).")
BACKEND_OPT = typer.Option("auto", "--backend", "-b", help="numpy, onnxruntime, torch, tensorrt or auto.")


def _check_psi(value: Optional[float]) -> Optional[float]:
    return check_truncation(value, "--truncation (--psi)")


TRUNCATION_OPT = typer.Option(None, "--truncation", "--psi", callback=_check_psi,
                              help="Draw latents from a normal truncated at psi (> 0); see docs/latent.md.")


def progress(total: int, desc: str, unit: str = "img"):
    """A progress bar on stderr, shown for long runs only."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, mininterval=0.5, delay=1.0,
                dynamic_ncols=True)


def check_folder_of(path: Path, option: str) -> None:
    """A FileNotFoundError naming `option` unless the folder `path` is to be written into exists."""
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{option} {path}: no folder {path.parent}")


def check_ints(*checks: tuple[Optional[int], str, int]) -> None:
    """Each (value, option, minimum): a ValueError naming the option unless value is None or an int >= minimum."""
    for value, option, minimum in checks:
        if value is not None:
            check_index(value, option, minimum)


def parse_ints(text: str, option: str, minimum: int = 0) -> list[int]:
    """A comma-separated list of ints >= `minimum`, such as "1,2,3", else a ValueError naming `option`."""
    if not text.strip():
        raise ValueError(f"{option} is empty; give comma-separated integers such as 1,2,3")
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < minimum:
        kind = {0: "non-negative ints", 1: "positive ints"}.get(minimum, f"ints >= {minimum}")
        raise ValueError(f"{option} must be comma-separated {kind} such as 1,2,3, got {text!r}")
    return values
