"""The PyTorch module of a `GeneratorConfig` (training, export and the torch backend use it).

This module imports torch; `import ganserve` does not import it.
"""

from __future__ import annotations

from typing import Any

from .config import GeneratorConfig
from .errors import missing_package

try:
    import torch
    from torch import nn
except ImportError as e:  # pragma: no cover - exercised where torch is absent
    raise missing_package("torch", "torch", "the PyTorch generator module") from e


class Reshape(nn.Module):
    """Reshape each sample to `shape` (PyTorch's C-major order)."""

    def __init__(self, shape: list[int]) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


class ProjectTranspose(nn.ConvTranspose2d):
    """A transposed conv applied to a 1x1 input (the DCGAN projection of z): one matrix product.

    Same parameters and result as nn.ConvTranspose2d, which runs this case through a general
    deconvolution three to four and a half times slower on the CPU (bench/bench_layers.py). A
    channels-last weight is already laid out (in, k, k, out): the product then reads it as it is and
    gives a channels-last output, what the next layers of a channels-last network want.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not product_applies(self, x) or x.shape[2:] != (1, 1) or self.padding != (0, 0) \
                or self.output_padding != (0, 0):
            return super().forward(x)
        (n, *_), (kh, kw), w = x.shape, self.kernel_size, self.weight
        if w.is_contiguous():
            y = (x.reshape(n, -1) @ w.reshape(self.in_channels, -1)).view(n, self.out_channels, kh, kw)
        else:
            w = w.permute(0, 2, 3, 1).reshape(self.in_channels, -1)
            y = (x.reshape(n, -1) @ w).view(n, kh, kw, self.out_channels).permute(0, 3, 1, 2)
        return add_channel_bias(y, self.bias)


class FoldTranspose(nn.ConvTranspose2d):
    """A transposed conv to one channel (a grayscale image layer): a matrix product, then `F.fold`
    adds the overlapping kernel windows into place.

    Same parameters and result as nn.ConvTranspose2d, whose CPU deconvolution runs this shape (many
    channels in, one out) slower, forward and backward, channels-last or not; at 3 channels out it
    is the faster one, so RGB layers keep it (bench/bench_layers.py). On CUDA it runs the stock layer.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or not product_applies(self, x):
            return super().forward(x)
        n, c, h, w = x.shape
        size = [(m - 1) * s - 2 * p + k + extra for m, s, p, k, extra in
                zip((h, w), self.stride, self.padding, self.kernel_size, self.output_padding)]
        cols = x.permute(0, 2, 3, 1).reshape(n, h * w, c) @ self.weight.reshape(c, -1)  # (n, h*w, out*k*k)
        y = nn.functional.fold(cols.transpose(1, 2), size, self.kernel_size, padding=self.padding, stride=self.stride)
        return add_channel_bias(y, self.bias)


def product_applies(layer: nn.modules.conv._ConvNd, x: torch.Tensor) -> bool:
    """Whether a layer computed as a matrix product can take `x`: a non-empty batch of images, and no
    dilation or groups (which the products do not implement; the stock layer then runs)."""
    return x.dim() == 4 and x.shape[0] > 0 and layer.groups == 1 and all(d == 1 for d in layer.dilation)


def add_channel_bias(y: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """`y` plus a per-channel bias, in y's dtype (under autocast, as the stock layers give it)."""
    return y if bias is None else y + bias.to(y.dtype).view(1, -1, 1, 1)


def _conv_transpose(spec: dict[str, Any], in_shape: tuple[int, ...], fast: bool) -> nn.Module:
    projection = in_shape[1:] == (1, 1) and spec["padding"] == 0 and spec["output_padding"] == 0
    cls = nn.ConvTranspose2d
    if fast and projection:
        cls = ProjectTranspose
    elif fast and spec["out_channels"] == 1:
        cls = FoldTranspose
    return cls(spec["in_channels"], spec["out_channels"], spec["kernel_size"], spec["stride"], spec["padding"],
               spec["output_padding"], bias=spec["bias"])


def _batch_norm(spec: dict[str, Any], in_shape: tuple[int, ...]) -> nn.Module:
    cls = nn.BatchNorm1d if len(in_shape) == 1 else nn.BatchNorm2d
    return cls(spec["num_features"], eps=spec["eps"], momentum=spec["momentum"])


_MODULES = {
    "linear": lambda s, _: nn.Linear(s["in_features"], s["out_features"], bias=s["bias"]),
    "reshape": lambda s, _: Reshape(s["shape"]),
    "batch_norm": _batch_norm,
    "relu": lambda s, _: nn.ReLU(inplace=True),
    "leaky_relu": lambda s, _: nn.LeakyReLU(s["slope"], inplace=True),
    "tanh": lambda s, _: nn.Tanh(),
    "sigmoid": lambda s, _: nn.Sigmoid(),
    "conv2d": lambda s, _: nn.Conv2d(s["in_channels"], s["out_channels"], s["kernel_size"], s["stride"],
                                     s["padding"], bias=s["bias"]),
    "upsample": lambda s, _: nn.Upsample(scale_factor=s["scale"], mode="nearest"),
    "dropout": lambda s, _: nn.Dropout(s["p"]),
}


class GeneratorNet(nn.Module):
    """z (N, latent_dim) -> images (N, C, H, W); state dict keys are ``layers.{i}.{name}``.

    With ``fast=False`` every layer is the stock torch.nn module (as the seed scripts build them).
    """

    def __init__(self, config: GeneratorConfig, fast: bool = True) -> None:
        super().__init__()
        self.config = config
        shapes = config.layer_shapes()
        self.layers = nn.Sequential(*(
            _conv_transpose(spec, shapes[i], fast) if spec["type"] == "conv_transpose2d"
            else _MODULES[spec["type"]](spec, shapes[i])
            for i, spec in enumerate(config.layers)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(z)


def build_generator(config: GeneratorConfig, fast: bool = True) -> GeneratorNet:
    return GeneratorNet(config, fast)


def export_weights(net: nn.Module) -> dict[str, Any]:
    """float32 NumPy weights of a generator, as the model format stores them (no step counters)."""
    return {k: v.detach().to("cpu", torch.float32).contiguous().numpy()
            for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}


def load_weights(net: nn.Module, weights: dict[str, Any]) -> nn.Module:
    """Load model-format weights into `net` (strict: every tensor must match)."""
    state = {k: torch.as_tensor(v) for k, v in weights.items()}
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"weights do not match the module: missing {missing}, unexpected {unexpected}")
    return net
