"""Sample quality without downloads: Frechet distance in a small Fashion-MNIST classifier's features.

Inception weights cannot be fetched here, so ganserve ships a small CNN trained on Fashion-MNIST
(`classifier.py`; weights in ``fmnist_classifier.safetensors``, its test accuracy in
``fmnist_classifier.json``). Two figures come from it:

- FD ("Frechet distance", lower is better): the FID formula on its 128-d penultimate features;
- CS ("classifier score", higher is better): exp(E[KL(p(y|x) || p(y))]), the Inception Score's formula.

Images of any size are resized to 28x28 gray first. The standard Inception FID is in `inception.py`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CLASSIFIER_WEIGHTS = Path(__file__).with_name("fmnist_classifier.safetensors")
CLASSIFIER_INFO = Path(__file__).with_name("fmnist_classifier.json")
FEATURES = 128


class Classifier(nn.Module):
    """28x28 gray -> 10 classes: three conv blocks, global average pool (the 128-d features), linear."""

    def __init__(self) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(1, 32), *block(32, 32), nn.MaxPool2d(2),  # 14x14
            *block(32, 64), *block(64, 64), nn.MaxPool2d(2),  # 7x7
            *block(64, FEATURES), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(FEATURES, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def load_classifier(path: Path = CLASSIFIER_WEIGHTS) -> Classifier:
    from safetensors.torch import load_file

    if not path.is_file():
        raise FileNotFoundError(f"classifier weights not found: {path} (train them with "
                                f"`python -m ganserve.training.classifier --out {path.parent}`)")
    net = Classifier()
    net.load_state_dict(load_file(str(path)))
    return net.eval()


def classifier_info() -> dict:
    return json.loads(CLASSIFIER_INFO.read_text()) if CLASSIFIER_INFO.is_file() else {}


def to_classifier_input(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, C) or float (N, C, H, W) in [-1, 1] -> float (N, 1, 28, 28) in [-1, 1]."""
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8:
            raise TypeError(f"numpy images must be uint8 (N, H, W, C), got {images.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
    else:
        x = images.float()
    if x.shape[1] == 3:
        x = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    if x.shape[2:] != (28, 28):
        x = F.interpolate(x, size=(28, 28), mode="bilinear", antialias=True, align_corners=False)
    return x


@torch.no_grad()
def features_and_probs(net: Classifier, images, batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, 128) float64, class probabilities (N, 10) float64)."""
    feats, probs = [], []
    for i in range(0, len(images), batch_size):
        f = net.features(to_classifier_input(images[i:i + batch_size]))
        feats.append(f.double().numpy())
        probs.append(torch.softmax(net.head(f), dim=1).double().numpy())
    return np.concatenate(feats), np.concatenate(probs)


@dataclass(frozen=True)
class Stats:
    """Mean and covariance of features: what FD compares."""

    mu: np.ndarray
    sigma: np.ndarray

    @classmethod
    def of(cls, features: np.ndarray) -> "Stats":
        if len(features) < 2:
            raise ValueError(f"FD needs at least 2 images on each side (a covariance), got {len(features)}")
        return cls(features.mean(axis=0), np.cov(features, rowvar=False))


def frechet_distance(a: Stats, b: Stats) -> float:
    """|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)), via symmetric eigendecompositions."""
    vals, vecs = np.linalg.eigh(a.sigma)
    root_a = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    middle = np.linalg.eigvalsh(root_a @ b.sigma @ root_a)
    cross = np.sqrt(np.clip(middle, 0, None)).sum()
    return float(((a.mu - b.mu) ** 2).sum() + np.trace(a.sigma) + np.trace(b.sigma) - 2 * cross)


def classifier_score(probs: np.ndarray, eps: float = 1e-12) -> float:
    marginal = probs.mean(axis=0, keepdims=True)
    kl = (probs * (np.log(probs + eps) - np.log(marginal + eps))).sum(axis=1)
    return float(np.exp(kl.mean()))


class Evaluator:
    """Scores images against reference real images (kept as feature statistics)."""

    def __init__(self, reference_images, net: Classifier | None = None) -> None:
        self.net = net or load_classifier()
        feats, probs = features_and_probs(self.net, reference_images)
        self.reference = Stats.of(feats)
        self.reference_cs = classifier_score(probs)

    def score(self, images) -> dict[str, float]:
        feats, probs = features_and_probs(self.net, images)
        return {"fd": frechet_distance(Stats.of(feats), self.reference), "cs": classifier_score(probs)}


def gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """uint8 (N, H, W, C) blurred by a Gaussian of `sigma` pixels (reflect padding): calibration."""
    radius = max(1, int(np.ceil(3 * sigma)))
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-t**2 / (2 * sigma**2))
    kernel /= kernel.sum()
    x = torch.from_numpy(images).permute(0, 3, 1, 2).double()
    c = x.shape[1]
    kh = torch.from_numpy(kernel).view(1, 1, -1, 1).repeat(c, 1, 1, 1)
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), kh, groups=c)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), kh.transpose(2, 3), groups=c)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
