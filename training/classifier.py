"""Train the Fashion-MNIST classifier whose features the quality metric uses.

    python -m ganserve.training.classifier --epochs 6 --out training/

writes ``fmnist_classifier.safetensors`` and ``fmnist_classifier.json`` (test accuracy, command,
wall time). The shipped files were made by exactly this command; see the json for the figures.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ganserve._files import atomic_path, write_json

from .data import fashion_mnist_labels, load_dataset
from .metrics import Classifier


def accuracy(net: Classifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    net.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            correct += (net(images[i:i + batch_size]).argmax(1) == labels[i:i + batch_size]).sum().item()
    return correct / len(images)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flips and shifts of up to 2 pixels."""
    flip = torch.rand(len(x), generator=gen) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    dy, dx = (int(v) for v in torch.randint(-2, 3, (2,), generator=gen))
    return torch.roll(F.pad(x, (2, 2, 2, 2), value=-1.0), (dy, dx), (2, 3))[:, :, 2:-2, 2:-2]


def train(epochs: int, batch_size: int, seed: int, log=print) -> tuple[Classifier, float]:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x_train = load_dataset("fashion-mnist").to_tensor((1, 28, 28))
    y_train = torch.from_numpy(fashion_mnist_labels("train").astype(np.int64))
    x_test = load_dataset("fashion-mnist-test").to_tensor((1, 28, 28))
    y_test = torch.from_numpy(fashion_mnist_labels("test").astype(np.int64))
    net = Classifier()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = epochs * (len(x_train) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(x_train), generator=gen)
        for i in range(len(x_train) // batch_size):
            idx = order[i * batch_size:(i + 1) * batch_size]
            loss = F.cross_entropy(net(_augment(x_train[idx], gen)), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        log(f"epoch {epoch + 1}/{epochs}: loss {loss.item():.3f}, test accuracy {accuracy(net, x_test, y_test):.4f}")
    return net.eval(), accuracy(net, x_test, y_test)


def main() -> None:
    from safetensors.torch import save_file

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True,
                        help=f"folder for fmnist_classifier.*; the metric reads the copy in {Path(__file__).parent}")
    args = parser.parse_args()
    start = time.time()
    net, acc = train(args.epochs, args.batch_size, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out / "fmnist_classifier.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp))
    write_json(args.out / "fmnist_classifier.json", {
        "test_accuracy": acc,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "command": "python -m ganserve.training.classifier " + " ".join(sys.argv[1:]),
        "wall_time_s": round(time.time() - start, 1),
        "hardware": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
    })
    print(f"test accuracy {acc:.4f}; wrote {args.out}/fmnist_classifier.*")


if __name__ == "__main__":
    main()
