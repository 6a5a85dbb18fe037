"""A Triton Inference Server model repository for a ganserve model directory.

Layout::

    repo/name/config.pbtxt            # platform, batch limit, tensors, dynamic batching, GPU instances
    repo/name/<version>/model.onnx    # kind="onnx": the model's generator.onnx
    repo/name/<version>/model.plan    # kind="tensorrt": the raw TensorRT plan of generator.engine

Tensor dims in config.pbtxt leave out the batch axis: with ``max_batch_size`` > 0, Triton adds it.
A TensorRT plan only loads into a Triton whose TensorRT version and GPU match the engine's header.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from ganserve._files import temp_name, write_bytes
from ganserve.model_io import CONFIG_NAME, ENGINE_NAME, ONNX_NAME, read_config

KINDS = {"onnx": ("onnxruntime_onnx", ONNX_NAME, "model.onnx"),
         "tensorrt": ("tensorrt_plan", ENGINE_NAME, "model.plan")}
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class _Enum(str):
    """A protobuf enum value (written bare, not quoted)."""


def write_triton_repository(repo: str | os.PathLike, name: str, model_dir: str | os.PathLike, *,
                            kind: str = "onnx", max_batch_size: int = 1024,
                            preferred_batch_sizes: tuple[int, ...] | None = None, max_queue_delay_us: int = 100,
                            instance_count: int = 1, version: int = 1, overwrite: bool = False) -> Path:
    """Write (or add a version to) the Triton model `name` in repository `repo`.

    Args:
        repo: the model repository (created if needed).
        name: the model's name in Triton (a folder name).
        model_dir: a ganserve model directory holding generator.onnx or generator.engine.
        kind: "onnx" (ONNX Runtime backend) or "tensorrt" (a TensorRT plan).
        max_batch_size: the largest batch Triton sends at once (for "tensorrt", at most the engine's).
        preferred_batch_sizes: batch sizes the dynamic batcher aims for (default: those of 64 and 256
            that max_batch_size allows, else max_batch_size).
        max_queue_delay_us: how long the dynamic batcher waits to fill a batch.
        instance_count: model instances per GPU.
        version: the version folder to write.
        overwrite: replace an existing version folder's model instead of refusing.

    The model's config.pbtxt is written when there is none or it describes other model files
    (platform, batch limit, inputs, outputs); otherwise it is kept as it is, with whatever serving
    settings (instance group, dynamic batching) a deployment gave it.

    Returns:
        The model's folder, ``repo/name``.

    Raises:
        FileExistsError: the version folder exists and `overwrite` is False.
        ModelFormatError: the model directory or its engine is invalid.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    version_dir = check_version_folder(repo, name, version, overwrite)
    for what, value, low in (("max_batch_size", max_batch_size, 1), ("instance_count", instance_count, 1),
                             ("max_queue_delay_us", max_queue_delay_us, 0)):
        _check_int(what, value, low)
    if preferred_batch_sizes is None:
        preferred_batch_sizes = tuple(b for b in (64, 256) if b <= max_batch_size) or (max_batch_size,)
    preferred = sorted(set(preferred_batch_sizes))
    if not preferred or not all(isinstance(b, int) and 1 <= b <= max_batch_size for b in preferred):
        raise ValueError(f"preferred_batch_sizes must be batch sizes from 1 to max_batch_size ({max_batch_size}), "
                         f"got {preferred_batch_sizes!r}")

    model_dir = Path(model_dir)
    config, _ = read_config(model_dir / CONFIG_NAME)
    _, source_name, target_name = KINDS[kind]
    source = model_dir / source_name
    if not source.is_file():
        how = "`ganserve export`" if kind == "onnx" else "`ganserve export --tensorrt` on the serving GPU"
        raise FileNotFoundError(f"no {source_name} in {model_dir}: make it with {how}")
    if kind == "onnx":
        data, outputs = source.read_bytes(), _onnx_outputs(source)
    else:
        data, outputs = _plan(source, max_batch_size)

    document = {
        "name": name,
        **_model_fields(config, kind, max_batch_size, outputs),
        "dynamic_batching": {"preferred_batch_size": preferred, "max_queue_delay_microseconds": max_queue_delay_us},
        "instance_group": [{"count": instance_count, "kind": _Enum("KIND_GPU")}],
    }
    folder = version_dir.parent
    files = {version_dir / other: None for _, _, other in KINDS.values()}  # a model of the other kind is stale
    files[version_dir / target_name] = data
    if _config_differs(folder / "config.pbtxt", document, version):
        files[folder / "config.pbtxt"] = format_pbtxt(document).encode()
    _replace_files(version_dir, files)
    return folder


def _model_fields(config, kind: str, max_batch_size: int, outputs: list[str]) -> dict[str, Any]:
    """The fields of config.pbtxt that describe the model files (MODEL_FIELDS)."""
    c, h, w = config.output_shape
    tensors = {"images": (_Enum("TYPE_FP32"), [c, h, w]), "images_uint8": (_Enum("TYPE_UINT8"), [h, w, c])}
    return {
        "platform": KINDS[kind][0],
        "max_batch_size": max_batch_size,
        "input": [{"name": "z", "data_type": _Enum("TYPE_FP32"), "dims": [config.latent_dim]}],
        "output": [{"name": out, "data_type": tensors[out][0], "dims": tensors[out][1]} for out in outputs],
    }


def check_shared_config(repo: str | os.PathLike, name: str, version: int, config, kind: str, max_batch_size: int,
                        outputs: list[str]) -> None:
    """Refuse, before any export work, a version whose config.pbtxt would differ from the one other
    versions of the model share (see `write_triton_repository`, which checks again on the files)."""
    path = Path(repo) / name / "config.pbtxt"
    _config_differs(path, _model_fields(config, kind, max_batch_size, outputs), version)


# The fields of config.pbtxt that describe the model files; the others (instances, batching) are
# serving settings a deployment may have edited, and a new version keeps them.
MODEL_FIELDS = ("platform", "max_batch_size", "input", "output")


def _config_differs(path: Path, document: dict[str, Any], version: int) -> bool:
    """Whether config.pbtxt at `path` must be (re)written for `document`: it is missing or describes
    other model files. A Triton model's versions share it, so that is refused while other versions,
    made for the config there, would be served with the new one."""
    if not path.exists():
        return True
    try:
        existing = read_config_pbtxt(path)
    except (ValueError, UnicodeDecodeError):
        existing = {}
    wanted = _parse_pbtxt(format_pbtxt(document), "config")
    changed = [k for k in MODEL_FIELDS if existing.get(k) != wanted[k]]
    if not changed:
        return False
    others = sorted(int(p.name) for p in path.parent.iterdir()
                    if p.is_dir() and p.name.isdigit() and int(p.name) != version)
    if others:
        raise ValueError(f"{path} describes other model files ({', '.join(changed)} differ), and versions "
                         f"{', '.join(map(str, others))} of {path.parent} were written for it: Triton serves "
                         f"every version with one config.pbtxt; use another --triton-name")
    return True


def _replace_files(folder: Path, files: dict[Path, bytes | None]) -> None:
    """Write (bytes) or remove (None) each file, creating `folder` if needed, all or nothing: after
    an error the files and folders are as they were (replaced files are renamed aside until the end)."""
    new_root = next((p for p in [*reversed(folder.parents), folder] if not p.exists()), None)
    aside: dict[Path, Path] = {}
    done: list[Path] = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for path, data in files.items():
            if path.exists():
                aside[path] = temp_name(path)
                os.replace(path, aside[path])
            done.append(path)
            if data is not None:
                write_bytes(path, data)
    except BaseException:
        for path in done:
            path.unlink(missing_ok=True)
            if path in aside:
                os.replace(aside[path], path)
        if new_root is not None:
            shutil.rmtree(new_root, ignore_errors=True)
        raise
    for old in aside.values():
        old.unlink()


def check_version_folder(repo: str | os.PathLike, name: str, version: int, overwrite: bool = False) -> Path:
    """``repo/name/version``, once the name and version are valid and the folder is free (or `overwrite`)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"Triton model name must be a folder name of letters, digits, '_', '.', '-', got {name!r}")
    _check_int("version", version, 1)
    version_dir = Path(repo) / name / str(version)
    if version_dir.exists() and not overwrite:
        raise FileExistsError(f"{version_dir} exists: replace it (--triton-overwrite, overwrite=True) or write "
                              f"another version (--triton-version, version=)")
    return version_dir


def _check_int(what: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{what} must be an integer >= {low}, got {value!r}")


def _onnx_outputs(path: Path) -> list[str]:
    """The graph's outputs among those ganserve writes ("images", and "images_uint8" if built with it)."""
    try:
        import onnx
    except ImportError as e:
        from ganserve.errors import missing_package

        raise missing_package("onnx", "onnx", "a Triton repository of an ONNX model") from e
    names = [o.name for o in onnx.load(str(path), load_external_data=False).graph.output]
    return [n for n in ("images", "images_uint8") if n in names]


def _plan(engine: Path, max_batch_size: int) -> tuple[bytes, list[str]]:
    """The raw plan inside a ganserve engine file, and the engine's outputs."""
    from .tensorrt_engine import read_engine

    header, plan = read_engine(engine)
    if header.get("min_batch", 1) > 1:  # Triton refuses requests below the profile's minimum batch
        raise ValueError(f"{engine}: built for batches of {header['min_batch']} to {header['max_batch']}; Triton "
                         f"sends batches from 1 (single requests, dynamic batching), so rebuild it with --min-batch 1")
    if max_batch_size > header["max_batch"]:
        raise ValueError(f"max_batch_size {max_batch_size} exceeds the engine's optimization profile "
                         f"(max_batch {header['max_batch']}); rebuild the engine with a larger --max-batch")
    # Triton deserializes model.plan with TensorRT directly, so ganserve's header is stripped. The
    # header's checks (TensorRT version, compute capability) then fall to whoever deploys it.
    return plan, [n for n in header.get("outputs", ["images"]) if n in ("images", "images_uint8")]


# --- protobuf text format (the subset config.pbtxt uses)


def format_pbtxt(message: dict[str, Any], indent: str = "") -> str:
    """Protobuf text format of a dict: nested dicts are messages, lists of dicts repeated messages,
    lists of scalars repeated scalars, `_Enum` values bare, other strings quoted."""
    lines = []
    for key, value in message.items():
        if isinstance(value, dict):
            lines += [f"{indent}{key} {{", format_pbtxt(value, indent + "  ").rstrip("\n"), f"{indent}}}"]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            blocks = [f"{indent}  {{\n{format_pbtxt(v, indent + '    ')}{indent}  }}" for v in value]
            lines += [f"{indent}{key} [", ",\n".join(blocks), f"{indent}]"]
        elif isinstance(value, list):
            lines.append(f"{indent}{key}: [ {', '.join(_scalar(v) for v in value)} ]")
        else:
            lines.append(f"{indent}{key}: {_scalar(value)}")
    return "\n".join(line for line in lines if line) + "\n"


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (_Enum, int, float)):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise TypeError(f"cannot write {value!r} in protobuf text format")


