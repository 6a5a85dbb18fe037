"""Discriminators (one per generator preset) and the DCGAN paper's weight init.

Every discriminator returns one logit per image (the sigmoid lives in the loss).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ganserve.config import GeneratorConfig
from ganserve.torch_model import add_channel_bias, product_applies


def dcgan_init(module: nn.Module) -> None:
    """N(0, 0.02) for conv and linear weights, N(1, 0.02) for batch-norm scales, zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def _lrelu() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True)


class WholeConv(nn.Conv2d):
    """A conv whose kernel covers its whole (unpadded) input, one output pixel: one matrix product.

    Same parameters and result as nn.Conv2d, which runs this case (DCGAN's last D layer) through a
    general convolution, forward and backward two to seven times slower on the CPU
    (bench/bench_layers.py). The product is taken in (k, k, in) order, which a channels-last input and
    weight already are (no copy).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not product_applies(self, x) or x.shape[2:] != self.kernel_size or self.padding != (0, 0):
            return super().forward(x)
        w = self.weight.permute(0, 2, 3, 1).reshape(self.out_channels, -1)
        y = (x.permute(0, 2, 3, 1).reshape(x.shape[0], -1) @ w.t()).view(x.shape[0], self.out_channels, 1, 1)
        return add_channel_bias(y, self.bias)


def dcgan_discriminator(channels: int, size: int, width: int = 64, fast: bool = True) -> nn.Sequential:
    """The DCGAN paper's D (PyTorch's dcgan example): stride-2 4x4 convs, BN after the first, LReLU.

    64 -> 32 -> 16 -> 8 -> 4 -> 1 for 64x64, one block fewer for 32x32; 28 -> 14 -> 7 -> 1 for 28x28.
    With ``fast=False`` the last layer is the stock nn.Conv2d (as the seed scripts build it).
    """
    blocks = {64: 4, 32: 3, 28: 2}
    if size not in blocks:
        raise ValueError(f"the DCGAN discriminator supports 28, 32 or 64 pixels, not {size}")
    layers: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1, bias=False), _lrelu()]
    cin, res = width, size // 2
    for _ in range(blocks[size] - 1):
        layers += [nn.Conv2d(cin, cin * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(cin * 2), _lrelu()]
        cin, res = cin * 2, res // 2
    layers += [(WholeConv if fast else nn.Conv2d)(cin, 1, res, 1, 0, bias=False), nn.Flatten()]
    return nn.Sequential(*layers)


def upconv32_discriminator(channels: int, size: int, width: int = 16) -> nn.Sequential:
    """PyTorch-GAN's DCGAN D: four 3x3 stride-2 blocks (LReLU, Dropout2d 0.25, BN with eps 0.8)."""
    layers: list[nn.Module] = []
    cin = channels
    for i, cout in enumerate([width, width * 2, width * 4, width * 8]):
        layers += [nn.Conv2d(cin, cout, 3, 2, 1), _lrelu(), nn.Dropout2d(0.25)]
        if i > 0:
            layers.append(nn.BatchNorm2d(cout, 0.8))
        cin = cout
    res = -(-size // 16)
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(cin * res * res, 1))


def upconv28_discriminator(channels: int, size: int, width: int = 32) -> nn.Sequential:
    """The TF2 seed's D: 3x3 stride-2 convs 32/64/128 with BN (momentum 0.8) and LReLU, global average pool."""
    layers: list[nn.Module] = []
    cin = channels
    for cout in (width, width * 2, width * 4):
        layers += [nn.Conv2d(cin, cout, 3, 2, 1), nn.BatchNorm2d(cout, eps=1e-3, momentum=0.2), _lrelu()]
        cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 1))


def chollet32_discriminator(channels: int, size: int, width: int = 128) -> nn.Sequential:
    """The Keras book's D: 3x3 conv then three 4x4 stride-2 convs, LReLU, dropout 0.4, dense."""
    act = lambda: nn.LeakyReLU(0.3, inplace=True)  # noqa: E731  (Keras' default alpha)
    layers: list[nn.Module] = [nn.Conv2d(channels, width, 3), act()]
    res = size - 2
    for _ in range(3):
        layers += [nn.Conv2d(width, width, 4, 2), act()]
        res = (res - 4) // 2 + 1
    return nn.Sequential(*layers, nn.Flatten(), nn.Dropout(0.4), nn.Linear(width * res * res, 1))


def mlp28_discriminator(channels: int, size: int, width: int = 512) -> nn.Sequential:
    """The original GAN's D: flatten, Dense 512 / 256 with LReLU 0.2, dense."""
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * size * size, width), _lrelu(),
                         nn.Linear(width, width // 2), _lrelu(), nn.Linear(width // 2, 1))


DISCRIMINATORS: dict[str, Callable[[int, int], nn.Module]] = {
    "dcgan64": dcgan_discriminator,
    "dcgan32": dcgan_discriminator,
    "dcgan28": dcgan_discriminator,
    "upconv32": upconv32_discriminator,
    "upconv28": upconv28_discriminator,
    "chollet32": chollet32_discriminator,
    "mlp28": mlp28_discriminator,
}


def build_discriminator(config: GeneratorConfig, fast: bool = True) -> nn.Module:
    """The discriminator paired with the generator's preset (DCGAN's for custom architectures).

    ``fast=False``: every layer the stock torch.nn module, as the seed scripts build them.
    """
    c, h, w = config.output_shape
    make = DISCRIMINATORS.get(config.preset or "", dcgan_discriminator)
    return make(c, h, fast=fast) if make is dcgan_discriminator else make(c, h)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def recalibrate_batch_norm(net: nn.Module, latent_dim: int, batches: int, batch_size: int,
                           generator: torch.Generator, device: torch.device) -> nn.Module:
    """Recompute BN running statistics as exact averages over fresh latent batches, then eval mode.

    The running averages kept during training lag the weights (and do not belong to EMA weights at
    all); after this, eval-mode samples see the statistics that train-mode batches would.
    """
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return net.eval()
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: the exact mean over the batches below
    net.train()
    for _ in range(batches):
        net(torch.randn(batch_size, latent_dim, generator=generator, device=generator.device).to(device))
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    return net.eval()
