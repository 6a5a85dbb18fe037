"""The model format: a directory of config.json and generator.safetensors, validated on load."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

import ganserve
from ganserve.errors import ModelFormatError
from ganserve.model_io import (CONFIG_NAME, EXPORT_NAMES, FORMAT_VERSION, SHIPPED_DIR, WEIGHTS_NAME, load_model,
                               save_model)


def test_round_trip(tiny_model_dir, tiny_config):
    model = load_model(tiny_model_dir)
    assert model.config == tiny_config
    assert model.metadata == {"purpose": "tests", "weights_sha256": model.weights_sha256}
    assert set(model.weights) == set(tiny_config.param_shapes())
    assert len(model.model_hash) == 64


def test_config_json_is_sorted_indented_and_versioned(tiny_model_dir):
    text = (tiny_model_dir / CONFIG_NAME).read_text()
    data = json.loads(text)
    assert data["format_version"] == FORMAT_VERSION
    assert data["ganserve_version"] == ganserve.__version__
    assert data["architecture"]["value_range"] == [-1.0, 1.0]
    assert text == json.dumps(data, indent=2, sort_keys=True) + "\n"


def test_model_hash_changes_with_the_weights(model_copy):
    before = load_model(model_copy)
    weights = dict(before.weights)
    key = next(iter(weights))
    weights[key] = weights[key] + 1
    save_model(model_copy, before.config, weights)
    assert load_model(model_copy).model_hash != before.model_hash


def test_a_save_stopped_between_its_two_files_is_refused(model_copy, monkeypatch):
    import ganserve.model_io as model_io

    old = load_model(model_copy)
    weights = {k: v * 0.5 if k.endswith("weight") else v for k, v in old.weights.items()}

    def killed(path, data):
        raise KeyboardInterrupt  # after the weights are in place, before config.json is

    monkeypatch.setattr(model_io, "write_bytes", killed)
    with pytest.raises(KeyboardInterrupt):
        save_model(model_copy, old.config, weights, {"purpose": "new"})
    with pytest.raises(ModelFormatError, match=r"generator.safetensors is not the file config.json was written "
                                               r"with .*different saves; export it again from its checkpoint"):
        load_model(model_copy)


def test_the_recorded_weights_hash(model_copy):
    model = load_model(model_copy)
    save_model(model_copy, model.config, model.weights, {"weights_sha256": "stale, from the source's metadata"})
    assert load_model(model_copy).metadata["weights_sha256"] == model.weights_sha256  # set by save_model

    document = json.loads((model_copy / CONFIG_NAME).read_text())
    del document["metadata"]["weights_sha256"]  # as saved before the hash was recorded: not checked
    (model_copy / CONFIG_NAME).write_text(json.dumps(document))
    assert load_model(model_copy).model_hash == model.model_hash
    document["metadata"]["weights_sha256"] = 7
    (model_copy / CONFIG_NAME).write_text(json.dumps(document))
    with pytest.raises(ModelFormatError, match="metadata.weights_sha256 has 7"):
        load_model(model_copy)


def test_shipped_model_is_the_default():
    assert "fashion-mnist" in ganserve.list_shipped_models()
    model = load_model()
    assert model.config.output_shape == (1, 28, 28)
    assert model.metadata["training"]["data"] == "fashion-mnist"


def test_the_default_is_the_shipped_model_whatever_the_current_folder_holds(tmp_path, monkeypatch):
    """A folder named like the shipped model (a dataset, a `generate --out`) does not hide it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fashion-mnist").mkdir()
    assert load_model().path == SHIPPED_DIR / "fashion-mnist"
    with pytest.raises(ValueError, match="'fashion-mnist' names both a shipped model and a folder here; "
                                         "write ./fashion-mnist for the folder, or give no model"):
        load_model("fashion-mnist")
    with pytest.raises(ModelFormatError, match="config.json: missing"):  # spelled as a path: the folder
        load_model("./fashion-mnist")
    with pytest.raises(ModelFormatError, match="config.json: missing"):  # a Path is always a folder
        load_model(Path("fashion-mnist"))


def test_missing_path():
    with pytest.raises(FileNotFoundError, match="no model directory at 'nowhere'.*fashion-mnist"):
        load_model("nowhere")


def test_a_file_is_not_a_model(tmp_path):
    f = tmp_path / "model.bin"
    f.write_bytes(b"x")
    with pytest.raises(ModelFormatError, match="must be a directory"):
        load_model(f)


def _corrupt_config(model_copy, mutate):
    path = model_copy / CONFIG_NAME
    data = json.loads(path.read_text())
    mutate(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d.update(format_version=FORMAT_VERSION + 1), "newer ganserve"),
    (lambda d: d.pop("format_version"), "format_version' is missing"),
    (lambda d: d.update(extra=1), "unknown top-level key"),
    (lambda d: d["architecture"]["layers"].append({"type": "swish"}), "unknown layer type 'swish'"),
    (lambda d: d["architecture"]["layers"][1].update(out_channels=7), "invalid architecture"),
    (lambda d: d.update(metadata=[]), "'metadata' must be a JSON object"),
    (lambda d: d["architecture"].update(output_shape=5), "output_shape must be"),
    (lambda d: d["architecture"].update(value_range=[0, 1, 2]), "value_range must be"),
    (lambda d: d["architecture"]["layers"][1].update(type=["relu"]), "unknown layer type"),
])
def test_bad_config(model_copy, mutate, message):
    _corrupt_config(model_copy, mutate)
    with pytest.raises(ModelFormatError, match=message) as info:
        load_model(model_copy)
    assert "config.json" in str(info.value)


