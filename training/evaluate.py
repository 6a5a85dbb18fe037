"""Sampling a torch generator for evaluation, and the evaluator for a training run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ganserve.config import GeneratorConfig
from ganserve.images import make_grid, save_image, to_uint8
from ganserve.latents import make_latents

from .metrics import Evaluator

REFERENCE_IMAGES = 10_000


def evaluation_bytes(n: int, config: GeneratorConfig) -> int:
    """About the memory one evaluation of `n` samples holds at once: the latents, the uint8 images
    (and their concatenation), the classifier's float64 features and probabilities (and theirs)."""
    image = int(np.prod(config.output_shape))
    return n * (4 * config.latent_dim + 2 * image + 2 * 8 * (128 + 10))


@torch.no_grad()
def sample_images(net: nn.Module, n: int, seed: int, train_mode: bool = False, batch_size: int = 500
                  ) -> np.ndarray:
    """uint8 (n, H, W, C) from a torch generator, latents as `Generator.sample` draws them.

    train_mode=True samples as the seed scripts do: batch-norm layers use each batch's statistics.
    """
    device = next(net.parameters()).device
    latent_dim = net.config.latent_dim
    z = torch.from_numpy(make_latents(n, latent_dim, seed=seed))
    was_training = net.training
    net.train(train_mode)
    bounds = [*range(0, n, batch_size), n]
    if train_mode and len(bounds) > 2 and bounds[-1] - bounds[-2] == 1:
        del bounds[-2]  # batch norm needs two images per batch in train mode: the last one joins the batch before
    out = []
    for lo, hi in zip(bounds, bounds[1:]):
        out.append(to_uint8(net(z[lo:hi].to(device)).float().cpu().numpy(), net.config.value_range))
    net.train(was_training)
    return np.concatenate(out)


def evaluator_for(images: torch.Tensor) -> Evaluator:
    """An evaluator whose reference is (a fixed subset of) the training images (N, C, H, W) in [-1, 1],
    at model resolution."""
    gen = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(images), generator=gen)[:REFERENCE_IMAGES]
    real = to_uint8(images[idx.to(images.device)].float().cpu().numpy(), (-1.0, 1.0))
    return Evaluator(real)


def save_grid(net: nn.Module, path: Path, n: int = 64, seed: int = 0) -> Path:
    return save_image(make_grid(sample_images(net, n, seed=seed)), path)


def reference_images(data: str, shape: tuple[int, int, int], n: int = REFERENCE_IMAGES) -> np.ndarray:
    """uint8 (n, H, W, C) real images at a model's resolution: a fixed random subset of `data`."""
    from .data import load_dataset

    images = load_dataset(data, size=shape[1:]).to_tensor(shape)  # a folder's images read at that size
    gen = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(images), generator=gen)[:n]
    return to_uint8(images[idx].numpy())


def data_size(data: str) -> tuple[int, int] | None:
    """(H, W) of a dataset's own images, where training resizes them with the loader's `resize`;
    None for image files (Pillow resizes them as they are read: `undo_resize` would not invert that)."""
    from .data import load_dataset, resized_as_read

    return None if resized_as_read(data) else tuple(load_dataset(data, limit=1).images.shape[1:3])


def undoable_size(data: str, shape: tuple[int, int, int]) -> tuple[int, int] | None:
    """The data's own (H, W) where a model of `shape` = (C, H, W) can be scored at it: its own size,
    or a smaller one that `undo_resize` brings its samples back to; else None."""
    size = data_size(data)
    return None if size is None or shape[1] < size[0] or shape[2] < size[1] else size


def resize_inverse(n: int, m: int) -> np.ndarray:
    """(n, m) matrix: the least-squares inverse of the loader's 1-D resize from n to m >= n samples."""
    from .data import resize

    # n images each holding one basis column, two pixels wide: torch resizes one-pixel-wide images
    # wrongly (they read as channels-last), and the loader's resize leaves the width alone here
    basis = torch.eye(n, dtype=torch.float64).view(n, 1, n, 1).expand(n, 1, n, 2).contiguous()
    forward = resize(basis, (m, 2))[:, 0, :, 0].T.numpy()  # (m, n): resized = forward @ original
    return np.linalg.pinv(forward)


