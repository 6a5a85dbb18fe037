"""The architecture description: a latent size, an output shape and a list of layers, as data.

This is the single source of truth about a generator network. The PyTorch module
(`ganserve.torch_model`), the NumPy forward pass (`ganserve.backends.numpy_backend`) and the ONNX
writer (`ganserve.export.onnx_graph`) are all built from it; none of them restates a layer.

A layer is a plain dict such as ``{"type": "conv2d", "in_channels": 64, ...}``. Shapes are those
of one sample in PyTorch's layout: ``(features,)`` for vectors, ``(C, H, W)`` for images.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any

# Each layer type with its fields: name -> (type, default). A default of `REQUIRED` must be given.
REQUIRED = object()
_CONV_FIELDS = {
    "in_channels": (int, REQUIRED),
    "out_channels": (int, REQUIRED),
    "kernel_size": (int, REQUIRED),
    "stride": (int, 1),
    "padding": (int, 0),
    "bias": (bool, True),
}
LAYER_FIELDS: dict[str, dict[str, tuple[type, Any]]] = {
    "linear": {"in_features": (int, REQUIRED), "out_features": (int, REQUIRED), "bias": (bool, True)},
    "reshape": {"shape": (list, REQUIRED)},
    "batch_norm": {"num_features": (int, REQUIRED), "eps": (float, 1e-5), "momentum": (float, 0.1)},
    "relu": {},
    "leaky_relu": {"slope": (float, 0.2)},
    "tanh": {},
    "sigmoid": {},
    "conv2d": _CONV_FIELDS,
    "conv_transpose2d": {**_CONV_FIELDS, "output_padding": (int, 0)},
    "upsample": {"scale": (int, 2)},  # nearest neighbour
    "dropout": {"p": (float, 0.5)},  # identity at inference
}
ELEMENTWISE = frozenset({"relu", "leaky_relu", "tanh", "sigmoid", "dropout"})


def layer(type: str, **fields: Any) -> dict[str, Any]:
    """Make a validated layer dict, filling in defaults.

    Example: ``layer("conv2d", in_channels=128, out_channels=64, kernel_size=3, padding=1)``.
    """
    return _check_layer({"type": type, **fields}, index=None)


def _check_layer(spec: Any, index: int | None) -> dict[str, Any]:
    where = "layer" if index is None else f"layer {index}"
    if not isinstance(spec, dict) or "type" not in spec:
        raise ValueError(f"{where}: expected a dict with a 'type' key, got {spec!r}")
    kind = spec["type"]
    if not isinstance(kind, str) or kind not in LAYER_FIELDS:
        raise ValueError(f"{where}: unknown layer type {kind!r}; known types: {', '.join(LAYER_FIELDS)}")
    fields = LAYER_FIELDS[kind]
    extra = sorted(set(spec) - set(fields) - {"type"})
    if extra:
        raise ValueError(f"{where} ({kind}): unknown field(s) {extra}; valid fields: {sorted(fields)}")
    out: dict[str, Any] = {"type": kind}
    for name, (ftype, default) in fields.items():
        value = spec.get(name, default)
        if value is REQUIRED:
            raise ValueError(f"{where} ({kind}): missing field {name!r}")
        out[name] = _check_field(value, ftype, f"{where} ({kind}) field {name!r}")
    _check_values(out, where)
    return out


def _check_field(value: Any, ftype: type, what: str) -> Any:
    if ftype is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if ftype is list and isinstance(value, tuple):
        value = list(value)
    if ftype is int and isinstance(value, bool) or not isinstance(value, ftype):
        raise ValueError(f"{what} must be {ftype.__name__}, got {value!r}")
    if ftype is float and not math.isfinite(value):
        raise ValueError(f"{what} must be finite, got {value!r}")
    if ftype is list:
        if not value or not all(_is_int(v) and v > 0 for v in value):
            raise ValueError(f"{what} must be a non-empty list of positive ints, got {value!r}")
        value = list(value)
    return value


def _check_values(spec: dict[str, Any], where: str) -> None:
    kind = spec["type"]
    positive = [k for k in ("in_features", "out_features", "num_features", "in_channels",
                            "out_channels", "kernel_size", "stride", "scale") if k in spec]
    for name in positive:
        if spec[name] <= 0:
            raise ValueError(f"{where} ({kind}): {name} must be positive, got {spec[name]}")
    for name in ("padding", "output_padding"):
        if name in spec and spec[name] < 0:
            raise ValueError(f"{where} ({kind}): {name} must be >= 0, got {spec[name]}")
    if kind == "conv_transpose2d" and spec["output_padding"] >= spec["stride"]:
        raise ValueError(f"{where} ({kind}): output_padding must be smaller than stride")
    if kind == "batch_norm" and not (spec["eps"] > 0 and 0 <= spec["momentum"] <= 1):
        raise ValueError(f"{where} ({kind}): need eps > 0 and 0 <= momentum <= 1, got {spec}")
    if kind == "dropout" and not 0 <= spec["p"] < 1:
        raise ValueError(f"{where} ({kind}): p must be in [0, 1), got {spec['p']}")


def output_shape(spec: dict[str, Any], shape: tuple[int, ...], where: str = "layer") -> tuple[int, ...]:
    """The per-sample output shape of one layer for a per-sample input `shape`."""
    kind = spec["type"]

    def need(cond: bool, expected: str) -> None:
        if not cond:
            raise ValueError(f"{where} ({kind}): expects {expected}, but its input has shape {shape}")

    if kind == "linear":
        need(shape == (spec["in_features"],), f"input shape ({spec['in_features']},)")
        return (spec["out_features"],)
    if kind == "reshape":
        need(math.prod(shape) == math.prod(spec["shape"]), f"{math.prod(spec['shape'])} elements")
        return tuple(spec["shape"])
    if kind == "batch_norm":
        need(len(shape) in (1, 3) and shape[0] == spec["num_features"],
             f"{spec['num_features']} channels (a vector or a C,H,W image)")
        return shape
    if kind in ELEMENTWISE:
        return shape
    need(len(shape) == 3, "a (C, H, W) image")
    c, h, w = shape
    if kind == "upsample":
        return (c, h * spec["scale"], w * spec["scale"])
    need(c == spec["in_channels"], f"{spec['in_channels']} input channels")
    k, s, p = spec["kernel_size"], spec["stride"], spec["padding"]
    if kind == "conv2d":
        size = [(n + 2 * p - k) // s + 1 for n in (h, w)]
    else:  # conv_transpose2d
        size = [(n - 1) * s - 2 * p + k + spec["output_padding"] for n in (h, w)]
    need(min(size) >= 1, "an input large enough for its kernel")
    return (spec["out_channels"], size[0], size[1])


def param_shapes(spec: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The parameters and buffers of one layer, named as PyTorch names them."""
    kind = spec["type"]
    if kind == "linear":
        shapes = {"weight": (spec["out_features"], spec["in_features"])}
        bias = spec["out_features"] if spec["bias"] else None
    elif kind in ("conv2d", "conv_transpose2d"):
        k, cin, cout = spec["kernel_size"], spec["in_channels"], spec["out_channels"]
        shapes = {"weight": (cout, cin, k, k) if kind == "conv2d" else (cin, cout, k, k)}
        bias = cout if spec["bias"] else None
    elif kind == "batch_norm":
        n = (spec["num_features"],)
        return {"weight": n, "bias": n, "running_mean": n, "running_var": n}
    else:
        return {}
    if bias is not None:
        shapes["bias"] = (bias,)
    return shapes


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_value_range(value_range: Any) -> tuple[float, float]:
    """(low, high) as floats; both must fit float32 and high - low must be usable as a divisor."""
    if (isinstance(value_range, (list, tuple)) and len(value_range) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) <= 1e38 for v in value_range)
            and value_range[1] - value_range[0] >= 1e-30):
        return float(value_range[0]), float(value_range[1])
    raise ValueError(f"value_range must be [low, high]: two numbers with |low|, |high| <= 1e38 and "
                     f"high - low >= 1e-30, got {value_range!r}")


