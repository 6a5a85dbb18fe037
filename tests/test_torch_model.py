"""ganserve.torch_model: the layers it uses in place of stock torch.nn ones compute the same thing."""

from __future__ import annotations

import pytest
from helpers import same_forward_and_backward, same_under_autocast

import ganserve

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from ganserve.torch_model import FoldTranspose, ProjectTranspose, build_generator  # noqa: E402


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_project_transpose_is_the_stock_layer(channels_last, bias):
    torch.manual_seed(0)
    args = (12, 5, 4, 1, 0, 0)  # in, out, kernel, stride, padding, output_padding
    stock = nn.ConvTranspose2d(*args, bias=bias).double()
    same_forward_and_backward(ProjectTranspose(*args, bias=bias).double(), stock,
                              torch.randn(3, 12, 1, 1, dtype=torch.float64), channels_last)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("kernel, stride, padding, output_padding, bias", [
    (4, 2, 1, 0, False),  # DCGAN's image layer
    (4, 2, 1, 1, True),
    (5, 3, 2, 2, True),
    (3, 1, 0, 0, False),
    (4, 2, 0, 0, True),
])
def test_fold_transpose_is_the_stock_layer(channels_last, kernel, stride, padding, output_padding, bias):
    torch.manual_seed(1)
    args = (6, 1, kernel, stride, padding, output_padding)
    stock = nn.ConvTranspose2d(*args, bias=bias).double()
    same_forward_and_backward(FoldTranspose(*args, bias=bias).double(), stock,
                              torch.randn(2, 6, 5, 7, dtype=torch.float64), channels_last)


def test_the_fast_generator_uses_them_where_measured_faster():
    def kinds(preset, fast, **kw):
        return [type(m) for m in build_generator(ganserve.create_config(preset, **kw), fast=fast).layers
                if isinstance(m, nn.ConvTranspose2d)]

    assert kinds("dcgan28", True, width=8) == [ProjectTranspose, nn.ConvTranspose2d, FoldTranspose]
    assert kinds("dcgan64", True, width=8) == [ProjectTranspose] + [nn.ConvTranspose2d] * 4  # RGB: stock
    assert kinds("dcgan64", True, width=8, channels=1)[-1] is FoldTranspose
    assert set(kinds("dcgan28", False, width=8)) == {nn.ConvTranspose2d}  # as the seed scripts build it


def test_under_autocast_they_give_the_stock_dtype():
    same_under_autocast(ProjectTranspose(12, 4, 4, bias=True), nn.ConvTranspose2d(12, 4, 4, bias=True),
                        torch.randn(3, 12, 1, 1))
    same_under_autocast(FoldTranspose(12, 1, 4, 2, 1, bias=True), nn.ConvTranspose2d(12, 1, 4, 2, 1, bias=True),
                        torch.randn(3, 12, 5, 5))


@pytest.mark.parametrize("cls, args, x", [
    (ProjectTranspose, dict(in_channels=12, out_channels=4, kernel_size=4), torch.randn(0, 12, 1, 1)),  # no images
    (ProjectTranspose, dict(in_channels=12, out_channels=4, kernel_size=4, padding=1), torch.randn(2, 12, 1, 1)),
    (ProjectTranspose, dict(in_channels=12, out_channels=4, kernel_size=(3, 5)), torch.randn(2, 12, 1, 1)),
    (FoldTranspose, dict(in_channels=6, out_channels=1, kernel_size=4, stride=2, padding=1), torch.randn(0, 6, 5, 5)),
    (FoldTranspose, dict(in_channels=6, out_channels=1, kernel_size=3, stride=2, dilation=2), torch.randn(2, 6, 5, 5)),
    (FoldTranspose, dict(in_channels=6, out_channels=1, kernel_size=3, stride=2), torch.randn(6, 5, 5)),  # unbatched
])
def test_what_the_products_do_not_cover_runs_the_stock_layer(cls, args, x):
    stock, fast = nn.ConvTranspose2d(**args), cls(**args)
    fast.load_state_dict(stock.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fast(x), stock(x))
