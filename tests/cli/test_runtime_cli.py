"""`ganserve sample` and `ganserve info`, in-process and as a real subprocess."""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from ganserve import Generator
from ganserve.cli import main


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_sample_writes_pngs_and_a_grid(tmp_path, capsys, tiny_model_dir):
    code, out, err = run(capsys, "sample", str(tiny_model_dir), "--n", "6", "--seed", "4", "--start", "10",
                         "--out", str(tmp_path / "png"), "--grid", str(tmp_path / "grid.png"), "--backend", "numpy")
    assert code == 0, err
    files = sorted(p.name for p in (tmp_path / "png").iterdir())
    assert files == [f"{i:08d}.png" for i in range(10, 16)]
    expected = Generator.load(tiny_model_dir, backend="numpy").sample(6, seed=4, start=10)
    first = np.asarray(Image.open(tmp_path / "png" / "00000010.png"))
    np.testing.assert_array_equal(first, expected[0, ..., 0])
    grid = Image.open(tmp_path / "grid.png")
    assert grid.size == (3 * 30 + 2, 2 * 30 + 2)  # 3 per row, 2 px padding
    assert "wrote 6 images" in out
    code, _, err = run(capsys, "sample", str(tiny_model_dir), "--n", "6", "--seed", "4", "--start", "10", "--nrow", "6",
                       "--grid", str(tmp_path / "row.png"), "--backend", "numpy")
    assert code == 0, err
    row = np.asarray(Image.open(tmp_path / "row.png"))
    assert row.shape == (30 + 2, 6 * 30 + 2)  # --nrow 6: one row
    np.testing.assert_array_equal(row[2:30, 2 + 5 * 30:30 + 5 * 30], expected[5, ..., 0])


def test_sample_defaults_to_the_shipped_model_and_samples_png(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "sample", "--n", "4", "--backend", "numpy")
    assert code == 0, err
    assert Image.open(tmp_path / "samples.png").size == (2 * 30 + 2, 2 * 30 + 2)


@pytest.mark.parametrize("args,message", [
    (["--n", "0"], "--n must be at least 1, got 0"),
    (["--seed", "-2"], "--seed must be at least 0, got -2"),
    (["--start", "-1"], "--start must be at least 0, got -1"),
    (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["--seed", str(2**64)], "--seed must be in [0, 18446744073709551615]"),
    (["--grid", "out.txt"], "cannot write images with extension '.txt'"),
    (["--backend", "warp"], "unknown backend 'warp'"),
    (["/no/such/model"], "no model directory at '/no/such/model'"),
    (["--truncation", "-1"], "--truncation (--psi) must be a positive finite number, got -1.0"),
    (["--psi", "nan"], "--truncation (--psi) must be a positive finite number, got nan"),
    (["--n", str(10**12), "--grid", "g.png"], "--grid of 1000000000000 images needs about"),
    (["--grid", "no/such/folder/grid.png"], "--grid no/such/folder/grid.png: no folder no/such/folder"),
    (["--nrow", "-2"], "--nrow must be at least 1, got -2"),
    (["--start", str(10**18)], "start + n must be at most"),
])
def test_sample_user_errors_are_one_line(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "sample", *args)
    assert code == 1
    assert err.startswith("error: ") and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("args,message", [
    (["--seconds", "nan"], "--seconds must be a finite number more than 0, got nan"),
    (["--seconds", "inf"], "--seconds must be a finite number more than 0, got inf"),
    (["--seconds", "0"], "--seconds must be a finite number more than 0, got 0.0"),
    (["--rounds", "0"], "--rounds must be at least 1, got 0"),
])
def test_bench_user_errors_are_one_line(capsys, args, message):
    code, out, err = run(capsys, "bench", *args)
    assert code == 1 and err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


_TERMINATE_DURING_THIRD_SAVE = """
import os, signal, sys
from PIL import Image
from ganserve.cli import main

save, calls = Image.Image.save, []

def save_then_terminate(self, *args, **kwargs):
    calls.append(1)
    save(self, *args, **kwargs)
    if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGTERM)

Image.Image.save = save_then_terminate
code = main(sys.argv[1:])  # a program calling main(): SIGTERM stops it too, not only the command
print(f"main returned {code}; the program went on")
"""