@dataclasses.dataclass(frozen=True, eq=True)
class GeneratorConfig:
    """A generator architecture.

    Attributes:
        latent_dim: size of the latent vector z.
        output_shape: (C, H, W) of one generated image.
        layers: the layer sequence, each a dict (see `LAYER_FIELDS`).
        value_range: the range of the raw output, (-1, 1) for tanh, (0, 1) for sigmoid.
        preset: name of the preset this was built from, if any (informational).
    """

    latent_dim: int
    output_shape: tuple[int, int, int]
    layers: tuple[dict[str, Any], ...]
    value_range: tuple[float, float] = (-1.0, 1.0)
    preset: str | None = None

    def __post_init__(self) -> None:
        if not _is_int(self.latent_dim) or self.latent_dim <= 0:
            raise ValueError(f"latent_dim must be a positive int, got {self.latent_dim!r}")
        shape = tuple(self.output_shape) if isinstance(self.output_shape, (list, tuple)) else ()
        if len(shape) != 3 or not all(_is_int(v) and v > 0 for v in shape) or shape[0] not in (1, 3):
            raise ValueError(f"output_shape must be (C, H, W) with C 1 or 3, got {self.output_shape!r}")
        lo, hi = _check_value_range(self.value_range)
        if self.preset is not None and not isinstance(self.preset, str):
            raise ValueError(f"preset must be a string (or null), got {self.preset!r}")
        if not self.layers:
            raise ValueError("layers must not be empty")
        layers = tuple(_check_layer(spec, i) for i, spec in enumerate(self.layers))
        object.__setattr__(self, "output_shape", shape)
        object.__setattr__(self, "value_range", (lo, hi))
        object.__setattr__(self, "layers", layers)
        final = self.layer_shapes()[-1]
        if final != shape:
            raise ValueError(f"the layers produce shape {final}, but output_shape is {shape}")

    def __hash__(self) -> int:
        return hash(self.digest())

    def layer_shapes(self) -> list[tuple[int, ...]]:
        """Per-sample shapes: the input's, then the output of each layer."""
        shapes = [(self.latent_dim,)]
        for i, spec in enumerate(self.layers):
            shapes.append(output_shape(spec, shapes[-1], f"layer {i}"))
        return shapes

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every tensor of the model, keyed as in the PyTorch module's state dict."""
        return {f"layers.{i}.{name}": shape
                for i, spec in enumerate(self.layers)
                for name, shape in param_shapes(spec).items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "latent_dim": self.latent_dim,
            "output_shape": list(self.output_shape),
            "layers": [dict(spec) for spec in self.layers],
            "value_range": list(self.value_range),
            "preset": self.preset,
        }

    @classmethod
    def from_dict(cls, data: Any) -> "GeneratorConfig":
        if not isinstance(data, dict):
            raise ValueError(f"architecture must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"architecture has unknown key(s) {unknown}; valid keys: {sorted(known)}")
        missing = sorted({"latent_dim", "output_shape", "layers"} - set(data))
        if missing:
            raise ValueError(f"architecture is missing key(s) {missing}")
        if not isinstance(data["layers"], list):
            raise ValueError("architecture 'layers' must be a list")
        return cls(**{**data, "layers": tuple(data["layers"])})  # __post_init__ checks the other fields

    def digest(self) -> str:
        """A sha256 of the architecture (not the weights), stable across runs and machines."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def num_params(self) -> int:
        return sum(math.prod(s) for s in self.param_shapes().values())

    def macs(self) -> int:
        """Multiply-accumulates of one sample's forward pass (linear and conv layers)."""
        shapes, total = self.layer_shapes(), 0
        for spec, src, dst in zip(self.layers, shapes, shapes[1:]):
            if spec["type"] == "linear":
                total += spec["in_features"] * spec["out_features"]
            elif spec["type"] == "conv2d":
                total += math.prod(dst) * spec["in_channels"] * spec["kernel_size"] ** 2
            elif spec["type"] == "conv_transpose2d":
                total += math.prod(src) * spec["out_channels"] * spec["kernel_size"] ** 2
        return total
