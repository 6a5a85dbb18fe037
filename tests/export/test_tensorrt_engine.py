"""The TensorRT engine file, its machine checks, and the backend's refusal of foreign engines.

Everything but the test marked gpu runs without TensorRT or a GPU.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import json
import types

import numpy as np
import pytest

from ganserve.backends import create_backend
from ganserve.errors import BackendUnavailableError, ModelFormatError
from ganserve.export import tensorrt_engine as te
from ganserve.export.tensorrt_engine import (MAGIC, EngineBuildError, EngineMismatchError, build_engine,
                                             check_engine, check_layer_precisions, read_engine,
                                             read_engine_header, write_engine)
from ganserve.model_io import ENGINE_NAME, ONNX_FP16_NAME, load_model

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
PLAN = b"\x00plan bytes\xff" * 10


def make_header(**changes):
    header = {
        "format_version": 1, "tensorrt_version": "10.3.0", "compute_capability": "9.0", "gpu_name": "NVIDIA H100",
        "onnx_sha256": "a" * 64, "min_batch": 1, "opt_batch": 64, "max_batch": 1024, "precision": "fp16",
        "ganserve_version": "0.1.0", "config_sha256": "c" * 64,
    }
    header.update(changes)
    return header


# --- file format


def test_header_and_plan_round_trip(tmp_path):
    path = tmp_path / ENGINE_NAME
    header = make_header(outputs=["images", "images_uint8"], weights_sha256="w" * 64)
    write_engine(path, header, PLAN)
    assert read_engine(path) == (header, PLAN)
    assert read_engine_header(path) == header
    data = path.read_bytes()
    length = int.from_bytes(data[len(MAGIC):len(MAGIC) + 4], "little")
    assert data.startswith(MAGIC) and data.endswith(PLAN)
    assert data[len(MAGIC) + 4:len(MAGIC) + 4 + length] == json.dumps(header, sort_keys=True).encode()
    assert [p.name for p in tmp_path.iterdir()] == [ENGINE_NAME]  # no temporary file left behind


def _valid_head(header=None):
    text = json.dumps(header or make_header()).encode()
    return MAGIC + len(text).to_bytes(4, "little") + text


@pytest.mark.parametrize("data,message", [
    (b"", "bad magic"),
    (b"garbage that is no engine", "bad magic"),
    (b"\x00" * 4096, "bad magic"),
    (MAGIC + b"\x10\x00", "header length is cut off"),
    (MAGIC + (500).to_bytes(4, "little") + b'{"format_version": 1', "truncated engine file"),
    (MAGIC + (9).to_bytes(4, "little") + b"{not json" + PLAN, "not valid JSON"),
    (MAGIC + (2).to_bytes(4, "little") + b"[]" + PLAN, "must be a JSON object"),
    (_valid_head({k: v for k, v in make_header().items() if k != "tensorrt_version"}) + PLAN,
     r"lacks field\(s\) \['tensorrt_version'\]"),
    (_valid_head(make_header(max_batch="1024")) + PLAN, "'max_batch' must be int"),
    (_valid_head(make_header(min_batch=8, opt_batch=4)) + PLAN, "min_batch <= opt_batch"),
    (_valid_head(make_header(format_version=2)) + PLAN, "newer ganserve"),
    (_valid_head({"format_version": 2, "fields": "of a later format"}) + PLAN, "version 2 was written by a newer"),
    (_valid_head(), "no plan after the header"),
], ids=["empty", "garbage", "zeros", "short-length", "short-header", "bad-json", "not-object", "missing-field",
        "wrong-type", "bad-batches", "newer-format", "newer-fields", "no-plan"])
def test_invalid_engine_files_name_the_file(tmp_path, data, message):
    path = tmp_path / "broken.engine"
    path.write_bytes(data)
    with pytest.raises(ModelFormatError, match=message) as info:
        read_engine(path)
    assert str(path) in str(info.value)


def test_header_only_read_refuses_truncation_too(tmp_path):
    path = tmp_path / "short.engine"
    path.write_bytes(_valid_head()[:-3])
    with pytest.raises(ModelFormatError, match=f"{path}.*truncated"):
        read_engine_header(path)


def test_missing_engine_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no TensorRT engine file"):
        read_engine(tmp_path / ENGINE_NAME)


@pytest.mark.parametrize("header,plan,message", [
    ({k: v for k, v in make_header().items() if k != "onnx_sha256"}, PLAN, "lacks field"),
    (make_header(outputs="images"), PLAN, "'outputs' must be list"),
    (make_header(), b"", "plan is empty"),
])
def test_write_engine_refuses_bad_input(tmp_path, header, plan, message):
    with pytest.raises(ValueError, match=message):
        write_engine(tmp_path / ENGINE_NAME, header, plan)
    assert not list(tmp_path.iterdir())


# --- machine checks


HERE = {"tensorrt_version": "10.3.0", "compute_capability": "9.0"}


def test_check_engine_accepts_a_match():
    check_engine(make_header(weights_sha256="w" * 64), **HERE, onnx_sha256="a" * 64, config_sha256="c" * 64,
                 weights_sha256="w" * 64)


@pytest.mark.parametrize("machine,message", [
    ({"tensorrt_version": "10.5.0", "compute_capability": "9.0"},
     r"built with TensorRT 10\.3\.0 for compute capability 9\.0 \(NVIDIA H100\); this machine has TensorRT "
     r"10\.5\.0 and compute capability 9\.0: the TensorRT version differs;"),
    ({"tensorrt_version": "10.3.0", "compute_capability": "8.0"},
     r"this machine has TensorRT 10\.3\.0 and compute capability 8\.0: the compute capability differs;"),
    ({"tensorrt_version": "11.0.0", "compute_capability": "8.9"},
     "the TensorRT version and the compute capability differ"),
], ids=["tensorrt-version", "compute-capability", "both"])
def test_check_engine_refuses_another_machine(machine, message):
    with pytest.raises(EngineMismatchError, match=message) as info:
        check_engine(make_header(), **machine, where="model/generator.engine")
    assert str(info.value).startswith("model/generator.engine: ")
    assert "ganserve export --tensorrt" in str(info.value)
    assert isinstance(info.value, ModelFormatError)


@pytest.mark.parametrize("given,message", [
    ({"onnx_sha256": "b" * 64}, r"the ONNX graph changed since the engine was built \(built from sha256 aaaa"),
    ({"config_sha256": "d" * 64}, "different architecture than config.json"),
    ({"weights_sha256": "v" * 64}, "different weights than generator.safetensors"),
], ids=["onnx", "config", "weights"])
def test_check_engine_refuses_another_model(given, message):
    with pytest.raises(EngineMismatchError, match=message):
        check_engine(make_header(weights_sha256="w" * 64), **HERE, **given)


def test_check_engine_skips_what_it_is_not_given():
    check_engine(make_header(), **HERE, weights_sha256="v" * 64)  # an engine header without weights_sha256


# --- FP16 check of a built engine


def _layer(name, layer_type, formats):
    return {"Name": name, "LayerType": layer_type,
            "Inputs": [{"Name": f"{name}_in", "Format/Datatype": f} for f in formats], "Outputs": []}


def test_fp16_layers_pass_the_precision_check():
    info = {"Layers": [_layer("reformat", "Reformat", ["Row major linear FP32 format"]),
                       _layer("/gemm", "CaskGemm", ["Row major linear FP16 format"]),
                       _layer("/deconv", "CaskDeconvolution", ["Channel major FP16 format where channel % 8 == 0"])],
            "Bindings": ["z", "images"]}
    check_layer_precisions(json.dumps(info), strongly_typed=False)


@pytest.mark.parametrize("key", ["DataType", "Datatype"])  # NVIDIA's TensorRT 11 documents spell it both ways
def test_tensorrt11_split_type_fields_are_read(key):
    layer = {"Name": "/conv", "LayerType": "CaskConvolution",
             "Inputs": [{"Name": "x", key: "Half", "Format": "Channel major format (kHWC8)"}]}
    check_layer_precisions(json.dumps({"Layers": [layer]}), strongly_typed=True)
    layer["Inputs"][0][key] = "Float"
    with pytest.raises(EngineBuildError, match="1 of 1 convolution/matrix layers run in FP32"):
        check_layer_precisions(json.dumps({"Layers": [layer]}), strongly_typed=True)


def _fake_trt(version, strong=True, fp16_flag=True):
    flags = types.SimpleNamespace(**({"STRONGLY_TYPED": 0} if strong else {}))
    builder = types.SimpleNamespace(**({"FP16": 0} if fp16_flag else {}))
    return types.SimpleNamespace(__version__=version, NetworkDefinitionCreationFlag=flags, BuilderFlag=builder)


def test_network_typing_per_tensorrt_version():
    trt10, trt11, old = _fake_trt("10.13"), _fake_trt("11.1", fp16_flag=False), _fake_trt("8.6", strong=False)
    assert te._typing(trt10, None) is True and te._typing(trt10, False) is False  # TensorRT 10: both ways
    assert te._typing(trt11, None) is True
    with pytest.raises(BackendUnavailableError, match="no BuilderFlag.FP16"):
        te._typing(trt11, False)
    assert te._typing(old, None) is False
    with pytest.raises(BackendUnavailableError, match="cannot build strongly typed"):
        te._typing(old, True)


def test_fp32_compute_layers_are_refused():
    info = {"Layers": [_layer("/gemm", "CaskGemm", ["Row major linear FP16 format"]),
                       _layer("/deconv_1", "CaskDeconvolution", ["Row major linear FP32 format"])]}
    with pytest.raises(EngineBuildError, match=r"1 of 2 convolution/matrix layers run in FP32.*/deconv_1"):
        check_layer_precisions(json.dumps(info), strongly_typed=False, where="x.engine")


@pytest.mark.parametrize("strongly_typed", [False, True])
def test_opaque_fp32_engines(strongly_typed):
    """Fused layers hide their kernels: accepted only where strong typing binds the precision."""
    info = json.dumps({"Layers": [_layer("{ForeignNode[/gemm...]}", "Myelin", ["Row major linear FP32 format"])]})
    if strongly_typed:
        check_layer_precisions(info, strongly_typed=True)
    else:
        with pytest.raises(EngineBuildError, match="no layer of the engine runs in FP16"):
            check_layer_precisions(info, strongly_typed=False)


@pytest.mark.parametrize("info", ['{"Layers": ["/gemm", "/deconv"]}', "{}", "not json"])
def test_engines_without_layer_details_are_refused(info):
    with pytest.raises(EngineBuildError, match="layer information"):
        check_layer_precisions(info, strongly_typed=True)


# --- building (without TensorRT here)


def test_build_engine_without_tensorrt_says_how_to_install(tmp_path):
    if HAS_TENSORRT:
        pytest.skip("tensorrt is installed")
    onnx_path = tmp_path / ONNX_FP16_NAME
    onnx_path.write_bytes(b"not read before tensorrt is imported")
    with pytest.raises(ImportError, match=r"needs the 'tensorrt' package.*pip install tensorrt") as info:
        build_engine(onnx_path, tmp_path / ENGINE_NAME)
    assert isinstance(info.value, BackendUnavailableError)
    assert not (tmp_path / ENGINE_NAME).exists()


@pytest.mark.parametrize("batches", [(0, 1, 1), (8, 4, 16), (1, 64, 32), (1, 64.0, 128)])
def test_build_engine_checks_the_batch_range_first(tmp_path, batches):
    low, opt, high = batches
    with pytest.raises(ValueError, match="1 <= min_batch <= opt_batch <= max_batch"):
        build_engine(tmp_path / ONNX_FP16_NAME, tmp_path / ENGINE_NAME, min_batch=low, opt_batch=opt, max_batch=high)


def test_build_engine_needs_the_onnx_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="ganserve export --fp16"):
        build_engine(tmp_path / ONNX_FP16_NAME, tmp_path / ENGINE_NAME)


def _write_fp16_onnx(model_dir, uint8_output=False):
    pytest.importorskip("onnx")
    from ganserve.export.onnx_graph import build_onnx

    model = load_model(model_dir)
    graph = build_onnx(model.config, model.weights, fp16=True, uint8_output=uint8_output,
                       metadata={"weights_sha256": model.weights_sha256})
    (model_dir / ONNX_FP16_NAME).write_bytes(graph.SerializeToString())
    return model


def test_uint8_output_is_added_to_a_graph_without_it(model_copy):
    """The graph the engine is built from gets ``images_uint8`` exactly as the exporter writes it."""
    ort = pytest.importorskip("onnxruntime")
    from ganserve.export.onnx_graph import build_onnx

    model = _write_fp16_onnx(model_copy)
    source = (model_copy / ONNX_FP16_NAME).read_bytes()
    graph, meta, outputs = te._prepare_graph(source, model_copy / ONNX_FP16_NAME, uint8_output=True)
    assert outputs == ["images", "images_uint8"] and meta["config_sha256"] == model.config.digest()
    reference = build_onnx(model.config, model.weights, fp16=True, uint8_output=True).SerializeToString()
    z = np.random.default_rng(0).standard_normal((5, model.config.latent_dim)).astype(np.float32)
    got = ort.InferenceSession(graph, providers=["CPUExecutionProvider"]).run(None, {"z": z})
    want = ort.InferenceSession(reference, providers=["CPUExecutionProvider"]).run(None, {"z": z})
    assert got[1].dtype == np.uint8 and got[1].shape == (5, 28, 28, 1)
    np.testing.assert_array_equal(got[1], want[1])
    assert te._prepare_graph(source, model_copy / ONNX_FP16_NAME, uint8_output=False)[0] == source


def test_engines_are_built_from_the_fp16_graph_only(model_copy):
    onnx = pytest.importorskip("onnx")
    from ganserve.export.onnx_graph import build_onnx

    model = load_model(model_copy)
    source = build_onnx(model.config, model.weights, fp16=False).SerializeToString()
    with pytest.raises(ValueError, match="fp32 graph.*generator.fp16.onnx"):
        te._prepare_graph(source, model_copy / "generator.onnx", uint8_output=True)
    with pytest.raises(ModelFormatError, match="not a ganserve ONNX graph"):
        bare = onnx.load_from_string(source)
        del bare.metadata_props[:]
        te._prepare_graph(bare.SerializeToString(), model_copy / "other.onnx", uint8_output=True)


# --- the backend's engine checks (TensorRT's version and the GPU are faked)


@pytest.fixture
def fake_machine(monkeypatch):
    monkeypatch.setattr(te, "this_machine", lambda: dict(HERE))


def _engine_for(model, model_dir, **changes):
    onnx = model_dir / ONNX_FP16_NAME
    onnx_sha = hashlib.sha256(onnx.read_bytes()).hexdigest() if onnx.exists() else "a" * 64
    header = make_header(**{"config_sha256": model.config.digest(), "weights_sha256": model.weights_sha256,
                            "onnx_sha256": onnx_sha, "outputs": ["images", "images_uint8"], **changes})
    write_engine(model_dir / ENGINE_NAME, header, PLAN)


def test_backend_accepts_an_engine_built_here(model_copy, fake_machine):
    from ganserve.backends.tensorrt_backend import TensorRTBackend

    model = load_model(model_copy)
    _engine_for(model, model_copy)
    TensorRTBackend.check_model(model)


@pytest.mark.parametrize("changes,message", [
    ({"tensorrt_version": "10.5.0"}, "the TensorRT version differs"),
    ({"compute_capability": "8.6"}, "the compute capability differs"),
    ({"onnx_sha256": "0" * 64}, "the ONNX graph changed"),
    ({"config_sha256": "0" * 64}, "different architecture"),
    ({"weights_sha256": "0" * 64}, "different weights"),
], ids=["tensorrt-version", "compute-capability", "onnx", "config", "weights"])
def test_backend_refuses_foreign_engines(model_copy, fake_machine, changes, message):
    """Refused as unavailable (so "auto" moves on to the next backend), naming what differs."""
    from ganserve.backends.tensorrt_backend import TensorRTBackend

    (model_copy / ONNX_FP16_NAME).write_bytes(b"the graph")
    model = load_model(model_copy)
    _engine_for(model, model_copy, **changes)
    with pytest.raises(BackendUnavailableError, match=message):
        TensorRTBackend.check_model(model)


def test_backend_notices_a_changed_onnx_file(model_copy, fake_machine):
    from ganserve.backends.tensorrt_backend import TensorRTBackend

    (model_copy / ONNX_FP16_NAME).write_bytes(b"graph one")
    model = load_model(model_copy)
    _engine_for(model, model_copy)
    (model_copy / ONNX_FP16_NAME).write_bytes(b"graph two")
    with pytest.raises(BackendUnavailableError, match="the ONNX graph changed"):
        TensorRTBackend.check_model(model)


def test_backend_needs_an_engine_file(model_copy, fake_machine):
    from ganserve.backends.tensorrt_backend import TensorRTBackend

    with pytest.raises(BackendUnavailableError, match=f"no {ENGINE_NAME} in .*ganserve export"):
        TensorRTBackend.check_model(load_model(model_copy))


def test_backend_reports_a_corrupt_engine(model_copy, fake_machine):
    from ganserve.backends.tensorrt_backend import TensorRTBackend

    (model_copy / ENGINE_NAME).write_bytes(b"junk")
    with pytest.raises(ModelFormatError, match="bad magic"):
        TensorRTBackend.check_model(load_model(model_copy))


def test_backend_without_tensorrt_is_unavailable(tiny_model_dir):
    if HAS_TENSORRT:
        pytest.skip("tensorrt is installed")
    with pytest.raises(BackendUnavailableError, match="pip install tensorrt"):
        create_backend("tensorrt", load_model(tiny_model_dir))


@pytest.mark.parametrize("device,error,message", [("cpu", BackendUnavailableError, "CUDA GPUs only, not 'cpu'"),
                                                   ("tpu", ValueError, "device must be 'auto' or 'cuda'.*'tpu'")])
def test_backend_devices(device, error, message):
    """Refused for what the device is, before (and whether or not) TensorRT is looked for."""
    from ganserve.backends.tensorrt_backend import TensorRTBackend

    with pytest.raises(error, match=message):
        TensorRTBackend.check_available(device)


# --- on a GPU with TensorRT


@pytest.mark.gpu
def test_built_engine_matches_numpy(model_copy, tmp_path):
    pytest.importorskip("tensorrt")
    pytest.importorskip("cuda")
    from ganserve.backends.numpy_backend import NumpyBackend
    from ganserve.images import to_uint8

    model = _write_fp16_onnx(model_copy)
    cache = tmp_path / "timing.cache"
    header = build_engine(model_copy / ONNX_FP16_NAME, model_copy / ENGINE_NAME, min_batch=1, opt_batch=16,
                          max_batch=64, timing_cache=cache)
    assert header["precision"] == "fp16" and header["max_batch"] == 64 and cache.is_file()
    assert header["outputs"] == ["images", "images_uint8"]
    assert read_engine_header(model_copy / ENGINE_NAME) == header

    backend = create_backend("tensorrt", model)
    reference = NumpyBackend(model)
    assert backend.max_batch == 64 and backend.device == "cuda"
    for n in (1, 7, 7, 64, 3):  # repeats replay a CUDA graph; changes of size run plainly first
        z = np.random.default_rng(n).standard_normal((n, model.config.latent_dim)).astype(np.float32)
        want = reference.run(z)
        got = backend.run(z)
        assert got.shape == want.shape and got.dtype == np.float32
        assert np.abs(got - want).max() <= 3e-2
        levels = np.abs(backend.run_uint8(z).astype(int) - to_uint8(want, model.config.value_range).astype(int))
        assert levels.max() <= 8
    fn, sync = backend.device_benchmark(32)
    fn()
    sync()
    backend.close()


# --- the backend's buffers, padding and CUDA graph logic, against fake TensorRT and CUDA modules
#
# The fakes keep "device" memory in host arrays and compute with the NumPy backend. They check
# ganserve's own logic only: that TensorRT and cuda-python behave as their documentation says is
# what the gpu test above checks.


class _FakeCuda:
    def __init__(self):
        self.memory, self.log, self.capturing = {}, [], None
        kinds = types.SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)
        self.module = types.SimpleNamespace(
            cudaMalloc=self.alloc, cudaMallocHost=self.alloc, cudaFree=self.free, cudaFreeHost=self.free,
            cudaMemcpyAsync=self.copy, cudaMemcpyKind=kinds, cudaStreamNonBlocking=1,
            cudaStreamCreateWithFlags=lambda flags: (0, 77), cudaStreamSynchronize=lambda s: (0,),
            cudaStreamDestroy=lambda s: (0,), cudaStreamBeginCapture=self.begin, cudaStreamEndCapture=self.end,
            cudaStreamCaptureMode=types.SimpleNamespace(cudaStreamCaptureModeThreadLocal=1),
            cudaGraphInstantiateWithFlags=lambda graph, flags: (0, list(graph)), cudaGraphLaunch=self.launch,
            cudaGraphDestroy=lambda g: (0,), cudaGraphExecDestroy=lambda g: self.log.append("drop graph") or (0,),
            cudaGetErrorString=lambda e: (0, b"fake error"))

    def alloc(self, nbytes):
        array = np.zeros(nbytes, np.uint8)
        self.memory[array.ctypes.data] = array
        return 0, array.ctypes.data

    def free(self, pointer):
        del self.memory[int(pointer)]
        return (0,)

    def copy(self, dst, src, nbytes, kind, stream):
        ctypes.memmove(dst, src, nbytes)
        return (0,)

    def begin(self, stream, mode):
        self.capturing = []
        return (0,)

    def end(self, stream):
        graph, self.capturing = self.capturing, None
        return 0, graph

    def launch(self, graph, stream):
        self.log.append("graph")
        for work in graph:
            work()
        return (0,)


def _view(pointer, dtype, shape):
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(pointer)).view(dtype).reshape(shape)


class _FakeLogger:
    WARNING = 2

    def __init__(self, level):
        self.level = level


class _FakeEngine:
    """z (batch, latent_dim) -> images [+ images_uint8], computed by the NumPy backend."""

    def __init__(self, model, cuda, outputs, profile):
        from ganserve.backends.numpy_backend import NumpyBackend

        c, h, w = model.config.output_shape
        d = model.config.latent_dim
        tensors = {"z": ("FLOAT", (-1, d)), "images": ("FLOAT", (-1, c, h, w)),
                   "images_uint8": ("UINT8", (-1, h, w, c))}
        self.tensors = {name: tensors[name] for name in ("z", *outputs)}
        self.num_io_tensors = len(self.tensors)
        self.profile = [(b, d) for b in profile]
        self.reference, self.cuda = NumpyBackend(model), cuda

    def get_tensor_name(self, i):
        return list(self.tensors)[i]

    def get_tensor_mode(self, name):
        return "INPUT" if name == "z" else "OUTPUT"

    def get_tensor_dtype(self, name):
        return types.SimpleNamespace(name=self.tensors[name][0])

    def get_tensor_shape(self, name):
        return self.tensors[name][1]

    def get_tensor_profile_shape(self, name, profile):
        return self.profile

    def create_execution_context(self):
        return _FakeContext(self)


class _FakeContext:
    def __init__(self, engine):
        self.engine, self.addresses, self.rows = engine, {}, None

    def set_tensor_address(self, name, pointer):
        self.addresses[name] = pointer
        return True

    def set_input_shape(self, name, shape):
        self.rows = shape[0]
        return True

    def execute_async_v3(self, stream):
        rows, cuda = self.rows, self.engine.cuda
        if cuda.capturing is not None:
            cuda.capturing.append(lambda: self._compute(rows))
        else:
            cuda.log.append(f"plain {rows}")
            self._compute(rows)
        return True

    def _compute(self, rows):
        from ganserve.images import to_uint8

        z = _view(self.addresses["z"], np.float32, (rows, self.engine.profile[0][1]))
        images = self.engine.reference.run(z.copy())
        _view(self.addresses["images"], np.float32, images.shape)[:] = images
        if "images_uint8" in self.addresses:
            out = to_uint8(images, self.engine.reference.config.value_range)
            _view(self.addresses["images_uint8"], np.uint8, out.shape)[:] = out


@pytest.fixture
def fake_tensorrt(model_copy, fake_machine, monkeypatch):
    """(make backend, fake CUDA) for the tiny model with an engine file whose profile is 2..16."""
    from ganserve.backends import tensorrt_backend

    cuda = _FakeCuda()
    monkeypatch.setattr(tensorrt_backend, "_cudart", lambda: cuda.module)

    def make(outputs=("images", "images_uint8"), **options):
        model = load_model(model_copy)
        _engine_for(model, model_copy)
        engine = _FakeEngine(model, cuda, outputs, profile=(2, 8, 16))
        trt = types.SimpleNamespace(
            __version__=HERE["tensorrt_version"], TensorIOMode=types.SimpleNamespace(INPUT="INPUT"),
            Logger=_FakeLogger, Runtime=lambda logger: types.SimpleNamespace(
                deserialize_cuda_engine=lambda plan: engine))
        monkeypatch.setattr(te, "import_tensorrt", lambda what="": trt)
        return tensorrt_backend.TensorRTBackend(model, **options), model

    return make, cuda


def test_fake_backend_runs_pads_and_replays_graphs(fake_tensorrt):
    from ganserve.backends.numpy_backend import NumpyBackend

    make, cuda = fake_tensorrt
    backend, model = make()
    reference = NumpyBackend(model)
    assert (backend.min_batch, backend.max_batch, backend.default_batch, backend.device) == (2, 16, 16, "cuda")
    for n in (1, 5, 5, 16, 5, 5):
        z = np.random.default_rng(n).standard_normal((n, 16)).astype(np.float32)
        np.testing.assert_allclose(backend.run(z), reference.run(z), rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(backend.run_uint8(z), reference.run_uint8(z))
    # A new size runs plainly and is captured; the graph is replayed only while the context keeps that
    # shape, and a size seen before is captured again when the shape comes back to it.
    assert cuda.log == ["plain 2", "graph", "drop graph", "plain 5", "graph", "graph", "graph",
                        "drop graph", "plain 16", "graph", "drop graph", "plain 5", "graph", "graph", "graph"]
    with pytest.raises(ValueError, match="at most 16 latents"):
        backend.run(np.zeros((17, 16), np.float32))
    assert backend.run(np.zeros((0, 16), np.float32)).shape == (0, 1, 28, 28)

    fn, sync = backend.device_benchmark(8)
    fn()
    sync()
    assert cuda.log[-2:] == ["plain 8", "graph"]
    backend.close()
    assert not cuda.memory
    with pytest.raises(RuntimeError, match="closed"):
        backend.run(np.zeros((2, 16), np.float32))


def test_fake_backend_options(fake_tensorrt):
    make, cuda = fake_tensorrt
    backend, _ = make(max_batch=4, cuda_graphs=False)
    assert backend.max_batch == 4 and backend._buffers["images"].host.shape == (4, 1, 28, 28)
    z = np.zeros((3, 16), np.float32)
    backend.run(z)
    backend.run(z)
    assert cuda.log == ["plain 3", "plain 3"]
    with pytest.raises(ValueError, match="max_batch must be an integer from 2 to 16"):
        make(max_batch=32)


def test_fake_backend_without_uint8_output_converts_on_the_host(fake_tensorrt):
    from ganserve.backends.numpy_backend import NumpyBackend

    make, _ = fake_tensorrt
    backend, model = make(outputs=("images",))
    z = np.random.default_rng(3).standard_normal((4, 16)).astype(np.float32)
    assert not backend.describe()["uint8_on_device"]
    np.testing.assert_array_equal(backend.run_uint8(z), NumpyBackend(model).run_uint8(z))