def test_sigterm_during_sample_leaves_no_temporary_file(tmp_path, tiny_model_dir):
    """SIGTERM (a `kill`, a container stopping) arrives while the third PNG is being written: the
    command exits with status 143, as the signal would, and the half-written file's temporary name
    is gone (Python's default, dying on the spot, would leave it). The program that called main()
    stops too, as it would have without ganserve's handler."""
    out = tmp_path / "png"
    done = subprocess.run([sys.executable, "-c", _TERMINATE_DURING_THIRD_SAVE, "sample", str(tiny_model_dir),
                           "--n", "6", "--out", str(out), "--backend", "numpy"], capture_output=True, text=True)
    assert (done.returncode, done.stderr, done.stdout) == (128 + signal.SIGTERM, "interrupted by SIGTERM\n", "")
    assert sorted(p.name for p in out.iterdir()) == ["00000000.png", "00000001.png"]


def test_sample_checks_the_whole_index_range_before_any_image(tmp_path, capsys, tiny_model_dir):
    from ganserve.latents import max_index

    start = max_index(Generator.load(tiny_model_dir, backend="numpy").latent_dim) - 99
    code, _, err = run(capsys, "sample", str(tiny_model_dir), "--start", str(start), "--n", "100", "--batch-size", "16",
                       "--out", str(tmp_path / "png"), "--backend", "numpy")
    assert code == 1 and f"got {start} + 100" in err
    assert not (tmp_path / "png").exists()  # refused before the folder, not after 64 images


@pytest.mark.parametrize("ext", [".xbm", ".h5"])
def test_a_grid_format_pillow_cannot_write_is_refused_before_sampling(tmp_path, capsys, monkeypatch, tiny_model_dir,
                                                                       ext):
    monkeypatch.setattr(Generator, "iter_batches", lambda *a, **k: pytest.fail("sampled before the check"))
    code, _, err = run(capsys, "sample", str(tiny_model_dir), "--n", "2", "--grid", str(tmp_path / f"g{ext}"),
                       "--backend", "numpy")
    assert code == 1 and "cannot write gray images as" in err and "use .png" in err
    assert list(tmp_path.iterdir()) == []


def test_bench_by_default_leaves_out_what_cannot_run_here(capsys, tiny_model_dir):
    from ganserve.backends import AUTO_ORDER, unavailable_reason

    code, out, _ = run(capsys, "bench", str(tiny_model_dir), "--batch", "2", "--rounds", "1", "--seconds", "0.01")
    rows = {line.split("  ")[0] for line in out.splitlines()[2:]}
    usable = {f"{name} device={options['device']}" if options else name for name, options in AUTO_ORDER
              if unavailable_reason(name, options.get("device", "auto")) is None}
    assert code == 0 and "numpy" in rows and rows == usable, out


def test_bench_refuses_an_empty_backend_list(capsys):
    code, _, err = run(capsys, "bench", "--backends", " , ")
    assert code == 1 and "--backends names no backend" in err


def test_bench_takes_the_option_names_of_the_other_commands(capsys, tiny_model_dir):
    code, out, err = run(capsys, "bench", str(tiny_model_dir), "-b", "numpy", "--batch-size", "3", "--rounds", "1",
                         "--seconds", "0.01")
    rows = [line.split() for line in out.splitlines()[2:]]
    assert code == 0 and [(row[0], row[2]) for row in rows] == [("numpy", "3")], out + err


def test_bad_model_is_one_line(tmp_path, capsys, model_copy):
    (model_copy / "config.json").write_text("{")
    code, _, err = run(capsys, "info", str(model_copy))
    assert code == 1 and "config.json: not valid JSON" in err and len(err.strip().splitlines()) == 1


def test_usage_error_exit_code(capsys):
    code, _, err = run(capsys, "sample", "--n", "many")
    assert code == 2 and "Invalid value" in err


def test_info(capsys, tiny_model_dir):
    code, out, _ = run(capsys, "info", str(tiny_model_dir), "--json")
    assert code == 0
    facts = json.loads(out)
    assert facts["preset"] == "dcgan28" and facts["latent_dim"] == 16
    assert "numpy" in facts["available_backends"]
    code, out, _ = run(capsys, "info", str(tiny_model_dir))
    assert code == 0 and "conv_transpose2d" in out


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("ganserve ")