def test_invalid_json(model_copy):
    (model_copy / CONFIG_NAME).write_text("{not json")
    with pytest.raises(ModelFormatError, match="config.json: not valid JSON"):
        load_model(model_copy)


@pytest.mark.parametrize("text,message", [
    ('{"format_version": 1, "metadata": ' + "[" * 100_000 + "]" * 100_000 + "}", "JSON nested too deeply"),
    ('{"format_version": 1, "metadata": {"n": 1' + "0" * 5000 + "}}", "holds an integer with too many digits"),
])
def test_unreadable_json(model_copy, text, message):
    (model_copy / CONFIG_NAME).write_text(text)
    with pytest.raises(ModelFormatError, match=f"config.json: {message}"):
        load_model(model_copy)


@pytest.mark.parametrize("name", [CONFIG_NAME, WEIGHTS_NAME])
@pytest.mark.parametrize("make,message", [
    (lambda f: f.mkdir(), "a directory, not a file"),
    (lambda f: f.symlink_to("/dev/zero"), "not a regular file"),
    (lambda f: f.symlink_to(f), "cannot be read"),  # a symbolic link loop
    (lambda f: f.symlink_to(f.parent / "nowhere"), "a symbolic link to .*nowhere, which does not exist"),
], ids=["directory", "device", "link-loop", "dangling-link"])
def test_not_a_regular_file(model_copy, name, make, message):
    (model_copy / name).unlink()
    make(model_copy / name)
    with pytest.raises(ModelFormatError, match=f"{name}: {message}"):
        load_model(model_copy)


def test_a_path_is_read_as_a_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no folder called fashion-mnist here
    with pytest.raises(FileNotFoundError, match="no model directory at 'fashion-mnist'; .*pass the name as a str"):
        load_model(Path("fashion-mnist"))
    assert load_model("fashion-mnist").path.parent.name == "models"  # the name as a str is the shipped model


def _rewrite_weights(model_copy, change):
    model = load_model(model_copy)
    weights = dict(model.weights)
    change(weights)
    save_file(weights, str(model_copy / WEIGHTS_NAME))


@pytest.mark.parametrize("change,message", [
    (lambda w: w.pop("layers.1.weight"), r"missing \['layers.1.weight'\]"),
    (lambda w: w.update({"layers.99.weight": np.zeros(2, np.float32)}), r"unexpected \['layers.99.weight'\]"),
    (lambda w: w.update({"layers.1.weight": np.zeros((2, 2), np.float32)}), "has shape"),
    (lambda w: w.update({"layers.2.weight": np.full(w["layers.2.weight"].shape, np.nan, np.float32)}), "NaN"),
    (lambda w: w.update({"layers.2.running_var": -w["layers.2.running_var"]}), "negative variances"),
    (lambda w: w.update({"layers.2.bias": w["layers.2.bias"].astype(np.float64)}), "dtype float64"),
])
def test_bad_weights(model_copy, change, message):
    _rewrite_weights(model_copy, change)
    with pytest.raises(ModelFormatError, match=message) as info:
        load_model(model_copy)
    assert WEIGHTS_NAME in str(info.value)


@pytest.mark.parametrize("content", [
    b"",
    b"\x00" * 7,
    pickle.dumps({"layers.1.weight": [1.0, 2.0]}),
    b"PK\x03\x04 a zip, as torch.save writes",
])
def test_not_safetensors(model_copy, content):
    (model_copy / WEIGHTS_NAME).write_bytes(content)
    with pytest.raises(ModelFormatError, match="not a valid safetensors file"):
        load_model(model_copy)


def test_truncated_safetensors(model_copy):
    data = (model_copy / WEIGHTS_NAME).read_bytes()
    (model_copy / WEIGHTS_NAME).write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFormatError, match="not a valid safetensors file"):
        load_model(model_copy)


def test_missing_weights_file(model_copy):
    (model_copy / WEIGHTS_NAME).unlink()
    with pytest.raises(ModelFormatError, match="generator.safetensors: missing"):
        load_model(model_copy)


def test_save_refuses_bad_weights_before_writing(tmp_path, tiny_config):
    with pytest.raises(ModelFormatError, match="missing"):
        save_model(tmp_path / "out", tiny_config, {})
    assert not (tmp_path / "out").exists()


def test_save_leaves_no_temporary_files(tmp_path, tiny_config):
    from helpers import random_weights

    save_model(tmp_path / "m", tiny_config, random_weights(tiny_config))
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]


def test_new_weights_drop_stale_exports(model_copy):
    model = load_model(model_copy)
    for name in EXPORT_NAMES:
        (model_copy / name).write_bytes(b"exported from the old weights")
    save_model(model_copy, model.config, model.weights, {"note": "same weights, new metadata"})
    assert all((model_copy / name).exists() for name in EXPORT_NAMES)  # still valid
    weights = {k: v * 1.5 if k.endswith("weight") else v for k, v in model.weights.items()}
    save_model(model_copy, model.config, weights)
    assert not any((model_copy / name).exists() for name in EXPORT_NAMES)  # they would no longer match
