"""The seeds' training recipe, reproduced as the yardstick ganserve's loop is compared with.

PyTorch-GAN's DCGAN script (seed article 003): a DataLoader over the dataset, per step a G update
(D(G(z)) against "valid"), then a D update on the real batch and on G(z).detach() (a second D pass
over the same fakes), BCELoss on a sigmoid output, Adam(2e-4, (0.5, 0.999)), `.item()` every step
for the loss lists, and samples taken from the training batch, i.e. with the generator in train
mode. Nothing here is used by ganserve's own training.

    python -m ganserve.training.baseline --images 600000 --out runs/baseline

trains the seeds' `upconv32` network on Fashion-MNIST (resized to 32x32, as the script's
`transforms.Resize(32)` does) for that many images and writes samples and their metric. It keeps
state.pt in --out after every pass over the data; the same command with `--resume` continues from it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from ganserve.presets import create_config
from ganserve.torch_model import build_generator

from .data import load_dataset
from .evaluate import evaluator_for, sample_images
from .networks import build_discriminator, dcgan_init

STATE_FORMAT = "ganserve-baseline-state"


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


INITS = {"script": seed_init, "dcgan": dcgan_init}


def seed_models(preset: str, channels: int = 1, seed: int = 0, init: str = "script") -> tuple[nn.Module, nn.Module]:
    """G and D as the seed script builds them (D ends in a sigmoid), initialised from `seed`: as the
    script does (init="script"), or every layer as ganserve's loop does (init="dcgan", the stronger
    yardstick in the README)."""
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    torch.manual_seed(seed)
    config = create_config(preset, channels=channels)
    G, D = build_generator(config, fast=False), nn.Sequential(build_discriminator(config, fast=False), nn.Sigmoid())
    INITS[init](G)
    INITS[init](D)
    return G, D


def _memory_batches(images: torch.Tensor, batch_size: int):
    """Shuffled batches of a tensor, the last one ragged: what the seeds' DataLoader yields, indexed
    in memory instead of sample by sample."""
    order = torch.randperm(len(images))
    for i in range(0, len(images), batch_size):
        yield (images[order[i:i + batch_size]],)


def seed_loop(G: nn.Module, D: nn.Module, images: torch.Tensor, steps: int, batch_size: int = 64,
              latent_dim: int = 100, seed: int = 0, device: str = "cpu", log=None, fast_data: bool = False,
              state_path: Optional[Path] = None, run_info: Optional[dict] = None) -> dict:
    """`steps` training steps exactly as the seed script takes them. Returns losses and timing.

    fast_data=True draws shuffled batches of the same sizes from memory (in another random order than
    the DataLoader's) and reads the losses back every 500 steps and at the last instead of every step:
    the same recipe, for long quality runs on a GPU.

    With `state_path`, both nets, both optimizers, the RNG and the step are written there (atomically)
    after every pass over the data, and a loop that finds that file continues from it: on the CPU it
    ends bit-identical to an uninterrupted run. The seed script has no such thing; it lets a 1.28M-image
    run on a CPU (hours) span several sittings. A state is refused unless its options, data and
    `run_info` (what else names the run, such as its init) are this loop's.
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
    run = None if state_path is None else {  # what a state must match (the data hashed only for a state)
        "preset": getattr(getattr(G, "config", None), "preset", None), "seed": seed, "batch_size": batch_size,
        "latent_dim": latent_dim, "fast_data": fast_data, "device": torch.device(device).type,
        "data_sha256": hashlib.sha256(images.cpu().numpy().tobytes()).hexdigest(), **(run_info or {})}
    d_losses, g_losses, step, spent = [], [], 0, 0.0
    if state_path is not None and state_path.exists():
        step, spent, d_loss, g_loss = _load_state(state_path, run, G, D, optimizer_G, optimizer_D, device)
        if step > steps:
            raise ValueError(f"{state_path} is at step {step}, past the {steps} steps asked for; ask for at least "
                             f"{step * batch_size} images, or start another run")
        d_losses, g_losses = [d_loss], [g_loss]
        if log:
            log(f"resumed from {state_path} at step {step}")
    first, start = step, time.perf_counter()
    while step < steps:
        for (imgs,) in loader():
            if step >= steps:
                break
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
        else:  # a whole pass: the next one starts from the RNG state saved here
            if state_path is not None:
                _save_state(state_path, run, G, D, optimizer_G, optimizer_D, device, step,
                            spent + time.perf_counter() - start, d_losses, g_losses)
    elapsed = time.perf_counter() - start
    return {"steps": step, "seconds": spent + elapsed, "images_per_s": (step - first) * batch_size / elapsed,
            "d_loss": d_losses[-1], "g_loss": g_losses[-1]}


def _save_state(path: Path, run: dict, G, D, optimizer_G, optimizer_D, device: str, step: int, seconds: float,
                d_losses: list, g_losses: list) -> None:
    from ganserve._files import atomic_path

    state = {"format": STATE_FORMAT, "run": run, "step": step, "seconds": seconds,
             "d_loss": d_losses[-1] if d_losses else float("nan"), "g_loss": g_losses[-1] if g_losses else float("nan"),
             "G": G.state_dict(), "D": D.state_dict(), "opt_G": optimizer_G.state_dict(),
             "opt_D": optimizer_D.state_dict(), "rng": torch.get_rng_state(),
             "cuda_rng": torch.cuda.get_rng_state(device) if run["device"] == "cuda" else None}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _load_state(path: Path, run: dict, G, D, optimizer_G, optimizer_D, device: str) -> tuple[int, float, float, float]:
    from .checkpoint import load_torch_file

    state = load_torch_file(path, "baseline state")  # weights_only: never executes code from the file
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path}: not a baseline state file")
    if state["run"] != run:
        changed = sorted(k for k in {*run, *state["run"]} if state["run"].get(k) != run.get(k))
        differs = ["the training data" if k == "data_sha256" else f"{k} (was {state['run'].get(k)!r})" for k in changed]
        raise ValueError(f"{path} belongs to another run (it differs in {', '.join(differs)}); "
                         f"resume with the same options and data")
    G.load_state_dict(state["G"])
    D.load_state_dict(state["D"])
    optimizer_G.load_state_dict(state["opt_G"])
    optimizer_D.load_state_dict(state["opt_D"])
    torch.set_rng_state(state["rng"])
    if state["cuda_rng"] is not None:
        torch.cuda.set_rng_state(state["cuda_rng"], device)
    return state["step"], state["seconds"], state["d_loss"], state["g_loss"]


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
    parser.add_argument("--init", choices=sorted(INITS), default="script",
                        help="script: as the seed script (default); dcgan: every layer N(0, 0.02), zero biases, "
                             "as ganserve's loop (the README's stronger yardstick)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its state.pt (written after every pass over the data)")
    args = parser.parse_args()
    if args.images < 64:
        parser.error(f"--images must be at least one batch of 64, got {args.images}")
    state = args.out / "state.pt"
    if state.exists() and not args.resume:
        parser.error(f"{state} exists: add --resume to continue that run, or choose another --out")
    if args.resume and not state.exists():
        parser.error(f"--resume: no {state} (one is written after every pass over the data)")
    from ganserve._files import write_json
    from ganserve.images import make_grid, save_image

    G, D = seed_models(args.preset, seed=args.seed, init=args.init)
    images = load_dataset(args.data, size=G.config.output_shape[1:]).to_tensor(G.config.output_shape)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        result = seed_loop(G, D, images, steps=args.images // 64, seed=args.seed, device=args.device, log=print,
                           fast_data=args.fast_data, state_path=state, run_info={"init": args.init})
    except ValueError as e:  # a state.pt of another run, or a damaged one
        parser.error(str(e))
    samples = train_mode_samples(G, args.samples)
    score = evaluator_for(images).score(samples)
    save_image(make_grid(samples[:64]), args.out / "samples.png")
    from ganserve.model_io import save_model
    from ganserve.torch_model import export_weights

    save_model(args.out / "model", G.config, export_weights(G),  # the raw G, BN statistics as trained
               {"training": {"recipe": "seeds (PyTorch-GAN DCGAN script)", "init": args.init,
                             "images_seen": result["steps"] * 64},
                "sampling": "train mode"})
    report = {**result, **score, "preset": args.preset, "init": args.init, "data": args.data, "images": args.images,
              "fast_data": args.fast_data,
              "sampling": "train mode (as the seed script)", "command": " ".join(["python -m ganserve.training.baseline", *sys.argv[1:]])}
    write_json(args.out / "baseline.json", report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
