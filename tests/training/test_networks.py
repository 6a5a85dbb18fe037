"""training/networks.py: discriminators and the layers they use in place of stock ones."""

from __future__ import annotations

import pytest
from helpers import same_forward_and_backward, same_under_autocast

import ganserve

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from ganserve.training.networks import WholeConv, build_discriminator  # noqa: E402


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("out_channels, bias, size", [(1, False, 7), (3, True, 7), (2, False, 9)])
def test_whole_conv_is_the_stock_layer(channels_last, out_channels, bias, size):
    torch.manual_seed(0)
    stock = nn.Conv2d(6, out_channels, 7, bias=bias).double()
    x = torch.randn(4, 6, size, size, dtype=torch.float64)  # 9: larger than the kernel, the stock path
    same_forward_and_backward(WholeConv(6, out_channels, 7, bias=bias).double(), stock, x, channels_last)


def test_whole_conv_under_autocast_and_where_the_product_does_not_apply():
    stock, fast = nn.Conv2d(6, 2, 5, bias=True), WholeConv(6, 2, 5, bias=True)
    same_under_autocast(fast, stock, torch.randn(3, 6, 5, 5))  # (fast now holds stock's weights)
    with torch.no_grad():
        for inputs in (torch.randn(0, 6, 5, 5), torch.randn(6, 5, 5)):  # no images; unbatched
            torch.testing.assert_close(fast(inputs), stock(inputs))
        dilated = WholeConv(6, 2, 3, dilation=2)  # a 3x3 input fits the kernel's size, not its reach (5x5)
        with pytest.raises(RuntimeError):
            dilated(torch.randn(2, 6, 3, 3))  # as the stock layer: no silent product


def test_whole_conv_only_in_the_fast_dcgan_discriminator():
    def kinds(preset, fast):
        return {type(m) for m in build_discriminator(ganserve.create_config(preset), fast=fast).modules()}

    assert WholeConv in kinds("dcgan28", True) and WholeConv in kinds("dcgan64", True)
    assert WholeConv not in kinds("dcgan28", False)  # as the seed scripts build it
    assert WholeConv not in kinds("upconv32", True)  # its last layer is a linear one already
