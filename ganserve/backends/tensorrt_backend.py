"""TensorRT backend: the model directory's FP16 ``generator.engine``, run with CUDA graphs.

The engine comes from `ganserve export --tensorrt` on a machine with the same GPU architecture and
TensorRT version; its header (`ganserve.export.tensorrt_engine`) is checked before TensorRT loads
it, so an engine from elsewhere is refused, never run. One run: latents are copied into pinned
host memory and on to the GPU, the engine runs (a CUDA graph replay while the batch size stays the
same; captured again after a change), and only the requested output comes back: ``images_uint8``
for `run_uint8`, converted on the GPU, a quarter of the float bytes.

Written against NVIDIA's documented Python APIs (TensorRT 10/11: named tensors and
``execute_async_v3``; cuda-python's runtime bindings for memory, streams and graphs). It has NOT
been run where ganserve is developed, which has neither a GPU nor TensorRT; the GPU tests in
tests/backends and tests/export check it against the NumPy reference where both exist.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import threading
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..errors import BackendUnavailableError, ModelFormatError
from ..latents import make_latents
from ..model_io import ENGINE_NAME, ONNX_FP16_NAME, Model
from .base import Backend

_NUMPY_TYPES = {"FLOAT": np.float32, "HALF": np.float16, "UINT8": np.uint8, "INT32": np.int32, "INT8": np.int8}


def _engine_module():
    from ganserve.export import tensorrt_engine

    return tensorrt_engine


@functools.lru_cache(maxsize=1)
def _cudart():
    """cuda-python's runtime API module (``cuda.bindings.runtime``; ``cuda.cudart`` before 12.6)."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime
        except ImportError as e:
            raise BackendUnavailableError("the tensorrt backend needs the 'cuda-python' package for device memory, "
                                          "streams and CUDA graphs; install it with: pip install cuda-python") from e
    return runtime


def _call(result: tuple) -> Any:
    """Unwrap a cuda-python call's ``(error, *values)``: raise on an error, else the value(s)."""
    error, *values = result
    if int(error) != 0:
        _, text = _cudart().cudaGetErrorString(error)
        raise RuntimeError(f"CUDA error {int(error)}: {text.decode() if isinstance(text, bytes) else text}")
    return values[0] if len(values) == 1 else tuple(values) or None


@dataclass
class _Buffer:
    """One engine I/O tensor: device memory and pinned host memory for `max_batch` samples."""

    name: str
    host: np.ndarray  # (max_batch, *sample_shape), a view of pinned memory
    device: int

    @property
    def row_bytes(self) -> int:
        return self.host[0].nbytes


