"""Inference-time simplification of a generator: batch norm folded into linear/conv layers.

`fold_batch_norm(config, weights)` returns an equivalent config and weights (eval mode) in which

- a batch norm right after a linear, conv or transposed conv (a reshape may sit between a linear and
  its batch norm) is folded into that layer's weight and bias;
- otherwise, a batch norm right before a linear, or before a conv without padding, is folded into it;
- any other batch norm stays (the NumPy backend then applies it as a per-channel scale and shift);
- dropout is removed.

The NumPy backend and the ONNX writer both run on the folded form.
"""

from __future__ import annotations

import numpy as np

from .config import GeneratorConfig, param_shapes

_PRODUCERS = ("linear", "conv2d", "conv_transpose2d")


def batch_norm_affine(params: dict[str, np.ndarray], eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode batch norm as y = x * scale + shift, per channel (computed in float64)."""
    scale = params["weight"].astype(np.float64) / np.sqrt(params["running_var"].astype(np.float64) + eps)
    shift = params["bias"].astype(np.float64) - params["running_mean"].astype(np.float64) * scale
    return scale, shift


def fold_batch_norm(config: GeneratorConfig, weights: dict[str, np.ndarray]
                    ) -> tuple[GeneratorConfig, dict[str, np.ndarray]]:
    """An equivalent (eval-mode) config and float32 weights with batch norms folded away."""
    shapes = config.layer_shapes()
    items = []  # [spec, params (float64), input shape]
    for i, spec in enumerate(config.layers):
        if spec["type"] == "dropout":
            continue
        params = {name: weights[f"layers.{i}.{name}"].astype(np.float64) for name in param_shapes(spec)}
        items.append([dict(spec), params, shapes[i]])
    out = []
    pending = None  # [scale, shift, shape, reshaped since] of a batch norm waiting for its consumer
    for spec, params, in_shape in items:
        if spec["type"] == "batch_norm":
            scale, shift = batch_norm_affine(params, spec["eps"])
            if _fold_backward(out, scale, shift):
                continue
            pending = [scale, shift, in_shape, False]
            out.append([spec, params, in_shape])
            continue
        if pending is not None:
            if spec["type"] == "reshape":
                pending[3] = True
            else:
                if _fold_forward(spec, params, *pending):
                    out.pop(_last_batch_norm(out))
                pending = None
        out.append([spec, params, in_shape])
    layers = [spec for spec, _, _ in out]
    folded = GeneratorConfig(config.latent_dim, config.output_shape, tuple(layers), config.value_range,
                             config.preset)
    new_weights = {f"layers.{j}.{name}": np.ascontiguousarray(value, dtype=np.float32)
                   for j, (_, params, _) in enumerate(out) for name, value in params.items()}
    return folded, new_weights


def _last_batch_norm(out: list) -> int:
    return max(j for j, (spec, _, _) in enumerate(out) if spec["type"] == "batch_norm")


def _with_bias(spec: dict, params: dict, channels: int) -> None:
    if not spec["bias"]:
        spec.update(bias=True)
        params["bias"] = np.zeros(channels)


def _fold_backward(out: list, scale: np.ndarray, shift: np.ndarray) -> bool:
    """Fold into the previous linear/conv (through reshapes after a linear). True if done."""
    j = len(out) - 1
    while j >= 0 and out[j][0]["type"] == "reshape":
        j -= 1
    if j < 0 or out[j][0]["type"] not in _PRODUCERS:
        return False
    spec, params, _ = out[j]
    kind = spec["type"]
    if kind != "linear" and j != len(out) - 1:
        return False  # a conv's channels may not survive a reshape
    if kind == "linear":
        # Feature f of the linear output belongs to channel f // (features per channel).
        repeat = spec["out_features"] // len(scale)
        if repeat * len(scale) != spec["out_features"]:
            return False
        s, t = np.repeat(scale, repeat), np.repeat(shift, repeat)
        params["weight"] = params["weight"] * s[:, None]
    elif kind == "conv2d":
        s, t = scale, shift
        params["weight"] = params["weight"] * s[:, None, None, None]
    else:  # conv_transpose2d: weight is (in, out, k, k)
        s, t = scale, shift
        params["weight"] = params["weight"] * s[None, :, None, None]
    _with_bias(spec, params, len(s))
    params["bias"] = params["bias"] * s + t
    return True


def _fold_forward(spec: dict, params: dict, scale: np.ndarray, shift: np.ndarray,
                  bn_shape: tuple[int, ...], reshaped: bool) -> bool:
    """Fold a pending batch norm into the linear/conv `spec` that consumes it. True if done."""
    kind = spec["type"]
    if kind == "linear":
        repeat = spec["in_features"] // len(scale)  # a (C, H, W) batch norm flattened in C-major order
        s, t = np.repeat(scale, repeat), np.repeat(shift, repeat)
        w = params["weight"]
        _with_bias(spec, params, spec["out_features"])
        params["bias"] = params["bias"] + w @ t
        params["weight"] = w * s[None, :]
        return True
    if kind == "conv2d" and spec["padding"] == 0 and len(bn_shape) == 3 and not reshaped:
        w = params["weight"]
        _with_bias(spec, params, spec["out_channels"])
        params["bias"] = params["bias"] + np.einsum("oikl,i->o", w, shift)
        params["weight"] = w * scale[None, :, None, None]
        return True
    return False
