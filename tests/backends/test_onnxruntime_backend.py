"""The onnxruntime backend refuses an ONNX file that is damaged or does not belong to the model."""

from __future__ import annotations

import pytest

import ganserve
from ganserve.errors import ModelFormatError
from ganserve.model_io import ONNX_NAME, load_model

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from ganserve.export.onnx_graph import build_onnx  # noqa: E402


def _graph(model_dir, metadata=None):
    model = load_model(model_dir)
    return build_onnx(model.config, model.weights,
                      metadata={"weights_sha256": model.weights_sha256} if metadata is None else metadata)


def _load(model_dir):
    return ganserve.Generator.load(model_dir, backend="onnxruntime", device="cpu")


def _rename(values, old, new, nodes, attr):
    value = next(v for v in values if v.name == old)
    value.name = new
    for node in nodes:
        names = getattr(node, attr)
        names[:] = [new if n == old else n for n in names]


def test_a_graph_from_the_export_loads(model_copy):
    (model_copy / ONNX_NAME).write_bytes(_graph(model_copy).SerializeToString())
    gen = _load(model_copy)
    assert gen.backend == "onnxruntime"
    assert gen.generate(ganserve.latents.make_latents(3, gen.latent_dim)).shape == (3, 1, 28, 28)


def test_a_graph_without_weights_sha256_is_not_trusted(model_copy):
    (model_copy / ONNX_NAME).write_bytes(_graph(model_copy, metadata={}).SerializeToString())
    with pytest.raises(ModelFormatError, match=f"{ONNX_NAME}: has no weights_sha256 metadata"):
        _load(model_copy)


@pytest.mark.parametrize("damage", [
    lambda data: b"",
    lambda data: data[: len(data) // 2],
    lambda data: b"\x8f not protobuf" * 100,
], ids=["empty", "truncated", "garbage"])
def test_a_damaged_graph_names_the_file(model_copy, damage):
    (model_copy / ONNX_NAME).write_bytes(damage(_graph(model_copy).SerializeToString()))
    with pytest.raises(ModelFormatError, match=f"{ONNX_NAME}: not a valid ONNX model") as info:
        _load(model_copy)
    assert "\n" not in str(info.value)


Z_SHAPE = r"expected the input 'z': float32 of shape \(batch, 16\)"


@pytest.mark.parametrize("rename,message", [
    (lambda g: _rename(g.input, "z", "latent", g.node, "input"), "expected the input 'z'"),
    (lambda g: _rename(g.output, "images", "out", g.node, "output"), "expected the output 'images'"),
    (lambda g: setattr(g.input[0].type.tensor_type.shape.dim[1], "dim_value", 7), Z_SHAPE),
    (lambda g: setattr(g.input[0].type.tensor_type.shape.dim[0], "dim_value", 1), Z_SHAPE),  # batch must be free
], ids=["input-name", "output-name", "latent-size", "fixed-batch"])
def test_a_graph_with_other_inputs_or_outputs(model_copy, rename, message):
    graph = _graph(model_copy)
    rename(graph.graph)
    (model_copy / ONNX_NAME).write_bytes(graph.SerializeToString())
    with pytest.raises(ModelFormatError, match=f"{ONNX_NAME}: {message}"):
        _load(model_copy)


@pytest.mark.parametrize("threads,error,message", [(-1, ValueError, "must be at least 0, got -1"),
                                                   (1.5, TypeError, "must be an int, got float 1.5"),
                                                   (True, TypeError, "must be an int, got bool True")])
def test_bad_thread_counts(tiny_model_dir, threads, error, message):
    with pytest.raises(error, match=f"onnxruntime backend: threads {message}"):
        ganserve.Generator.load(tiny_model_dir, backend="onnxruntime", device="cpu", threads=threads)


def test_zero_threads_means_every_cpu(tiny_model_dir):
    from ganserve._system import usable_cpus

    gen = ganserve.Generator.load(tiny_model_dir, backend="onnxruntime", device="cpu", threads=0)
    assert gen._backend.session.get_session_options().intra_op_num_threads == usable_cpus()
