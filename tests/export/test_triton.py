"""Triton model repositories: layout, config.pbtxt read back, plans without ganserve's header."""

from __future__ import annotations

import pytest

from ganserve.export.tensorrt_engine import write_engine
from ganserve.export.triton import format_pbtxt, read_config_pbtxt, write_triton_repository
from ganserve.model_io import ENGINE_NAME, ONNX_NAME, load_model

PLAN = b"raw tensorrt plan \x00\x01\x02" * 7


@pytest.fixture
def onnx_model(model_copy):
    """The tiny model directory with its generator.onnx."""
    pytest.importorskip("onnx")
    from ganserve.export.onnx_graph import build_onnx

    model = load_model(model_copy)
    (model_copy / ONNX_NAME).write_bytes(build_onnx(model.config, model.weights).SerializeToString())
    return model_copy


def _engine(model_dir, max_batch=512, outputs=("images", "images_uint8"), min_batch=1):
    model = load_model(model_dir)
    header = {
        "format_version": 1, "tensorrt_version": "10.3.0", "compute_capability": "9.0", "gpu_name": "NVIDIA H100",
        "onnx_sha256": "a" * 64, "min_batch": min_batch, "opt_batch": 64, "max_batch": max_batch, "precision": "fp16",
        "ganserve_version": "0.1.0", "config_sha256": model.config.digest(), "outputs": list(outputs),
    }
    write_engine(model_dir / ENGINE_NAME, header, PLAN)


def test_onnx_repository(tmp_path, onnx_model, tiny_config):
    folder = write_triton_repository(tmp_path / "repo", "gen", onnx_model)
    assert folder == tmp_path / "repo" / "gen"
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == ["1", "1/model.onnx", "config.pbtxt"]
    assert (folder / "1" / "model.onnx").read_bytes() == (onnx_model / ONNX_NAME).read_bytes()

    config = read_config_pbtxt(folder / "config.pbtxt")
    c, h, w = tiny_config.output_shape
    assert config == {
        "name": "gen",
        "platform": "onnxruntime_onnx",
        "max_batch_size": 1024,
        "input": [{"name": "z", "data_type": "TYPE_FP32", "dims": [tiny_config.latent_dim]}],
        "output": [{"name": "images", "data_type": "TYPE_FP32", "dims": [c, h, w]}],
        "dynamic_batching": {"preferred_batch_size": [64, 256], "max_queue_delay_microseconds": 100},
        "instance_group": [{"count": 1, "kind": "KIND_GPU"}],
    }


def test_onnx_graph_with_uint8_output(tmp_path, model_copy, tiny_config):
    pytest.importorskip("onnx")
    from ganserve.export.onnx_graph import build_onnx

    model = load_model(model_copy)
    graph = build_onnx(model.config, model.weights, uint8_output=True)
    (model_copy / ONNX_NAME).write_bytes(graph.SerializeToString())
    config = read_config_pbtxt(write_triton_repository(tmp_path, "gen", model_copy) / "config.pbtxt")
    c, h, w = tiny_config.output_shape
    assert config["output"][1] == {"name": "images_uint8", "data_type": "TYPE_UINT8", "dims": [h, w, c]}


def test_tensorrt_repository_holds_the_raw_plan(tmp_path, model_copy, tiny_config):
    _engine(model_copy)
    folder = write_triton_repository(tmp_path, "gen_trt", model_copy, kind="tensorrt", max_batch_size=512,
                                     preferred_batch_sizes=(128,), max_queue_delay_us=250, instance_count=2)
    assert (folder / "1" / "model.plan").read_bytes() == PLAN
    config = read_config_pbtxt(folder / "config.pbtxt")
    assert config["platform"] == "tensorrt_plan" and config["max_batch_size"] == 512
    assert [o["name"] for o in config["output"]] == ["images", "images_uint8"]
    assert config["output"][1]["dims"] == [tiny_config.output_shape[1], tiny_config.output_shape[2], 1]
    assert config["dynamic_batching"] == {"preferred_batch_size": [128], "max_queue_delay_microseconds": 250}
    assert config["instance_group"] == [{"count": 2, "kind": "KIND_GPU"}]


