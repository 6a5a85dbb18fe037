"""The model format: a directory holding `config.json` and `generator.safetensors`.

``config.json`` (sorted keys, indented)::

    {
      "architecture": {...},          # GeneratorConfig.to_dict(): layers, shapes, value range
      "format_version": 1,
      "ganserve_version": "0.1.0",
      "metadata": {...}               # free-form: how it was trained, its quality metric, ...
    }

``save_model`` records the weights file's SHA-256 as ``metadata["weights_sha256"]`` and
``load_model`` checks it, so weights and a config.json from different exports (a save stopped
between its two files, a config copied from another model) are refused, not served mislabelled.

``generator.safetensors`` holds eval-mode float32 weights and batch-norm statistics, keyed as in
the PyTorch module's state dict (``layers.{i}.weight``). Exports (``generator.onnx``, ...) sit
beside them. Nothing here unpickles anything.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from ._files import atomic_path, dumps_json, write_bytes
from .config import GeneratorConfig
from .errors import ModelFormatError

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "generator.safetensors"
ONNX_NAME = "generator.onnx"
ONNX_FP16_NAME = "generator.fp16.onnx"
ENGINE_NAME = "generator.engine"
EXPORT_NAMES = (ONNX_NAME, ONNX_FP16_NAME, ENGINE_NAME)  # made from the weights by `ganserve export`
SHIPPED_DIR = Path(__file__).parent / "models"
DEFAULT_MODEL = "fashion-mnist"
WEIGHTS_SHA_KEY = "weights_sha256"  # in config.json's metadata: the weights file it was saved with


@dataclasses.dataclass(frozen=True)
class Model:
    """A loaded model directory: its architecture, weights and metadata."""

    config: GeneratorConfig
    weights: dict[str, np.ndarray]
    metadata: dict[str, Any]
    path: Path | None = None
    weights_sha256: str = ""

    @property
    def model_hash(self) -> str:
        """sha256 over the architecture and the weights: changes when either does."""
        return hashlib.sha256(f"{self.config.digest()}:{self.weights_sha256}".encode()).hexdigest()


def list_shipped_models() -> list[str]:
    """Names of the models shipped inside the package."""
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(p.name for p in SHIPPED_DIR.iterdir() if (p / CONFIG_NAME).is_file())


def resolve_model_path(path_or_name: str | os.PathLike | None) -> Path:
    """A model directory from a path, a shipped model's name, or None for the shipped default.

    A str that is both a shipped model's name and a folder here is refused as ambiguous: `./NAME`
    names the folder. None is always the shipped default, whatever the current folder holds."""
    if path_or_name is None:
        return SHIPPED_DIR / DEFAULT_MODEL
    path = Path(path_or_name)
    shipped_name = isinstance(path_or_name, str) and path_or_name in list_shipped_models()
    if shipped_name and path.is_dir():
        default = ", or give no model for the shipped one" if path_or_name == DEFAULT_MODEL else ""
        raise ValueError(f"{path_or_name!r} names both a shipped model and a folder here; write ./{path_or_name} "
                         f"for the folder{default}")
    if path.is_dir():
        return path
    if shipped_name:
        return SHIPPED_DIR / path_or_name
    if path.exists():
        raise ModelFormatError(f"{path}: a model must be a directory holding {CONFIG_NAME} and {WEIGHTS_NAME}")
    if str(path_or_name) in list_shipped_models():  # given as a Path: always read as a folder
        raise FileNotFoundError(f"no model directory at {str(path)!r}; to load the shipped model of that name, "
                                f"pass the name as a str")
    shipped = ", ".join(list_shipped_models()) or "none"
    raise FileNotFoundError(f"no model directory at {str(path)!r}, and no shipped model of that name "
                            f"(shipped models: {shipped})")


def load_model(path_or_name: str | os.PathLike | None = None) -> Model:
    """Read and validate a model directory (or a shipped model's name)."""
    path = resolve_model_path(path_or_name)
    config, metadata = read_config(path / CONFIG_NAME)
    weights, sha = read_weights(path / WEIGHTS_NAME, config)
    recorded = metadata.get(WEIGHTS_SHA_KEY)
    if recorded is not None and recorded != sha:  # absent in models saved before it was recorded
        what = f"records {recorded[:12]}..." if isinstance(recorded, str) else f"has {recorded!r}"
        raise ModelFormatError(f"{path}: {WEIGHTS_NAME} is not the file {CONFIG_NAME} was written with (its sha256 "
                               f"is {sha[:12]}..., metadata.{WEIGHTS_SHA_KEY} {what}): the two come from "
                               f"different saves; export it again from its checkpoint (ganserve export --ckpt), or "
                               f"put back the {CONFIG_NAME} saved with these weights")
    return Model(config, weights, metadata, path, sha)


def _read_bytes(file: Path) -> bytes:
    """The bytes of a model's regular file, or a ModelFormatError saying what `file` is instead."""
    try:
        mode = file.stat().st_mode
    except FileNotFoundError:
        if file.is_symlink():
            raise ModelFormatError(f"{file}: a symbolic link to {os.readlink(file)}, which does not exist") from None
        raise ModelFormatError(f"{file}: missing; a model directory needs {CONFIG_NAME} and {WEIGHTS_NAME}") from None
    except OSError as e:  # a symbolic link loop, a permission denied on the way, ...
        raise ModelFormatError(f"{file}: cannot be read ({e.strerror})") from None
    if stat.S_ISDIR(mode):
        raise ModelFormatError(f"{file}: a directory, not a file")
    if not stat.S_ISREG(mode):
        raise ModelFormatError(f"{file}: not a regular file (a device, pipe or socket)")
    try:
        return file.read_bytes()
    except OSError as e:
        raise ModelFormatError(f"{file}: cannot be read ({e.strerror})") from None


def read_config(file: Path) -> tuple[GeneratorConfig, dict[str, Any]]:
    text = _read_bytes(file)
    try:
        data = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFormatError(f"{file}: not valid JSON ({e})") from None
    except RecursionError:
        raise ModelFormatError(f"{file}: JSON nested too deeply to read") from None
    except ValueError:  # int() refuses a number of more than sys.get_int_max_str_digits() digits
        raise ModelFormatError(f"{file}: holds an integer with too many digits "
                               f"(over {sys.get_int_max_str_digits()})") from None
    if not isinstance(data, dict):
        raise ModelFormatError(f"{file}: expected a JSON object at the top level")
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelFormatError(f"{file}: 'format_version' is missing or not an integer")
    if version > FORMAT_VERSION:
        raise ModelFormatError(f"{file}: format version {version} was written by a newer ganserve "
                               f"({data.get('ganserve_version', '?')}); this one ({__version__}) reads up to "
                               f"{FORMAT_VERSION}: upgrade ganserve")
    if version < 1:
        raise ModelFormatError(f"{file}: invalid format version {version}")
    unknown = sorted(set(data) - {"format_version", "ganserve_version", "architecture", "metadata"})
    if unknown:
        raise ModelFormatError(f"{file}: unknown top-level key(s) {unknown}")
    metadata = data.get("metadata", {})
    if not isinstance(metadata, dict):
        raise ModelFormatError(f"{file}: 'metadata' must be a JSON object")
    try:
        config = GeneratorConfig.from_dict(data.get("architecture"))
    except (ValueError, TypeError) as e:
        raise ModelFormatError(f"{file}: invalid architecture: {e}") from None
    return config, metadata


def read_weights(file: Path, config: GeneratorConfig) -> tuple[dict[str, np.ndarray], str]:
    """Load and check the safetensors weights against `config`; returns (weights, file sha256)."""
    from safetensors.numpy import load

    data = _read_bytes(file)
    try:
        weights = load(data)
    except Exception as e:  # safetensors raises its own error type for every malformed file
        raise ModelFormatError(f"{file}: not a valid safetensors file ({e})") from None
    check_weights(weights, config, str(file))
    return weights, hashlib.sha256(data).hexdigest()


def check_weights(weights: dict[str, np.ndarray], config: GeneratorConfig, where: str) -> None:
    """Raise ModelFormatError unless `weights` has exactly the tensors `config` needs, finite."""
    expected = config.param_shapes()
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    if missing or extra:
        raise ModelFormatError(f"{where}: tensors do not match the architecture: "
                               f"missing {missing or 'none'}, unexpected {extra or 'none'}")
    for key, shape in expected.items():
        value = weights[key]
        if value.dtype != np.float32:
            raise ModelFormatError(f"{where}: tensor {key!r} has dtype {value.dtype}, expected float32")
        if tuple(value.shape) != shape:
            raise ModelFormatError(f"{where}: tensor {key!r} has shape {tuple(value.shape)}, expected {shape}")
        if not np.isfinite(value).all():
            raise ModelFormatError(f"{where}: tensor {key!r} contains NaN or Inf")
        if key.endswith("running_var") and (value < 0).any():
            raise ModelFormatError(f"{where}: tensor {key!r} has negative variances")


def config_document(config: GeneratorConfig, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "ganserve_version": __version__,
        "architecture": config.to_dict(),
        "metadata": dict(metadata or {}),
    }


def save_model(path: str | os.PathLike, config: GeneratorConfig, weights: dict[str, Any],
               metadata: dict[str, Any] | None = None) -> Path:
    """Write a model directory (created if needed); each file is written whole or not at all, and a
    stop between the two (new weights under the old config.json) is refused by `load_model`.

    Args:
        path: the directory.
        config: the architecture.
        weights: tensors keyed as `config.param_shapes()` (NumPy arrays or anything np.asarray takes).
        metadata: free-form JSON-serialisable facts, such as how the model was trained;
            its "weights_sha256" is set here, to the hash of the weights file written.
    """
    path = Path(path)
    data = weights_file(_checked_arrays(config, weights, str(path / WEIGHTS_NAME)))
    metadata = {**(metadata or {}), WEIGHTS_SHA_KEY: hashlib.sha256(data).hexdigest()}
    document = dumps_json(config_document(config, metadata))  # fails here, before any file, if not JSON
    path.mkdir(parents=True, exist_ok=True)
    _drop_stale_exports(path, config, data)
    with atomic_path(path / WEIGHTS_NAME) as tmp:
        tmp.write_bytes(data)
    write_bytes(path / CONFIG_NAME, document.encode())
    return path


def memory_model(config: GeneratorConfig, weights: dict[str, Any], metadata: dict[str, Any] | None = None) -> Model:
    """A checked in-memory model whose hash is that of the same model saved by `save_model`."""
    arrays = _checked_arrays(config, weights, "weights")
    return Model(config, arrays, dict(metadata or {}), None, hashlib.sha256(weights_file(arrays)).hexdigest())


def _checked_arrays(config: GeneratorConfig, weights: dict[str, Any], where: str) -> dict[str, np.ndarray]:
    arrays = {k: np.ascontiguousarray(np.asarray(v, dtype=np.float32)) for k, v in weights.items()}
    check_weights(arrays, config, where)
    return arrays


def weights_file(arrays: dict[str, np.ndarray]) -> bytes:
    """The bytes of generator.safetensors for these weights."""
    from safetensors.numpy import save

    return save(arrays, metadata={"format": "ganserve"})


def _drop_stale_exports(path: Path, config: GeneratorConfig, data: bytes) -> None:
    """Remove exports that new weights or a new architecture would leave stale (they would not match)."""
    exports = [path / name for name in EXPORT_NAMES if (path / name).exists()]
    if not exports:
        return
    try:
        same = read_config(path / CONFIG_NAME)[0] == config and (path / WEIGHTS_NAME).read_bytes() == data
    except (ModelFormatError, OSError):
        same = False
    if not same:
        for file in exports:
            file.unlink()


def update_metadata(path: str | os.PathLike, **entries: Any) -> None:
    """Merge `entries` into the metadata of the model directory at `path`, atomically."""
    file = Path(path) / CONFIG_NAME
    config, metadata = read_config(file)
    metadata.update(entries)
    write_bytes(file, dumps_json(config_document(config, metadata)).encode())
