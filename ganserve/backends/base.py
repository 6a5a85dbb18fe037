"""The one interface every backend implements."""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import numpy as np

from ..images import to_uint8
from ..model_io import Model


class Backend(abc.ABC):
    """Runs a generator's forward pass on one device.

    A backend is made from a loaded `Model`; `run` maps latents (n, latent_dim) float32 to images
    (n, C, H, W) float32 in the model's value range. The caller validates inputs and splits big
    requests into batches of at most `max_batch`.
    """

    name: ClassVar[str]
    #: Largest batch `run` accepts at once (a memory bound); callers chunk to it.
    max_batch: int = 1 << 30
    #: Batch size used when the caller names none.
    default_batch: int = 64

    @classmethod
    @abc.abstractmethod
    def check_available(cls, device: str = "auto") -> None:
        """Raise `BackendUnavailableError` (an ImportError) if this backend cannot run here.

        Args:
            device: "auto", "cpu" or "cuda"; backends that run on one device only ignore it.
        """

    @classmethod
    def check_model(cls, model: Model, **options: Any) -> None:
        """Raise `BackendUnavailableError` if this backend cannot run `model` (e.g. a file is missing)."""

    def __init__(self, model: Model, **options: Any) -> None:
        self.model = model
        self.config = model.config

    @property
    def device(self) -> str:
        return "cpu"

    @abc.abstractmethod
    def run(self, z: np.ndarray) -> np.ndarray:
        """float32 (n, C, H, W) images for float32 latents (n, latent_dim)."""

    def run_uint8(self, z: np.ndarray) -> np.ndarray:
        """uint8 (n, H, W, C) images; backends on a GPU override this to convert before the copy."""
        return to_uint8(self.run(z), self.config.value_range)

    def describe(self) -> dict[str, Any]:
        """What is in use, for `Generator.info()` and benchmarks."""
        return {"backend": self.name, "device": self.device}
