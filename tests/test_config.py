"""The architecture description: layer validation, shapes, presets, round trips."""

from __future__ import annotations

import pytest

import ganserve
from ganserve.config import LAYER_FIELDS, GeneratorConfig, layer


@pytest.mark.parametrize("preset", ganserve.list_presets())
def test_every_preset_builds_and_round_trips(preset):
    config = ganserve.create_config(preset)
    assert config.preset == preset
    assert config.layer_shapes()[-1] == config.output_shape
    again = GeneratorConfig.from_dict(config.to_dict())
    assert again == config and again.digest() == config.digest()


@pytest.mark.parametrize("preset,shape,params", [
    ("dcgan64", (3, 64, 64), 3_576_704 + 2 * (512 + 256 + 128 + 64)),  # PyTorch's dcgan example (+ BN stats)
    ("chollet32", (3, 32, 32), 6_264_579),  # the Keras book's summary
    ("upconv28", (1, 28, 28), 326_113),  # the TF2 seed's layer sizes
    ("mlp28", (1, 28, 28), 1_493_520),  # the Keras MLP GAN
    ("dcgan28", (1, 28, 28), None),
    ("dcgan32", (3, 32, 32), None),
    ("upconv32", (1, 32, 32), 1_049_985 + 2 * (128 + 128 + 64)),  # PyTorch-GAN's dcgan.py, counted by hand
])
def test_preset_shapes_and_parameter_counts(preset, shape, params):
    config = ganserve.create_config(preset)
    assert config.output_shape == shape
    if params is not None:
        assert config.num_params() == params


def test_preset_arguments():
    config = ganserve.create_config("dcgan32", channels=1, latent_dim=64, width=16)
    assert config.latent_dim == 64 and config.output_shape == (1, 32, 32)
    assert config.layers[1]["out_channels"] == 64  # width * 4


def test_dcgan64_flops_match_the_paper_figure():
    assert abs(2 * ganserve.create_config("dcgan64").macs() / 1e9 - 0.21) < 0.005


@pytest.mark.parametrize("kwargs,message", [
    ({"channels": 2}, "channels must be 1 or 3"),
    ({"latent_dim": 0}, "latent_dim must be a positive int"),
    ({"width": -1}, "width must be a positive int"),
])
def test_bad_preset_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ganserve.create_config("dcgan28", **kwargs)


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ValueError, match="unknown preset 'dcgan128'.*dcgan64"):
        ganserve.create_config("dcgan128")


def test_layer_fills_defaults():
    assert layer("conv2d", in_channels=3, out_channels=8, kernel_size=3) == {
        "type": "conv2d", "in_channels": 3, "out_channels": 8, "kernel_size": 3, "stride": 1, "padding": 0,
        "bias": True}
    assert set(LAYER_FIELDS) >= {"linear", "reshape", "batch_norm", "relu", "leaky_relu", "tanh", "sigmoid",
                                 "conv2d", "conv_transpose2d", "upsample", "dropout"}


@pytest.mark.parametrize("spec,message", [
    ({"type": "conv3d"}, "unknown layer type 'conv3d'"),
    ({"type": "linear", "in_features": 3}, "missing field 'out_features'"),
    ({"type": "linear", "in_features": 3, "out_features": 4, "colour": 1}, r"unknown field\(s\) \['colour'\]"),
    ({"type": "linear", "in_features": 3.5, "out_features": 4}, "must be int"),
    ({"type": "linear", "in_features": True, "out_features": 4}, "must be int"),
    ({"type": "relu", "bias": True}, "unknown field"),
    ({"type": "leaky_relu", "slope": float("nan")}, "must be finite"),
    ({"type": "conv_transpose2d", "in_channels": 1, "out_channels": 1, "kernel_size": 4, "stride": 2,
      "output_padding": 2}, "output_padding must be smaller than stride"),
    ({"type": "dropout", "p": 1.0}, r"p must be in \[0, 1\)"),
    ({"type": "reshape", "shape": [0, 2]}, "positive ints"),
    ("relu", "expected a dict"),
    ({"type": ["relu"]}, r"unknown layer type \['relu'\]"),
])
def test_bad_layers(spec, message):
    with pytest.raises(ValueError, match=message):
        GeneratorConfig(4, (1, 2, 2), (layer("linear", in_features=4, out_features=4), spec))


def test_shape_mismatch_names_the_layer():
    layers = (layer("linear", in_features=8, out_features=16), layer("reshape", shape=[4, 2, 2]),
              layer("conv2d", in_channels=3, out_channels=1, kernel_size=1))
    with pytest.raises(ValueError, match=r"layer 2 \(conv2d\): expects 3 input channels"):
        GeneratorConfig(8, (1, 2, 2), layers)


def test_final_shape_must_match_output_shape():
    layers = (layer("linear", in_features=8, out_features=16), layer("reshape", shape=[1, 4, 4]))
    with pytest.raises(ValueError, match=r"produce shape \(1, 4, 4\), but output_shape is \(1, 2, 2\)"):
        GeneratorConfig(8, (1, 2, 2), layers)


def test_from_dict_rejects_unknown_and_missing_keys():
    data = ganserve.create_config("mlp28").to_dict()
    with pytest.raises(ValueError, match="unknown key"):
        GeneratorConfig.from_dict({**data, "extra": 1})
    with pytest.raises(ValueError, match="missing key"):
        GeneratorConfig.from_dict({k: v for k, v in data.items() if k != "layers"})


@pytest.mark.parametrize("change,message", [
    ({"output_shape": [True, 28, 28]}, "output_shape must be"),  # True == 1 but is not a channel count
    ({"output_shape": 5}, "output_shape must be"),
    ({"output_shape": None}, "output_shape must be"),
    ({"value_range": [0, 1, 2]}, "value_range must be"),
    ({"value_range": 5}, "value_range must be"),
    ({"value_range": None}, "value_range must be"),
    ({"value_range": ["-1", "1"]}, "value_range must be"),
    ({"value_range": [False, True]}, "value_range must be"),
    ({"value_range": [-1, float("inf")]}, "value_range must be"),
    ({"value_range": [float("nan"), 1]}, "value_range must be"),
    ({"value_range": [1, -1]}, "value_range must be"),
    ({"value_range": [0, 1e-300]}, "value_range must be"),  # 255 / (high - low) overflows float32
    ({"value_range": [-1e39, 1]}, "value_range must be"),
    ({"preset": 5}, "preset must be a string"),
    ({"preset": [1]}, "preset must be a string"),
])
def test_bad_architecture_fields(change, message):
    data = {**ganserve.create_config("mlp28").to_dict(), **change}
    with pytest.raises(ValueError, match=message):
        GeneratorConfig.from_dict(data)


def test_architecture_fields_that_are_fine():
    data = ganserve.create_config("mlp28").to_dict()
    config = GeneratorConfig.from_dict({**data, "value_range": [0, 1], "preset": "my-own"})
    assert config.value_range == (0.0, 1.0) and config.preset == "my-own"  # informational, need not be known
    assert GeneratorConfig.from_dict({**data, "preset": None}).preset is None
    del data["value_range"]
    assert GeneratorConfig.from_dict(data).value_range == (-1.0, 1.0)  # the default


def test_configs_are_hashable_and_digest_is_stable():
    a, b = ganserve.create_config("dcgan28"), ganserve.create_config("dcgan28")
    assert hash(a) == hash(b) and a.digest() == b.digest()
    assert a.digest() != ganserve.create_config("dcgan28", width=32).digest()