_TOKEN = re.compile(r'\s+|#[^\n]*|(?P<string>"(?:[^"\\]|\\.)*")|(?P<punct>[{}\[\]:,])|(?P<word>[^\s{}\[\]:,"#]+)')


def read_config_pbtxt(path: str | os.PathLike) -> dict[str, Any]:
    """Parse the protobuf text format subset written here (messages, lists, repeated fields, quoted
    strings, numbers, enums) into a dict. A field given more than once, or as ``[...]``, is a list."""
    return _parse_pbtxt(Path(path).read_text(encoding="utf-8"), path)


def _parse_pbtxt(text: str, where: Any) -> dict[str, Any]:
    tokens = _tokenize(text, where)
    message, end = _parse_message(tokens, 0, where)
    if end != len(tokens):
        raise ValueError(f"{where}: unexpected {tokens[end]!r}")
    return message


def _tokenize(text: str, where: Any) -> list[str]:
    tokens, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ValueError(f"{where}: cannot read text at offset {pos}: {text[pos:pos + 20]!r}")
        if match.lastgroup:
            tokens.append(match.group())
        pos = match.end()
    return tokens


def _parse_message(tokens: list[str], i: int, where: Any) -> tuple[dict[str, Any], int]:
    """Fields from tokens[i] up to a closing "}" (not consumed) or the end."""
    message: dict[str, Any] = {}
    while i < len(tokens) and tokens[i] != "}":
        key = tokens[i]
        if not re.fullmatch(r"[A-Za-z_]\w*", key):
            raise ValueError(f"{where}: expected a field name, got {key!r}")
        i += 1 + (i + 1 < len(tokens) and tokens[i + 1] == ":")
        value, i = _parse_value(tokens, i, where)
        if isinstance(value, list) or key in message:  # a repeated field
            previous = message.get(key, [])
            previous = previous if isinstance(previous, list) else [previous]
            message[key] = previous + (value if isinstance(value, list) else [value])
        else:
            message[key] = value
        i += i < len(tokens) and tokens[i] == ","
    return message, i


