"""TensorRT engines: ganserve's engine file, the checks that keep a plan on the machine it was
built for, and the builder.

An engine file is a JSON header in front of TensorRT's serialized plan::

    b"GSTRT\\x00" | header length (uint32, little-endian) | header (UTF-8 JSON, sorted keys) | plan

The header says what the plan was built with and for (TensorRT version, GPU compute capability,
the sha256 of the ONNX file, the batch range of its optimization profile, ...). A plan runs only
with the TensorRT version and on the GPU architecture it was built for, so `check_engine` refuses
any other combination, naming what differs, before TensorRT sees the bytes.

The file format and the checks are plain Python. `build_engine` needs TensorRT and a CUDA GPU: it
is written against NVIDIA's documented Python API for TensorRT 10 and 11 and has NOT been run
where ganserve is developed (no GPU, no TensorRT there). `ganserve export --tensorrt` verifies a
built engine against the NumPy reference, which makes a first build on a new setup its own test.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from pathlib import Path
from typing import Any

from ganserve import __version__
from ganserve._files import atomic_path, write_bytes
from ganserve.backends._cuda import compute_capability, gpu_name
from ganserve.errors import BackendUnavailableError, ModelFormatError, missing_package

MAGIC = b"GSTRT\x00"
FORMAT_VERSION = 1
_LENGTH = struct.Struct("<I")
# name -> type of every header field; `read_engine` refuses a header without one of them.
HEADER_FIELDS = {
    "format_version": int, "tensorrt_version": str, "compute_capability": str, "gpu_name": str,
    "onnx_sha256": str, "min_batch": int, "opt_batch": int, "max_batch": int, "precision": str,
    "ganserve_version": str, "config_sha256": str,
}
# Written by `build_engine` and checked when present: the weights the ONNX graph was exported from,
# and the engine's output tensors (Triton's config lists them).
OPTIONAL_FIELDS = {"weights_sha256": str, "outputs": list}
TENSORRT_INSTALL_HINT = ("install it with: pip install tensorrt (NVIDIA's wheels; the TensorRT "
                         "version must support this machine's CUDA driver)")
REBUILD_HINT = "rebuild it on this machine with `ganserve export --tensorrt`"


class EngineMismatchError(ModelFormatError):
    """An engine was built for another TensorRT version, GPU architecture, ONNX graph or model."""


class EngineBuildError(RuntimeError):
    """TensorRT could not build the engine, or built one that is not what was asked for."""


# --- the file format


def write_engine(path: str | os.PathLike, header: dict[str, Any], plan: bytes) -> None:
    """Write an engine file (header + plan) atomically.

    Raises:
        ValueError: the header lacks a field or has one of the wrong type, or the plan is empty.
    """
    _check_header(header, "engine header")
    if not plan:
        raise ValueError("engine plan is empty")
    text = json.dumps(header, sort_keys=True).encode("utf-8")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(MAGIC + _LENGTH.pack(len(text)) + text)
            f.write(plan)


def read_engine(path: str | os.PathLike) -> tuple[dict[str, Any], bytes]:
    """(header, plan) of an engine file; ModelFormatError naming the file if it is not one."""
    path = Path(path)
    data = _read(path)
    header, start = _parse_header(data, path)
    plan = data[start:]
    if not plan:
        raise ModelFormatError(f"{path}: truncated engine file: no plan after the header")
    return header, plan


def read_engine_header(path: str | os.PathLike) -> dict[str, Any]:
    """The header of an engine file, without reading the plan."""
    path = Path(path)
    with open(_existing(path), "rb") as f:
        head = f.read(len(MAGIC) + _LENGTH.size)
        length = _header_length(head, path)
        data = head + f.read(length)
    return _parse_header(data, path)[0]


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"no TensorRT engine file at {path}")
    return path


def _read(path: Path) -> bytes:
    return _existing(path).read_bytes()


def _header_length(data: bytes, path: Path) -> int:
    if len(data) < len(MAGIC) or data[:len(MAGIC)] != MAGIC:
        raise ModelFormatError(f"{path}: not a ganserve TensorRT engine (bad magic bytes); a raw TensorRT plan "
                               f"has no header: {REBUILD_HINT}")
    if len(data) < len(MAGIC) + _LENGTH.size:
        raise ModelFormatError(f"{path}: truncated engine file: the header length is cut off")
    return _LENGTH.unpack_from(data, len(MAGIC))[0]


def _parse_header(data: bytes, path: Path) -> tuple[dict[str, Any], int]:
    """The header and the offset where the plan starts."""
    length = _header_length(data, path)
    start = len(MAGIC) + _LENGTH.size
    if len(data) < start + length:
        raise ModelFormatError(f"{path}: truncated engine file: the header needs {length} bytes, "
                               f"{len(data) - start} are there")
    try:
        header = json.loads(data[start:start + length].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFormatError(f"{path}: the engine header is not valid JSON ({e})") from None
    version = header.get("format_version") if isinstance(header, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise ModelFormatError(f"{path}: engine format version {version} was written by a newer ganserve "
                               f"({header.get('ganserve_version', '?')}); this one ({__version__}) reads up to "
                               f"{FORMAT_VERSION}: upgrade ganserve or rebuild the engine")
    try:
        _check_header(header, str(path))
    except ValueError as e:
        raise ModelFormatError(str(e)) from None
    return header, start + length


def _check_header(header: Any, where: str) -> None:
    if not isinstance(header, dict):
        raise ValueError(f"{where}: the engine header must be a JSON object")
    missing = sorted(set(HEADER_FIELDS) - set(header))
    if missing:
        raise ValueError(f"{where}: the engine header lacks field(s) {missing}")
    for name, kind in {**HEADER_FIELDS, **OPTIONAL_FIELDS}.items():
        value = header.get(name)
        if name in header and (not isinstance(value, kind) or isinstance(value, bool)):
            raise ValueError(f"{where}: engine header field {name!r} must be {kind.__name__}, got {value!r}")
    if not all(isinstance(name, str) for name in header.get("outputs", [])):
        raise ValueError(f"{where}: engine header field 'outputs' must list tensor names")
    if not 1 <= header["min_batch"] <= header["opt_batch"] <= header["max_batch"]:
        raise ValueError(f"{where}: engine header batch range must satisfy 1 <= min_batch <= opt_batch <= max_batch, "
                         f"got {header['min_batch']}, {header['opt_batch']}, {header['max_batch']}")


# --- which machine and model an engine belongs to


def check_engine(header: dict[str, Any], *, tensorrt_version: str, compute_capability: str,
                 onnx_sha256: str | None = None, config_sha256: str | None = None,
                 weights_sha256: str | None = None, where: str | os.PathLike = "TensorRT engine") -> None:
    """Raise EngineMismatchError unless the engine `header` describes can run here, for this model.

    Args:
        header: from `read_engine` or `read_engine_header`.
        tensorrt_version: this machine's ``tensorrt.__version__`` (a plan needs the exact version).
        compute_capability: this GPU's, as "major.minor" (e.g. "9.0").
        onnx_sha256: sha256 of the ONNX file the engine should have been built from, if known.
        config_sha256, weights_sha256: the model's architecture digest and weights hash, if known.
        where: the file, for messages.
    """
    built = (header["tensorrt_version"], header["compute_capability"])
    gpu = f" ({header['gpu_name']})" if header["gpu_name"] else ""
    if built != (tensorrt_version, compute_capability):
        differs = [what for what, a, b in (("TensorRT version", built[0], tensorrt_version),
                                           ("compute capability", built[1], compute_capability)) if a != b]
        verb = "differs" if len(differs) == 1 else "differ"
        raise EngineMismatchError(
            f"{where}: built with TensorRT {built[0]} for compute capability {built[1]}{gpu}; this machine has "
            f"TensorRT {tensorrt_version} and compute capability {compute_capability}: the "
            f"{' and the '.join(differs)} {verb}; {REBUILD_HINT}")
    if onnx_sha256 is not None and header["onnx_sha256"] != onnx_sha256:
        raise EngineMismatchError(f"{where}: the ONNX graph changed since the engine was built (built from sha256 "
                                  f"{header['onnx_sha256'][:12]}..., the graph now has {onnx_sha256[:12]}...); "
                                  f"{REBUILD_HINT}")
    if config_sha256 is not None and header["config_sha256"] != config_sha256:
        raise EngineMismatchError(f"{where}: built for a different architecture than config.json; {REBUILD_HINT}")
    built_weights = header.get("weights_sha256")
    if weights_sha256 and built_weights and built_weights != weights_sha256:
        raise EngineMismatchError(f"{where}: built from different weights than generator.safetensors; {REBUILD_HINT}")


def this_machine() -> dict[str, str]:
    """``tensorrt_version`` and ``compute_capability`` here (for `check_engine`); needs TensorRT and a GPU."""
    trt = import_tensorrt("the tensorrt backend")
    return {"tensorrt_version": trt.__version__, "compute_capability": require_gpu("the tensorrt backend")}


def import_tensorrt(what: str = "building a TensorRT engine"):
    """The tensorrt module, or BackendUnavailableError with the install hint."""
    try:
        import tensorrt
    except (ImportError, OSError) as e:  # OSError: the wheel is there but its libraries do not load
        state = "not installed" if getattr(e, "name", None) == "tensorrt" else f"installed but does not load ({e})"
        raise BackendUnavailableError(f"{what} needs the 'tensorrt' package, which is {state}; "
                                      f"{TENSORRT_INSTALL_HINT}") from e
    return tensorrt


def require_gpu(what: str) -> str:
    """This machine's compute capability as "major.minor"; BackendUnavailableError without a CUDA GPU."""
    capability = compute_capability()
    if capability is None:
        raise BackendUnavailableError(f"{what} needs a CUDA GPU (a TensorRT engine is compiled for one GPU "
                                      f"architecture), and this machine has none")
    return f"{capability[0]}.{capability[1]}"