class TensorRTBackend(Backend):
    """Options: ``max_batch`` (at most the engine profile's maximum, which is the default: device
    buffers are sized for it), ``cuda_graphs`` (replay a captured CUDA graph while the batch size stays the same)."""

    name = "tensorrt"

    @classmethod
    def check_available(cls, device: str = "auto") -> None:
        if device == "cpu":
            raise BackendUnavailableError("the tensorrt backend runs on CUDA GPUs only, not 'cpu'")
        if device not in ("auto", "cuda"):
            raise ValueError(f"device must be 'auto' or 'cuda' for the tensorrt backend, got {device!r}")
        _engine_module().this_machine()
        _cudart()

    @classmethod
    def check_model(cls, model: Model, **options: Any) -> None:
        """The model directory must hold an engine built here, from this model; an engine for another
        machine, graph or model is BackendUnavailableError (so "auto" moves on), a corrupt file
        ModelFormatError."""
        if model.path is None:
            raise BackendUnavailableError("the tensorrt backend runs a model directory's generator.engine; this model "
                                          "has no directory")
        engine = model.path / ENGINE_NAME
        if not engine.is_file():
            raise BackendUnavailableError(f"no {ENGINE_NAME} in {model.path}: build one on this machine with "
                                          f"`ganserve export --ckpt {model.path} --out {model.path} --tensorrt`")
        tensorrt_engine = _engine_module()
        header = tensorrt_engine.read_engine_header(engine)
        onnx = model.path / ONNX_FP16_NAME
        try:
            tensorrt_engine.check_engine(
                header, **tensorrt_engine.this_machine(), where=engine,
                onnx_sha256=hashlib.sha256(onnx.read_bytes()).hexdigest() if onnx.is_file() else None,
                config_sha256=model.config.digest(), weights_sha256=model.weights_sha256 or None)
        except tensorrt_engine.EngineMismatchError as e:
            raise BackendUnavailableError(str(e)) from e

    def __init__(self, model: Model, max_batch: int | None = None, cuda_graphs: bool = True) -> None:
        super().__init__(model)
        self.check_model(model)
        tensorrt_engine = _engine_module()
        trt = tensorrt_engine.import_tensorrt("the tensorrt backend")
        cudart = _cudart()
        file = model.path / ENGINE_NAME
        self.header, plan = tensorrt_engine.read_engine(file)
        self._closed = True  # until every resource below exists
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise ModelFormatError(f"{file}: TensorRT cannot deserialize the plan (its log above says why)")
        self.outputs, (self.min_batch, profile_max) = self._check_io(trt, file)
        self.max_batch = self._pick_max_batch(max_batch, profile_max)
        self.default_batch = min(self.header["opt_batch"], self.max_batch)
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise RuntimeError(f"{file}: TensorRT could not create an execution context (out of GPU memory?)")
        self.cuda_graphs = cuda_graphs
        self._lock = threading.Lock()
        self._graph: Any = None  # the instantiated graph of one pass at the current shape, if captured
        self._uncapturable: set[int] = set()  # batch sizes whose capture failed: they run plainly
        self._rows = 0  # the input shape the context is set to
        self._buffers: dict[str, _Buffer] = {}
        self._stream = _call(cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking))
        self._closed = False
        for name in ["z", *self.outputs]:
            self._buffers[name] = self._allocate(name)
            if not self.context.set_tensor_address(name, self._buffers[name].device):
                raise RuntimeError(f"TensorRT refused the device address of tensor {name!r}")

    # --- set-up

    def _check_io(self, trt, file) -> tuple[list[str], tuple[int, int]]:
        """The engine's output names and its profile's (min, max) batch; raises unless its tensors
        are z (batch, latent_dim) float32 -> images (batch, C, H, W) float32 [+ images_uint8]."""
        engine, config = self.engine, self.config
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        c, h, w = config.output_shape
        expected = {"z": ("FLOAT", (config.latent_dim,)), "images": ("FLOAT", (c, h, w)),
                    "images_uint8": ("UINT8", (h, w, c))}
        if inputs != ["z"] or "images" not in outputs or not set(outputs) <= set(expected):
            raise ModelFormatError(f"{file}: engine tensors are inputs {inputs}, outputs {outputs}; expected input 'z' "
                                   f"and outputs 'images' (and 'images_uint8')")
        for name in names:
            dtype, shape = engine.get_tensor_dtype(name).name, tuple(engine.get_tensor_shape(name))[1:]
            if (dtype, shape) != expected[name]:
                raise ModelFormatError(f"{file}: engine tensor {name!r} is {dtype} {shape} per sample, expected "
                                       f"{expected[name][0]} {expected[name][1]}: built for another model")
        low, _, high = engine.get_tensor_profile_shape("z", 0)
        return outputs, (int(low[0]), int(high[0]))

    def _pick_max_batch(self, max_batch: int | None, profile_max: int) -> int:
        if max_batch is None:
            return profile_max
        integer = isinstance(max_batch, int) and not isinstance(max_batch, bool)
        if not integer or not self.min_batch <= max_batch <= profile_max:
            raise ValueError(f"max_batch must be an integer from {self.min_batch} to {profile_max} (the engine's "
                             f"optimization profile), got {max_batch!r}")
        return max_batch

    def _allocate(self, name: str) -> _Buffer:
        cudart = _cudart()
        dtype = np.dtype(_NUMPY_TYPES[self.engine.get_tensor_dtype(name).name])
        shape = (self.max_batch, *tuple(self.engine.get_tensor_shape(name))[1:])
        nbytes = int(np.prod(shape)) * dtype.itemsize
        device = int(_call(cudart.cudaMalloc(nbytes)))
        try:
            pinned = int(_call(cudart.cudaMallocHost(nbytes)))
        except Exception:
            cudart.cudaFree(device)
            raise
        host = np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(pinned)).view(dtype).reshape(shape)
        return _Buffer(name, host, device)

    # --- running

    @property
    def device(self) -> str:
        return "cuda"

    def run(self, z: np.ndarray) -> np.ndarray:
        return self._run(z, "images")

    def run_uint8(self, z: np.ndarray) -> np.ndarray:
        if "images_uint8" in self.outputs:  # NaN output is not detected here: the graph casts it to a byte
            return self._run(z, "images_uint8")
        return super().run_uint8(z)

    def _run(self, z: np.ndarray, output: str) -> np.ndarray:
        n = len(z)
        if n == 0:
            return np.empty((0, *self._buffers[output].host.shape[1:]), self._buffers[output].host.dtype)
        if n > self.max_batch:
            raise ValueError(f"the tensorrt backend runs at most {self.max_batch} latents at once, got {n}")
        rows = max(n, self.min_batch)  # below the profile's minimum: pad with zeros, drop the extra rows
        cudart = _cudart()
        with self._lock:
            self._check_open()
            source, result = self._buffers["z"], self._buffers[output]
            source.host[:n] = z
            source.host[n:rows] = 0
            _call(cudart.cudaMemcpyAsync(source.device, source.host.ctypes.data, rows * source.row_bytes,
                                         cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self._stream))
            self._enqueue(rows)
            _call(cudart.cudaMemcpyAsync(result.host.ctypes.data, result.device, rows * result.row_bytes,
                                         cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self._stream))
            _call(cudart.cudaStreamSynchronize(self._stream))
            return result.host[:n].copy()

    def _enqueue(self, rows: int) -> None:
        """Queue one forward pass of `rows` latents already on the device.

        A new batch size first runs plainly (TensorRT must run once after an input shape change
        before its work can be captured) and is then captured. The graph is replayed only while the
        context keeps that shape: a shape change drops it, and coming back to a size captures it
        again, since a graph recorded for one shape is not documented to survive the context
        running at others.
        """
        cudart = _cudart()
        if rows != self._rows:
            self._drop_graph()
            if not self.context.set_input_shape("z", (rows, self.config.latent_dim)):
                raise RuntimeError(f"TensorRT refused input shape ({rows}, {self.config.latent_dim})")
            self._rows = rows
            self._execute()
            if self.cuda_graphs and rows not in self._uncapturable:
                self._graph = self._capture()
                if self._graph is None:
                    self._uncapturable.add(rows)
            return
        if self._graph is None:
            self._execute()
        else:
            _call(cudart.cudaGraphLaunch(self._graph, self._stream))

    def _drop_graph(self) -> None:
        if self._graph is not None:
            _cudart().cudaGraphExecDestroy(self._graph)
            self._graph = None

    def _execute(self) -> None:
        if not self.context.execute_async_v3(int(self._stream)):
            raise RuntimeError("TensorRT could not run the engine (its log above says why)")

    def _capture(self) -> Any:
        """An instantiated CUDA graph of one forward pass at the current shape, or None if this
        engine cannot be captured (then it runs without graphs at this size)."""
        cudart = _cudart()
        mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        try:
            _call(cudart.cudaStreamBeginCapture(self._stream, mode))
        except RuntimeError:
            return None
        try:
            ok = self.context.execute_async_v3(int(self._stream))
        finally:
            error, graph = cudart.cudaStreamEndCapture(self._stream)  # always end the capture
        if int(error) != 0:  # capture invalidated by something TensorRT did
            return None
        try:
            return _call(cudart.cudaGraphInstantiateWithFlags(graph, 0)) if ok else None
        except RuntimeError:
            return None
        finally:
            cudart.cudaGraphDestroy(graph)

    def device_benchmark(self, batch: int) -> tuple[Callable[[], None], Callable[[], None]]:
        """(fn, sync): `fn` queues one forward pass of `batch` latents already on the GPU (outputs stay
        there); `sync` waits for the queued work. For bench/bench_gpu.py."""
        if not 1 <= batch <= self.max_batch:
            raise ValueError(f"batch must be 1 to {self.max_batch}, got {batch}")
        rows = max(batch, self.min_batch)
        cudart = _cudart()
        z = self._buffers["z"]
        with self._lock:
            self._check_open()
            z.host[:rows] = make_latents(rows, self.config.latent_dim, seed=0)
            _call(cudart.cudaMemcpyAsync(z.device, z.host.ctypes.data, rows * z.row_bytes,
                                         cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self._stream))
            self._enqueue(rows)  # sets the shape and captures the graph outside the timed calls
            _call(cudart.cudaStreamSynchronize(self._stream))

        def fn() -> None:
            with self._lock:
                self._enqueue(rows)

        def sync() -> None:
            _call(cudart.cudaStreamSynchronize(self._stream))

        return fn, sync

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "precision": self.header["precision"],
                "tensorrt_version": self.header["tensorrt_version"], "gpu": self.header["gpu_name"],
                "max_batch": self.max_batch, "cuda_graphs": self.cuda_graphs,
                "uint8_on_device": "images_uint8" in self.outputs}

    # --- clean-up

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this tensorrt backend has been closed")

    def close(self) -> None:
        """Free the GPU memory, pinned memory, graphs and stream (also done when garbage-collected)."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        cudart = _cudart()
        cudart.cudaStreamSynchronize(self._stream)
        self._drop_graph()
        self.context = None
        for buffer in self._buffers.values():
            cudart.cudaFree(buffer.device)
            cudart.cudaFreeHost(buffer.host.ctypes.data)
        self._buffers.clear()
        cudart.cudaStreamDestroy(self._stream)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001  (interpreter shutdown: the CUDA runtime may be gone already)
            pass
