"""ganserve's own layers against the stock torch.nn layers they stand in for, on the CPU.

    python bench/bench_layers.py

Each layer at a shape a preset gives it, batch 64: milliseconds forward (inference mode) and
forward + backward (input and weight gradients), with channels-last tensors and without, stock
against ganserve's (medians of 7 rounds, the two interleaved). This is what decides where
`ganserve.torch_model` and `training.networks` use them: the RGB image layer is timed too, to show
why it keeps the stock layer.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from ganserve.torch_model import FoldTranspose, ProjectTranspose
from ganserve.training.networks import WholeConv

# name, where the presets use it, ganserve's class, stock class, (in, out, kernel, stride, padding), input (C, H, W)
CASES = [
    ("ProjectTranspose", "dcgan28 G, z to 7x7", ProjectTranspose, nn.ConvTranspose2d, (100, 256, 7, 1, 0), (100, 1, 1)),
    ("ProjectTranspose", "dcgan64 G, z to 4x4", ProjectTranspose, nn.ConvTranspose2d, (100, 512, 4, 1, 0), (100, 1, 1)),
    ("FoldTranspose", "dcgan28 G, image layer", FoldTranspose, nn.ConvTranspose2d, (128, 1, 4, 2, 1), (128, 14, 14)),
    ("FoldTranspose", "dcgan64 G, gray image", FoldTranspose, nn.ConvTranspose2d, (64, 1, 4, 2, 1), (64, 32, 32)),
    ("FoldTranspose", "dcgan64 G, RGB (unused)", FoldTranspose, nn.ConvTranspose2d, (64, 3, 4, 2, 1), (64, 32, 32)),
    ("WholeConv", "dcgan28 D, last layer", WholeConv, nn.Conv2d, (128, 1, 7, 1, 0), (128, 7, 7)),
    ("WholeConv", "dcgan64 D, last layer", WholeConv, nn.Conv2d, (512, 1, 4, 1, 0), (512, 4, 4)),
]


def timed(fn, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1e3


def compare(ours: nn.Module, stock: nn.Module, x: torch.Tensor, rounds: int, repeats: int) -> dict[str, list[float]]:
    ours.load_state_dict(stock.state_dict())
    params = {"ours": ours, "stock": stock}

    def forward(net):
        with torch.inference_mode():
            net(x)

    def both(net):
        xi = x.detach().requires_grad_()
        torch.autograd.grad(net(xi).sum(), [xi, *net.parameters()])

    times: dict[str, list[float]] = {f"{part} {who}": [] for part in ("forward", "both") for who in params}
    for _ in range(rounds + 1):  # the first round warms up
        for who, net in params.items():
            times[f"forward {who}"].append(timed(lambda: forward(net), repeats))
            times[f"both {who}"].append(timed(lambda: both(net), repeats))
    return {k: v[1:] for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=20, help="calls per timing")
    args = parser.parse_args()
    print(f"batch {args.batch_size}, CPU with {torch.get_num_threads()} threads; ms, stock / ganserve's (speedup)\n")
    print("| layer | used for | channels-last | forward | forward + backward |")
    print("| --- | --- | --- | ---: | ---: |")
    for name, where, cls, stock_cls, geometry, shape in CASES:
        for channels_last in (False, True):
            torch.manual_seed(0)
            stock, ours = stock_cls(*geometry, bias=False), cls(*geometry, bias=False)
            x = torch.randn(args.batch_size, *shape)
            if channels_last:
                stock, ours = stock.to(memory_format=torch.channels_last), ours.to(memory_format=torch.channels_last)
                x = x.contiguous(memory_format=torch.channels_last)
            t = {k: statistics.median(v) for k, v in compare(ours, stock, x, args.rounds, args.repeats).items()}
            cells = [f"{t[f'{p} stock']:.2f} / {t[f'{p} ours']:.2f} ({t[f'{p} stock'] / t[f'{p} ours']:.1f}x)"
                     for p in ("forward", "both")]
            print(f"| {name} | {where} | {'yes' if channels_last else 'no'} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
