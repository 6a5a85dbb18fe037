"""Score model directories in eval mode and in train mode (the recipe comparison in the README).

    python bench/score_models.py runs/seeds/model runs/ours/model ganserve/models/fashion-mnist

Each model: 10,000 samples of seed 0 scored against 10,000 Fashion-MNIST training images at the
model's resolution, once as `Generator.sample` makes them (batch norm in eval mode) and once with
batch norm in train mode on batches of 64, as the seed scripts sample.
"""

from __future__ import annotations

import argparse
import json

from ganserve.generator import Generator
from ganserve.model_io import load_model
from ganserve.torch_model import build_generator, load_weights
from ganserve.training.baseline import train_mode_samples
from ganserve.training.evaluate import reference_images
from ganserve.training.metrics import Evaluator


def score_model(path: str, samples: int = 10_000, data: str = "fashion-mnist",
                evaluators: dict | None = None) -> dict:
    """{"model", "eval_mode": {"fd", "cs"}, "train_mode": {"fd", "cs"}} of one model directory."""
    evaluators = {} if evaluators is None else evaluators
    model = load_model(path)
    shape = model.config.output_shape
    if shape not in evaluators:
        evaluators[shape] = Evaluator(reference_images(data, shape))
    evaluator = evaluators[shape]
    eval_mode = evaluator.score(Generator.load(path, backend="numpy").sample(samples, seed=0))
    net = load_weights(build_generator(model.config), model.weights)
    train_mode = evaluator.score(train_mode_samples(net, samples, batch_size=64, seed=0))
    return {"model": str(path), "eval_mode": eval_mode, "train_mode": train_mode}


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
