"""bench/probe_discriminator.py on a real checkpoint of a few steps on digits."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from ganserve.config import GeneratorConfig
from ganserve.training.checkpoint import load_checkpoint
from ganserve.training.data import load_dataset
from ganserve.training.loop import train
from ganserve.training.networks import build_discriminator
from ganserve.training.options import TrainOptions

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))
import probe_discriminator  # noqa: E402  (bench/ is scripts, not a package)


def test_probe_reports_the_checkpoints_discriminator_on_each_set(tmp_path):
    train(TrainOptions(preset="dcgan28", data="digits", out=str(tmp_path / "run"), steps=4, batch_size=8, width=8,
                       data_limit=64, checkpoint_every=4, eval_every=1000, eval_samples=16, recalibration_batches=1,
                       device="cpu"), log=lambda *_: None)
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    images = load_dataset("digits", limit=40).to_tensor((1, 28, 28))
    sets = {"training": images, "held_out": images.flip(0)}
    got = probe_discriminator.probe(state, sets)
    assert got["step"] == 4 and got["batch_size"] == 8
    D = build_discriminator(GeneratorConfig.from_dict(state["config"])).eval()
    D.load_state_dict(state["D"])
    with torch.no_grad():
        expected = torch.sigmoid(D(images)).mean().item()
    # eval mode uses the checkpoint's batch-norm statistics, untouched by the train-mode pass before it
    assert abs(got["training/eval_mode"] - expected) < 1e-4
    assert abs(got["held_out/eval_mode"] - expected) < 1e-4  # the same images in another order
    assert 0 < got["training/train_mode"] < 1 and got["training/train_mode"] != got["training/eval_mode"]
    assert probe_discriminator.probe(state, sets) == got  # dropout is seeded, the state is left as it was
