"""ganserve.images: float output to uint8, grids, image files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ganserve.images import image_format, make_grid, save_gif, save_image, to_uint8, upscale


def _nchw(values, channels=1):
    """(1, C, 1, len) floats holding `values` in every channel."""
    row = np.asarray(values, np.float32)
    return np.broadcast_to(row, (1, channels, 1, len(row))).copy()


@pytest.mark.parametrize("value_range", [(-1.0, 1.0), (0.0, 1.0)])
def test_to_uint8_maps_the_range_onto_0_255_rounding_to_nearest(value_range):
    lo, hi = value_range

    def at(level):  # the float whose exact image is `level`
        return lo + level * (hi - lo) / 255

    x = _nchw([lo, hi, at(127.4), at(127.6), at(254.4), at(0.6), (lo + hi) / 2, lo - 1, hi + 1])
    assert to_uint8(x, value_range)[0, 0, :, 0].tolist() == [0, 255, 127, 128, 254, 1, 128, 0, 255]


def test_to_uint8_layouts():
    x = np.random.default_rng(0).uniform(-1.2, 1.2, (2, 3, 4, 5)).astype(np.float32)
    kept = x.copy()
    last, first = to_uint8(x), to_uint8(x, channels_last=False)
    assert last.shape == (2, 4, 5, 3) and first.shape == (2, 3, 4, 5) and last.dtype == first.dtype == np.uint8
    np.testing.assert_array_equal(last, first.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(x, kept)  # the input is left as it was (the clip writes to a copy)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_to_uint8_refuses_non_finite_output(bad):
    with pytest.raises(ValueError, match="NaN or Inf"):
        to_uint8(_nchw([0.0, bad]))


def test_make_grid_places_each_image_in_reading_order():
    images = np.arange(1, 6, dtype=np.uint8).reshape(5, 1, 1, 1).repeat(2, axis=1).repeat(3, axis=2)  # 2x3 tiles
    grid = make_grid(images, nrow=2, padding=1, pad_value=9)
    assert grid.shape == (3 * (2 + 1) + 1, 2 * (3 + 1) + 1, 1)
    tiles = [[grid[1 + r * 3:3 + r * 3, 1 + c * 4:4 + c * 4, 0] for c in range(2)] for r in range(3)]
    assert [[int(t.min()) for t in row] for row in tiles] == [[1, 2], [3, 4], [5, 9]]  # 9: the empty last cell
    assert all(t.min() == t.max() for row in tiles for t in row)
    assert (grid[0] == 9).all() and (grid[:, 0] == 9).all() and (grid[3] == 9).all()  # padding between rows


def test_make_grid_is_square_by_default():
    assert make_grid(np.zeros((10, 4, 4, 3), np.uint8), padding=0).shape == (3 * 4, 4 * 4, 3)  # 4 columns, 3 rows


@pytest.mark.parametrize("images, message", [(np.zeros((2, 4, 4, 1), np.float32), "uint8"),
                                             (np.zeros((4, 4, 1), np.uint8), r"\(n, H, W, C\)"),
                                             (np.zeros((0, 4, 4, 1), np.uint8), "at least one")])
def test_make_grid_bad_input(images, message):
    with pytest.raises(ValueError, match=message):
        make_grid(images)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("suffix", [".png", ".bmp", ".webp"])
def test_save_image_writes_the_pixels_in_the_named_format(tmp_path, channels, suffix):
    image = np.random.default_rng(channels).integers(0, 256, (6, 7, channels), dtype=np.uint8)
    path = save_image(image, tmp_path / f"a{suffix}")
    assert [p.name for p in tmp_path.iterdir()] == [f"a{suffix}"]  # no temporary file left
    if suffix == ".webp":  # lossy by default: the format and size are what can be checked
        with Image.open(path) as im:
            assert im.format == "WEBP" and im.size == (7, 6)
        return
    with Image.open(path) as im:
        read = np.asarray(im)
    np.testing.assert_array_equal(read.reshape(image.shape), image)


def test_image_format_names_what_is_wrong(tmp_path):
    assert image_format("x.PNG") == "PNG" and image_format("x.jpeg", channels=3) == "JPEG"
    with pytest.raises(ValueError, match=r"extension '\.txt'.*use \.png"):
        image_format("x.txt")
    with pytest.raises(ValueError, match=r"'\(none\)'"):
        image_format(tmp_path / "noext")
    with pytest.raises(ValueError, match=r"extension '\.txt'"):
        save_image(np.zeros((2, 2, 1), np.uint8), tmp_path / "x.txt")
    assert list(tmp_path.iterdir()) == []


def test_upscale_by_nearest_neighbour():
    images = np.arange(8, dtype=np.uint8).reshape(2, 2, 2, 1)
    np.testing.assert_array_equal(upscale(images, 2)[1, :, :, 0],
                                  [[4, 4, 5, 5], [4, 4, 5, 5], [6, 6, 7, 7], [6, 6, 7, 7]])
    assert upscale(images, None, min_size=5).shape == (2, 6, 6, 1)  # the smallest scale reaching 5 px
    assert upscale(images, None).shape == images.shape
    with pytest.raises(ValueError, match="at least 1, got 0"):
        upscale(images, 0)


def test_save_gif_loops_over_every_frame(tmp_path):
    frames = np.stack([np.full((4, 4, 1), v, np.uint8) for v in (0, 100, 200)])
    path = save_gif(frames, tmp_path / "walk.gif", duration=70)
    with Image.open(path) as im:
        assert im.n_frames == 3 and im.info["loop"] == 0 and im.info["duration"] == 70
        seen = []
        for i in range(im.n_frames):
            im.seek(i)
            seen.append(int(np.asarray(im.convert("L")).mean()))
    assert seen == [0, 100, 200]
