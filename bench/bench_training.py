"""Training speed on this machine: ganserve's loop vs a loop written like the seeds', same network.

    python bench/bench_training.py --preset dcgan28 --steps 30 --rounds 3

Both train the preset's G and D on Fashion-MNIST (digits with --data digits) at batch 64. The
seeds' loop (`ganserve.training.baseline.seed_loop`): DataLoader batches, a second D pass over the
fakes, Adam without fusing, `.item()` every step. ganserve's (`Trainer.train_step`): in-memory
batches, one D pass over the fakes, fused Adam, no host sync per step. They run in interleaved
rounds; the table gives images/s (median) and the ratio. Goal (issue 3): at least 1.5x.

--breakdown also times the work any loop with this math must do per step, on ganserve's own
modules: G forward and backward, D forward on the real and the fake batch, D backward to its input
(G's gradient) and to its weights (twice). The seeds-style step time over that sum is the most
any loop could gain over the seeds' on this network and machine.
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
    parser.add_argument("--breakdown", action="store_true", help="also time the work every step must do")
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
    if args.breakdown:
        parts = breakdown(trainer, images[:args.batch_size].contiguous(memory_format=torch.channels_last))
        for name, ms in parts.items():
            print(f"{name:42s} {ms:7.1f} ms")
        if min(parts.values()) < 0:
            print("(a backward part is the difference of two timings: below 0, the machine was too busy to tell)")
        needed = sum(parts.values())
        seeds_ms = 1e3 * args.batch_size / s
        print(f"{'work every step needs':42s} {needed:7.1f} ms; seeds-style step {seeds_ms:.1f} ms, "
              f"ganserve step {1e3 * args.batch_size / o:.1f} ms")
        print(f"most any loop could gain on this network: {seeds_ms / needed:.2f}x")


def breakdown(trainer: Trainer, real: torch.Tensor, repeats: int = 20) -> dict[str, float]:
    """Milliseconds per step of each part of the work a DCGAN step must do (medians of 5 runs)."""
    G, D = trainer.G, trainer.D
    z = torch.randn(len(real), trainer.config.latent_dim)
    g_params, d_params = list(G.parameters()), list(D.parameters())
    x = real.detach().clone().requires_grad_()

    def timed(fn) -> float:
        fn()
        runs = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(repeats):
                fn()
            runs.append((time.perf_counter() - start) / repeats * 1e3)
        return statistics.median(runs)

    g_fwd = timed(lambda: G(z))
    g_both = timed(lambda: torch.autograd.grad(G(z).sum(), g_params))
    d_fwd = timed(lambda: D(real))
    d_input = timed(lambda: torch.autograd.grad(D(x).sum(), [x]))
    d_weights = timed(lambda: torch.autograd.grad(D(real).sum(), d_params))
    return {"G forward": g_fwd, "G backward": g_both - g_fwd, "D forward, real and fake": 2 * d_fwd,
            "D backward to its input (for G)": d_input - d_fwd,
            "D backward to its weights, real and fake": 2 * (d_weights - d_fwd)}


if __name__ == "__main__":
    main()
