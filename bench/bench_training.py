"""Training speed on this machine: ganserve's loop vs a loop written like the seeds', same network.

    python bench/bench_training.py --preset dcgan28 --steps 30 --rounds 3

Both train the preset's G and D on Fashion-MNIST (digits with --data digits) at batch 64. The
seeds' loop (`ganserve.training.baseline.seed_loop`): DataLoader batches, a second D pass over the
fakes, Adam without fusing, `.item()` every step, the stock torch.nn layers. ganserve's
(`Trainer.train_step`): in-memory batches, one D pass over the fakes, fused Adam, no host sync per
step, its own layers for the shapes the stock ones run slowly, and glibc's malloc told to keep freed
memory (what `Trainer` does on the CPU). Each loop runs in a process of its own, so each has only
the process-wide settings its own code makes; they take turns, round by round, and the table gives
images/s (median) and the ratio. Goal (issue 3): at least 1.5x.
--compile adds ganserve's step with G and D compiled by torch.compile (inductor), in the same rounds;
--malloc adds ganserve's step with glibc's malloc left as it is (what `keep_freed_memory` gains).

--breakdown also times the work any loop with this math must do per step, on ganserve's own
modules: G forward and backward, D forward on the real and the fake batch, D backward to its input
(G's gradient) and to its weights (twice). The seeds-style step time over that sum is the most
any loop could gain over the seeds' on this network and machine. It also counts the step's
floating-point work (torch's FLOP counter) and times a large matrix product: how close the step's
kernels run to the machine's practical ceiling.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import time

import torch

from ganserve.presets import create_config
from ganserve.training import loop
from ganserve.training.baseline import seed_loop, seed_models
from ganserve.training.data import load_dataset
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
    parser.add_argument("--compile", action="store_true",
                        help="also time ganserve's step with G and D under torch.compile (inductor)")
    parser.add_argument("--malloc", action="store_true",
                        help="also time ganserve's step with glibc's malloc left as it is")
    args = parser.parse_args()

    names = ["seeds-style", "ganserve"] + (["ganserve, compiled"] if args.compile else []) + \
        (["ganserve, malloc as is"] if args.malloc else [])
    context = multiprocessing.get_context("spawn")
    pipes, workers = {}, []
    for name in names:
        pipes[name], theirs = context.Pipe()
        workers.append(context.Process(target=serve, args=(name, args, theirs), daemon=True))
        workers[-1].start()
        theirs.close()  # the worker's end is the worker's alone: its exit is then EOF here, not a hang

    def answer(name: str):
        try:
            return pipes[name].recv()
        except EOFError:
            raise SystemExit(f"bench_training: the {name!r} loop's process stopped (its error is above)") from None

    try:
        for name in names:
            answer(name)  # built (and compiled)
        rates: dict[str, list[float]] = {name: [] for name in names}
        for r in range(args.rounds):
            for name in names:
                pipes[name].send("round")
                rates[name].append(answer(name))
            print(f"round {r + 1}: " + ", ".join(f"{name} {v[-1]:.0f} img/s" for name, v in rates.items()))
    finally:
        for name in names:
            try:
                pipes[name].send(None)
            except OSError:  # that worker is gone already
                pass
        for worker in workers:
            worker.join(timeout=60)
    medians = {name: statistics.median(v) for name, v in rates.items()}
    s, o = medians["seeds-style"], medians["ganserve"]
    print(f"\n{args.preset} on {args.data}, batch {args.batch_size}, CPU with {torch.get_num_threads()} threads")
    print(f"{'loop':22s} {'images/s':>9s}")
    for name, rate in medians.items():
        print(f"{name:22s} {rate:9.0f}")
    for name, rate in medians.items():
        if name != "seeds-style":
            print(f"ratio {name} / seeds-style: {rate / s:.2f}x")
    if args.breakdown:
        with tempfile.TemporaryDirectory() as tmp:
            trainer = make_trainer(args, tmp)
            parts = breakdown(trainer, trainer.images[:args.batch_size].contiguous(memory_format=torch.channels_last))
            flops = step_flops(trainer)
        for name, ms in parts.items():
            print(f"{name:42s} {ms:7.1f} ms")
        if min(parts.values()) < 0:
            print("(a backward part is the difference of two timings: below 0, the machine was too busy to tell)")
        needed = sum(parts.values())
        seeds_ms = 1e3 * args.batch_size / s
        print(f"{'work every step needs':42s} {needed:7.1f} ms; seeds-style step {seeds_ms:.1f} ms, "
              f"ganserve step {1e3 * args.batch_size / o:.1f} ms")
        print(f"most any loop could gain on this network: {seeds_ms / needed:.2f}x")
        peak = matmul_rate()
        print(f"the step's convolutions and matrix products: {flops / 1e9:.1f} GFLOP (torch's FLOP counter), "
              f"{flops / (args.batch_size / o) / 1e9:.0f} GFLOP/s in ganserve's step; one 2048x2048 float32 "
              f"matrix product runs at {peak / 1e9:.0f} GFLOP/s here")


def make_trainer(args: argparse.Namespace, out: str) -> Trainer:
    return Trainer(TrainOptions(preset=args.preset, data=args.data, out=out, batch_size=args.batch_size,
                                device="cpu"), log=lambda *_: None)


def serve(name: str, args: argparse.Namespace, pipe) -> None:
    """One loop, in a process of its own: answers each "round" with its images/s, stops at None."""
    with tempfile.TemporaryDirectory() as tmp:
        if name == "seeds-style":  # no Trainer in this process: nothing of ganserve's is set up
            data = load_dataset(args.data, size=create_config(args.preset).output_shape[1:])
            channels = data.images.shape[-1]
            images = data.to_tensor(create_config(args.preset, channels=channels).output_shape)
            G, D = seed_models(args.preset, channels=channels)
            run = lambda: seed_loop(G, D, images, args.steps, args.batch_size)["images_per_s"]  # noqa: E731
        else:
            if name == "ganserve, malloc as is":
                loop.keep_freed_memory = lambda: False  # the Trainer below then leaves malloc as it is
            trainer = make_trainer(args, tmp)
            if name == "ganserve, compiled":
                trainer.G_train, trainer.D_train = torch.compile(trainer.G_train), torch.compile(trainer.D_train)
                images_per_s(trainer, 3)  # compiles
            run = lambda: images_per_s(trainer, args.steps)  # noqa: E731
        pipe.send("ready")
        while pipe.recv() is not None:
            pipe.send(run())


def images_per_s(trainer: Trainer, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        losses = trainer.train_step(trainer._next_batch())
    losses.tolist()  # wait for the last step
    return steps * trainer.opts.batch_size / (time.perf_counter() - start)


def step_flops(trainer: Trainer) -> float:
    """Floating-point operations of one `train_step` (convolutions and matrix products, as counted by torch)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        trainer.train_step(trainer._next_batch())
    return counter.get_total_flops()


def matmul_rate(n: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of a large float32 matrix product on all threads: about the most a convolution can reach."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        runs.append((time.perf_counter() - start) / repeats)
    return 2 * n ** 3 / statistics.median(runs)


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
