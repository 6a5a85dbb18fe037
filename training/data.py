"""Training data that needs no internet, as one float32 tensor (N, C, H, W) scaled to [-1, 1].

Sources (`load_dataset(spec, ...)`):

- ``fashion-mnist`` / ``fashion-mnist-test``: the IDX files of Debian's ``dataset-fashion-mnist``
  (``/usr/share/datasets/fashion-mnist``, or ``$GANSERVE_FASHION_MNIST``);
- a path to an IDX images file (``*-images-idx3-ubyte[.gz]``, or any name with an IDX header), or a
  folder of them (its ``train-images-idx3-ubyte[.gz]``, or its only images file);
- ``digits``: scikit-learn's 8x8 digits (1,797 images; for quick tests);
- a folder of PNG/JPEG images (unreadable files are skipped and counted; with `size`, each image
  is resized to it as it is read, so big photos never sit in memory at full resolution; RGB if any
  image has a coloured pixel, else grayscale (gray saved as RGB counts as gray); 16-bit images
  scaled by their full range; alpha dropped);
- a CIFAR-10 python batch file or folder of them (read by a restricted unpickler that admits only
  plain containers and NumPy arrays, never code);
- an ``.npz`` file with an ``images`` (or the first) array, (N, H, W), (N, H, W, C) or (N, C, H, W),
  C = 1 to 4 (alpha dropped), of uint8, uint16, other integers in 0..255 (all 0 or 1: refused as
  ambiguous), booleans, or floats in [0, 1], [-1, 1] or 0..255.

Images are resized (bilinear, antialiased) and converted (gray <-> RGB) to the preset's shape.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FASHION_MNIST_DIR = Path(os.environ.get("GANSERVE_FASHION_MNIST") or "/usr/share/datasets/fashion-mnist")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif"}
NAMED = ("fashion-mnist", "fashion-mnist-train", "fashion-mnist-test", "digits")  # anything else is a path
IDX_DTYPES = (0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E)  # the third byte of an IDX file's magic number
IDX_IMAGES = ("-images-idx3-ubyte", "-images-idx3-ubyte.gz")
IDX_TRAIN = tuple("train" + suffix for suffix in IDX_IMAGES)
GRAY_MODES = ("1", "L", "LA", "La", "I", "F")  # Pillow modes without colour (and the "I;16" ones)
RANGE_HINT = "scale it to 0..255 (uint8), or save floats in [0, 1] or [-1, 1]"


@dataclass
class Dataset:
    """uint8 images (N, H, W, C) and where they came from."""

    images: np.ndarray
    source: str
    skipped: int = 0

    def to_tensor(self, shape: tuple[int, int, int]):
        """float32 torch tensor (N, C, H, W) in [-1, 1], converted to `shape` = (C, H, W)."""
        return to_training_tensor(self.images, shape)


def load_dataset(spec: str | os.PathLike, limit: int | None = None, size: tuple[int, int] | None = None
                 ) -> Dataset:
    """Load the images named by `spec` (see the module docstring). `limit` keeps the first N; `size`
    = (H, W) is where an image folder's files are resized to as they are read (default: the first's)."""
    spec = check_spec(spec)
    if spec in NAMED[:3]:
        split = "t10k" if spec.endswith("test") else "train"
        data = Dataset(_idx_images(_fashion_file(f"{split}-images-idx3-ubyte.gz")), spec)
    elif spec == "digits":
        data = _digits()
    else:
        data = _from_path(Path(spec), size)
    if limit is not None:
        data.images = data.images[:limit]
    if len(data.images) == 0:
        raise ValueError(f"{spec}: no images")
    return data


def resized_as_read(spec: str | os.PathLike) -> bool:
    """Whether `spec` names image files, which Pillow resizes as they are read, rather than arrays
    that `to_training_tensor` resizes (with `resize`)."""
    spec = check_spec(spec)
    if spec in NAMED:
        return False
    path = Path(spec)
    if path.is_dir():
        return not is_cifar_folder(path) and _idx_images_in(path) is None
    return path.suffix.lower() in IMAGE_SUFFIXES


def check_spec(spec: str | os.PathLike) -> str:
    """`spec` as a string, refused if empty (as a path it would name the current folder)."""
    spec = str(spec)
    if not spec.strip():
        raise ValueError("--data is empty: name a dataset (fashion-mnist, digits) or a path")
    return spec


def _fashion_file(name: str) -> Path:
    path = FASHION_MNIST_DIR / name
    if not path.is_file():
        raise FileNotFoundError(
            f"Fashion-MNIST not found at {path}: install it (apt-get install dataset-fashion-mnist), "
            f"set GANSERVE_FASHION_MNIST to its folder, or pass the IDX file's path")
    return path


def fashion_mnist_labels(split: str = "train") -> np.ndarray:
    prefix = "t10k" if split == "test" else "train"
    return read_idx(_fashion_file(f"{prefix}-labels-idx1-ubyte.gz"))


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped) as a uint8 array: (N, H, W) images or (N,) labels."""
    try:
        with _open_idx(path) as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"{path}: cannot read IDX file ({e})") from None
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise ValueError(f"{path}: not a uint8 IDX file")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if len(data) - header != int(np.prod(dims)):
        raise ValueError(f"{path}: IDX header says {dims} but the file holds {len(data) - header} bytes")
    return np.frombuffer(bytearray(data), dtype=np.uint8, offset=header).reshape(dims)


