"""ganserve.torch_model: the layers it uses in place of stock torch.nn ones compute the same thing."""

from __future__ import annotations

import pytest

import ganserve

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from ganserve.torch_model import FoldTranspose, ProjectTranspose, build_generator  # noqa: E402


def same_forward_and_backward(fast: nn.Module, stock: nn.Module, x: torch.Tensor, channels_last: bool) -> None:
    """Outputs, input gradients and parameter gradients agree in float64 (up to summation order)."""
    fast.load_state_dict(stock.state_dict())
    if channels_last:
        fast, stock = fast.to(memory_format=torch.channels_last), stock.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    outputs, grads = [], []
    for net in (fast, stock):
        xi = x.detach().clone().requires_grad_()
        y = net(xi)
        target = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view(y.shape)  # a different weight per output
        (y * target).sum().backward()
        outputs.append(y)
        grads.append([xi.grad] + [p.grad for p in net.parameters()])
    assert outputs[0].shape == outputs[1].shape
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-10, atol=1e-10)
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    assert outputs[1].abs().max() > 0.1 and all(g.abs().max() > 0 for g in grads[1])  # not vacuous


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
    x = {ProjectTranspose: torch.randn(3, 12, 1, 1), FoldTranspose: torch.randn(3, 12, 5, 5)}
    for cls, args in ((ProjectTranspose, (12, 4, 4, 1, 0)), (FoldTranspose, (12, 1, 4, 2, 1))):
        stock, fast = nn.ConvTranspose2d(*args, bias=True), cls(*args, bias=True)
        fast.load_state_dict(stock.state_dict())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            want, got = stock(x[cls]), fast(x[cls])
        assert got.dtype == want.dtype == torch.bfloat16
        torch.testing.assert_close(got.float(), want.float(), rtol=0.05, atol=0.05)


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