def test_tensorrt_batch_limit_is_the_engines(tmp_path, model_copy):
    _engine(model_copy, max_batch=256)
    with pytest.raises(ValueError, match="max_batch_size 1024 exceeds the engine's optimization profile"):
        write_triton_repository(tmp_path, "gen", model_copy, kind="tensorrt")
    assert not (tmp_path / "gen").exists()


def test_tensorrt_engines_must_take_batches_of_one(tmp_path, model_copy):
    _engine(model_copy, max_batch=1024, min_batch=8)
    with pytest.raises(ValueError, match="built for batches of 8 to 1024; .* rebuild it with --min-batch 1"):
        write_triton_repository(tmp_path, "gen", model_copy, kind="tensorrt")
    assert not (tmp_path / "gen").exists()


def test_existing_versions_are_kept_unless_overwrite(tmp_path, onnx_model):
    write_triton_repository(tmp_path, "gen", onnx_model)
    with pytest.raises(FileExistsError, match=r"1 exists: replace it \(--triton-overwrite, overwrite=True\)"):
        write_triton_repository(tmp_path, "gen", onnx_model)
    write_triton_repository(tmp_path, "gen", onnx_model, version=2)
    assert (tmp_path / "gen" / "1" / "model.onnx").is_file() and (tmp_path / "gen" / "2" / "model.onnx").is_file()
    _engine(onnx_model, max_batch=1024)
    write_triton_repository(tmp_path / "r2", "gen", onnx_model)
    write_triton_repository(tmp_path / "r2", "gen", onnx_model, kind="tensorrt", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "r2" / "gen" / "1").iterdir()) == ["model.plan"]  # model.onnx went


def test_versions_share_one_config(tmp_path, onnx_model):
    """Triton serves every version of a model with its one config.pbtxt: a version whose config would
    differ (another kind, batch limit, latent size) is refused while other versions are there."""
    write_triton_repository(tmp_path, "gen", onnx_model, version=2)
    _engine(onnx_model, max_batch=1024)
    before = _tree(tmp_path)
    for kwargs in ({"kind": "tensorrt"}, {"max_batch_size": 32}):
        with pytest.raises(ValueError, match=r"config.pbtxt describes other model files \((platform|max_batch_size)"
                                             r"[a-z_, ]* differ\), and versions 2 of .*use another --triton-name"):
            write_triton_repository(tmp_path, "gen", onnx_model, version=1, **kwargs)
        assert _tree(tmp_path) == before
    write_triton_repository(tmp_path, "gen", onnx_model, version=3)  # the same config: another version is fine
    assert _tree(tmp_path)["gen/3/model.onnx"] == _tree(tmp_path)["gen/2/model.onnx"]


def test_serving_settings_edited_by_hand_are_kept(tmp_path, onnx_model):
    """A deployment's edits to config.pbtxt (here GPU instances to CPU ones) survive a new version and
    the overwrite of a version; only a change of the model files' description rewrites it."""
    config = tmp_path / "gen" / "config.pbtxt"
    write_triton_repository(tmp_path, "gen", onnx_model)
    edited = config.read_text().replace("KIND_GPU", "KIND_CPU")
    config.write_text(edited)
    write_triton_repository(tmp_path, "gen", onnx_model, version=2)
    write_triton_repository(tmp_path, "gen", onnx_model, version=1, overwrite=True)
    assert config.read_text() == edited
    write_triton_repository(tmp_path / "r2", "gen", onnx_model)
    (tmp_path / "r2" / "gen" / "config.pbtxt").write_text(edited)
    write_triton_repository(tmp_path / "r2", "gen", onnx_model, max_batch_size=32, overwrite=True)  # the only one
    assert read_config_pbtxt(tmp_path / "r2" / "gen" / "config.pbtxt")["max_batch_size"] == 32


def _tree(folder):
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in folder.rglob("*")}


