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
    """`array` as a uint8 IDX file, gzipped when the name ends in .gz."""
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
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


def _idx_folder(folder, names):
    """IDX images files (5, 6, 6) under `names`, each with different pixels, and Debian's label files."""
    rng = np.random.default_rng(5)
    images = {name: rng.integers(0, 256, (5, 6, 6)) for name in names}
    for name, array in images.items():
        _idx(folder / name, array)
    for split in ("train", "t10k"):
        _idx(folder / f"{split}-labels-idx1-ubyte.gz", np.arange(5))
    return images


@pytest.mark.parametrize("names, loaded", [
    (["train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"], "train-images-idx3-ubyte.gz"),
    (["t10k-images-idx3-ubyte", "train-images-idx3-ubyte"], "train-images-idx3-ubyte"),
    (["pixels.bin"], "pixels.bin"),  # the only images file, known by its IDX header
])
def test_idx_folder_loads_the_training_split(tmp_path, names, loaded):
    images = _idx_folder(tmp_path, names)
    data = load_dataset(tmp_path)
    np.testing.assert_array_equal(data.images[..., 0], images[loaded])
    assert data.source == str(tmp_path / loaded)


def test_idx_folder_with_several_images_files_and_no_train_one(tmp_path):
    _idx_folder(tmp_path, ["a-images-idx3-ubyte.gz", "b-images-idx3-ubyte.gz"])
    with pytest.raises(ValueError, match=f"{tmp_path}: .*a-images-idx3-ubyte.gz, b-images-idx3-ubyte.gz"):
        load_dataset(tmp_path)


def test_idx_file_known_by_its_header_and_labels_refused(tmp_path):
    images = np.random.default_rng(6).integers(0, 256, (3, 4, 5))
    np.testing.assert_array_equal(load_dataset(_idx(tmp_path / "pixels.dat", images)).images[..., 0], images)
    for name in ("train-labels-idx1-ubyte.gz", "labels.bin"):
        _idx(tmp_path / name, np.arange(7))
        with pytest.raises(ValueError, match=f"{name}: IDX file holds labels .*not images"):
            load_dataset(tmp_path / name)


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


def test_16bit_grayscale_pngs_scaled_by_their_full_range(tmp_path):
    pixels = np.linspace(0, 65535, 64).astype(np.uint16).reshape(8, 8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    assert Image.open(tmp_path / "a.png").mode == "I;16"
    data = load_dataset(tmp_path)
    np.testing.assert_array_equal(data.images[0, ..., 0], np.round(pixels / 257).astype(np.uint8))


def test_folder_mixing_gray_and_colour_is_rgb(tmp_path):
    rng = np.random.default_rng(7)
    gray = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "0.png")  # read first
    for i in range(1, 4):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / f"{i}.jpg")
    data = load_dataset(tmp_path)
    assert data.images.shape == (4, 8, 8, 3)
    np.testing.assert_array_equal(data.images[0], np.repeat(gray[..., None], 3, axis=-1))
    assert data.to_tensor((1, 8, 8)).shape == (4, 1, 8, 8)  # what --channels 1 asks for


def test_gray_images_saved_as_rgb_or_palette_are_gray(tmp_path):
    rng = np.random.default_rng(8)
    gray = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    Image.fromarray(gray).convert("RGB").save(tmp_path / "0.png")
    Image.fromarray(gray).convert("P").save(tmp_path / "1.png")
    assert [Image.open(tmp_path / f"{i}.png").mode for i in (0, 1)] == ["RGB", "P"]
    data = load_dataset(tmp_path)
    assert data.images.shape == (2, 8, 8, 1)
    np.testing.assert_array_equal(data.images[0, ..., 0], gray)
    colour = gray[..., None].repeat(3, axis=-1)
    colour[0, 0] = (255, 0, 0)  # one coloured pixel makes the folder RGB
    Image.fromarray(colour).save(tmp_path / "2.png")
    assert load_dataset(tmp_path).images.shape == (3, 8, 8, 3)


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


def test_npz_pixels_come_back_from_each_layout_and_range(tmp_path):
    """The same uint8 pixels saved channels-first or last, as floats in [-1, 1], [0, 1] or 0..255."""
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)  # N, H, W, C: every axis a different length
    rgb[0, 0, 0] = (0, 128, 255)
    nchw = rgb.transpose(0, 3, 1, 2)
    cases = {
        "nchw_signed.npz": (nchw / 127.5 - 1).astype(np.float32), "nhwc_unit.npz": rgb / 255.0,
        "nchw_0_255.npz": nchw.astype(np.float32), "nchw_uint8.npz": nchw,
    }
    for name, array in cases.items():
        np.savez(tmp_path / name, images=array)
        np.testing.assert_array_equal(load_dataset(tmp_path / name).images, rgb, err_msg=name)
    np.savez(tmp_path / "gray_unit.npz", images=rgb[..., 0] / 255.0)  # N, H, W
    np.testing.assert_array_equal(load_dataset(tmp_path / "gray_unit.npz").images, rgb[..., :1])


