"""The NumPy reference against PyTorch modules built from the same config (the oracle of the oracle)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import random_weights

import ganserve
from ganserve.backends.numpy_backend import NumpyBackend
from ganserve.config import GeneratorConfig, layer
from ganserve.fold import fold_batch_norm
from ganserve.model_io import Model

torch = pytest.importorskip("torch")
from ganserve.torch_model import build_generator, load_weights  # noqa: E402


def torch_reference(config, weights, z, fast=True):
    net = load_weights(build_generator(config, fast=fast), weights).eval()
    with torch.no_grad():
        return net(torch.from_numpy(z)).numpy()


def numpy_output(config, weights, z, **options):
    return NumpyBackend(Model(config, weights, {}), **options).run(z)


@pytest.mark.parametrize("preset", ganserve.list_presets())
def test_every_preset_matches_torch(preset):
    config = ganserve.create_config(preset)  # full size: the exact networks of the seeds
    weights = random_weights(config, seed=3)
    z = ganserve.latents.make_latents(6, config.latent_dim, seed=1)
    got, want = numpy_output(config, weights, z), torch_reference(config, weights, z)
    assert np.abs(got - want).max() <= 1e-4
    assert want.std() > 0.05  # the check is not vacuous: outputs are far from saturated


def test_fast_torch_modules_equal_stock_ones():
    config = ganserve.create_config("dcgan28", width=8)
    weights = random_weights(config, seed=4)
    z = ganserve.latents.make_latents(5, config.latent_dim)
    np.testing.assert_allclose(torch_reference(config, weights, z, fast=True),
                               torch_reference(config, weights, z, fast=False), atol=1e-6)


def _custom(layers, latent=12, shape=(3, 8, 8)):
    return GeneratorConfig(latent, shape, tuple(layers))


CUSTOM = {
    # batch norm on z (folded forward into the linear), and after an upsample before a padded conv
    # (no neighbour can absorb it: it stays a per-channel scale and shift)
    "unfoldable_batch_norm": _custom([
        layer("batch_norm", num_features=12), layer("linear", in_features=12, out_features=4 * 16),
        layer("reshape", shape=[4, 4, 4]), layer("upsample", scale=2), layer("batch_norm", num_features=4),
        layer("conv2d", in_channels=4, out_channels=3, kernel_size=3, padding=1), layer("sigmoid")]),
    # batch norm folded forward into an unpadded conv; dropout; strided conv; output_padding
    "forward_fold_and_strides": _custom([
        layer("linear", in_features=12, out_features=6 * 9 * 9), layer("leaky_relu", slope=0.1),
        layer("reshape", shape=[6, 9, 9]), layer("batch_norm", num_features=6),
        layer("conv2d", in_channels=6, out_channels=5, kernel_size=3, stride=2),  # 9 -> 4
        layer("dropout", p=0.3), layer("relu"),
        layer("conv_transpose2d", in_channels=5, out_channels=3, kernel_size=3, stride=2, padding=1,
              output_padding=1),  # 4 -> 8
        layer("leaky_relu", slope=1.5), layer("tanh")]),
    # odd kernels and strides for the col2im plan (some output phases get no full-cover tap)
    "odd_transposed": _custom([
        layer("reshape", shape=[12, 1, 1]),
        layer("conv_transpose2d", in_channels=12, out_channels=4, kernel_size=3, stride=1),  # 1 -> 3
        layer("conv_transpose2d", in_channels=4, out_channels=3, kernel_size=2, stride=3, padding=0,
              output_padding=2, bias=False),  # 3 -> 10
        layer("conv2d", in_channels=3, out_channels=3, kernel_size=3), layer("tanh")], shape=(3, 8, 8)),
    # upsampling a 1x1 map, and by 1, then ops that may work in place on their input
    "upsample_one_pixel": _custom([
        layer("reshape", shape=[12, 1, 1]), layer("upsample", scale=4), layer("relu"),
        layer("upsample", scale=1), layer("leaky_relu", slope=0.2), layer("upsample", scale=2),
        layer("conv2d", in_channels=12, out_channels=3, kernel_size=3, padding=1), layer("tanh")]),
}


@pytest.mark.parametrize("name", sorted(CUSTOM))
def test_custom_architectures_match_torch(name):
    config = CUSTOM[name]
    weights = random_weights(config, seed=5)
    z = ganserve.latents.make_latents(7, config.latent_dim, seed=2)
    assert np.abs(numpy_output(config, weights, z) - torch_reference(config, weights, z)).max() <= 1e-4


def test_folding_removes_foldable_batch_norms_only():
    for preset in ganserve.list_presets():
        folded, _ = fold_batch_norm(ganserve.create_config(preset), random_weights(ganserve.create_config(preset)))
        assert not any(spec["type"] == "batch_norm" for spec in folded.layers), preset
    folded, _ = fold_batch_norm(CUSTOM["unfoldable_batch_norm"], random_weights(CUSTOM["unfoldable_batch_norm"]))
    assert [s["type"] for s in folded.layers] == ["linear", "reshape", "upsample", "batch_norm", "conv2d", "sigmoid"]
    folded, _ = fold_batch_norm(CUSTOM["forward_fold_and_strides"], random_weights(CUSTOM["forward_fold_and_strides"]))
    assert not any(s["type"] in ("batch_norm", "dropout") for s in folded.layers)


def test_chunked_threads_match_one_pass():
    config = ganserve.create_config("upconv32", width=16)
    model = Model(config, random_weights(config, seed=6), {})
    z = ganserve.latents.make_latents(9, config.latent_dim)
    one = NumpyBackend(model, threads=1, workspace_mb=1024).run(z)
    many = NumpyBackend(model, threads=2, workspace_mb=1)  # one sample per chunk
    assert many.chunk == 1
    np.testing.assert_allclose(many.run(z), one, atol=1e-5)
    np.testing.assert_array_equal(many.run_uint8(z).shape, (9, 32, 32, 1))


def test_unknown_option():
    config = ganserve.create_config("mlp28", width=8)
    with pytest.raises(TypeError, match="unknown option"):
        NumpyBackend(Model(config, random_weights(config), {}), colour=True)


@pytest.mark.parametrize("options,message", [
    ({"workspace_mb": 1.5}, "numpy backend: workspace_mb must be an int, got float 1.5"),
    ({"workspace_mb": -1}, "numpy backend: workspace_mb must be at least 1, got -1"),
    ({"workspace_mb": 0}, "numpy backend: workspace_mb must be at least 1, got 0"),
    ({"threads": 1.5}, "numpy backend: threads must be an int, got float 1.5"),
    ({"threads": -1}, "numpy backend: threads must be at least 0, got -1"),
    ({"threads": True}, "numpy backend: threads must be an int"),
])
def test_bad_option_values(options, message):
    config = ganserve.create_config("mlp28", width=8)
    with pytest.raises((TypeError, ValueError), match=message):  # TypeError: not an int
        NumpyBackend(Model(config, random_weights(config), {}), **options)
