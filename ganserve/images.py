"""Turning raw generator output into images: uint8 conversion, grids, PNG files."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ._files import atomic_path


NON_FINITE_OUTPUT = ("the generator's output holds NaN or Inf: its weights overflow float32 for these latents, "
                     "so it cannot make images")


def check_finite(x: np.ndarray) -> np.ndarray:
    """`x` if all its values are finite, else a ValueError (cast to uint8, NaN becomes an arbitrary byte)."""
    if not np.isfinite(x).all():
        raise ValueError(NON_FINITE_OUTPUT)
    return x


def to_uint8(x: np.ndarray, value_range: tuple[float, float] = (-1.0, 1.0), channels_last: bool = True
             ) -> np.ndarray:
    """Map float images in `value_range` to uint8 [0, 255], rounding to nearest.

    Args:
        x: (n, C, H, W) floats.
        value_range: the range of `x` that maps onto [0, 255].
        channels_last: return (n, H, W, C) (else (n, C, H, W)).
    """
    lo, hi = value_range
    y = check_finite(x).transpose(0, 2, 3, 1) if channels_last else check_finite(x)
    scaled = (y - np.float32(lo)) * np.float32(255.0 / (hi - lo)) + np.float32(0.5)
    return np.clip(scaled, 0, 255, out=scaled).astype(np.uint8)


def make_grid(images: np.ndarray, nrow: int | None = None, padding: int = 2, pad_value: int = 0) -> np.ndarray:
    """Tile uint8 images (n, H, W, C) into one (rows*H', cols*W', C) image, `nrow` per row."""
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"make_grid expects uint8 images (n, H, W, C), got {images.dtype} {images.shape}")
    n, h, w, c = images.shape
    if n == 0:
        raise ValueError("make_grid needs at least one image")
    cols = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.full((rows * (h + padding) + padding, cols * (w + padding) + padding, c), pad_value, np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        y, x = padding + r * (h + padding), padding + q * (w + padding)
        grid[y:y + h, x:x + w] = images[i]
    return grid


def to_pil(image: np.ndarray):
    """A Pillow image from one uint8 (H, W, C) array with C 1 or 3."""
    from PIL import Image

    return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


def image_format(path: str | os.PathLike, channels: int | None = None) -> str:
    """Pillow's format name for a file name's extension, or a ValueError naming the extension.

    With `channels` (1 or 3), also checks that the format writes such images, by writing a small one
    to memory (Pillow knows some formats it cannot write, or not in every mode: XBM, HDF5, ...).
    """
    import io

    from PIL import Image

    suffix = Path(path).suffix.lower()
    fmt = Image.registered_extensions().get(suffix)
    if fmt is None or fmt not in Image.SAVE:
        raise ValueError(f"cannot write images with extension {suffix or '(none)'!r} ({path}); {_WRITABLE}")
    if channels is not None:
        try:
            to_pil(np.zeros((8, 8, channels), np.uint8)).save(io.BytesIO(), format=fmt)
        except Exception as e:  # each plugin raises its own kind of error
            kind = "gray" if channels == 1 else "RGB"
            raise ValueError(f"cannot write {kind} images as {fmt} ({path}: {e}); {_WRITABLE}") from None
    return fmt


_WRITABLE = "use .png, .jpg, .webp, .bmp or .gif"


def save_image(image: np.ndarray, path: str | os.PathLike) -> Path:
    """Save one uint8 (H, W, C) image, in the format its extension names, atomically."""
    path = Path(path)
    fmt = image_format(path)
    with atomic_path(path) as tmp:
        to_pil(image).save(tmp, format=fmt)
    return path


def upscale(images: np.ndarray, scale: int | None, min_size: int = 1) -> np.ndarray:
    """uint8 (n, H*s, W*s, C) by nearest neighbour; `scale` None picks s so both sides reach `min_size`."""
    if scale is None:
        scale = max(1, math.ceil(min_size / min(images.shape[1:3])))
    if scale < 1:
        raise ValueError(f"--scale must be at least 1, got {scale}")
    return images.repeat(scale, axis=1).repeat(scale, axis=2)


def save_gif(frames: np.ndarray, path: str | os.PathLike, duration: int) -> Path:
    """An animated GIF of uint8 frames (n, H, W, C), `duration` ms each, looping forever; atomically.

    Pillow merges identical consecutive frames (adding up their durations), so a walk that stands
    still has fewer frames in the file than it rendered.
    """
    path = Path(path)
    pictures = [to_pil(frame) for frame in frames]
    with atomic_path(path) as tmp:
        pictures[0].save(tmp, format="GIF", save_all=True, append_images=pictures[1:], duration=duration, loop=0)
    return path
