"""Does a run's discriminator score the real images it trained on higher than real images it never saw?

    python bench/probe_discriminator.py RUN/best.pt RUN/last.pt
    python bench/probe_discriminator.py RUN/last.pt --data PATH --held-out OTHER_PATH --images 2000

For each checkpoint: the mean of D's output (a probability, after the sigmoid) on the first --images
training images and on as many held-out ones, with D in train mode on batches of --batch-size (the
run's own by default), as it runs in training, and in eval mode. A D that memorises its training set
gives the training images clearly more than the held-out ones; one that is simply ahead of G gives
both alike, and more than 0.5.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ganserve.config import GeneratorConfig
from ganserve.training.checkpoint import load_checkpoint
from ganserve.training.data import load_dataset
from ganserve.training.networks import build_discriminator


def probe(state: dict, sets: dict[str, torch.Tensor], batch_size: int | None = None) -> dict:
    """{"step", "batch_size", "<set>/train_mode", "<set>/eval_mode" ...}: D's mean output on each image set,
    for checkpoint `state` (from `load_checkpoint`)."""
    D = build_discriminator(GeneratorConfig.from_dict(state["config"]))
    batch_size = batch_size or state["options"]["batch_size"]
    out = {"step": state["step"], "batch_size": batch_size}
    for name, images in sets.items():
        for mode in ("train", "eval"):
            D.load_state_dict(state["D"])  # train mode moves the batch-norm running statistics
            D.train(mode == "train")
            torch.manual_seed(0)  # dropout in train mode
            with torch.no_grad():
                p = torch.cat([torch.sigmoid(D(batch).float()).flatten() for batch in images.split(batch_size)])
            out[f"{name}/{mode}_mode"] = round(p.mean().item(), 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--data", default="fashion-mnist", help="the run's training data")
    parser.add_argument("--held-out", default="fashion-mnist-test", help="real images the run never saw")
    parser.add_argument("--images", type=int, default=10_000, help="images of each set")
    parser.add_argument("--batch-size", type=int, help="D's batches in train mode (default: the run's)")
    args = parser.parse_args()
    data = {"training": load_dataset(args.data, limit=args.images),
            "held_out": load_dataset(args.held_out, limit=args.images)}
    for path in args.checkpoints:
        state = load_checkpoint(Path(path))
        shape = GeneratorConfig.from_dict(state["config"]).output_shape
        sets = {name: images.to_tensor(shape) for name, images in data.items()}
        print(json.dumps({"checkpoint": path, **probe(state, sets, args.batch_size)}))


if __name__ == "__main__":
    main()