def test_a_failed_write_leaves_the_repository_as_it_was(tmp_path, onnx_model, monkeypatch):
    from ganserve.export import triton

    _engine(onnx_model, max_batch=1024)
    write_triton_repository(tmp_path / "repo", "gen", onnx_model)
    before = _tree(tmp_path)
    write = triton.write_bytes

    def full_disk(path, data):
        if path.name == "config.pbtxt":  # the last file: the model file is already replaced
            raise OSError(28, "No space left on device", str(path))
        write(path, data)

    monkeypatch.setattr(triton, "write_bytes", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_triton_repository(tmp_path / "repo", "gen", onnx_model, kind="tensorrt", overwrite=True)
    with pytest.raises(OSError, match="No space left"):  # a new repository: nothing of it is left
        write_triton_repository(tmp_path / "new" / "repo", "gen", onnx_model)
    assert _tree(tmp_path) == before


def test_missing_model_file(tmp_path, model_copy):
    with pytest.raises(FileNotFoundError, match=f"no {ENGINE_NAME} in .*ganserve export --tensorrt"):
        write_triton_repository(tmp_path, "gen", model_copy, kind="tensorrt")


@pytest.mark.parametrize("kwargs,message", [
    ({"kind": "tflite"}, "kind must be one of"),
    ({"name": "../escape"}, "folder name"),
    ({"max_batch_size": 0}, "max_batch_size must be an integer >= 1"),
    ({"version": 0}, "version must be"),
    ({"max_queue_delay_us": -1}, "max_queue_delay_us must be an integer >= 0"),
    ({"preferred_batch_sizes": (64, 2048)}, "preferred_batch_sizes must be batch sizes from 1 to max_batch_size"),
    ({"preferred_batch_sizes": ()}, "preferred_batch_sizes"),
])
def test_bad_arguments(tmp_path, model_copy, kwargs, message):
    args = {"name": "gen", **kwargs}
    with pytest.raises(ValueError, match=message):
        write_triton_repository(tmp_path / "repo", args.pop("name"), model_copy, **args)
    assert not (tmp_path / "repo").exists()


# --- the protobuf text format subset


def test_read_config_pbtxt_handles_triton_style_text(tmp_path):
    path = tmp_path / "config.pbtxt"
    path.write_text('''
        # a comment
        name: "say \\"hi\\" # not a comment"
        max_batch_size: 8
        input [ { name: "a", dims: [ 1, 2 ] }, { name: "b" dims: [3] } ]
        output { name: "x" }
        output { name: "y" }
        parameters: { key: "scale" value: { string_value: "0.5" } }
        optimization { cuda { graphs: true } priority: PRIORITY_MAX }
        ratio: 0.25
        dynamic_batching { }
    ''')
    assert read_config_pbtxt(path) == {
        "name": 'say "hi" # not a comment',
        "max_batch_size": 8,
        "input": [{"name": "a", "dims": [1, 2]}, {"name": "b", "dims": [3]}],
        "output": [{"name": "x"}, {"name": "y"}],
        "parameters": {"key": "scale", "value": {"string_value": "0.5"}},
        "optimization": {"cuda": {"graphs": True}, "priority": "PRIORITY_MAX"},
        "ratio": 0.25,
        "dynamic_batching": {},
    }


@pytest.mark.parametrize("text,message", [
    ("name: ", "unexpected end"),
    ("input [ { name: \"a\" ]", "expected a field name, got ']'"),
    ("a { b: 1", "expected '}'"),
    ("}", "unexpected '}'"),
    ("a: 1 \"b\": 2", "expected a field name"),
])
def test_read_config_pbtxt_refuses_broken_text(tmp_path, text, message):
    path = tmp_path / "config.pbtxt"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_config_pbtxt(path)


def test_format_and_read_round_trip(tmp_path):
    document = {"name": "m", "n": 3, "flag": False, "list": [1, 2], "nested": {"deep": {"s": "a\\b"}},
                "blocks": [{"k": 1}, {"k": 2, "sub": {"x": "y"}}]}
    path = tmp_path / "c.pbtxt"
    path.write_text(format_pbtxt(document))
    assert read_config_pbtxt(path) == document


def test_preferred_batch_sizes_follow_a_small_max_batch(tmp_path, onnx_model):
    write_triton_repository(tmp_path, "small", onnx_model, max_batch_size=128)
    write_triton_repository(tmp_path, "tiny", onnx_model, max_batch_size=16)
    assert read_config_pbtxt(tmp_path / "small" / "config.pbtxt")["dynamic_batching"]["preferred_batch_size"] == [64]
    assert read_config_pbtxt(tmp_path / "tiny" / "config.pbtxt")["dynamic_batching"]["preferred_batch_size"] == [16]
