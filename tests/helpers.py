"""Shared test helpers: random weights with non-trivial batch-norm statistics."""

from __future__ import annotations

import math

import numpy as np

from ganserve.config import GeneratorConfig


def random_weights(config: GeneratorConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Weights scaled so activations stay O(1), and batch-norm statistics far from identity."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, shape in config.param_shapes().items():
        name = key.rsplit(".", 1)[1]
        if name == "weight" and len(shape) > 1:
            fan_in = math.prod(shape[1:]) if "conv_transpose" not in _layer_type(config, key) else \
                shape[0] * shape[2] * shape[3] // 4
            value = rng.normal(0, 1 / math.sqrt(max(fan_in, 1)), shape)
        elif name == "weight":  # batch-norm gamma
            value = rng.uniform(0.5, 1.5, shape)
        elif name == "bias":
            value = rng.normal(0, 0.2, shape)
        elif name == "running_mean":
            value = rng.normal(0, 0.5, shape)
        else:  # running_var
            value = rng.uniform(0.5, 2.0, shape)
        out[key] = value.astype(np.float32)
    return out


def _layer_type(config: GeneratorConfig, key: str) -> str:
    return config.layers[int(key.split(".")[1])]["type"]


def same_forward_and_backward(fast, stock, x, channels_last: bool) -> None:
    """A layer that stands in for a stock torch.nn one: outputs, input gradients and parameter gradients
    agree in float64 (up to summation order), in the given memory layout. Needs torch."""
    import torch

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


def same_under_autocast(fast, stock, x) -> None:
    """Under CPU bf16 autocast the stand-in gives the stock layer's dtype and, to bf16 precision, its values."""
    import torch

    fast.load_state_dict(stock.state_dict())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want, got = stock(x), fast(x)
    assert got.dtype == want.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want.float(), rtol=0.05, atol=0.05)