# --- FP16 check of a built engine

# Layer types (as the engine inspector's JSON names them, e.g. "CaskConvolution", "CaskGemm") that
# do a model's arithmetic: these must run in FP16.
_COMPUTE_LAYER = re.compile(r"conv|gemm|matrixmultiply|matmul|fullyconnected", re.IGNORECASE)
_FP16 = re.compile(r"fp16|half", re.IGNORECASE)


def check_layer_precisions(info: str, *, strongly_typed: bool, where: str = "TensorRT engine") -> None:
    """Raise EngineBuildError unless the engine's convolution and matrix layers run in FP16.

    A weakly typed TensorRT 10 build with the FP16 flag may still pick FP32 kernels without a word;
    this reads what was built. `info` is ``IEngineInspector.get_engine_information(JSON)`` of an
    engine built with detailed profiling verbosity. TensorRT 10 names a tensor's type in
    "Format/Datatype" ("Row major linear FP16 format"); TensorRT 11 splits it into "Format" and
    "DataType" ("Half"): both are read.

    Args:
        strongly_typed: the network was strongly typed, so its types (checked before the build)
            bind the builder; then layers fused out of sight are accepted.
    """
    try:
        layers = json.loads(info).get("Layers", [])
    except (json.JSONDecodeError, AttributeError):
        raise EngineBuildError(f"{where}: cannot read the engine's layer information") from None
    if not layers or not all(isinstance(layer, dict) for layer in layers):
        raise EngineBuildError(f"{where}: the engine has no detailed layer information to check its precision "
                               f"(built without ProfilingVerbosity.DETAILED?)")
    compute = [layer for layer in layers if _COMPUTE_LAYER.search(str(layer.get("LayerType", "")))]
    fp32 = [str(layer.get("Name", "?")) for layer in compute if not _runs_fp16(layer.get("Inputs", []))]
    if fp32:
        shown = ", ".join(fp32[:5]) + (f" and {len(fp32) - 5} more" if len(fp32) > 5 else "")
        raise EngineBuildError(f"{where}: {len(fp32)} of {len(compute)} convolution/matrix layers run in FP32, not "
                               f"FP16 ({shown}); TensorRT chose FP32 kernels for an FP16 build")
    if not compute and not strongly_typed and not any(_runs_fp16(layer.get("Inputs", []) + layer.get("Outputs", []))
                                                      for layer in layers):
        raise EngineBuildError(f"{where}: no layer of the engine runs in FP16; TensorRT built an FP32 engine")


