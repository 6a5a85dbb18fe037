"""Latent vectors that depend only on (seed, index).

Latent ``i`` of seed ``s`` is read from the counter-based Philox generator keyed by ``s``, at the
counter block reserved for row ``i``, and turned into normals by the Box-Muller transform. So the
same image comes out whatever the batch size, the shard, the backend or the numpy version (Philox's
raw stream is fixed; numpy's own normal sampler is not used).
"""

from __future__ import annotations

import numbers

import numpy as np

_BLOCK = 4  # Philox4x64 yields 4 uint64 per counter step
_MAX_ROUNDS = 1000  # truncation resampling rounds (psi=0.05 needs about 400 for a million values)


def check_index(value: object, name: str, minimum: int = 0, maximum: int = 2**64 - 1) -> int:
    """`value` as an int in [minimum, maximum], else a TypeError/ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if value < minimum:  # the usual mistake, said without the far upper bound
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    if value > maximum:
        raise ValueError(f"{name} must be in [{minimum}, {maximum}], got {value}")
    return value


def check_truncation(psi: object, name: str = "truncation") -> float | None:
    if psi is None:
        return None
    if isinstance(psi, bool) or not isinstance(psi, numbers.Real):
        raise TypeError(f"{name} must be a number or None, got {type(psi).__name__} {psi!r}")
    psi = float(psi)
    if not (psi > 0 and np.isfinite(psi)):
        raise ValueError(f"{name} must be a positive finite number, got {psi}")
    return psi


def _normals(seed: int, round_: int, rows: np.ndarray, dim: int) -> np.ndarray:
    """Standard normals (len(rows), dim), row r from Philox key (seed, round_) at r's counter block."""
    pairs = (dim + 1) // 2
    per_row = -(-2 * pairs // _BLOCK)  # counter steps reserved for one row
    out = np.empty((len(rows), 2 * pairs), dtype=np.float64)
    # Rows come as sorted runs of consecutive indices; each run is one Philox call.
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    pos = 0
    for run in np.split(rows, breaks):
        if not len(run):
            continue
        bits = np.random.Philox(key=np.array([seed, round_], dtype=np.uint64),
                                counter=np.array([int(run[0]) * per_row, 0, 0, 0], dtype=np.uint64))
        raw = bits.random_raw(len(run) * per_row * _BLOCK).reshape(len(run), -1)[:, : 2 * pairs]
        u = (raw >> np.uint64(11)).astype(np.float64) * 2.0**-53  # [0, 1)
        u1, u2 = 1.0 - u[:, 0::2], u[:, 1::2]  # u1 in (0, 1] so log is finite
        radius = np.sqrt(-2.0 * np.log(u1))
        out[pos:pos + len(run), 0::2] = radius * np.cos(2 * np.pi * u2)
        out[pos:pos + len(run), 1::2] = radius * np.sin(2 * np.pi * u2)
        pos += len(run)
    return out[:, :dim]


def max_index(dim: int) -> int:
    """One past the largest latent index of size `dim`: row i's first counter, i * (counter steps per
    row), must fit in 64 bits, and the index in an int64."""
    per_row = -(-2 * ((dim + 1) // 2) // _BLOCK)
    return min(2**63, (2**64 - 1) // per_row + 1)


def check_range(start: int, n: int, dim: int) -> None:
    """A ValueError unless indices start .. start+n-1 all exist for latent size `dim`."""
    end = max_index(dim)
    if start + n > end:
        raise ValueError(f"start + n must be at most {end} for latent size {dim} (indices are Philox counters), "
                         f"got {start} + {n}")


def make_latents(n: int, dim: int, seed: int = 0, start: int = 0, truncation: float | None = None) -> np.ndarray:
    """float32 (n, dim) standard normal latents for indices start .. start+n-1 of `seed`.

    Args:
        n: number of latents (0 gives an empty array).
        dim: latent size.
        seed: any int in [0, 2**64).
        start: global index of the first latent.
        truncation: if given (psi > 0), every entry is redrawn until |z| <= psi; redraws come from
            further Philox keys at the same counter, so latent i still depends only on
            (seed, i, psi).
    """
    n, seed, start = check_index(n, "n"), check_index(seed, "seed"), check_index(start, "start")
    psi = check_truncation(truncation)
    check_range(start, n, dim)
    rows = np.arange(start, start + n, dtype=np.int64)
    z = _normals(seed, 0, rows, dim)
    if psi is not None:
        for round_ in range(1, _MAX_ROUNDS + 1):
            bad_rows = np.flatnonzero((np.abs(z) > psi).any(axis=1))
            if not len(bad_rows):
                break
            fresh = _normals(seed, round_, rows[bad_rows], dim)
            block = z[bad_rows]
            redo = np.abs(block) > psi
            block[redo] = fresh[redo]
            z[bad_rows] = block
        else:
            raise ValueError(f"truncation psi={psi} is too small to sample in {_MAX_ROUNDS} rounds")
    return z.astype(np.float32)