def _parse_value(tokens: list[str], i: int, where: Any) -> tuple[Any, int]:
    if i >= len(tokens):
        raise ValueError(f"{where}: unexpected end of file")
    token = tokens[i]
    if token == "{":
        value, i = _parse_message(tokens, i + 1, where)
        return value, _expect(tokens, i, "}", where)
    if token == "[":
        items, i = [], i + 1
        while i < len(tokens) and tokens[i] != "]":
            item, i = _parse_value(tokens, i, where)
            items.append(item)
            i += i < len(tokens) and tokens[i] == ","
        return items, _expect(tokens, i, "]", where)
    if token.startswith('"'):
        return re.sub(r"\\(.)", r"\1", token[1:-1]), i + 1
    if token in "{}[]:,":
        raise ValueError(f"{where}: unexpected {token!r}")
    return _number_or_word(token), i + 1


def _expect(tokens: list[str], i: int, token: str, where: Any) -> int:
    if i >= len(tokens) or tokens[i] != token:
        raise ValueError(f"{where}: expected {token!r}, got {tokens[i] if i < len(tokens) else 'end of file'!r}")
    return i + 1


def _number_or_word(token: str) -> Any:
    if token in ("true", "false"):
        return token == "true"
    for kind in (int, float):
        try:
            return kind(token)
        except ValueError:
            pass
    return token