def _runs_fp16(tensors: list[Any]) -> bool:
    """Whether any tensor description names an FP16 type."""
    for tensor in tensors:
        if isinstance(tensor, dict):
            # any key naming a type or format, in any case: "Format/Datatype" (TensorRT 10), "Format" and
            # "DataType" or "Datatype" (TensorRT 11, whose spellings differ between NVIDIA's documents)
            text = " ".join(str(v) for k, v in tensor.items() if "datatype" in k.lower() or "format" in k.lower())
            if _FP16.search(text):
                return True
    return False


# --- building


def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, *, min_batch: int = 1,
                 opt_batch: int = 64, max_batch: int = 1024, timing_cache: str | os.PathLike | None = None,
                 workspace_gb: float | None = None, uint8_output: bool = True,
                 strongly_typed: bool | None = None) -> dict[str, Any]:
    """Build an FP16 TensorRT engine from ganserve's FP16 ONNX graph and write it with its header.

    Written against NVIDIA's documented TensorRT Python API, not run where ganserve is developed.
    By default the network is strongly typed wherever TensorRT has that flag (TensorRT 10 and 11):
    the precision is the FP16 graph's, so TensorRT cannot quietly pick FP32 kernels, e.g. for the
    one-channel last layer. Weak typing is deprecated since TensorRT 10.12 and its
    ``BuilderFlag.FP16`` is gone in 11; ``strongly_typed=False`` still builds that way on TensorRT
    10 (and it is the only way on a TensorRT without STRONGLY_TYPED). Either way the built engine's
    layers are then checked to run in FP16 (`check_layer_precisions`).

    Args:
        onnx_path: ``generator.fp16.onnx`` from `ganserve export --fp16`; its sha256 goes in the header.
        engine_path: where to write the engine (``generator.engine`` in a model directory).
        min_batch, opt_batch, max_batch: the batch range of the one optimization profile over
            input ``z`` (batch, latent_dim); TensorRT tunes kernels for `opt_batch`.
        timing_cache: a timing-cache file to start from (if it exists) and to save to, which makes
            rebuilds much faster. A cache from another GPU or TensorRT version is not used, and is
            replaced by this build's.
        workspace_gb: limit TensorRT's builder workspace (default: TensorRT's, the GPU's memory).
        uint8_output: give the engine a second output, ``images_uint8`` (n, H, W, C), converted on
            the GPU so that 4x fewer bytes come back; added to the graph in memory if the ONNX file
            lacks it (the header's sha256 is still the file's).
        strongly_typed: None (default): strongly typed where TensorRT can; False: weakly typed with
            ``BuilderFlag.FP16`` (TensorRT 10 and older); True: strongly typed or an error.

    Returns:
        The header written.

    Raises:
        BackendUnavailableError: tensorrt (or onnx) is not installed, or there is no CUDA GPU.
        EngineBuildError: TensorRT cannot parse or build the graph, or built FP32 layers.
    """
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    _check_batches(min_batch, opt_batch, max_batch)
    if workspace_gb is not None and not workspace_gb > 0:
        raise ValueError(f"workspace_gb must be positive, got {workspace_gb!r}")
    if not onnx_path.is_file():
        raise FileNotFoundError(f"no ONNX graph at {onnx_path}: make one with `ganserve export --fp16`")
    trt = import_tensorrt()
    capability = require_gpu("building a TensorRT engine")
    source = onnx_path.read_bytes()
    graph, meta, outputs = _prepare_graph(source, onnx_path, uint8_output)

    # 1. Parse into a network: strongly typed where TensorRT has the flag, else weakly typed + FP16 flag.
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strongly_typed = _typing(trt, strongly_typed)
    flag = trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED if strongly_typed else None
    network = builder.create_network(1 << int(flag) if flag is not None else 0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(graph):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"{onnx_path}: TensorRT cannot parse the graph: {errors}")
    latent_dim = _check_network(trt, network, onnx_path, strongly_typed)

    # 2. Configure: precision, layer information for the FP16 check, profile, workspace, timing cache.
    config = builder.create_builder_config()
    if not strongly_typed:
        config.set_flag(trt.BuilderFlag.FP16)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if workspace_gb is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    profile = builder.create_optimization_profile()
    profile.set_shape("z", (min_batch, latent_dim), (opt_batch, latent_dim), (max_batch, latent_dim))
    config.add_optimization_profile(profile)
    if timing_cache is not None:
        _load_timing_cache(config, Path(timing_cache))

    # 3. Build, save the timing cache, check what was built, write the file.
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"{onnx_path}: TensorRT could not build an engine (its log above says why)")
    plan = bytes(serialized)
    if timing_cache is not None:
        write_bytes(timing_cache, bytes(config.get_timing_cache().serialize()))
    _check_built(trt, logger, plan, strongly_typed, engine_path)
    header = {
        "format_version": FORMAT_VERSION, "tensorrt_version": trt.__version__, "compute_capability": capability,
        "gpu_name": gpu_name(), "onnx_sha256": hashlib.sha256(source).hexdigest(), "min_batch": min_batch,
        "opt_batch": opt_batch, "max_batch": max_batch, "precision": "fp16", "ganserve_version": __version__,
        "config_sha256": meta["config_sha256"], "weights_sha256": meta.get("weights_sha256", ""), "outputs": outputs,
    }
    write_engine(engine_path, header, plan)
    return header


