"""Score model directories in eval mode and in train mode (the recipe comparison in the README).

    python bench/score_models.py runs/seeds/model runs/ours/model ganserve/models/fashion-mnist

Each model: 10,000 samples of seed 0 scored against 10,000 Fashion-MNIST training images, once as
`Generator.sample` makes them (batch norm in eval mode) and once with batch norm in train mode on
batches of 64, as the seed scripts sample. Two references:
- "eval_mode", "train_mode": the images resized to the model's resolution as training resized them
  (for a 32x32 model, 28x28 -> 32x32, and the metric's resize back to 28x28 on both sides);
- "real": the images at their own resolution, the reference of the blur calibration; a model at
  another resolution has its samples brought back by the exact inverse of the training resize
  (`undo_resize`), so that no blur of ours enters on either side. Same figures for a 28x28 model.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from ganserve.generator import Generator
from ganserve.model_io import load_model
from ganserve.torch_model import build_generator, load_weights
from ganserve.training.baseline import train_mode_samples
from ganserve.training.evaluate import reference_images, undo_resize, undoable_size
from ganserve.training.metrics import Evaluator


def model_samples(path: str, samples: int) -> dict[str, np.ndarray]:
    """{"eval_mode", "train_mode"}: `samples` images of seed 0 from a model directory, as
    `Generator.sample` makes them and with batch norm in train mode on batches of 64."""
    model = load_model(path)
    net = load_weights(build_generator(model.config), model.weights)
    return {"eval_mode": Generator.load(path, backend="numpy").sample(samples, seed=0),
            "train_mode": train_mode_samples(net, samples, batch_size=64, seed=0)}


def score_model(path: str, samples: int = 10_000, data: str = "fashion-mnist",
                evaluators: dict | None = None) -> dict:
    """{"model", "eval_mode": {"fd", "cs"}, "train_mode": {"fd", "cs"}, "real": {"size", "eval_mode",
    "train_mode"} or None} of one model directory ("real" is None for a model smaller than the data,
    or for image files, which Pillow resizes as they are read)."""
    evaluators = {} if evaluators is None else evaluators

    def evaluator(shape: tuple[int, int, int]) -> Evaluator:
        if shape not in evaluators:
            evaluators[shape] = Evaluator(reference_images(data, shape))
        return evaluators[shape]

    shape = load_model(path).config.output_shape
    images = model_samples(path, samples)
    scores = {mode: evaluator(shape).score(x) for mode, x in images.items()}
    size = undoable_size(data, shape)
    real = None
    if size == shape[1:]:
        real = {"size": list(size), **scores}
    elif size is not None:
        real = {"size": list(size), **{mode: evaluator((shape[0], *size)).score(undo_resize(x, size))
                                       for mode, x in images.items()}}
    return {"model": str(path), **scores, "real": real}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--data", default="fashion-mnist")
    args = parser.parse_args()
    evaluators: dict = {}
    for path in args.models:
        print(json.dumps(score_model(path, args.samples, args.data, evaluators)), flush=True)


if __name__ == "__main__":
    main()
