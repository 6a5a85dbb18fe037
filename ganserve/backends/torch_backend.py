"""PyTorch backend: eager or `torch.compile`d, on the CPU or a CUDA GPU (FP16 and channels-last there).

It runs the batch-norm-folded network (`ganserve.fold`), as the NumPy and ONNX backends do.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError, missing_package
from ..fold import fold_batch_norm
from ..images import NON_FINITE_OUTPUT
from ..model_io import Model
from ._cuda import cuda_device_count
from .base import Backend


def _torch():
    try:
        import torch
    except ImportError as e:
        raise missing_package("torch", "torch", "the torch backend") from e
    return torch


class TorchBackend(Backend):
    """Options: ``device`` ("auto", "cpu", "cuda"), ``compile`` (torch.compile the network),
    ``precision`` ("fp32", or "fp16" on CUDA), ``channels_last`` (default: on CUDA)."""

    name = "torch"

    @classmethod
    def check_available(cls, device: str = "auto") -> None:
        if importlib.util.find_spec("torch") is None:
            raise missing_package("torch", "torch", "the torch backend")
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
        if device == "cuda" and (cuda_device_count() == 0 or not _torch().cuda.is_available()):
            # the driver is asked first: importing torch takes a second or more
            raise BackendUnavailableError("the torch backend on CUDA needs a CUDA build of torch and a GPU")

    def __init__(self, model: Model, device: str = "auto", compile: bool = False, precision: str = "fp32",
                 channels_last: bool | None = None) -> None:
        super().__init__(model)
        torch = _torch()
        from ..torch_model import build_generator, load_weights

        if precision not in ("fp32", "fp16"):
            raise ValueError(f"precision must be 'fp32' or 'fp16', got {precision!r}")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if precision == "fp16" and device != "cuda":
            raise ValueError("precision='fp16' needs device='cuda' (FP16 on the CPU is slower than FP32)")
        self.torch, self.precision = torch, precision
        self._device = torch.device(device)
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        folded, weights = fold_batch_norm(model.config, model.weights)
        net = load_weights(build_generator(folded), weights).eval()
        net = net.to(self._device, self.dtype)
        self.channels_last = device == "cuda" if channels_last is None else channels_last
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net = torch.compile(net, dynamic=False) if compile else net
        lo, hi = model.config.value_range
        self._scale, self._offset = 255.0 / (hi - lo), 0.5 - lo * 255.0 / (hi - lo)
        self.default_batch = 256 if device == "cuda" else 64

    @property
    def device(self) -> str:
        return str(self._device)

    def _forward(self, z: np.ndarray):
        torch = self.torch
        with torch.inference_mode():
            x = torch.from_numpy(z).to(self._device, self.dtype, non_blocking=True)
            return self.net(x).float()

    def run(self, z: np.ndarray) -> np.ndarray:
        return self._forward(z).cpu().numpy()

    def run_uint8(self, z: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            y = self._forward(z).mul_(self._scale).add_(self._offset)
            finite = self.torch.isfinite(y).all()  # read after the copy below: one wait for the device, not two
            y = y.clamp_(0, 255).to(self.torch.uint8).permute(0, 2, 3, 1).contiguous().cpu().numpy()
        if not finite:
            raise ValueError(NON_FINITE_OUTPUT)
        return y

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "precision": self.precision, "channels_last": self.channels_last}