def _check_batches(min_batch: int, opt_batch: int, max_batch: int) -> None:
    integers = all(isinstance(v, int) and not isinstance(v, bool) for v in (min_batch, opt_batch, max_batch))
    if not integers or not 1 <= min_batch <= opt_batch <= max_batch:
        raise ValueError(f"need integers 1 <= min_batch <= opt_batch <= max_batch, got {min_batch!r}, {opt_batch!r}, "
                         f"{max_batch!r}")


def _prepare_graph(source: bytes, where: Path, uint8_output: bool) -> tuple[bytes, dict[str, str], list[str]]:
    """The graph to parse (with the uint8 output added if asked for), its metadata and output names."""
    try:
        import onnx
    except ImportError as e:
        raise missing_package("onnx", "onnx", "building a TensorRT engine") from e
    model = onnx.load_from_string(source)
    meta = {p.key: p.value for p in model.metadata_props}
    if "config_sha256" not in meta:
        raise ModelFormatError(f"{where}: not a ganserve ONNX graph (no config_sha256 metadata); "
                               f"make it with `ganserve export --fp16`")
    if meta.get("precision") != "fp16":
        raise ValueError(f"{where}: a {meta.get('precision', 'fp32')} graph; the engine is built from the FP16 "
                         f"graph, generator.fp16.onnx (`ganserve export --fp16`)")
    outputs = [o.name for o in model.graph.output]
    if uint8_output and "images_uint8" not in outputs:
        from .onnx_graph import add_uint8_output

        add_uint8_output(model)
        onnx.checker.check_model(model)
        outputs.append("images_uint8")
        return model.SerializeToString(), meta, outputs
    return source, meta, outputs


