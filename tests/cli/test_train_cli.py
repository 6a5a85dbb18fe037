"""`ganserve eval`, and how `ganserve train` stops (the training commands' own tests are in tests/training)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")
from ganserve.cli import main  # noqa: E402
from ganserve.training.data import FASHION_MNIST_DIR  # noqa: E402


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_eval_scores_a_model_against_real_images(capsys, tiny_model_dir):
    from ganserve import Generator
    from ganserve.training.evaluate import reference_images
    from ganserve.training.metrics import Evaluator

    code, out, err = run(capsys, "eval", str(tiny_model_dir), "--data", "digits", "--samples", "300", "--seed", "3",
                         "--backend", "numpy", "--json")
    assert code == 0, err
    model = json.loads(out)["model"]
    assert model["samples"] == 300 and model["backend"] == "numpy"
    assert model["reference"] == "1797 images of digits"
    # The figure is the metric of exactly those samples against those images.
    gen = Generator.load(tiny_model_dir, backend="numpy")
    expected = Evaluator(reference_images("digits", gen.config.output_shape)).score(gen.sample(300, seed=3))
    assert model["fd"] == pytest.approx(expected["fd"], rel=1e-9) and model["cs"] == pytest.approx(expected["cs"])
    assert np.isfinite(model["fd"]) and model["fd"] > 0
    # A 28x28 model of the 8x8 digits: also scored against the digits at 8x8, its samples brought back
    from ganserve.training.evaluate import undo_resize

    at_size = model["at_data_size"]
    expected = Evaluator(reference_images("digits", (1, 8, 8))).score(undo_resize(gen.sample(300, seed=3), (8, 8)))
    assert at_size["size"] == [8, 8] and at_size["fd"] == pytest.approx(expected["fd"], rel=1e-9)
    assert at_size["fd"] != pytest.approx(model["fd"])

    code, out, err = run(capsys, "eval", str(tiny_model_dir), "--data", "digits", "--samples", "50", "--backend", "numpy")
    assert code == 0, err
    assert "classifier: test accuracy 0.9177" in out and out.splitlines()[-1].startswith("model, at the data's 8x8")
    assert "50 samples of seed 0 (numpy backend) against 1797 images of digits" in out


def test_eval_with_truncation_scores_truncated_samples(capsys, tiny_model_dir):
    args = ["eval", str(tiny_model_dir), "--data", "digits", "--samples", "200", "--backend", "numpy"]
    code, out, err = run(capsys, *args, "--json")
    assert code == 0, err
    plain = json.loads(out)["model"]
    code, out, err = run(capsys, *args, "--truncation", "0.5", "--json")
    assert code == 0, err
    truncated = json.loads(out)["model"]
    assert (plain["truncation"], truncated["truncation"]) == (None, 0.5)
    assert truncated["fd"] != plain["fd"] and truncated["cs"] != plain["cs"]
    code, out, err = run(capsys, *args, "--truncation", "0.5")
    assert code == 0 and "200 samples of seed 0, truncation psi 0.5 (numpy backend)" in out


@pytest.mark.skipif(not (FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
                    reason="needs Debian's dataset-fashion-mnist")
def test_eval_calibrate_scores_sharp_and_blurred_test_images(capsys, tiny_model_dir):
    code, out, err = run(capsys, "eval", str(tiny_model_dir), "--data", "fashion-mnist", "--samples", "500",
                         "--backend", "numpy", "--calibrate", "--json")
    assert code == 0, err
    rows = json.loads(out)
    floor, half, one = (rows[k] for k in ("real test images (floor)", "test blurred, sigma 0.5 px",
                                          "test blurred, sigma 1.0 px"))
    assert floor["fd"] < half["fd"] < one["fd"] < rows["model"]["fd"]  # a random generator is the farthest
    assert floor["fd"] < 1 and one["fd"] > 10 * half["fd"]
    assert floor["cs"] > half["cs"] > one["cs"]


@pytest.mark.parametrize("args,message", [
    (["--samples", "1"], "--samples must be at least 2"),
    (["--n", "1"], "--samples must be at least 2"),  # --n, as `sample` and `generate` spell it
    (["--data", "/no/data"], "data not found"),
    (["/no/such/model"], "no model directory at '/no/such/model'"),
    (["--inception-weights", "/no/inception.pt"], "Inception weights not found"),
    (["--seed", "-1"], "--seed must be at least 0, got -1"),
    (["--calibrate"], "--calibrate scores Fashion-MNIST's test images against its training images; it needs "
                      "--data fashion-mnist, not 'digits'"),
])
def test_eval_errors_are_one_line(capsys, tiny_model_dir, args, message):
    model = [] if args[0].startswith("/") else [str(tiny_model_dir)]
    code, out, err = run(capsys, "eval", *model, "--data", "digits", "--samples", "20", "--backend", "numpy", *args)
    assert code == 1
    assert err.startswith("error: ") and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("resume", [False, True])
def test_ctrl_c_in_train_says_how_to_resume(capsys, monkeypatch, tmp_path, resume):
    monkeypatch.setattr("ganserve.training.loop.train", _interrupt)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(b"")  # a checkpoint was written
    code, _, err = run(capsys, "train", "--data", "digits", "--out", str(tmp_path / "run"), *["--resume"] * resume)
    again = "run the same command again" if resume else "add --resume to the same command"
    assert (code, err) == (130, f"interrupted: checkpoints already written are kept; {again} to continue from "
                                f"{tmp_path / 'run' / 'last.pt'}\n")


def test_ctrl_c_in_train_before_any_checkpoint_says_to_start_over(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr("ganserve.training.loop.train", _interrupt)
    code, _, err = run(capsys, "train", "--data", "digits", "--out", str(tmp_path / "run"))
    assert (code, err) == (130, f"interrupted: no checkpoint was written yet ({tmp_path / 'run' / 'last.pt'}); "
                                f"run the same command again to start over\n")


def test_sigterm_stops_train_as_ctrl_c_does(tmp_path):
    """A real `ganserve train` process gets SIGTERM (a scheduler's preemption) once it has written a
    checkpoint: it says how to resume, exits with 143, and leaves no temporary file behind."""
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "ganserve", "train", "--preset", "dcgan28", "--width", "8", "--data", "digits",
         "--data-limit", "256", "--out", str(run_dir), "--steps", "100000", "--batch-size", "16",
         "--checkpoint-every", "2", "--eval-every", "100000", "--device", "cpu"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "last.pt").exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (run_dir / "last.pt").exists(), "no checkpoint written within 120 s"
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM, err
    assert err.strip().splitlines()[-1] == (f"interrupted by SIGTERM: checkpoints already written are kept; add "
                                            f"--resume to the same command to continue from {run_dir / 'last.pt'}")
    assert not [p for p in run_dir.rglob("*") if p.name.endswith(".tmp")]


def test_ctrl_c_in_eval_says_interrupted(capsys, monkeypatch, tiny_model_dir):
    monkeypatch.setattr("ganserve.training.evaluate.evaluate_model", _interrupt)
    code, _, err = run(capsys, "eval", str(tiny_model_dir), "--data", "digits", "--samples", "20")
    assert (code, err) == (130, "interrupted\n")


def test_train_out_that_is_a_file(capsys, tmp_path):
    taken = tmp_path / "run"
    taken.write_text("x")
    code, _, err = run(capsys, "train", "--data", "digits", "--steps", "1", "--out", str(taken))
    assert (code, err) == (1, f"error: {taken} is a file, not a folder\n")
