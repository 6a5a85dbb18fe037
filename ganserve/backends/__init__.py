"""Backend registry: names, lazy imports, and the automatic choice.

Each backend lives in its own module and imports its heavy package only when it is used.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import BackendUnavailableError
from ..model_io import Model
from .base import Backend

# name -> "module:Class"; the modules are imported only when the backend is asked for.
_REGISTRY = {
    "tensorrt": "ganserve.backends.tensorrt_backend:TensorRTBackend",
    "onnxruntime": "ganserve.backends.onnxruntime_backend:OnnxRuntimeBackend",
    "torch": "ganserve.backends.torch_backend:TorchBackend",
    "numpy": "ganserve.backends.numpy_backend:NumpyBackend",
}
# What "auto" tries, fastest first (the side-by-side measurements are in BENCHMARKS.md): the GPU
# backends, then the CPU ones.
AUTO_ORDER = (
    ("tensorrt", {}),
    ("onnxruntime", {"device": "cuda"}),
    ("torch", {"device": "cuda"}),
    ("onnxruntime", {"device": "cpu"}),
    ("numpy", {}),
    ("torch", {"device": "cpu"}),
)


def list_backends() -> list[str]:
    """Every backend ganserve knows, usable here or not."""
    return list(_REGISTRY)


def backend_class(name: str) -> type[Backend]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown backend {name!r}; known backends: {', '.join(_REGISTRY)} "
                         f"(usable here: {', '.join(available_backends())})")
    module, cls = _REGISTRY[name].split(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except BackendUnavailableError:
        raise
    except ImportError as e:  # a module whose heavy package is missing
        raise BackendUnavailableError(f"backend {name!r} cannot be imported: {e}") from e


def unavailable_reason(name: str, device: str = "auto") -> str | None:
    """Why backend `name` cannot run on this machine (on `device`: "auto", "cpu", "cuda"), or None if it can."""
    try:
        backend_class(name).check_available(device)
    except BackendUnavailableError as e:
        return str(e)
    return None


def available_backends() -> list[str]:
    """Backends that can run on this machine, in the order "auto" tries them."""
    names = dict.fromkeys(name for name, _ in AUTO_ORDER)
    return [name for name in names if unavailable_reason(name) is None]


def create_backend(name: str, model: Model, **options: Any) -> Backend:
    """Make backend `name` for `model`; "auto" takes the first usable one in `AUTO_ORDER`.

    Raises:
        ValueError: unknown name.
        BackendUnavailableError: the backend's package, device or files are missing.
    """
    if name == "auto":
        if options:
            raise TypeError(f"backend options {sorted(options)} need an explicit backend name, not 'auto'")
        return _auto(model)
    cls = backend_class(name)
    device = {"device": options["device"]} if "device" in options else {}
    cls.check_available(**device)
    cls.check_model(model, **options)
    return cls(model, **options)


def _auto(model: Model) -> Backend:
    reasons = []
    for name, options in AUTO_ORDER:
        try:
            cls = backend_class(name)
            cls.check_available(**options)
            cls.check_model(model, **options)
        except BackendUnavailableError as e:
            reasons.append(f"{name}{options or ''}: {e}")
            continue
        return cls(model, **options)
    raise BackendUnavailableError("no backend can run this model: " + "; ".join(reasons))
