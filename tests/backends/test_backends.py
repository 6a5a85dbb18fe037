"""Every backend against the NumPy reference (skipped where its package or a GPU is missing)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import random_weights

import ganserve
from ganserve import Generator
from ganserve.backends import available_backends, create_backend, list_backends
from ganserve.model_io import load_model

CPU = [("torch", {"device": "cpu"}), ("onnxruntime", {"device": "cpu"}),
       ("onnxruntime", {"device": "cpu", "io_binding": True})]  # the CUDA path's calls, on the CPU provider
GPU = [("torch", {"device": "cuda"}), ("torch", {"device": "cuda", "compile": True}),
       ("onnxruntime", {"device": "cuda"}), ("tensorrt", {})]
GPU_FP16 = [("torch", {"device": "cuda", "precision": "fp16"}),
            ("onnxruntime", {"device": "cuda", "precision": "fp16"})]
PACKAGES = {"torch": "torch", "onnxruntime": "onnxruntime", "tensorrt": "tensorrt"}


def _backend(name, options, model):
    pytest.importorskip(PACKAGES[name])
    try:
        return create_backend(name, model, **options)
    except ImportError as e:  # e.g. onnxruntime without its CUDA provider
        pytest.skip(str(e))


def _compare(backend, model, n=37, float_tol=1e-4, levels=2):
    reference = create_backend("numpy", model)
    z = ganserve.latents.make_latents(n, model.config.latent_dim, seed=5)
    got, want = backend.run(z), reference.run(z)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.isfinite(got).all()
    assert np.abs(got - want).max() <= float_tol
    got8, want8 = backend.run_uint8(z), reference.run_uint8(z)
    assert got8.dtype == np.uint8 and got8.shape == want8.shape
    assert np.abs(got8.astype(int) - want8.astype(int)).max() <= levels


@pytest.mark.parametrize("preset", ganserve.list_presets())
@pytest.mark.parametrize("name,options", CPU, ids=["torch-cpu", "onnxruntime-cpu", "onnxruntime-cpu-iobinding"])
def test_cpu_backends_match_numpy(name, options, preset):
    config = ganserve.create_config(preset, width=8 if preset != "mlp28" else 16)
    model = ganserve.model_io.Model(config, random_weights(config, seed=2), {})
    backend = _backend(name, options, model)
    if options.get("io_binding"):  # uint8 conversion inside the graph, as on the GPU
        assert backend.describe()["io_binding"] and "images_uint8" in backend.outputs
    _compare(backend, model)


@pytest.mark.parametrize("name,options", CPU, ids=["torch-cpu", "onnxruntime-cpu", "onnxruntime-cpu-iobinding"])
def test_cpu_backends_match_numpy_on_a_sigmoid_output(name, options):
    """Output range (0, 1): every backend's uint8 images map 0..1 onto 0..255 (not tanh's -1..1)."""
    tanh = ganserve.create_config("dcgan28", width=8)
    assert tanh.layers[-1]["type"] == "tanh"
    config = ganserve.GeneratorConfig(tanh.latent_dim, tanh.output_shape, (*tanh.layers[:-1], {"type": "sigmoid"}),
                                      value_range=(0.0, 1.0))
    model = ganserve.model_io.Model(config, random_weights(config, seed=2), {})
    _compare(_backend(name, options, model), model)
    images = create_backend("numpy", model).run_uint8(ganserve.latents.make_latents(37, config.latent_dim, seed=5))
    assert images.min() < 64 and images.max() > 192  # the whole range is used, not its upper half


@pytest.mark.gpu
@pytest.mark.parametrize("name,options", GPU, ids=["torch-cuda", "torch-cuda-compiled", "onnxruntime-cuda", "tensorrt"])
def test_gpu_backends_match_numpy(name, options, tiny_model_dir):
    model = load_model(tiny_model_dir)
    _compare(_backend(name, options, model), model)


@pytest.mark.gpu
@pytest.mark.parametrize("name,options", GPU_FP16, ids=["torch-cuda-fp16", "onnxruntime-cuda-fp16"])
def test_gpu_fp16_backends_close_to_numpy(name, options, tiny_model_dir):
    model = load_model(tiny_model_dir)
    _compare(_backend(name, options, model), model, float_tol=3e-2, levels=8)


def test_numpy_is_always_available():
    assert "numpy" in available_backends()
    assert set(available_backends()) <= set(list_backends())


def test_auto_takes_the_fastest_usable_backend(tiny_model_dir, monkeypatch):
    from ganserve.backends import backend_class, unavailable_reason
    from ganserve.errors import BackendUnavailableError

    if any(unavailable_reason(name, "cuda") is None for name in ("tensorrt", "onnxruntime", "torch")):
        pytest.skip("a GPU backend is usable here: auto would take it")
    # On a CPU: ONNX Runtime where it is installed (it builds the graph when the model has no .onnx file)
    cpu_first = "onnxruntime" if "onnxruntime" in available_backends() else "numpy"
    assert Generator.load(tiny_model_dir).backend == cpu_first

    def missing(cls, device="auto"):
        raise BackendUnavailableError("onnxruntime is not installed (test)")

    # without it, the NumPy reference comes before torch on a CPU
    monkeypatch.setattr(backend_class("onnxruntime"), "check_available", classmethod(missing))
    assert Generator.load(tiny_model_dir).backend == "numpy"


def test_unknown_backend_lists_the_available_ones(tiny_model_dir):
    with pytest.raises(ValueError, match="unknown backend 'fast'.*numpy"):
        Generator.load(tiny_model_dir, backend="fast")


def test_numpy_rejects_cuda(tiny_model_dir):
    with pytest.raises(ImportError, match="CPU only"):
        Generator.load(tiny_model_dir, backend="numpy", device="cuda")


def test_backend_options_need_a_backend_name(tiny_model_dir):
    with pytest.raises(TypeError, match="explicit backend"):
        Generator.load(tiny_model_dir, backend="auto", threads=1)


@pytest.mark.parametrize("name,options", [
    ("numpy", {}), *CPU, ("onnxruntime", {"device": "cpu", "precision": "fp16"}),
    *[pytest.param(n, o, marks=pytest.mark.gpu) for n, o in GPU + GPU_FP16 if n != "tensorrt"],  # needs an engine
])
def test_generate_stays_in_the_value_range(name, options, tiny_config):
    weights = {k: 3 * v for k, v in random_weights(tiny_config, seed=1).items()}  # most outputs saturate
    model = ganserve.model_io.Model(tiny_config, weights, {})
    backend = create_backend(name, model, **options) if name == "numpy" else _backend(name, options, model)
    images = Generator(model, backend).generate(ganserve.latents.make_latents(64, tiny_config.latent_dim, seed=0))
    assert (np.abs(images) == 1).mean() > 0.3  # not vacuous: tanh is at its limits
    assert images.min() >= -1 and images.max() <= 1


@pytest.mark.parametrize("threads,n", [(2, 1), (1, 5), (2, 6)])  # one chunk on the calling thread; several
def test_numpy_runs_blas_single_threaded(tiny_model_dir, threads, n):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not any(i["user_api"] == "blas" for i in threadpoolctl.threadpool_info()):
        pytest.skip("no BLAS that threadpoolctl can see")
    backend = create_backend("numpy", load_model(tiny_model_dir), threads=threads)
    forward, seen = backend.forward_nhwc, []

    def spy(z):
        seen.extend(i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas")
        return forward(z)

    backend.forward_nhwc = spy
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):  # what BLAS would use otherwise
        backend.run(ganserve.latents.make_latents(n, backend.config.latent_dim))
    assert seen and set(seen) == {1}
