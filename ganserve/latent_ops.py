"""Latent-space maths: interpolation (slerp, lerp), multi-keyframe walks, and vector arithmetic.

NumPy only. A latent is given either as an array of ``dim`` numbers or as a ``(seed, index)``
pair, which means image ``index`` of ``Generator.sample(seed=seed)``, i.e. the row
``make_latents(1, dim, seed=seed, start=index)``. A pair is always a *tuple* of two ints; pass an
array for a raw latent (this only matters when ``dim == 2``).

Example::

    from ganserve import Generator
    from ganserve.latent_ops import walk_latents
    gen = Generator.load()
    z = walk_latents([(1, 0), (2, 0), (3, 0)], 16, dim=gen.latent_dim)   # (31, 100) float32
    frames = gen.render(z)                                                # uint8 (31, 28, 28, 1)
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Sequence, Union

import numpy as np

from .latents import check_index, make_latents

# An array of `dim` numbers, or (seed, index).
LatentRef = Union[np.ndarray, Sequence[float], tuple[int, int]]

METHODS = ("slerp", "lerp")
_PARALLEL_COS = 1.0 - 1e-7  # |cos(angle)| above this counts as (anti)parallel: slerp falls back to lerp


# --- interpolation


def lerp(a: Any, b: Any, t: Any) -> np.ndarray:
    """Linear interpolation ``(1 - t) * a + t * b``, float32.

    Args:
        a, b: latents (D,) or batches (N, D); they broadcast against each other.
        t: a fraction, or a 1-D array of T fractions (0 gives `a`, 1 gives `b`; values outside
            [0, 1] extrapolate).

    Returns:
        The shape of ``a + b`` for a scalar `t`; (T, *that shape) for a 1-D `t`.
    """
    a, b, t = _check_pair(a, b, t)
    return ((1.0 - t) * a + t * b).astype(np.float32)


def slerp(a: Any, b: Any, t: Any) -> np.ndarray:
    """Spherical interpolation along the great circle from `a` to `b`, float32.

    Keeps the norm when ``|a| == |b|`` (the right path between Gaussian latents, whose norms are all
    close to sqrt(D)) and gives `a` and `b` exactly at t = 0 and 1. Where `a` and `b` are
    (anti)parallel, or one of them is zero, the circle is undefined and it is `lerp`.

    Args and returns as for `lerp`.
    """
    a, b, t = _check_pair(a, b, t)
    na, nb = np.linalg.norm(a, axis=-1, keepdims=True), np.linalg.norm(b, axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = np.sum(a * b, axis=-1, keepdims=True) / (na * nb)  # (..., 1); NaN for a zero vector
    parallel = ~(np.abs(cos) <= _PARALLEL_COS)
    omega = np.arccos(np.where(parallel, 0.0, cos))  # (..., 1)
    sin_omega = np.where(parallel, 1.0, np.sin(omega))
    wa = np.where(parallel, 1.0 - t, np.sin((1.0 - t) * omega) / sin_omega)
    wb = np.where(parallel, t, np.sin(t * omega) / sin_omega)
    return (wa * a + wb * b).astype(np.float32)


_INTERPOLATORS = {"slerp": slerp, "lerp": lerp}


def interpolation_latents(a: LatentRef, b: LatentRef, steps: int, method: str = "slerp", *,
                          dim: int | None = None, truncation: float | None = None) -> np.ndarray:
    """float32 (steps, D) latents from `a` to `b`, both ends included, evenly spaced in t.

    Args:
        a, b: latents (D,) or (seed, index) pairs.
        steps: number of latents (at least 2).
        method: "slerp" (default; keeps the norm of Gaussian latents) or "lerp".
        dim: latent size; needed when both ends are pairs, checked against arrays.
        truncation: psi for latents given as pairs (as in `make_latents`); arrays are used as given.
    """
    steps = _check_count(steps, "steps", minimum=2)
    interpolate = _interpolator(method)
    dim = _infer_dim([a, b], dim)
    za, zb = (resolve_latent(ref, dim, truncation, name) for ref, name in ((a, "a"), (b, "b")))
    return interpolate(za, zb, np.linspace(0.0, 1.0, steps))


def walk_latents(keyframes: Sequence[LatentRef] | np.ndarray, steps_per_segment: int, method: str = "slerp",
                 loop: bool = False, *, dim: int | None = None, truncation: float | None = None) -> np.ndarray:
    """float32 latents for a walk through several keyframes, one segment after another.

    Each segment runs from one keyframe to the next like `interpolation_latents` with
    ``steps=steps_per_segment``; the keyframe where two segments join appears once. So K keyframes
    give ``(K - 1) * (steps_per_segment - 1) + 1`` latents, and with ``loop=True`` a last segment
    goes back towards the first keyframe without repeating it, ``K * (steps_per_segment - 1)``
    latents, which play as a seamless loop.

    Args:
        keyframes: at least 2 latents (D,) or (seed, index) pairs, or a (K, D) array.
        steps_per_segment: latents per segment, both keyframes counted (at least 2).
        method: "slerp" or "lerp".
        loop: close the walk back to the first keyframe.
        dim, truncation: as for `interpolation_latents`.
    """
    steps = _check_count(steps_per_segment, "steps_per_segment", minimum=2)
    interpolate = _interpolator(method)
    if not isinstance(loop, (bool, np.bool_)):
        raise TypeError(f"loop must be a bool, got {type(loop).__name__} {loop!r}")
    z = resolve_latents(keyframes, dim=dim, truncation=truncation, name="keyframe")  # (K, D)
    if len(z) < 2:
        raise ValueError(f"a walk needs at least 2 keyframes, got {len(z)}")
    ends = np.concatenate([z[1:], z[:1]]) if loop else z[1:]  # (S, D), segment s: z[s] -> ends[s]
    t = np.linspace(0.0, 1.0, steps)[:-1]  # each segment's last latent is the next one's first
    frames = interpolate(z[:len(ends)], ends, t)  # (steps - 1, S, D)
    frames = frames.transpose(1, 0, 2).reshape(-1, z.shape[1])  # segment-major
    return frames if loop else np.concatenate([frames, z[-1:]])


# --- vector arithmetic


def mean_latent(latents: Sequence[LatentRef] | np.ndarray, *, dim: int | None = None,
                truncation: float | None = None) -> np.ndarray:
    """float32 (D,) average of some latents: (seed, index) pairs, (D,) arrays, or an (n, D) array."""
    z = resolve_latents(latents, dim=dim, truncation=truncation)  # (n, D)
    return z.mean(axis=0, dtype=np.float64).astype(np.float32)


@dataclass(frozen=True)
class ArithmeticLatents:
    """The latents of one vector-arithmetic query, as `arithmetic` returns them."""

    means: np.ndarray  # (n_terms, D): the average latent of each term's group
    weights: tuple[float, ...]  # the signed weight of each term
    result: np.ndarray  # (D,): sum of weights[k] * means[k]
    neighbors: np.ndarray  # (n_neighbors, D): result + jitter * standard normal noise

    def stacked(self) -> np.ndarray:
        """(n_terms + 1 + n_neighbors, D): the means, the result, then its neighbours."""
        return np.concatenate([self.means, self.result[None], self.neighbors])


def arithmetic(terms: Sequence[tuple[float, Sequence[LatentRef] | np.ndarray]], *, dim: int | None = None,
               neighbors: int = 8, jitter: float = 0.25, jitter_seed: int = 0,
               truncation: float | None = None) -> ArithmeticLatents:
    """Vector arithmetic on averaged latents, as in the DCGAN paper (Radford et al., 2015, fig. 7).

    Each term is ``(weight, group)``: the latents of `group` are averaged (averaging a few samples
    of a concept makes the result stable) and the weighted means are summed, so
    ``[(1, a), (-1, b), (1, c)]`` is ``mean(a) - mean(b) + mean(c)``. The result comes with
    neighbours, ``result + jitter * noise``, where noise row i is latent (jitter_seed, i), so they
    are reproducible and do not depend on how many are asked for.

    Args:
        terms: at least one (weight, group); a group is latents as `mean_latent` takes them.
        dim: latent size; needed when every latent is a pair.
        neighbors: how many jittered neighbours (0 or more).
        jitter: the noise scale (0 or more; the paper uses 0.25).
        jitter_seed: seed of the neighbours' noise.
        truncation: psi for latents given as pairs.
    """
    if isinstance(terms, (str, bytes)) or not isinstance(terms, Sequence) or not len(terms):
        raise ValueError(f"arithmetic needs at least one (weight, latents) term, got {terms!r}")
    weights, means = [], []
    for k, term in enumerate(terms):
        if not isinstance(term, (tuple, list)) or len(term) != 2:
            raise TypeError(f"term {k} must be a (weight, latents) pair, got {type(term).__name__}")
        weights.append(_check_real(term[0], f"weight of term {k}"))
        means.append(mean_latent(term[1], dim=dim, truncation=truncation))
        dim = len(means[0])  # every later term must match the first
    neighbors = _check_count(neighbors, "neighbors", minimum=0)
    jitter = _check_real(jitter, "jitter")
    if jitter < 0:
        raise ValueError(f"jitter must be >= 0, got {jitter}")
    jitter_seed = check_index(jitter_seed, "jitter_seed")
    means = np.stack(means)  # (n_terms, D)
    result = (np.asarray(weights)[:, None] * means).sum(axis=0).astype(np.float32)
    noise = make_latents(neighbors, dim, seed=jitter_seed)  # (neighbors, D)
    with np.errstate(over="ignore"):
        jittered = (result + np.float32(jitter) * noise).astype(np.float32)
    if not np.isfinite(jittered).all():
        raise ValueError(f"jitter {jitter} is too large: the neighbours' latents overflow float32")
    return ArithmeticLatents(means, tuple(weights), result, jittered)


# --- resolving and checking


def resolve_latent(ref: LatentRef, dim: int | None = None, truncation: float | None = None,
                   name: str = "latent") -> np.ndarray:
    """float32 (D,) for one latent: a (seed, index) pair or an array of `dim` finite numbers."""
    if dim is not None:
        dim = _check_count(dim, "dim", minimum=1)
    if _is_pair(ref):
        if dim is None:
            raise ValueError(f"{name} {ref!r} is a (seed, index) pair; pass dim to resolve it")
        seed, index = ref
        return make_latents(1, dim, seed=check_index(seed, f"{name} seed"), start=check_index(index, f"{name} index"),
                            truncation=truncation)[0]
    try:
        z = np.asarray(ref)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be a (seed, index) pair or an array of numbers, got "
                        f"{type(ref).__name__}: {e}") from None
    if z.dtype == np.bool_ or z.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a (seed, index) pair or an array of numbers, got "
                        f"{type(ref).__name__} of dtype {z.dtype}")
    if z.ndim != 1 or z.size == 0 or (dim is not None and z.shape[0] != dim):
        want = f"({dim},)" if dim is not None else "(D,)"
        raise ValueError(f"{name} must have shape {want}, got {z.shape}")
    if not np.isfinite(z).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return z.astype(np.float32)


def resolve_latents(refs: Sequence[LatentRef] | np.ndarray, dim: int | None = None,
                    truncation: float | None = None, name: str = "latent") -> np.ndarray:
    """float32 (n, D) for a non-empty list of latents (pairs or arrays), or an (n, D) array."""
    if isinstance(refs, np.ndarray) and refs.ndim == 2:
        refs = list(refs)
    elif _is_pair(refs) or isinstance(refs, np.ndarray):
        refs = [refs]  # one latent on its own
    elif isinstance(refs, (str, bytes)) or not isinstance(refs, Sequence):
        raise TypeError(f"{name}s must be a list of latents or (seed, index) pairs, got {type(refs).__name__}")
    if not len(refs):
        raise ValueError(f"{name}s: the list is empty; give at least one latent or (seed, index) pair")
    dim = _infer_dim(refs, dim)
    return np.stack([resolve_latent(ref, dim, truncation, name=f"{name} {i}") for i, ref in enumerate(refs)])


def _is_pair(ref: Any) -> bool:
    return (isinstance(ref, tuple) and len(ref) == 2
            and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in ref))


def check_method(method: Any, name: str = "method") -> str:
    """`method` if it names an interpolation (see METHODS), else a ValueError naming `name`."""
    if not isinstance(method, str) or method not in _INTERPOLATORS:
        raise ValueError(f"{name} must be one of {', '.join(METHODS)}, got {method!r}")
    return method


def _interpolator(method: Any):
    return _INTERPOLATORS[check_method(method)]


def _check_count(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def _infer_dim(refs: Sequence[Any], dim: int | None) -> int | None:
    """`dim` checked, or else the size of the first latent given as a 1-D array (None if all are pairs)."""
    if dim is not None:
        return _check_count(dim, "dim", minimum=1)
    for ref in refs:
        if not _is_pair(ref):
            try:
                shape = np.shape(ref)
            except (TypeError, ValueError):
                return None  # resolve_latent reports it
            return shape[0] if len(shape) == 1 else None
    return None


def _check_real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def _check_pair(a: Any, b: Any, t: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """a, b as float64 (..., D) and t as float64 broadcastable against them ((T, 1, ..., 1) for 1-D t)."""
    a, b = (_as_latent_array(v, name) for v, name in ((a, "a"), (b, "b")))
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"a and b must have the same latent size, got {a.shape} and {b.shape}")
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"a and b must be latents (D,) or batches (N, D) that broadcast, "
                         f"got {a.shape} and {b.shape}") from None
    t = _as_latent_array(t, "t", ndims=(0, 1))
    if t.ndim == 1:
        t = t.reshape(-1, *[1] * max(a.ndim, b.ndim))  # (T, 1, ..., 1): one interpolant per t
    return a, b, t


def _as_latent_array(value: Any, name: str, ndims: tuple[int, ...] = (1, 2)) -> np.ndarray:
    try:
        x = np.asarray(value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be numeric, got {type(value).__name__}: {e}") from None
    if x.dtype == np.bool_ or x.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be numeric, got dtype {x.dtype}")
    if x.ndim not in ndims or x.size == 0:
        raise ValueError(f"{name} must have {' or '.join(map(str, ndims))} dimensions and not be empty, "
                         f"got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return x.astype(np.float64)
