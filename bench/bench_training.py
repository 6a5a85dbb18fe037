"""Training speed on this machine: ganserve's loop vs a loop written like the seeds', same network.

    python bench/bench_training.py --preset dcgan28 --steps 30 --rounds 3

Both train the preset's G and D on Fashion-MNIST (digits with --data digits) at batch 64. The
seeds' loop (`ganserve.training.baseline.seed_loop`): DataLoader batches, a second D pass over the
fakes, Adam without fusing, `.item()` every step. ganserve's (`Trainer.train_step`): in-memory
batches, one D pass over the fakes, fused Adam, no host sync per step. They run in interleaved
rounds; the table gives images/s (median) and the ratio. Goal (issue 3): at least 1.5x.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from ganserve.training.baseline import seed_loop, seed_models
from ganserve.training.loop import Trainer
from ganserve.training.options import TrainOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="dcgan28")
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--steps", type=int, default=30, help="steps per round and loop")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(TrainOptions(preset=args.preset, data=args.data, out=tmp, batch_size=args.batch_size,
                                       device="cpu"), log=lambda *_: None)
        images = trainer.images
        G, D = seed_models(args.preset, channels=trainer.config.output_shape[0])
        ours, seeds = [], []
        for r in range(args.rounds):
            seeds.append(seed_loop(G, D, images, args.steps, args.batch_size)["images_per_s"])
            start = time.perf_counter()
            for _ in range(args.steps):
                losses = trainer.train_step(trainer._next_batch())
            losses.tolist()  # wait for the last step
            ours.append(args.steps * args.batch_size / (time.perf_counter() - start))
            print(f"round {r + 1}: seeds-style {seeds[-1]:.0f} img/s, ganserve {ours[-1]:.0f} img/s")
    s, o = statistics.median(seeds), statistics.median(ours)
    print(f"\n{args.preset} on {args.data}, batch {args.batch_size}, CPU with {torch.get_num_threads()} threads")
    print(f"{'loop':14s} {'images/s':>9s}\n{'seeds-style':14s} {s:9.0f}\n{'ganserve':14s} {o:9.0f}")
    print(f"ratio ganserve / seeds-style: {o / s:.2f}x")


if __name__ == "__main__":
    main()