def _typing(trt, requested: bool | None) -> bool:
    """Whether to build strongly typed: as requested where this TensorRT can, by default where it can."""
    can_strong = hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    can_weak = hasattr(trt.BuilderFlag, "FP16")
    if requested is None:
        return can_strong or not can_weak
    if requested and not can_strong:
        raise BackendUnavailableError(f"TensorRT {trt.__version__} cannot build strongly typed networks")
    if not requested and not can_weak:
        raise BackendUnavailableError(f"TensorRT {trt.__version__} has no BuilderFlag.FP16 (removed in "
                                      f"TensorRT 11): it builds strongly typed networks only")
    return requested


def _check_network(trt, network, where: Path, strongly_typed: bool) -> int:
    """The latent size; raises unless the parsed network takes z (batch, latent_dim) and, when strongly
    typed (where the graph's types bind the builder), feeds its compute layers FP16."""
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    if [t.name for t in inputs] != ["z"] or len(inputs[0].shape) != 2:
        raise EngineBuildError(f"{where}: expected one input 'z' of shape (batch, latent_dim), got "
                               f"{[(t.name, tuple(t.shape)) for t in inputs]}")
    if not strongly_typed:
        return int(inputs[0].shape[1])
    compute = {trt.LayerType.CONVOLUTION, trt.LayerType.DECONVOLUTION, trt.LayerType.MATRIX_MULTIPLY}
    fp32 = [layer.name for layer in (network.get_layer(i) for i in range(network.num_layers))
            if layer.type in compute and layer.get_input(0).dtype != trt.DataType.HALF]
    if fp32:
        raise EngineBuildError(f"{where}: the graph computes {len(fp32)} layer(s) in FP32 ({', '.join(fp32[:5])}); "
                               f"build from the FP16 graph")
    return int(inputs[0].shape[1])


def _load_timing_cache(config, path: Path) -> None:
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data)
    if cache is None or not config.set_timing_cache(cache, False):  # False: refuse another GPU's cache
        # Unreadable, or from another GPU or TensorRT: start afresh; the file is replaced by this build's.
        config.set_timing_cache(config.create_timing_cache(b""), False)


def _check_built(trt, logger, plan: bytes, strongly_typed: bool, where: Path) -> None:
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
    if engine is None:
        raise EngineBuildError(f"{where}: TensorRT cannot load the engine it just built")
    info = engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)
    check_layer_precisions(info, strongly_typed=strongly_typed, where=str(where))
