"""Data loaders that need no internet, on data the tests make (Fashion-MNIST where installed)."""

from __future__ import annotations

import gzip
import pickle
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
from ganserve.training.data import FASHION_MNIST_DIR, load_dataset, safe_unpickle  # noqa: E402


def _idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())
    return path


def test_idx_file(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28))
    data = load_dataset(_idx(tmp_path / "x-images-idx3-ubyte.gz", images))
    np.testing.assert_array_equal(data.images[..., 0], images)
    x = data.to_tensor((1, 28, 28))
    assert x.shape == (5, 1, 28, 28) and x.min() >= -1 and x.max() <= 1
    np.testing.assert_allclose(x[0, 0].numpy(), images[0] / 127.5 - 1, atol=1e-6)


def test_truncated_idx(tmp_path):
    path = _idx(tmp_path / "x-images-idx3-ubyte.gz", np.zeros((5, 4, 4)))
    data = gzip.decompress(path.read_bytes())[:-3]
    path.write_bytes(gzip.compress(data))
    with pytest.raises(ValueError, match="IDX header says"):
        load_dataset(path)


def test_digits_resized_to_the_preset():
    data = load_dataset("digits")
    assert data.images.shape == (1797, 8, 8, 1)
    x = data.to_tensor((3, 32, 32))
    assert x.shape == (1797, 3, 32, 32) and torch.equal(x[:, 0], x[:, 2])


def test_image_folder_skips_unreadable_files(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    Image.fromarray(rng.integers(0, 256, (10, 10, 3), dtype=np.uint8)).save(tmp_path / "small.jpg")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    data = load_dataset(tmp_path)
    assert data.images.shape == (4, 20, 24, 3) and data.skipped == 1
    assert data.to_tensor((1, 28, 28)).shape == (4, 1, 28, 28)


def test_image_folder_resized_as_it_is_read(tmp_path):
    """With a target size, no image is kept at its own (possibly huge) resolution."""
    rng = np.random.default_rng(3)
    for i, shape in enumerate([(300, 200), (40, 60)]):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(tmp_path / f"{i}.png")
    data = load_dataset(tmp_path, size=(28, 28))
    assert data.images.shape == (2, 28, 28, 1)


def _png_claiming(width, height):
    """A valid tiny PNG whose header claims width x height pixels (a "decompression bomb")."""
    import io

    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    png = bytearray(buf.getvalue())
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    png[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    png[ihdr + 13:ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(png[ihdr - 4:ihdr + 13])))
    return bytes(png)


def test_image_folder_skips_an_image_too_large_to_open(tmp_path):
    rng = np.random.default_rng(4)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "bomb.png").write_bytes(_png_claiming(40_000, 40_000))
    with pytest.raises(Image.DecompressionBombError):
        Image.open(tmp_path / "bomb.png")
    data = load_dataset(tmp_path)
    assert data.images.shape == (2, 8, 8, 1) and data.skipped == 1


def test_empty_data_name_is_refused():
    with pytest.raises(ValueError, match="--data is empty"):
        load_dataset("")


def test_npz_with_nan_is_refused(tmp_path):
    images = np.zeros((4, 8, 8), dtype=np.float32)
    images[1, 2, 3] = np.nan
    np.savez(tmp_path / "nan.npz", images=images)
    with pytest.raises(ValueError, match="holds NaN or Inf"):
        load_dataset(tmp_path / "nan.npz")


def test_image_folder_with_nothing_readable(tmp_path):
    (tmp_path / "a.png").write_bytes(b"nope")
    with pytest.raises(ValueError, match="none of the 1 image files could be read"):
        load_dataset(tmp_path)


def test_empty_folder_and_missing_path(tmp_path):
    with pytest.raises(ValueError, match="no image files"):
        load_dataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="data not found"):
        load_dataset(tmp_path / "nothing")


def test_npz_layouts_and_ranges(tmp_path):
    rng = np.random.default_rng(2)
    cases = {
        "nhwc_uint8.npz": rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8),
        "nchw_float.npz": rng.uniform(-1, 1, (4, 3, 8, 8)).astype(np.float32),
        "nhw_unit.npz": rng.uniform(0, 1, (4, 8, 8)),
    }
    for name, array in cases.items():
        np.savez(tmp_path / name, images=array)
        data = load_dataset(tmp_path / name)
        assert data.images.dtype == np.uint8 and data.images.shape[:3] == (4, 8, 8)
    np.testing.assert_array_equal(load_dataset(tmp_path / "nhwc_uint8.npz").images, cases["nhwc_uint8.npz"])


def test_broken_npz_and_idx_files_are_one_clear_error(tmp_path):
    np.savez(tmp_path / "whole.npz", images=np.zeros((4, 8, 8), np.uint8))
    (tmp_path / "truncated.npz").write_bytes((tmp_path / "whole.npz").read_bytes()[:100])
    np.save(tmp_path / "array.npy", np.zeros((4, 8, 8), np.uint8))
    (tmp_path / "array.npy").rename(tmp_path / "array.npz")
    np.savez(tmp_path / "empty.npz")
    for name, message in [("truncated.npz", "cannot read .npz"), ("array.npz", "not an .npz archive"),
                          ("empty.npz", "holds no arrays")]:
        with pytest.raises(ValueError, match=message):
            load_dataset(tmp_path / name)
    header_cut = tmp_path / "cut-images-idx3-ubyte"
    header_cut.write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(ValueError, match="truncated IDX header"):
        load_dataset(header_cut)


def _cifar_batch(path, n=6):
    rng = np.random.default_rng(3)
    batch = {b"batch_label": b"training batch 1 of 5", b"labels": list(range(n)),
             b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"f.png"] * n}
    path.write_bytes(pickle.dumps(batch, protocol=2))
    return batch


def test_cifar_batches(tmp_path):
    batch = _cifar_batch(tmp_path / "data_batch_1")
    _cifar_batch(tmp_path / "data_batch_2")
    data = load_dataset(tmp_path)
    assert data.images.shape == (12, 32, 32, 3)
    np.testing.assert_array_equal(data.images[0], batch[b"data"][0].reshape(3, 32, 32).transpose(1, 2, 0))


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_restricted_unpickler_refuses_code(tmp_path):
    evil = pickle.dumps({b"data": _Payload()})
    with pytest.raises(pickle.UnpicklingError, match="refusing to load posix.system|refusing to load os.system"):
        safe_unpickle(evil)
    (tmp_path / "data_batch_1").write_bytes(evil)
    with pytest.raises(ValueError, match="not a CIFAR-10 python batch.*refusing"):
        load_dataset(tmp_path / "data_batch_1")


def test_restricted_unpickler_admits_arrays_and_containers():
    value = {"a": [1, 2.5, "x", (b"y", None)], "b": np.arange(6, dtype=np.float32).reshape(2, 3)}
    out = safe_unpickle(pickle.dumps(value, protocol=2))
    np.testing.assert_array_equal(out[b"b"] if b"b" in out else out["b"], value["b"])


@pytest.mark.skipif(not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
                    reason="dataset-fashion-mnist is not installed")
def test_fashion_mnist():
    data = load_dataset("fashion-mnist")
    assert data.images.shape == (60000, 28, 28, 1)
    assert load_dataset("fashion-mnist-test", limit=100).images.shape == (100, 28, 28, 1)
