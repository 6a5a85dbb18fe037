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


def test_recalibrated_batch_norm_holds_the_statistics_train_mode_batches_see():
    """Each batch norm ends with the exact mean over the fresh batches of what it saw in train mode
    (the batch mean, and the batch's unbiased variance), whatever its running statistics were, in
    eval mode with its momentum back."""
    from ganserve.training.networks import recalibrate_batch_norm

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3), nn.BatchNorm1d(3))
    for bn in (net[1], net[4]):
        bn.running_mean.fill_(100.0)
        bn.running_var.fill_(100.0)
        bn.num_batches_tracked.fill_(1000)  # as after training
        bn.weight.data.uniform_(0.5, 2.0)
        bn.bias.data.uniform_(-1.0, 1.0)
    batches, size = 3, 5
    draw = torch.Generator().manual_seed(7)
    latents = [torch.randn(size, 4, generator=draw) for _ in range(batches)]  # what it will draw
    seen = {1: [], 4: []}
    with torch.no_grad():
        for z in latents:  # train mode by hand: each batch normalised by its own biased statistics
            h = net[0](z)
            seen[1].append(h)
            h = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + net[1].eps) * net[1].weight + net[1].bias
            h = net[3](net[2](h))
            seen[4].append(h)

    out = recalibrate_batch_norm(net, 4, batches, size, torch.Generator().manual_seed(7), torch.device("cpu"))
    assert out is net and not net.training
    for i, hs in seen.items():
        torch.testing.assert_close(net[i].running_mean, torch.stack([h.mean(0) for h in hs]).mean(0))
        torch.testing.assert_close(net[i].running_var, torch.stack([h.var(0) for h in hs]).mean(0))
        assert net[i].momentum == 0.1
