"""Named generator architectures: the networks of the DCGAN paper and of the project's seed articles.

Each preset is a function ``(channels, latent_dim, width) -> GeneratorConfig`` registered under its
name. ``create_config("dcgan64", channels=3)`` builds one; ``list_presets()`` lists them.
"""

from __future__ import annotations

from typing import Callable

from .config import GeneratorConfig, layer

_PRESETS: dict[str, Callable[..., GeneratorConfig]] = {}
_DEFAULTS: dict[str, dict[str, int]] = {}


def register_preset(name: str, **defaults: int):
    """Register a preset function under `name`, with its default channels/latent_dim/width."""

    def wrap(fn: Callable[..., GeneratorConfig]) -> Callable[..., GeneratorConfig]:
        _PRESETS[name] = fn
        _DEFAULTS[name] = defaults
        return fn

    return wrap


def list_presets() -> list[str]:
    return sorted(_PRESETS)


def preset_defaults(name: str) -> dict[str, int]:
    _check_name(name)
    return dict(_DEFAULTS[name])


def create_config(name: str, *, channels: int | None = None, latent_dim: int | None = None,
                  width: int | None = None) -> GeneratorConfig:
    """Build the config of preset `name`.

    Args:
        name: a preset name from `list_presets()`.
        channels: image channels, 1 or 3 (default: the preset's).
        latent_dim: size of z (default: the preset's).
        width: base number of feature maps, e.g. ngf of the DCGAN paper (default: the preset's).
    """
    _check_name(name)
    args = dict(_DEFAULTS[name])
    for key, value in (("channels", channels), ("latent_dim", latent_dim), ("width", width)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{key} must be a positive int, got {value!r}")
        args[key] = value
    if args["channels"] not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {args['channels']}")
    config = _PRESETS[name](**args)
    return GeneratorConfig(config.latent_dim, config.output_shape, config.layers, config.value_range, name)


def _check_name(name: str) -> None:
    if name not in _PRESETS:
        raise ValueError(f"unknown preset {name!r}; available presets: {', '.join(list_presets())}")


def _config(latent_dim: int, channels: int, size: int, layers: list[dict]) -> GeneratorConfig:
    return GeneratorConfig(latent_dim, (channels, size, size), tuple(layers))


def _up_block(cin: int, cout: int, kernel: int = 4, stride: int = 2, padding: int = 1) -> list[dict]:
    """ConvTranspose -> BatchNorm -> ReLU, the DCGAN generator block (no conv bias before BN)."""
    return [
        layer("conv_transpose2d", in_channels=cin, out_channels=cout, kernel_size=kernel, stride=stride,
              padding=padding, bias=False),
        layer("batch_norm", num_features=cout),
        layer("relu"),
    ]


def _dcgan(latent_dim: int, channels: int, widths: list[int], first_kernel: int) -> list[dict]:
    """A DCGAN stack: project the 1x1 latent to `first_kernel`^2, then double the size per block."""
    layers = [layer("reshape", shape=[latent_dim, 1, 1])]
    layers += _up_block(latent_dim, widths[0], kernel=first_kernel, stride=1, padding=0)
    for cin, cout in zip(widths, widths[1:]):
        layers += _up_block(cin, cout)
    layers += [
        layer("conv_transpose2d", in_channels=widths[-1], out_channels=channels, kernel_size=4, stride=2,
              padding=1, bias=False),
        layer("tanh"),
    ]
    return layers


@register_preset("dcgan64", channels=3, latent_dim=100, width=64)
def dcgan64(channels: int, latent_dim: int, width: int) -> GeneratorConfig:
    """The DCGAN paper's generator as in PyTorch's dcgan example: 1 -> 4 -> 8 -> 16 -> 32 -> 64."""
    widths = [width * 8, width * 4, width * 2, width]
    return _config(latent_dim, channels, 64, _dcgan(latent_dim, channels, widths, first_kernel=4))


@register_preset("dcgan32", channels=3, latent_dim=100, width=64)
def dcgan32(channels: int, latent_dim: int, width: int) -> GeneratorConfig:
    """The same family ending at 32x32: 1 -> 4 -> 8 -> 16 -> 32."""
    widths = [width * 4, width * 2, width]
    return _config(latent_dim, channels, 32, _dcgan(latent_dim, channels, widths, first_kernel=4))


@register_preset("dcgan28", channels=1, latent_dim=100, width=64)
def dcgan28(channels: int, latent_dim: int, width: int) -> GeneratorConfig:
    """The same family for 28x28 (MNIST-sized) images: project to 7x7, then 7 -> 14 -> 28."""
    widths = [width * 4, width * 2]
    return _config(latent_dim, channels, 28, _dcgan(latent_dim, channels, widths, first_kernel=7))


@register_preset("upconv32", channels=1, latent_dim=100, width=128)
def upconv32(channels: int, latent_dim: int, width: int) -> GeneratorConfig:
    """PyTorch-GAN's DCGAN: Linear to 8x8, then nearest-upsample + 3x3 conv blocks; 32x32.

    The seed code passes 0.8 as BatchNorm2d's second positional argument, which PyTorch reads as
    eps (Keras' momentum=0.8 carried over by mistake); the preset keeps eps=0.8 to match it.
    """
    init = 8
    return _config(latent_dim, channels, 32, [
        layer("linear", in_features=latent_dim, out_features=width * init * init),
        layer("reshape", shape=[width, init, init]),
        layer("batch_norm", num_features=width),
        layer("upsample", scale=2),
        layer("conv2d", in_channels=width, out_channels=width, kernel_size=3, padding=1),
        layer("batch_norm", num_features=width, eps=0.8),
        layer("leaky_relu", slope=0.2),
        layer("upsample", scale=2),
        layer("conv2d", in_channels=width, out_channels=width // 2, kernel_size=3, padding=1),
        layer("batch_norm", num_features=width // 2, eps=0.8),
        layer("leaky_relu", slope=0.2),
        layer("conv2d", in_channels=width // 2, out_channels=channels, kernel_size=3, padding=1),
        layer("tanh"),
    ])


@register_preset("upconv28", channels=1, latent_dim=100, width=64)
def upconv28(channels: int, latent_dim: int, width: int) -> GeneratorConfig:
    """The TensorFlow 2 DCGAN of the seeds: Dense 1568 -> 7x7x32, conv/BN/ReLU/UpSampling twice.

    Keras' BatchNormalization(momentum=0.8) keeps 80% of the old statistic, which is PyTorch's
    momentum=0.2; its epsilon defaults to 1e-3.
    """
    bn = dict(eps=1e-3, momentum=0.2)
    base = width // 2  # 32 channels at 7x7 for the seed's width of 64
    return _config(latent_dim, channels, 28, [
        layer("linear", in_features=latent_dim, out_features=base * 7 * 7),
        layer("relu"),
        layer("reshape", shape=[base, 7, 7]),
        layer("conv2d", in_channels=base, out_channels=width, kernel_size=3, padding=1),
        layer("batch_norm", num_features=width, **bn),
        layer("relu"),
        layer("upsample", scale=2),
        layer("conv2d", in_channels=width, out_channels=width * 2, kernel_size=3, padding=1),
        layer("batch_norm", num_features=width * 2, **bn),
        layer("relu"),
        layer("upsample", scale=2),
        layer("conv2d", in_channels=width * 2, out_channels=width, kernel_size=3, padding=1),
        layer("batch_norm", num_features=width, **bn),
        layer("relu"),
        layer("conv2d", in_channels=width, out_channels=channels, kernel_size=3, padding=1),
        layer("tanh"),
    ])


@register_preset("chollet32", channels=3, latent_dim=32, width=128)
def chollet32(channels: int, latent_dim: int, width: int) -> GeneratorConfig:
    """The CIFAR-10 "frog" generator of Deep Learning with Python (8.5), 32x32x3.

    LeakyReLU uses Keras' default alpha of 0.3, as the book's `layers.LeakyReLU()` does.
    """
    wide = width * 2

    def conv(cin: int, cout: int, k: int) -> dict:
        return layer("conv2d", in_channels=cin, out_channels=cout, kernel_size=k, padding=k // 2)

    act = layer("leaky_relu", slope=0.3)
    return _config(latent_dim, channels, 32, [
        layer("linear", in_features=latent_dim, out_features=width * 16 * 16), act,
        layer("reshape", shape=[width, 16, 16]),
        conv(width, wide, 5), act,
        layer("conv_transpose2d", in_channels=wide, out_channels=wide, kernel_size=4, stride=2, padding=1), act,
        conv(wide, wide, 5), act,
        conv(wide, wide, 5), act,
        conv(wide, channels, 7),
        layer("tanh"),
    ])


@register_preset("mlp28", channels=1, latent_dim=100, width=256)
def mlp28(channels: int, latent_dim: int, width: int) -> GeneratorConfig:
    """The original fully connected GAN of the seeds: Dense 256/512/1024, LeakyReLU 0.2 then BN.

    Keras' BatchNormalization(momentum=0.8) is PyTorch's momentum=0.2, with Keras' eps of 1e-3.
    """
    layers: list[dict] = []
    sizes = [latent_dim, width, width * 2, width * 4]
    for fin, fout in zip(sizes, sizes[1:]):
        layers += [
            layer("linear", in_features=fin, out_features=fout),
            layer("leaky_relu", slope=0.2),
            layer("batch_norm", num_features=fout, eps=1e-3, momentum=0.2),
        ]
    layers += [
        layer("linear", in_features=sizes[-1], out_features=channels * 28 * 28),
        layer("tanh"),
        layer("reshape", shape=[channels, 28, 28]),
    ]
    return _config(latent_dim, channels, 28, layers)
