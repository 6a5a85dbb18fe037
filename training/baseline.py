"""The seeds' training recipe, reproduced as the yardstick ganserve's loop is compared with.

PyTorch-GAN's DCGAN script (seed article 003): a DataLoader over the dataset, per step a G update
(D(G(z)) against "valid"), then a D update on the real batch and on G(z).detach() (a second D pass
over the same fakes), BCELoss on a sigmoid output, Adam(2e-4, (0.5, 0.999)), `.item()` every step
for the loss lists, and samples taken from the training batch, i.e. with the generator in train
mode. Nothing here is used by ganserve's own training.

    python -m ganserve.training.baseline --images 600000 --out runs/baseline

trains the seeds' `upconv32` network on Fashion-MNIST (resized to 32x32, as the script's
`transforms.Resize(32)` does) for that many images and writes samples and their metric.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ganserve.presets import create_config
from ganserve.torch_model import build_generator

from .data import load_dataset
from .evaluate import evaluator_for, sample_images
from .networks import build_discriminator


def seed_init(module: nn.Module) -> None:
    """The seed script's `weights_init_normal`: conv weights N(0, 0.02), BatchNorm2d scales N(1, 0.02)
    and shifts 0. Unlike ganserve's `dcgan_init`, linear layers and conv biases keep PyTorch's default
    initialisation, as the script leaves them."""
    for m in module.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def seed_models(preset: str, channels: int = 1, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """G and D as the seed script builds and initialises them (D ends in a sigmoid), from `seed`."""
    torch.manual_seed(seed)
    config = create_config(preset, channels=channels)
    G, D = build_generator(config, fast=False), nn.Sequential(build_discriminator(config, fast=False), nn.Sigmoid())
    seed_init(G)
    seed_init(D)
    return G, D


def _memory_batches(images: torch.Tensor, batch_size: int):
    """Shuffled batches of a tensor, the last one ragged: what the seeds' DataLoader yields, indexed
    in memory instead of sample by sample."""
    order = torch.randperm(len(images))
    for i in range(0, len(images), batch_size):
        yield (images[order[i:i + batch_size]],)


def seed_loop(G: nn.Module, D: nn.Module, images: torch.Tensor, steps: int, batch_size: int = 64,
              latent_dim: int = 100, seed: int = 0, device: str = "cpu", log=None, fast_data: bool = False) -> dict:
    """`steps` training steps exactly as the seed script takes them. Returns losses and timing.

    fast_data=True draws shuffled batches of the same sizes from memory (in another random order than
    the DataLoader's) and reads the losses back every 500 steps and at the last instead of every step:
    the same recipe, for long quality runs on a GPU.
    """
    torch.manual_seed(seed)
    G, D = G.to(device), D.to(device)
    if fast_data:
        images = images.to(device)
    dataset = torch.utils.data.TensorDataset(images)
    loader = (lambda: _memory_batches(images, batch_size)) if fast_data else (
        lambda: torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=False))
    adversarial_loss = nn.BCELoss()
    optimizer_G = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optimizer_D = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    d_losses, g_losses, step, start = [], [], 0, time.perf_counter()
    while step < steps:
        for (imgs,) in loader():
            valid = torch.ones(imgs.shape[0], 1, device=device)
            fake = torch.zeros(imgs.shape[0], 1, device=device)
            real_imgs = imgs.to(device)
            optimizer_G.zero_grad()
            z = torch.randn(imgs.shape[0], latent_dim, device=device)
            gen_imgs = G(z)
            g_loss = adversarial_loss(D(gen_imgs), valid)
            g_loss.backward()
            optimizer_G.step()
            optimizer_D.zero_grad()
            real_loss = adversarial_loss(D(real_imgs), valid)
            fake_loss = adversarial_loss(D(gen_imgs.detach()), fake)
            d_loss = (real_loss + fake_loss) / 2
            d_loss.backward()
            optimizer_D.step()
            if not fast_data or (step + 1) % 500 == 0 or step + 1 == steps:  # the last step's too
                d_losses.append(d_loss.item())
                g_losses.append(g_loss.item())
            step += 1
            if log and step % 500 == 0:
                log(f"step {step}/{steps}: D {d_losses[-1]:.3f} G {g_losses[-1]:.3f}")
            if step >= steps:
                break
    elapsed = time.perf_counter() - start
    return {"steps": step, "seconds": elapsed, "images_per_s": step * batch_size / elapsed,
            "d_loss": d_losses[-1], "g_loss": g_losses[-1]}


def train_mode_samples(G: nn.Module, n: int, batch_size: int = 64, seed: int = 12345) -> np.ndarray:
    """uint8 (n, H, W, C) samples as the seed script shows them: G in train mode, batch statistics."""
    return sample_images(G, n, seed=seed, train_mode=True, batch_size=batch_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="upconv32")
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--images", type=int, required=True, help="training images to show (steps x 64)")
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--fast-data", action="store_true",
                        help="in-memory batches, losses read every 500 steps (same recipe, faster)")
    args = parser.parse_args()
    from ganserve._files import write_json
    from ganserve.images import make_grid, save_image

    G, D = seed_models(args.preset, seed=args.seed)
    images = load_dataset(args.data).to_tensor(G.config.output_shape)
    result = seed_loop(G, D, images, steps=args.images // 64, seed=args.seed, device=args.device, log=print,
                       fast_data=args.fast_data)
    samples = train_mode_samples(G, args.samples)
    score = evaluator_for(images, G.config).score(samples)
    args.out.mkdir(parents=True, exist_ok=True)
    save_image(make_grid(samples[:64]), args.out / "samples.png")
    from ganserve.model_io import save_model
    from ganserve.torch_model import export_weights

    save_model(args.out / "model", G.config, export_weights(G),  # the raw G, BN statistics as trained
               {"training": {"recipe": "seeds (PyTorch-GAN DCGAN script)", "images_seen": result["steps"] * 64},
                "sampling": "train mode"})
    report = {**result, **score, "preset": args.preset, "data": args.data, "images": args.images,
              "fast_data": args.fast_data,
              "sampling": "train mode (as the seed script)", "command": " ".join(["python -m ganserve.training.baseline", *sys.argv[1:]])}
    write_json(args.out / "baseline.json", report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