def _open_idx(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _idx_ndim(path: Path) -> int | None:
    """The number of dimensions an IDX file's magic number (0, 0, dtype code, ndim) declares, or None
    if `path` does not start with one."""
    try:
        with _open_idx(path) as f:
            magic = f.read(4)
    except (OSError, EOFError, zlib.error):
        return None
    if len(magic) == 4 and magic[:2] == b"\0\0" and magic[2] in IDX_DTYPES and magic[3] > 0:
        return magic[3]
    return None


def _idx_images(path: Path) -> np.ndarray:
    """An IDX images file as uint8 (N, H, W, 1); a labels file or any other shape is refused."""
    array = read_idx(path)
    if array.ndim != 3:
        what = "labels" if array.ndim == 1 else f"a {array.ndim}-d array"
        raise ValueError(f"{path}: IDX file holds {what} of shape {array.shape}, not images (N, H, W); "
                         f"pass a *-images-idx3-ubyte file")
    return array[..., None]


def _idx_images_in(folder: Path) -> Path | None:
    """The IDX images file to load from `folder`: its training split, or its only images file."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() not in IMAGE_SUFFIXES
                   and (p.name.endswith(IDX_IMAGES) or _idx_ndim(p) == 3))
    train = [p for p in files if p.name in IDX_TRAIN]
    if train:
        return train[0]
    if len(files) > 1:
        raise ValueError(f"{folder}: {len(files)} IDX images files and none named train-images-idx3-ubyte[.gz]: "
                         f"{', '.join(p.name for p in files)}; pass one of them")
    return files[0] if files else None


def _digits() -> Dataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise ImportError("--data digits needs scikit-learn: pip install 'ganserve[train]'") from e
    images = load_digits().images  # (1797, 8, 8) in 0..16
    return Dataset(np.round(images * (255 / 16)).astype(np.uint8)[..., None], "digits")


def _from_path(path: Path, size: tuple[int, int] | None = None) -> Dataset:
    if not path.exists():
        raise FileNotFoundError(f"data not found: {path}")
    if path.is_dir():
        return _from_folder(path, size)
    name = path.name
    if "idx3-ubyte" in name or _idx_ndim(path) is not None:
        return Dataset(_idx_images(path), str(path))
    if path.suffix == ".npz":
        return _npz(path)
    if name.startswith(("data_batch", "test_batch")):
        return _cifar([path], str(path))
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return _image_folder(path.parent, [path], size)
    raise ValueError(f"{path}: unknown data format; expected an image folder, IDX, .npz or CIFAR-10 batch")


def is_cifar_folder(folder: Path) -> bool:
    """Whether `folder` is read as CIFAR-10 python batches (before IDX files and images in it)."""
    return any(folder.glob("data_batch_*")) or any(folder.glob("test_batch"))


def _from_folder(folder: Path, size: tuple[int, int] | None) -> Dataset:
    if is_cifar_folder(folder):
        return _cifar(sorted(folder.glob("data_batch_*")) or [folder / "test_batch"], str(folder))
    idx = _idx_images_in(folder)
    if idx is not None:
        return Dataset(_idx_images(idx), str(idx))
    return _image_folder(folder, size=size)


def _image_folder(folder: Path, files: list[Path] | None = None, size: tuple[int, int] | None = None
                  ) -> Dataset:
    from PIL import Image, UnidentifiedImageError

    files = files or sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    images, skipped = [], 0
    wh = (size[1], size[0]) if size else None  # Pillow speaks (width, height)
    for file in files:
        try:
            images.append(_read_image(file, wh))
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError):
            skipped += 1  # DecompressionBombError: a header claiming more pixels than Pillow allows
            continue
        wh = wh or images[-1].shape[1::-1]
    if not images:
        raise ValueError(f"{folder}: none of the {len(files)} image files could be read")
    return Dataset(_stack(images), str(folder), skipped)


def _read_image(file: Path, wh: tuple[int, int] | None) -> np.ndarray:
    """uint8 (H, W, 1) if the image is grayscale (by its mode, or an RGB or palette image whose pixels
    are all gray), else (H, W, 3); resized to `wh` = (W, H) if given."""
    from PIL import Image

    with Image.open(file) as im:
        im.load()
        im = _to_8bit(im)
    if wh and im.size != wh:  # Pillow's bilinear filter widens with the scale: antialiased
        im = im.resize(wh, Image.BILINEAR)
    pixels = np.asarray(im, dtype=np.uint8).reshape(im.size[1], im.size[0], -1)
    if pixels.shape[-1] == 3 and (pixels[..., :1] == pixels[..., 1:]).all():
        return pixels[..., :1].copy()  # gray saved as RGB: no colour to learn
    return pixels


def _to_8bit(im):
    """A Pillow image as "L" if its mode has no colour (16-bit ones scaled by their full range), else as
    "RGB" (alpha dropped)."""
    from PIL import Image

    if im.mode == "I" or im.mode.startswith("I;16"):
        return Image.fromarray(_scale_16bit(np.asarray(im)))
    return im.convert("L" if im.mode in GRAY_MODES else "RGB")


def _scale_16bit(array: np.ndarray) -> np.ndarray:
    """Values 0..65535 (any integer dtype; others clipped) to uint8 0..255, rounded."""
    return ((np.clip(array, 0, 65535).astype(np.uint32) + 128) // 257).astype(np.uint8)


def _stack(images: list[np.ndarray]) -> np.ndarray:
    """(N, H, W, C): C = 3 if any image is in colour (grayscale ones are then replicated), else 1."""
    out = np.empty((len(images), *images[0].shape[:2], max(im.shape[-1] for im in images)), np.uint8)
    for i, im in enumerate(images):
        out[i] = im  # (H, W, 1) broadcasts to (H, W, 3)
    return out


def _npz(path: Path) -> Dataset:
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("an .npy array or another file under that name, not an .npz archive")
        with data:
            if not data.files:
                raise ValueError("the archive holds no arrays")
            key = "images" if "images" in data.files else data.files[0]
            arr = data[key]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: cannot read .npz ({e})") from None
    what = f"{path}: array {key!r}"
    return Dataset(_npz_pixels(_npz_layout(arr, what), what), str(path))


def _npz_layout(arr: np.ndarray, what: str) -> np.ndarray:
    """`arr` as (N, H, W, 1 or 3), alpha dropped as Pillow's convert does for image folders. `what`
    names the array in errors."""
    shape = arr.shape
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim == 4 and arr.shape[1] in (1, 2, 3, 4) and arr.shape[-1] not in (1, 2, 3, 4):
        arr = arr.transpose(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
    if arr.dtype.kind not in "biuf" or arr.ndim != 4 or arr.shape[-1] not in (1, 2, 3, 4) or arr.size == 0:
        raise ValueError(f"{what} has shape {shape} and dtype {arr.dtype}; expected numbers shaped (N, H, W), "
                         f"(N, H, W, C) or (N, C, H, W) with C = 1 to 4 (gray, gray + alpha, RGB, RGBA)")
    return arr[..., :3 if arr.shape[-1] >= 3 else 1]


def _npz_pixels(arr: np.ndarray, what: str) -> np.ndarray:
    """uint8 pixels from `arr`: uint8 as is, uint16 by its full range, other integers if in 0..255
    (not 0/1 only), floats or booleans in [0, 1], floats in [-1, 1] or 0..255. `what` names the array in errors."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        if int(arr.max()) <= 255:  # 8-bit values in a wider type, or very dark 16-bit ones: ambiguous
            raise ValueError(f"{what} (uint16) holds values up to {int(arr.max())} only: 8-bit values belong in "
                             f"uint8 (arr.astype(np.uint8)); uint16 is read as 16-bit, 0..65535")
        return _scale_16bit(arr)
    if arr.dtype.kind in "iu":
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 255:
            raise ValueError(f"{what} ({arr.dtype}) holds values {lo}..{hi}, outside 0..255: {RANGE_HINT}")
        if hi <= 1:  # binary images as integers would read as black pixels (0 and 1 out of 255): ambiguous
            raise ValueError(f"{what} ({arr.dtype}) holds values {lo}..{hi} only: for binary images save "
                             f"0/255 as uint8, or 0/1 as floats or booleans")
        return arr.astype(np.uint8)
    dtype, arr = arr.dtype, np.asarray(arr, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} holds NaN or Inf values")
    lo, hi = float(arr.min()), float(arr.max())
    tol = 0.01  # rounding error at the ends of a range: clipped
    for low, high, offset, scale in ((0, 1, 0.0, 255.0), (-1, 1, 1.0, 127.5), (0, 255, 0.0, 1.0)):
        if lo >= low - tol and hi <= high + tol:
            return np.clip(np.round((arr + offset) * scale), 0, 255).astype(np.uint8)
    raise ValueError(f"{what} ({dtype}) holds values {lo:g}..{hi:g}, in none of [0, 1], [-1, 1] "
                     f"or 0..255: {RANGE_HINT}")


class _SafeUnpickler(pickle.Unpickler):
    """Admits plain containers and NumPy arrays only: a file naming any other global is refused."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only arrays and plain data are allowed")


def safe_unpickle(data: bytes):
    """Unpickle `data` admitting only plain containers and NumPy arrays (CIFAR-10 batches)."""
    return _SafeUnpickler(io.BytesIO(data), encoding="bytes").load()


def _cifar(files: list[Path], source: str) -> Dataset:
    batches = []
    for file in files:
        try:
            batch = safe_unpickle(file.read_bytes())
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
            raise ValueError(f"{file}: not a CIFAR-10 python batch ({e})") from None
        data = batch.get(b"data", batch.get("data")) if isinstance(batch, dict) else None
        if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3072:
            raise ValueError(f"{file}: not a CIFAR-10 python batch (no (N, 3072) 'data' array)")
        batches.append(data.astype(np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return Dataset(np.concatenate(batches), source)


def to_training_tensor(images: np.ndarray, shape: tuple[int, int, int]):
    """uint8 (N, H, W, C) -> float32 torch tensor (N, C, H, W) in [-1, 1] with `shape` = (C, H, W)."""
    import torch

    c, h, w = shape
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
    if x.shape[1] != c:
        if c == 1:  # RGB -> luminance (ITU-R 601, as Pillow's "L")
            x = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        else:
            x = x.expand(-1, 3, -1, -1)
    if x.shape[2:] != (h, w):
        out = torch.empty(x.shape[0], c, h, w)
        for i in range(0, len(x), 4096):  # bounded memory for big datasets
            out[i:i + 4096] = resize(x[i:i + 4096], (h, w))
        x = out.clamp_(-1, 1)
    return x.contiguous()


def resize(x, size: tuple[int, int]):
    """The loader's resize of float images (N, C, H, W) to `size` = (h, w): bilinear, antialiased."""
    import torch.nn.functional as F

    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
