"""How a model's score against the real images depends on how its samples are brought to the data's
size (the README's "Against the seeds' recipe": the seeds' `upconv32` makes 32x32 Fashion-MNIST).

    python bench/resize_check.py runs/seeds/model

First the reference against itself: the real training images resized up to the model's size as
training resized them, brought back three ways (the metric's own resize, bilinear and antialiased;
bicubic, antialiased; `undo_resize`, the exact inverse of the training resize) and scored against
the real images at their own size. Then each model's samples (10,000 of seed 0, eval mode and train
mode, as bench/score_models.py) brought back the same three ways. Prints JSON lines.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F
from score_models import model_samples

from ganserve.images import to_uint8
from ganserve.model_io import load_model
from ganserve.training.evaluate import data_size, reference_images, undo_resize
from ganserve.training.metrics import Evaluator


def resized(images: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """uint8 (N, H, W, C) -> (N, h, w, C) by torch's antialiased `mode` resize."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    return to_uint8(F.interpolate(x, size=size, mode=mode, antialias=True).clamp(-1, 1).numpy())


def ways_back(images: np.ndarray, size: tuple[int, int], evaluator: Evaluator) -> dict[str, dict]:
    return {"metric resize (bilinear)": evaluator.score(resized(images, size, "bilinear")),
            "bicubic": evaluator.score(resized(images, size, "bicubic")),
            "undo_resize": evaluator.score(undo_resize(images, size))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="model directories of one resolution, above the data's")
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--data", default="fashion-mnist")
    args = parser.parse_args()
    shapes = {load_model(path).config.output_shape for path in args.models}
    size = data_size(args.data)
    if size is None:
        parser.error(f"{args.data}: image files are resized by Pillow as they are read; undo_resize does not invert that")
    if len(shapes) != 1 or any(s[1] < size[0] or s[2] < size[1] or s[1:] == size for s in shapes):
        parser.error(f"the models must share one resolution above the data's {size[0]}x{size[1]}, got {sorted(shapes)}")
    [shape] = shapes
    evaluator = Evaluator(reference_images(args.data, (shape[0], *size)))
    print(json.dumps({"images": "real, resized up and back",
                      **ways_back(reference_images(args.data, shape), size, evaluator)}), flush=True)
    for path in args.models:
        for mode, images in model_samples(path, args.samples).items():
            print(json.dumps({"model": path, "mode": mode, **ways_back(images, size, evaluator)}), flush=True)


if __name__ == "__main__":
    main()
