"""ganserve: serve DCGAN-family image generators fast.

    from ganserve import Generator
    images = Generator.load().sample(64)   # uint8 (64, H, W, C)

Importing ganserve needs only NumPy (plus safetensors and Pillow); torch, onnx, onnxruntime and
tensorrt are imported by the backend or command that uses them.
"""

__version__ = "0.1.0"

from .backends import available_backends, list_backends
from .config import GeneratorConfig, layer
from .errors import BackendUnavailableError, ModelFormatError
from .generator import Generator
from .model_io import list_shipped_models, load_model, save_model
from .presets import create_config, list_presets

__all__ = [
    "BackendUnavailableError",
    "Generator",
    "GeneratorConfig",
    "ModelFormatError",
    "available_backends",
    "create_config",
    "layer",
    "list_backends",
    "list_presets",
    "list_shipped_models",
    "load_model",
    "save_model",
]
