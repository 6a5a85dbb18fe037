"""The standard Inception FID, through torch-fidelity's InceptionV3, from local weights only.

torch-fidelity reads a weights path with ``torch.load(weights_only=False)``, which could run code
from an untrusted file. So the user's file is first read here with ``weights_only=True`` (tensors
only), and torch-fidelity is handed a copy that ganserve itself wrote.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from ganserve.errors import first_line

from .checkpoint import load_failure
from .metrics import Stats, frechet_distance


def read_weights(weights: str | Path) -> dict[str, torch.Tensor]:
    """A weights file read as plain tensors only (``weights_only=True``): it can never run code."""
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"Inception weights not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (any failure means: not a plain tensor file)
        raise ValueError(load_failure(path, e, "not a PyTorch state dict of plain tensors")) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors")
    return state


def _feature_extractor_class():
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError as e:
        raise ImportError(f"Inception FID needs torch-fidelity (and torchvision): pip install torch-fidelity ({e})") from e
    except (RuntimeError, OSError) as e:  # a torchvision built for another torch: "operator torchvision::nms does not exist"
        raise ImportError(f"Inception FID: torch-fidelity is installed but does not import, most often because "
                          f"torchvision does not match torch {torch.__version__} ({first_line(e)})") from e
    return FeatureExtractorInceptionV3


def load_inception(weights: str | Path):
    """torch-fidelity's FID InceptionV3 (2048-d pool features) with the weights in `weights`."""
    state = read_weights(weights)  # the user's file is checked before torch-fidelity is imported
    extractor = _feature_extractor_class()
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "inception.pt"
        torch.save({k: v.clone() for k, v in state.items()}, copy)
        try:
            return extractor("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(copy))
        except RuntimeError as e:  # load_state_dict: missing or unexpected keys, wrong shapes
            raise ValueError(f"{weights}: not torch-fidelity's InceptionV3 weights ({first_line(e)})") from None


@torch.no_grad()
def inception_features(net, images: np.ndarray, batch_size: int = 50) -> np.ndarray:
    """2048-d features of uint8 (N, H, W, C) images (gray repeated to RGB)."""
    out = []
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size])).permute(0, 3, 1, 2)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        out.append(net(x)[0].double().numpy())
    return np.concatenate(out)


def inception_fid(generated: np.ndarray, reference: np.ndarray, weights) -> float:
    """FID between two sets of uint8 (N, H, W, C) images, with the Inception weights in the file
    `weights` or with a network that `load_inception` returned."""
    net = load_inception(weights) if isinstance(weights, (str, Path)) else weights
    return frechet_distance(Stats.of(inception_features(net, generated)), Stats.of(inception_features(net, reference)))
