"""Side-by-side throughput of backends, measured in one run (`ganserve bench`, `bench/`).

Backends are timed in interleaved rounds (A, B, C, A, B, C, ...) so that a noisy neighbour slows
all of them alike; each figure is the median over rounds. Speed goals are stated as ratios between
backends measured this way, never as absolute times.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import numpy as np

from .backends import create_backend
from .backends.base import Backend
from .latents import make_latents
from .model_io import Model, memory_model


def _rate(fn: Callable[[], Any], batch: int, min_seconds: float) -> float:
    """Images per second of `fn` (one batch per call), over at least `min_seconds`."""
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return calls * batch / elapsed


def compare_backends(model: Model, backends: list[tuple[str, dict[str, Any]]], batch: int = 64,
                     rounds: int = 5, min_seconds: float = 1.0, uint8: bool = True,
                     log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Images/s of each (backend name, options) at `batch`, median of interleaved rounds.

    Args:
        model: the loaded model.
        backends: (name, options) pairs; ones that cannot run here are reported with their reason.
        batch: images per call.
        rounds: interleaved rounds.
        min_seconds: timed seconds per backend per round.
        uint8: time the end-to-end path to uint8 images on the host (else raw float output).

    Returns:
        One dict per backend: name, options, device, images_per_s (median), spread (min, max) or
        error.
    """
    z = make_latents(batch, model.config.latent_dim, seed=0)
    runners: list[tuple[dict[str, Any], Backend | None]] = []
    for name, options in backends:
        row: dict[str, Any] = {"backend": name, "options": options, "batch": batch}
        try:
            backend = create_backend(name, model, **options)
        except (ImportError, ValueError) as e:
            row["error"] = str(e)
            runners.append((row, None))
            continue
        row["device"] = backend.device
        fn = (lambda b=backend: b.run_uint8(z)) if uint8 else (lambda b=backend: b.run(z))
        start = time.perf_counter()
        fn()  # first call: lazy initialisation, compilation, allocator warm-up
        row["first_call_s"] = time.perf_counter() - start
        fn()
        row["_fn"], row["_rates"] = fn, []
        runners.append((row, backend))
    for r in range(rounds):
        for row, backend in runners:
            if backend is not None:
                row["_rates"].append(_rate(row["_fn"], batch, min_seconds))
        if log:
            log(f"round {r + 1}/{rounds}: " + ", ".join(
                f"{row['backend']} {row['_rates'][-1]:.0f}" for row, b in runners if b is not None))
    results = []
    for row, backend in runners:
        rates = row.pop("_rates", None)
        row.pop("_fn", None)
        if rates:
            row["images_per_s"] = statistics.median(rates)
            row["spread"] = (min(rates), max(rates))
        results.append(row)
    return results


def format_table(results: list[dict[str, Any]], reference: str | None = None) -> str:
    """A plain-text table of `compare_backends` results, with ratios to the `reference` backend."""
    ref = next((r["images_per_s"] for r in results if r["backend"] == reference and "images_per_s" in r), None)
    lines = [f"{'backend':28s} {'device':8s} {'batch':>5s} {'images/s':>10s} {'min..max':>17s}"
             + (f" {'vs ' + reference:>12s}" if ref else "")]
    for r in results:
        label = r["backend"] + ("" if not r["options"] else " " + ",".join(f"{k}={v}" for k, v in r["options"].items()))
        if "error" in r:
            lines.append(f"{label:28s} unavailable: {r['error']}")
            continue
        lo, hi = r["spread"]
        line = f"{label:28s} {r['device']:8s} {r['batch']:5d} {r['images_per_s']:10.1f} {lo:8.1f}..{hi:<8.1f}"
        if ref:
            line += f" {r['images_per_s'] / ref:11.2f}x"
        lines.append(line)
    return "\n".join(lines)


def random_model(config, seed: int = 0) -> Model:
    """A model with random weights (DCGAN init, BN statistics of a few batches): for benchmarks."""
    rng = np.random.default_rng(seed)
    weights = {}
    for key, shape in config.param_shapes().items():
        name = key.rsplit(".", 1)[1]
        if name == "running_var":
            weights[key] = rng.uniform(0.5, 2.0, shape)
        elif name == "weight" and len(shape) == 1:
            weights[key] = rng.normal(1.0, 0.02, shape)
        elif name in ("bias", "running_mean"):
            weights[key] = rng.normal(0.0, 0.1, shape)
        else:
            weights[key] = rng.normal(0.0, 0.02, shape)
    return memory_model(config, weights, {"random": True})
