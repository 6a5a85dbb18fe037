"""ONNX Runtime backend: the CPU provider, or CUDA with I/O binding when onnxruntime-gpu and a GPU
are present (optionally with ONNX Runtime's TensorRT provider in front).

It runs the model directory's ``generator.onnx`` (``generator.fp16.onnx`` for ``precision="fp16"``)
after checking that the file belongs to these weights; with no such file it builds the same graph
in memory (which needs the ``onnx`` package).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from .._system import usable_cpus
from ..errors import BackendUnavailableError, ModelFormatError, first_line, missing_package
from ..latents import check_index
from ..model_io import ONNX_FP16_NAME, ONNX_NAME, Model
from ._cuda import cuda_device_count
from .base import Backend

_FILES = {"fp32": ONNX_NAME, "fp16": ONNX_FP16_NAME}


def _ort():
    try:
        import onnxruntime
    except ImportError as e:
        raise missing_package("onnxruntime", "onnx", "the onnxruntime backend") from e
    return onnxruntime


def _has_cuda_provider() -> bool:
    return "CUDAExecutionProvider" in _ort().get_available_providers() and cuda_device_count() > 0


def _preload_cuda_libraries(ort) -> None:
    """Let onnxruntime-gpu find CUDA/cuDNN from the nvidia-* wheels (e.g. torch's) if the system has none."""
    preload = getattr(ort, "preload_dlls", None)  # onnxruntime >= 1.21
    if preload is not None:
        try:
            preload()
        except Exception:  # noqa: BLE001  (missing wheels: the session reports what it cannot load)
            pass


class OnnxRuntimeBackend(Backend):
    """Options: ``device`` ("auto", "cpu", "cuda"), ``precision`` ("fp32", "fp16"), ``threads``
    (CPU intra-op threads; default: all cores), ``tensorrt_provider`` (put ONNX Runtime's TensorRT
    provider before CUDA), ``io_binding`` (run through an I/O binding, with the graph's extra uint8
    output; default: on CUDA only. On the CPU it runs the CUDA path's calls, for tests)."""

    name = "onnxruntime"

    @classmethod
    def check_available(cls, device: str = "auto") -> None:
        _ort()
        if device == "cuda" and not _has_cuda_provider():
            raise BackendUnavailableError(
                "onnxruntime on CUDA needs onnxruntime-gpu and a CUDA GPU "
                "(pip install 'ganserve[gpu]'); this machine has "
                + ("no CUDA GPU" if cuda_device_count() == 0 else "the CPU-only onnxruntime"))
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")

    @classmethod
    def check_model(cls, model: Model, precision: str = "fp32", **options: Any) -> None:
        if precision not in _FILES:
            raise ValueError(f"precision must be one of {list(_FILES)}, got {precision!r}")
        has_file = model.path is not None and (model.path / _FILES[precision]).is_file()
        if not has_file and importlib.util.find_spec("onnx") is None:
            raise BackendUnavailableError(
                f"no {_FILES[precision]} in the model directory, and building it needs the 'onnx' package: "
                f"run `ganserve export` on the model, or pip install 'ganserve[onnx]'")

    def __init__(self, model: Model, device: str = "auto", precision: str = "fp32", threads: int | None = None,
                 tensorrt_provider: bool = False, io_binding: bool | None = None) -> None:
        super().__init__(model)
        ort = _ort()
        self.check_model(model, precision)
        use_cuda = device == "cuda" or (device == "auto" and _has_cuda_provider())
        self.precision = precision
        self.io_binding = use_cuda if io_binding is None else bool(io_binding)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            check_index(threads, "onnxruntime backend: threads")
        options.intra_op_num_threads = threads or usable_cpus()  # None or 0: every usable CPU
        options.log_severity_level = 3  # errors only
        providers: list[Any] = ["CPUExecutionProvider"]
        if use_cuda:
            _preload_cuda_libraries(ort)
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
            if tensorrt_provider:
                providers.insert(0, ("TensorrtExecutionProvider", {"trt_fp16_enable": precision == "fp16"}))
        graph, file = self._graph(model, precision, uint8=self.io_binding)
        errors = ort.capi.onnxruntime_pybind11_state
        try:
            self.session = ort.InferenceSession(graph, options, providers=providers)
        except (errors.InvalidProtobuf, errors.InvalidArgument, errors.InvalidGraph, errors.NoModel,
                errors.Fail) as e:
            if file is None:  # built here: a bug, not a bad file
                raise
            raise ModelFormatError(f"{file}: not a valid ONNX model ({first_line(e)}); "
                                   f"re-run `ganserve export`") from None
        self._check_metadata(model, precision)
        self._check_io(file or "ONNX graph")
        self._cuda = self.session.get_providers()[0] != "CPUExecutionProvider"
        if use_cuda and not self._cuda:
            raise BackendUnavailableError("onnxruntime could not start its CUDA provider")
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.default_batch = 256 if self._cuda else 64

    @property
    def device(self) -> str:
        return "cuda" if self._cuda else "cpu"

    def _graph(self, model: Model, precision: str, uint8: bool) -> tuple[bytes, Path | None]:
        """The serialized graph and the file it came from: built in memory (file None) for the GPU (to
        convert to uint8 on the device) or when the model directory has no ONNX file; the file otherwise."""
        file = model.path / _FILES[precision] if model.path is not None else None
        if file is not None and file.is_file() and not (uint8 and importlib.util.find_spec("onnx")):
            try:
                return file.read_bytes(), file
            except OSError as e:
                raise ModelFormatError(f"{file}: cannot be read ({e.strerror})") from None
        from ganserve.export.onnx_graph import build_onnx

        props = {"weights_sha256": model.weights_sha256} if model.weights_sha256 else {}
        return build_onnx(model.config, model.weights, fp16=precision == "fp16", metadata=props,
                          uint8_output=uint8).SerializeToString(), None

    def _check_metadata(self, model: Model, precision: str) -> None:
        meta = self.session.get_modelmeta().custom_metadata_map
        where = model.path / _FILES[precision] if model.path is not None else "ONNX graph"
        checks = {"config_sha256": (model.config.digest(), "a different architecture than config.json"),
                  "weights_sha256": (model.weights_sha256, "different weights than generator.safetensors")}
        for key, (want, source) in checks.items():
            if not want:
                continue  # an in-memory model without a weights file: nothing to compare
            if key not in meta:
                raise ModelFormatError(f"{where}: has no {key} metadata, so it may not match this model; "
                                       f"re-run `ganserve export`")
            if meta[key] != want:
                raise ModelFormatError(f"{where}: exported from {source}; re-run `ganserve export`")

    def _check_io(self, where: Path | str) -> None:
        """The graph must take one float32 input 'z' (batch, latent_dim) and give a float32 output 'images'
        (batch, C, H, W), with a free batch dimension."""
        config = self.config
        for kind, values, name, dims in (("input", self.session.get_inputs(), "z", (config.latent_dim,)),
                                         ("output", self.session.get_outputs(), "images", config.output_shape)):
            value = next((v for v in values if v.name == name), None)
            fits = (value is not None and value.type == "tensor(float)" and len(value.shape) == 1 + len(dims)
                    and not isinstance(value.shape[0], int)
                    and all(not isinstance(d, int) or d == n for d, n in zip(value.shape[1:], dims)))
            if not fits or (kind == "input" and len(values) != 1):
                found = "; ".join(f"{v.name!r} {v.type} {v.shape}" for v in values)
                raise ModelFormatError(f"{where}: expected the {kind} {name!r}: float32 of shape "
                                       f"(batch, {', '.join(map(str, dims))}); the graph's {kind}s are {found}; "
                                       f"re-run `ganserve export`")

    def run(self, z: np.ndarray) -> np.ndarray:
        return self._run(z, "images")

    def run_uint8(self, z: np.ndarray) -> np.ndarray:
        if "images_uint8" in self.outputs:  # NaN output is not detected here: the graph casts it to a byte
            return self._run(z, "images_uint8")
        return super().run_uint8(z)

    def _run(self, z: np.ndarray, output: str) -> np.ndarray:
        if not self.io_binding:
            return self.session.run([output], {"z": z})[0]
        binding = self.session.io_binding()
        binding.bind_cpu_input("z", z)
        binding.bind_output(output, self.device)  # left on the device until the one copy back
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "providers": self.session.get_providers(), "precision": self.precision,
                "io_binding": self.io_binding}