def undo_resize(images: np.ndarray, size: tuple[int, int], chunk: int = 1000) -> np.ndarray:
    """uint8 (N, H, W, C) at a model's resolution -> uint8 (N, h, w, C) at the data's `size` = (h, w).

    A model trained on data the loader resized up (Fashion-MNIST's 28x28 to `upconv32`'s 32x32) makes
    images at its own resolution; to score them against the real images, they are brought back by
    the least-squares inverse of that resize (rows and columns: the loader's resize is separable), so
    no blur of ours enters: a real image resized up and brought back is itself, up to rounding.
    """
    n, height, width, _ = images.shape
    h, w = size
    if (height, width) == (h, w):
        return images
    if height < h or width < w:
        raise ValueError(f"cannot undo a resize from {h}x{w} down to {height}x{width}: it has no unique inverse")
    rows, cols = resize_inverse(h, height), resize_inverse(w, width)
    out = []
    for i in range(0, n, chunk):
        x = images[i:i + chunk].transpose(0, 3, 1, 2).astype(np.float64) / 127.5 - 1  # (n, C, H, W)
        y = rows @ x @ cols.T
        out.append(to_uint8(np.clip(y, -1, 1).astype(np.float32)))
    return np.concatenate(out)


def evaluate_model(model: str | Path | None, data: str = "fashion-mnist", samples: int = 10_000, seed: int = 0,
                   backend: str = "auto", truncation: float | None = None) -> dict:
    """FD and CS of a model directory's samples (eval mode, as `Generator.sample` gives them), against
    the data resized to the model's resolution as training resized it; for a model larger than the
    data (`upconv32` on Fashion-MNIST), also "at_data_size": against the images at their own size
    (the calibration's reference), the samples brought back by `undo_resize` (not for image files)."""
    from ganserve.generator import Generator

    gen = Generator.load(model, backend=backend)
    shape = gen.config.output_shape
    real = reference_images(data, shape)
    images = gen.sample(samples, seed=seed, truncation=truncation)
    result = {**Evaluator(real).score(images), "samples": samples, "seed": seed, "truncation": truncation,
              "reference": f"{len(real)} images of {data}", "backend": gen.backend}
    size = undoable_size(data, shape)
    if size is not None and size != shape[1:]:
        at_size = Evaluator(reference_images(data, (shape[0], *size))).score(undo_resize(images, size))
        result["at_data_size"] = {**at_size, "size": list(size)}
    return result


CALIBRATION_DATA = ("fashion-mnist", "fashion-mnist-train")  # the sets with a test split to calibrate on


def check_calibration_data(data: str) -> None:
    if data not in CALIBRATION_DATA:
        raise ValueError(f"--calibrate scores Fashion-MNIST's test images against its training images; "
                         f"it needs --data fashion-mnist, not {data!r}")


def calibration(data: str = "fashion-mnist", n: int = REFERENCE_IMAGES) -> dict[str, dict]:
    """The metric on real images, scored like `evaluate_model`'s `n` samples (against the same
    reference): n test images (the floor), and those blurred by sigma 0.5 and 1 px."""
    from .data import load_dataset
    from .metrics import gaussian_blur

    check_calibration_data(data)
    evaluator = Evaluator(reference_images(data, (1, 28, 28)))
    test = load_dataset("fashion-mnist-test").images[:n]
    return {
        "real test images (floor)": evaluator.score(test),
        "test blurred, sigma 0.5 px": evaluator.score(gaussian_blur(test, 0.5)),
        "test blurred, sigma 1.0 px": evaluator.score(gaussian_blur(test, 1.0)),
    }
