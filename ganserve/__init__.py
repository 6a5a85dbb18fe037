"""ganserve: serve DCGAN-family image generators fast.

    from ganserve import Generator
    images = Generator.load().sample(64)   # uint8 (64, H, W, C)

Names are imported on first use, so `import ganserve` itself costs almost nothing (the PNG
encoding processes rely on it) and its public names pull in only NumPy, safetensors and Pillow;
torch, onnx, onnxruntime and tensorrt are imported by the backend or command that uses them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "BackendUnavailableError": "errors",
    "Generator": "generator",
    "GeneratorConfig": "config",
    "ModelFormatError": "errors",
    "available_backends": "backends",
    "create_config": "presets",
    "layer": "config",
    "list_backends": "backends",
    "list_presets": "presets",
    "list_shipped_models": "model_io",
    "load_model": "model_io",
    "save_model": "model_io",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ imports on first use
    from .backends import available_backends, list_backends  # noqa: F401
    from .config import GeneratorConfig, layer  # noqa: F401
    from .errors import BackendUnavailableError, ModelFormatError  # noqa: F401
    from .generator import Generator  # noqa: F401
    from .model_io import list_shipped_models, load_model, save_model  # noqa: F401
    from .presets import create_config, list_presets  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    if not name.startswith("__"):  # a submodule, as `ganserve.latents` after `import ganserve`
        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