def test_subprocess_sample_and_error(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    ok = subprocess.run([sys.executable, "-m", "ganserve", "sample", "--n", "3", "--grid", str(tmp_path / "g.png"),
                         "--backend", "numpy"], capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "g.png").is_file()
    bad = subprocess.run([sys.executable, "-m", "ganserve", "sample", "--n", "-1"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert bad.returncode == 1
    assert bad.stderr.strip() == "error: --n must be at least 1, got -1"


def test_sigint_says_interrupted(tmp_path):
    out = tmp_path / "png"
    proc = subprocess.Popen([sys.executable, "-m", "ganserve", "sample", "--n", "100000", "--out", str(out),
                             "--backend", "numpy"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as in a terminal
    deadline = time.monotonic() + 120
    while not (out.is_dir() and any(out.iterdir())) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.splitlines()[-1] == "interrupted"


def test_an_out_that_is_a_file_is_one_line(tmp_path, capsys, tiny_model_dir):
    taken = tmp_path / "samples.png"
    taken.write_text("x")
    for args in (["sample", str(tiny_model_dir), "--n", "2", "--backend", "numpy"],
                 ["generate", str(tiny_model_dir), "--n", "2", "--backend", "numpy"],
                 ["export", "--ckpt", str(tiny_model_dir), "--no-onnx"]):
        code, _, err = run(capsys, *args, "--out", str(taken))
        assert (code, err) == (1, f"error: {taken} is a file, not a folder\n"), args


def test_write_errors_name_the_users_path_not_a_temporary_file(tmp_path, capsys, monkeypatch, tiny_model_dir):
    save = Image.Image.save

    def read_only(image, fp, *args, **kwargs):
        if isinstance(fp, io.BytesIO):  # the check that the format can be written, in memory
            return save(image, fp, *args, **kwargs)
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(fp))

    monkeypatch.setattr(Image.Image, "save", read_only)
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "sample", str(tiny_model_dir), "--n", "2", "--backend", "numpy", "--grid", "s.png")
    assert (code, err) == (1, "error: [Errno 30] Read-only file system: 's.png'\n")


def test_one_image_is_singular(tmp_path, capsys, tiny_model_dir):
    code, out, _ = run(capsys, "sample", str(tiny_model_dir), "--n", "1", "--backend", "numpy",
                       "--grid", str(tmp_path / "g.png"))
    assert code == 0 and out.startswith("wrote 1 image from")


@pytest.mark.parametrize("command", ["", "info", "sample", "bench", "generate", "export", "interpolate", "arithmetic",
                                     "train", "eval"])
def test_help_shows_flags_without_a_value(capsys, command):
    code, out, _ = run(capsys, *command.split(), "--help")
    assert code == 0 and "Usage: ganserve" in out
    assert "<bool>" not in out


def test_help_rewraps_docstring_paragraphs(capsys):
    code, out, _ = run(capsys, "arithmetic", "--help")
    paragraph = out.split("\n\n")[2].splitlines()
    assert paragraph[0].strip().startswith("The grid has one row per term")
    assert all(len(line) > 60 for line in paragraph[:-1])  # no line broken where the docstring's was


def test_bench_says_an_unavailable_backend_once(capsys, tiny_model_dir):
    code, out, _ = run(capsys, "bench", str(tiny_model_dir), "--backends", "numpy,onnxruntime,tensorrt,torch",
                       "--batch", "1,2", "--rounds", "1", "--seconds", "0.01")
    assert code == 0
    unavailable = [line for line in out.splitlines() if "unavailable:" in line]
    assert len(unavailable) == len(set(unavailable))
    assert out.count("numpy ") == 2  # every usable backend at every batch size


@pytest.mark.parametrize("statement,allowed", [
    ("import ganserve", set()),  # names load on first use
    ("from ganserve import Generator, save_model, create_config", {"numpy"}),
])
def test_import_stays_light(statement, allowed):
    heavy = ("numpy", "torch", "onnx", "onnxruntime", "tensorrt", "typer")
    code = f"import sys; {statement}; print(' '.join(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert set(out.stdout.split()) == allowed
