"""`Generator`: a loaded model on a backend, with seeded, batch-independent sampling."""

from __future__ import annotations

import os
from typing import Any, Iterator

import numpy as np

from .backends import create_backend
from .backends.base import Backend
from .config import GeneratorConfig
from .images import check_finite
from .latents import check_index, check_range, check_truncation, make_latents
from .model_io import Model, load_model, memory_model


class Generator:
    """A generator network ready to make images.

    Example::

        from ganserve import Generator
        gen = Generator.load()                  # the shipped Fashion-MNIST model, fastest backend
        images = gen.sample(64, seed=0)         # uint8 (64, 28, 28, 1)

    Image ``i`` of seed ``s`` comes from latent ``(s, i)`` alone, so it is the same whatever the
    batch size, the shard it falls in, or the backend (within rounding).
    """

    def __init__(self, model: Model, backend: Backend) -> None:
        self.model = model
        self._backend = backend

    # --- construction

    @classmethod
    def load(cls, path_or_name: str | os.PathLike | None = None, backend: str = "auto",
             **backend_options: Any) -> "Generator":
        """Load a model directory, or a shipped model by name (None: the shipped default).

        Args:
            path_or_name: a model directory, a shipped model name, or None.
            backend: "auto" (the fastest usable one) or a name from `ganserve.list_backends()`.
            **backend_options: passed to the named backend (e.g. ``workspace_mb`` for numpy).

        Raises:
            FileNotFoundError: no such directory or shipped model.
            ModelFormatError: the directory is not a valid model.
            ValueError: unknown backend name.
            BackendUnavailableError: the backend's package, device or files are missing.
        """
        model = load_model(path_or_name)
        return cls(model, create_backend(backend, model, **backend_options))

    @classmethod
    def from_weights(cls, config: GeneratorConfig, weights: dict[str, np.ndarray], backend: str = "numpy",
                     metadata: dict[str, Any] | None = None, **backend_options: Any) -> "Generator":
        """A generator from in-memory weights (keys as in `config.param_shapes()`)."""
        model = memory_model(config, weights, metadata)
        return cls(model, create_backend(backend, model, **backend_options))

    # --- facts

    @property
    def config(self) -> GeneratorConfig:
        return self.model.config

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one image from `sample`; `generate` gives (C, H, W)."""
        c, h, w = self.config.output_shape
        return (h, w, c)

    @property
    def backend(self) -> str:
        """Name of the backend in use."""
        return self._backend.name

    @property
    def device(self) -> str:
        return self._backend.device

    @property
    def default_batch_size(self) -> int:
        """Images per forward pass when none is given (the backend's preference)."""
        return self._backend.default_batch

    @property
    def metadata(self) -> dict[str, Any]:
        return self.model.metadata

    @property
    def model_hash(self) -> str:
        return self.model.model_hash

    def __repr__(self) -> str:
        where = self.model.path or "<in memory>"
        return (f"Generator({str(where)!r}, preset={self.config.preset!r}, latent_dim={self.latent_dim}, "
                f"image_shape={self.image_shape}, backend={self.backend!r})")

    # --- sampling

    def latents(self, n: int, seed: int = 0, start: int = 0, truncation: float | None = None) -> np.ndarray:
        """float32 (n, latent_dim) standard normal latents for indices start .. start+n-1.

        Args:
            n: how many (positive).
            seed: an int in [0, 2**64).
            start: index of the first latent.
            truncation: psi > 0 to redraw every entry until |z| <= psi (see `make_latents`).
        """
        check_index(n, "n", minimum=1)
        return make_latents(n, self.latent_dim, seed=seed, start=start, truncation=truncation)

    def generate(self, z: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """The raw forward pass: float32 (n, C, H, W) in the model's value range (tanh: [-1, 1])."""
        z = self._check_latents(z)
        out = np.empty((len(z), *self.config.output_shape), dtype=np.float32)
        for lo, hi in self._batches(len(z), batch_size):
            out[lo:hi] = self._backend.run(z[lo:hi])
        return check_finite(out)

    def render(self, z: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """uint8 (n, H, W, C) images for the latents `z`."""
        z = self._check_latents(z)
        out = np.empty((len(z), *self.image_shape), dtype=np.uint8)
        for lo, hi in self._batches(len(z), batch_size):
            out[lo:hi] = self._backend.run_uint8(z[lo:hi])
        return out

    def sample(self, n: int, seed: int = 0, batch_size: int | None = None, start: int = 0,
               truncation: float | None = None) -> np.ndarray:
        """uint8 (n, H, W, C) images for indices start .. start+n-1 of `seed`."""
        check_index(n, "n", minimum=1)
        out = np.empty((n, *self.image_shape), dtype=np.uint8)
        for first, images in self.iter_batches(n, seed, batch_size, start, truncation):
            out[first - start:first - start + len(images)] = images
        return out

    def iter_batches(self, n: int, seed: int = 0, batch_size: int | None = None, start: int = 0,
                     truncation: float | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Stream `n` images in batches: yields (global index of the first image, uint8 batch).

        Holds one batch at a time, so `n` can be far larger than memory.
        """
        n = check_index(n, "n", minimum=1)
        seed = check_index(seed, "seed")
        start = check_index(start, "start")
        check_range(start, n, self.latent_dim)  # all of them, before the first batch
        check_truncation(truncation)
        for lo, hi in self._batches(n, batch_size):
            z = make_latents(hi - lo, self.latent_dim, seed=seed, start=start + lo, truncation=truncation)
            yield start + lo, self._backend.run_uint8(z)

    # --- helpers

    def _batches(self, n: int, batch_size: int | None) -> Iterator[tuple[int, int]]:
        if batch_size is None:
            batch_size = self._backend.default_batch
        batch_size = check_index(batch_size, "batch_size", minimum=1)
        step = min(batch_size, self._backend.max_batch)
        for lo in range(0, n, step):
            yield lo, min(n, lo + step)

    def _check_latents(self, z: Any) -> np.ndarray:
        if not isinstance(z, np.ndarray):
            try:
                z = np.asarray(z)
            except (TypeError, ValueError) as e:
                raise TypeError(f"latents must be a numeric array, got {type(z).__name__}: {e}") from None
        if z.dtype.kind not in "fiu" or z.dtype == np.bool_:
            raise TypeError(f"latents must be a float array, got dtype {z.dtype}")
        if z.ndim != 2 or z.shape[1] != self.latent_dim or z.shape[0] == 0:
            raise ValueError(f"latents must have shape (n, {self.latent_dim}) with n >= 1, got {z.shape}")
        z = np.ascontiguousarray(z, dtype=np.float32)
        if not np.isfinite(z).all():
            raise ValueError("latents contain NaN or Inf")
        return z

    # --- latent space (the maths lives in ganserve.latent_ops)

    def interpolate(self, a: Any, b: Any, steps: int = 16, method: str = "slerp",
                    truncation: float | None = None) -> np.ndarray:
        """uint8 (steps, H, W, C) images along the path from latent `a` to `b`, both ends included.

        Args:
            a, b: (latent_dim,) arrays or (seed, index) pairs (image `index` of ``sample(seed=seed)``).
            steps: number of images (at least 2).
            method: "slerp" (keeps the norm of Gaussian latents) or "lerp".
            truncation: psi for ends given as pairs, as in `sample`.
        """
        from .latent_ops import interpolation_latents

        return self.render(interpolation_latents(a, b, steps, method, dim=self.latent_dim, truncation=truncation))

    def walk(self, keyframes: Any, steps_per_segment: int = 16, method: str = "slerp", loop: bool = False,
             truncation: float | None = None) -> np.ndarray:
        """uint8 images of a walk through keyframes (latents or (seed, index) pairs), see `walk_latents`.

        K keyframes give (K - 1) * (steps_per_segment - 1) + 1 images, or K * (steps_per_segment - 1)
        with ``loop=True`` (the walk returns to the first keyframe without repeating it).
        """
        from .latent_ops import walk_latents

        return self.render(walk_latents(keyframes, steps_per_segment, method, loop, dim=self.latent_dim,
                                        truncation=truncation))

    def arithmetic(self, terms: Any, neighbors: int = 8, jitter: float = 0.25, jitter_seed: int = 0,
                   truncation: float | None = None) -> np.ndarray:
        """uint8 images of DCGAN-style vector arithmetic on averaged latents, see `latent_ops.arithmetic`.

        Example: mean(images 3, 7 of seed 0) - mean(images 5, 9) + mean(images 1, 4)::

            gen.arithmetic([(1, [(0, 3), (0, 7)]), (-1, [(0, 5), (0, 9)]), (1, [(0, 1), (0, 4)])])

        Returns:
            (n_terms + 1 + neighbors, H, W, C): the mean of each term, the result, its neighbours.
        """
        from .latent_ops import arithmetic

        found = arithmetic(terms, dim=self.latent_dim, neighbors=neighbors, jitter=jitter,
                           jitter_seed=jitter_seed, truncation=truncation)
        return self.render(found.stacked())
