"""training/networks.py: discriminators and the layers they use in place of stock ones."""

from __future__ import annotations

import pytest

import ganserve

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from ganserve.training.networks import WholeConv, build_discriminator  # noqa: E402


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("out_channels, bias, size", [(1, False, 7), (3, True, 7), (2, False, 9)])
def test_whole_conv_is_the_stock_layer(channels_last, out_channels, bias, size):
    torch.manual_seed(0)
    stock = nn.Conv2d(6, out_channels, 7, bias=bias).double()
    fast = WholeConv(6, out_channels, 7, bias=bias).double()
    fast.load_state_dict(stock.state_dict())
    x = torch.randn(4, 6, size, size, dtype=torch.float64)  # 9: larger than the kernel, the stock path
    if channels_last:
        fast, stock = fast.to(memory_format=torch.channels_last), stock.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    results = []
    for net in (fast, stock):
        xi = x.detach().clone().requires_grad_()
        y = net(xi)
        (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view(y.shape)).sum().backward()
        results.append([y, xi.grad] + [p.grad for p in net.parameters()])
    assert results[0][0].shape == results[1][0].shape
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    assert all(t.abs().max() > 0 for t in results[1])


def test_whole_conv_under_autocast_and_where_the_product_does_not_apply():
    stock, fast = nn.Conv2d(6, 2, 5, bias=True), WholeConv(6, 2, 5, bias=True)
    fast.load_state_dict(stock.state_dict())
    x = torch.randn(3, 6, 5, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want, got = stock(x), fast(x)
    assert got.dtype == want.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want.float(), rtol=0.05, atol=0.05)
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
