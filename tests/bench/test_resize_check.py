"""bench/resize_check.py on a small 32x32 model of the 8x8 digits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")
import ganserve  # noqa: E402
from helpers import random_weights  # noqa: E402

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_the_exact_inverse_brings_the_real_images_back_where_resizes_blur(tmp_path):
    config = ganserve.create_config("upconv32", width=8, latent_dim=16)
    model = ganserve.save_model(tmp_path / "m", config, random_weights(config, seed=0))
    command = [sys.executable, str(BENCH / "resize_check.py"), str(model), "--data", "digits", "--samples", "64"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    real, eval_mode, train_mode = map(json.loads, done.stdout.splitlines())
    assert real["undo_resize"]["fd"] < 0.01 < real["bicubic"]["fd"] < real["metric resize (bilinear)"]["fd"]
    assert (eval_mode["mode"], train_mode["mode"]) == ("eval_mode", "train_mode")
    assert all(row[way]["fd"] > 0 for row in (eval_mode, train_mode) for way in ("undo_resize", "bicubic"))

    other = ganserve.save_model(tmp_path / "m28", config28 := ganserve.create_config("dcgan28", width=8, latent_dim=16),
                                random_weights(config28, seed=0))
    wrong = subprocess.run(command[:2] + [str(model), str(other), "--data", "digits"], capture_output=True, text=True)
    assert wrong.returncode == 2 and "the models must share one resolution above the data's 8x8" in wrong.stderr
