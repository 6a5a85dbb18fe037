"""Shared test helpers: random weights with non-trivial batch-norm statistics."""

from __future__ import annotations

import math

import numpy as np

from ganserve.config import GeneratorConfig


def random_weights(config: GeneratorConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Weights scaled so activations stay O(1), and batch-norm statistics far from identity."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, shape in config.param_shapes().items():
        name = key.rsplit(".", 1)[1]
        if name == "weight" and len(shape) > 1:
            fan_in = math.prod(shape[1:]) if "conv_transpose" not in _layer_type(config, key) else \
                shape[0] * shape[2] * shape[3] // 4
            value = rng.normal(0, 1 / math.sqrt(max(fan_in, 1)), shape)
        elif name == "weight":  # batch-norm gamma
            value = rng.uniform(0.5, 1.5, shape)
        elif name == "bias":
            value = rng.normal(0, 0.2, shape)
        elif name == "running_mean":
            value = rng.normal(0, 0.5, shape)
        else:  # running_var
            value = rng.uniform(0.5, 2.0, shape)
        out[key] = value.astype(np.float32)
    return out


def _layer_type(config: GeneratorConfig, key: str) -> str:
    return config.layers[int(key.split(".")[1])]["type"]