def test_npz_16bit_and_wide_integer_values(tmp_path):
    wide = np.linspace(0, 65535, 4 * 64).reshape(4, 8, 8)
    np.savez(tmp_path / "u16.npz", images=wide.astype(np.uint16))
    np.testing.assert_array_equal(load_dataset(tmp_path / "u16.npz").images[..., 0],
                                  np.round(wide.astype(np.uint16) / 257).astype(np.uint8))
    np.savez(tmp_path / "small_ints.npz", images=np.full((4, 8, 8), 200, np.int64))
    assert (load_dataset(tmp_path / "small_ints.npz").images == 200).all()
    for name, array, found in [("i32.npz", wide.astype(np.int32), "int32.* 0..65535"),
                               ("i8.npz", np.full((4, 8, 8), -3, np.int8), "int8.* -3..-3"),
                               ("f32.npz", wide.astype(np.float32), "float32.* 0..65535")]:
        np.savez(tmp_path / name, images=array)
        with pytest.raises(ValueError, match=f"{name}: .*{found}.*scale it"):
            load_dataset(tmp_path / name)
    np.savez(tmp_path / "u16_small.npz", images=np.full((4, 8, 8), 200, np.uint16))  # 8-bit or dark 16-bit?
    with pytest.raises(ValueError, match=r"u16_small.npz.*\(uint16\) holds values up to 200 only.*astype\(np.uint8\)"):
        load_dataset(tmp_path / "u16_small.npz")


def test_npz_binary_images_are_read_as_white_or_refused_as_ambiguous(tmp_path):
    binary = np.random.default_rng(0).integers(0, 2, (4, 8, 8))
    np.savez(tmp_path / "ints.npz", images=binary)  # int64 0/1: 1 of 255 would be near black
    with pytest.raises(ValueError, match=r"ints.npz.*\(int64\) holds values 0..1 only.*0/255 as uint8"):
        load_dataset(tmp_path / "ints.npz")
    np.savez(tmp_path / "bools.npz", images=binary.astype(bool))
    np.testing.assert_array_equal(load_dataset(tmp_path / "bools.npz").images[..., 0], binary * 255)


def test_npz_float_ranges_allow_rounding_error_at_their_ends(tmp_path):
    for name, array, expected in [("unit.npz", [-0.004, 0.5, 1.004], [0, 128, 255]),  # [0, 1], not [-1, 1]
                                  ("signed.npz", [-1.004, 0.0, 1.0], [0, 128, 255]),
                                  ("bytes.npz", [-0.004, 100.0, 255.004], [0, 100, 255])]:
        np.savez(tmp_path / name, images=np.array(array, np.float32).reshape(1, 1, 3).repeat(2, axis=0))
        np.testing.assert_array_equal(load_dataset(tmp_path / name).images[0, 0, :, 0], expected)


def test_corrupt_gzip_idx_is_one_error(tmp_path):
    header = struct.pack(">BBBBIII", 0, 0, 8, 3, 5, 6, 6)
    stored = b"\x00" + struct.pack("<HH", len(header), 0xFFFF ^ len(header)) + header  # a deflate block as is
    invalid = b"\x07"  # a last deflate block of the reserved type 3: zlib's "invalid block type"
    path = tmp_path / "x-images-idx3-ubyte.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + stored + invalid)
    with pytest.raises(ValueError, match=r"x-images-idx3-ubyte.gz: cannot read IDX file \(.*invalid block type"):
        load_dataset(path)


def test_npz_alpha_dropped_as_in_image_folders(tmp_path):
    rng = np.random.default_rng(8)
    for name, array, kept in [("rgba.npz", rng.integers(0, 256, (4, 8, 8, 4), dtype=np.uint8), np.s_[..., :3]),
                              ("la_nchw.npz", rng.integers(0, 256, (4, 2, 8, 8), dtype=np.uint8), np.s_[:, :1])]:
        np.savez(tmp_path / name, images=array)
        expected = array[kept] if array.shape[-1] == 4 else array[kept].transpose(0, 2, 3, 1)
        np.testing.assert_array_equal(load_dataset(tmp_path / name).images, expected)


@pytest.mark.parametrize("array, message", [
    (np.zeros((4, 8, 8, 5), np.uint8), r"shape \(4, 8, 8, 5\) and dtype uint8.*expected"),
    (np.full((4, 8, 8), "a"), r"shape \(4, 8, 8\) and dtype <U1.*expected"),
    (np.zeros((4, 8), np.float32), r"shape \(4, 8\) and dtype float32.*expected"),
])
def test_npz_that_holds_no_images_names_the_file_shape_and_dtype(tmp_path, array, message):
    np.savez(tmp_path / "odd.npz", images=array)
    with pytest.raises(ValueError, match=f"odd.npz: array 'images' has {message}"):
        load_dataset(tmp_path / "odd.npz")


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
