"""`ganserve interpolate` and `ganserve arithmetic`, run in-process."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ganserve.cli import main


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_interpolate_gif_has_the_frames_and_loops(capsys, tmp_path, tiny_model_dir):
    out = tmp_path / "walk.gif"
    code, stdout, _ = run(capsys, "interpolate", str(tiny_model_dir), "--backend", "numpy", "--seeds", "1,2,3",
                          "--steps", "6", "--duration", "50", "--out", str(out))
    assert code == 0 and "wrote 11 frames" in stdout
    with Image.open(out) as gif:
        assert gif.format == "GIF"
        assert gif.n_frames == 2 * (6 - 1) + 1
        assert gif.info["loop"] == 0  # forever
        assert gif.info["duration"] == 50
        assert gif.size == (28 * 5, 28 * 5)  # tiny frames upscaled to at least 128 px
    assert [p.name for p in tmp_path.iterdir()] == ["walk.gif"]  # no temporary file left


def test_interpolate_loop_and_scale(capsys, tmp_path):
    out = tmp_path / "loop.gif"
    code, _, _ = run(capsys, "interpolate", "--backend", "numpy", "--seeds", "4,5", "--steps", "8", "--loop",
                     "--index", "3", "--scale", "2", "--out", str(out))
    assert code == 0
    with Image.open(out) as gif:
        assert gif.n_frames == 2 * (8 - 1)
        assert gif.size == (56, 56)


def test_interpolate_png_strip(capsys, tmp_path, tiny_model_dir):
    out = tmp_path / "strip.png"
    code, _, _ = run(capsys, "interpolate", str(tiny_model_dir), "--backend", "numpy", "--seeds", "1,2",
                     "--steps", "5", "--method", "lerp", "--out", str(out))
    assert code == 0
    with Image.open(out) as strip:
        assert strip.size == (5 * (28 + 2) + 2, 28 + 2 + 2)  # one row of 5 frames, padding 2
        frames = [np.asarray(strip)[2:30, 2 + i * 30:30 + i * 30] for i in range(5)]
    from ganserve import Generator

    gen = Generator.load(tiny_model_dir, backend="numpy")
    lerped = gen.interpolate((1, 0), (2, 0), 5, method="lerp")[..., 0]
    np.testing.assert_array_equal(np.stack(frames), lerped)
    assert not np.array_equal(lerped[2], gen.interpolate((1, 0), (2, 0), 5, method="slerp")[2, ..., 0])


def test_interpolate_strip_shows_the_keyframes(capsys, tmp_path):
    from ganserve import Generator

    out = tmp_path / "strip.png"
    assert run(capsys, "interpolate", "--backend", "numpy", "--seeds", "1,2", "--index", "7", "--steps", "3",
               "--out", str(out))[0] == 0
    strip = np.asarray(Image.open(out))
    expected = Generator.load(backend="numpy").sample(1, seed=2, start=7)[0, :, :, 0]
    np.testing.assert_array_equal(strip[2:30, 2 + 2 * 30:30 + 2 * 30], expected)


def test_arithmetic_grid(capsys, tmp_path, tiny_model_dir):
    out = tmp_path / "result.png"
    code, stdout, _ = run(capsys, "arithmetic", str(tiny_model_dir), "--backend", "numpy", "--seed", "0",
                          "--a", "3,7,12", "--b", "5,9", "--c", "1,4", "--neighbors", "8", "--jitter", "0.25",
                          "--out", str(out))
    assert code == 0 and "mean(a) - mean(b) + mean(c)" in stdout
    with Image.open(out) as grid:
        # rows a, b, c (mean, then the images) and result + 8 neighbours: 4 rows of 9 columns
        assert grid.size == (9 * 30 + 2, 4 * 30 + 2)
    first = out.read_bytes()
    from ganserve import Generator

    terms = [(1, [(0, 3), (0, 7), (0, 12)]), (-1, [(0, 5), (0, 9)]), (1, [(0, 1), (0, 4)])]
    found = Generator.load(tiny_model_dir, backend="numpy").arithmetic(terms, neighbors=8)[..., 0]
    grid = np.asarray(Image.open(out))

    def tile(row, col):
        return grid[2 + row * 30:30 + row * 30, 2 + col * 30:30 + col * 30]

    np.testing.assert_array_equal([tile(row, 0) for row in range(3)], found[:3])  # each term's mean
    np.testing.assert_array_equal([tile(3, col) for col in range(9)], found[3:])  # the result, its neighbours
    assert run(capsys, "arithmetic", str(tiny_model_dir), "--backend", "numpy", "--a", "3,7,12", "--b", "5,9",
               "--c", "1,4", "--out", str(out))[0] == 0
    assert out.read_bytes() == first  # the jitter is seeded
    assert run(capsys, "arithmetic", str(tiny_model_dir), "--backend", "numpy", "--a", "3,7,12", "--b", "5,9",
               "--c", "1,4", "--jitter-seed", "1", "--out", str(out))[0] == 0
    other = np.asarray(Image.open(out))
    np.testing.assert_array_equal(other[:4 * 30 - 30 + 2], grid[:4 * 30 - 30 + 2])  # the terms' rows
    assert not np.array_equal(other, grid)  # other neighbours
    code, stdout, _ = run(capsys, "arithmetic", str(tiny_model_dir), "--backend", "numpy", "--a", "3,7",
                          "--c", "1,4", "--neighbors", "1", "--out", str(out))
    assert code == 0 and "mean(a) + mean(c) and 1 neighbour (" in stdout  # each term named by its option


@pytest.mark.parametrize("args,message", [
    (["interpolate", "--seeds", "1,2", "--steps", "1", "--out", "w.gif"], "--steps must be at least 2"),
    (["interpolate", "--seeds", "1", "--out", "w.gif"], "--seeds needs at least 2 seeds"),
    (["interpolate", "--seeds", "1,two", "--out", "w.gif"], "--seeds must be comma-separated non-negative ints"),
    (["interpolate", "--seeds", "", "--out", "w.gif"], "--seeds is empty"),
    (["interpolate", "--seeds", "1,2", "--out", "w.txt"], "cannot write images with extension '.txt'"),
    (["interpolate", "--seeds", "1,2", "--method", "cubic", "--out", "w.gif"],
     "--method must be one of slerp, lerp, got 'cubic'"),
    (["interpolate", "--seeds", "1,2", "--scale", "0", "--out", "w.gif"], "--scale must be at least 1, got 0"),
    (["interpolate", "--seeds", "1,2", "--duration", "0", "--out", "w.gif"], "--duration must be at least 1"),
    (["interpolate", "--seeds", "1,2", "--nrow", "0", "--out", "w.png"], "--nrow must be at least 1, got 0"),
    (["interpolate", "--seeds", "1,2", "--index", "-1", "--out", "w.png"], "--index must be at least 0, got -1"),
    (["interpolate", "--seeds", "1,2", "--psi", "0", "--out", "w.gif"], "--truncation (--psi) must be a positive"),
    (["arithmetic", "--a", "3,7", "--b", "", "--out", "r.png"], "--b is empty"),
    (["arithmetic", "--a", "3,,7", "--out", "r.png"], "--a must be comma-separated non-negative ints"),
    (["arithmetic", "--a", "-3", "--out", "r.png"], "--a must be comma-separated non-negative ints"),
    (["arithmetic", "--a", "3", "--out", "r.txt"], "cannot write images with extension '.txt'"),
    (["arithmetic", "--a", "3", "--neighbors", "-2", "--out", "r.png"], "--neighbors must be at least 0, got -2"),
    (["arithmetic", "--a", "3", "--seed", "-1", "--out", "r.png"], "--seed must be at least 0, got -1"),
    (["arithmetic", "--a", "3", "--jitter", "-1", "--out", "r.png"], "--jitter must be >= 0, got -1.0"),
    (["arithmetic", "--a", "3", "--jitter", "nan", "--out", "r.png"], "--jitter must be >= 0, got nan"),
    (["arithmetic", "--a", "3", "--out", "no/r.png"], "--out no/r.png: no folder no"),
    (["interpolate", "--seeds", "1,2", "--out", "no/w.gif"], "--out no/w.gif: no folder no"),
    (["arithmetic", "--a", "3", "--jitter", "1e300", "--out", "r.png"], "jitter 1e+300 is too large"),
    (["interpolate", "--seeds", "1,2", "--scale", str(10**11), "--out", "w.png"],  # a PiB: beyond any address space
     "not enough memory for this request: Unable to allocate"),
])
def test_bad_input_is_one_error_line(capsys, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *args, "--backend", "numpy")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert list(tmp_path.iterdir()) == []  # nothing written
