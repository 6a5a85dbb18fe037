"""Write a generator's ONNX graph straight from its config (no tracing, no exporter quirks).

The graph is built from the batch-norm-folded config (`ganserve.fold`), one ONNX node per layer:

    linear -> Gemm, reshape -> Reshape, conv2d -> Conv, conv_transpose2d -> ConvTranspose,
    upsample -> Resize (nearest, as PyTorch), relu/leaky_relu/tanh/sigmoid -> the same ops,
    an unfoldable batch_norm -> BatchNormalization.

Input ``z`` is float32 (batch, latent_dim) and output ``images`` float32 (batch, C, H, W), clipped to
the value range; the batch axis is symbolic. The FP16 variant stores FP16 weights and computes in
FP16 between a Cast after the input and a Cast before the output, so callers still feed and read
float32.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ganserve import __version__
from ganserve.config import GeneratorConfig, param_shapes
from ganserve.errors import missing_package
from ganserve.fold import fold_batch_norm

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError as e:
    raise missing_package("onnx", "onnx", "ONNX export") from e

DEFAULT_OPSET = 17
INPUT_NAME = "z"
OUTPUT_NAME = "images"
UINT8_OUTPUT_NAME = "images_uint8"
BATCH_DIM = "batch"


def supported_opsets() -> range:
    """Opsets this writer can target with the installed onnx package."""
    return range(13, onnx.defs.onnx_opset_version() + 1)


def build_onnx(config: GeneratorConfig, weights: dict[str, np.ndarray], *, fp16: bool = False,
               opset: int = DEFAULT_OPSET, metadata: dict[str, str] | None = None,
               uint8_output: bool = False) -> "onnx.ModelProto":
    """The ONNX model of a generator; checked with `onnx.checker` before it is returned.

    Args:
        config: the architecture (batch norms are folded here).
        weights: eval-mode float32 weights keyed as `config.param_shapes()`.
        fp16: store weights and compute in FP16 (inputs and outputs stay float32).
        opset: the ONNX opset to target (see `supported_opsets()`).
        metadata: extra metadata_props (string to string).
        uint8_output: add a second output, ``images_uint8``: uint8 (batch, H, W, C) images
            converted on the device, so that a GPU runtime copies 4x fewer bytes back.
    """
    if opset not in supported_opsets():
        raise ValueError(f"opset {opset} is not supported: the installed onnx {onnx.__version__} writes "
                         f"opsets {supported_opsets().start}..{supported_opsets().stop - 1}")
    folded, folded_weights = fold_batch_norm(config, weights)
    dtype = np.float16 if fp16 else np.float32
    builder = _Builder(dtype)
    x = INPUT_NAME
    if fp16:
        x = builder.node("Cast", [x], to=TensorProto.FLOAT16)
    for i, spec in enumerate(folded.layers):
        params = {name: folded_weights[f"layers.{i}.{name}"] for name in param_shapes(spec)}
        if fp16:
            _check_fp16_range(params, spec, i, len(folded.layers))
        x = _NODES[spec["type"]](builder, x, spec, params)
    lo, hi = config.value_range  # ONNX Runtime's Tanh can round a hair past -1 (e.g. -1.0000002)
    x = builder.node("Clip", [x, builder.const("low", lo), builder.const("high", hi)])
    if fp16:
        x = builder.node("Cast", [x], to=TensorProto.FLOAT)
    builder.nodes.append(helper.make_node("Identity", [x], [OUTPUT_NAME], name="output"))
    graph = helper.make_graph(
        builder.nodes, "ganserve_generator",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [BATCH_DIM, config.latent_dim])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [BATCH_DIM, *config.output_shape])],
        builder.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="ganserve", producer_version=__version__)
    # IR 9 is readable by onnxruntime releases of the last two years; opsets from 21 need a newer IR.
    model.ir_version = max(min(model.ir_version, 9), helper.find_min_ir_version_for(model.opset_import))
    props = {
        "ganserve_version": __version__,
        "config_sha256": config.digest(),
        "latent_dim": str(config.latent_dim),
        "output_shape": ",".join(map(str, config.output_shape)),
        "output_layout": "NCHW",
        "value_range": ",".join(repr(v) for v in config.value_range),
        "precision": "fp16" if fp16 else "fp32",
        **(metadata or {}),
    }
    helper.set_model_props(model, props)
    if uint8_output:
        add_uint8_output(model)
    onnx.checker.check_model(model, full_check=True)
    return model


def add_uint8_output(model: "onnx.ModelProto") -> None:
    """Append the ``images_uint8`` output (uint8 (batch, H, W, C), rounded as `ganserve.images.to_uint8`)
    to a ganserve graph, in place; a no-op if it has one."""
    if any(o.name == UINT8_OUTPUT_NAME for o in model.graph.output):
        return
    meta = {p.key: p.value for p in model.metadata_props}
    lo, hi = (float(v) for v in meta["value_range"].split(","))
    c, h, w = (int(v) for v in meta["output_shape"].split(","))
    builder = _Builder(np.float32, prefix="uint8_")
    x8 = _to_uint8(builder, OUTPUT_NAME, (lo, hi))
    builder.nodes.append(helper.make_node("Identity", [x8], [UINT8_OUTPUT_NAME], name="output_uint8"))
    model.graph.node.extend(builder.nodes)
    model.graph.initializer.extend(builder.initializers)
    model.graph.output.append(helper.make_tensor_value_info(UINT8_OUTPUT_NAME, TensorProto.UINT8, [BATCH_DIM, h, w, c]))


def _to_uint8(b: "_Builder", x: str, value_range: tuple[float, float]) -> str:
    """NCHW floats in `value_range` -> NHWC uint8, rounded as `ganserve.images.to_uint8` does."""
    lo, hi = value_range
    x = b.node("Transpose", [x], perm=[0, 2, 3, 1])
    x = b.node("Mul", [x, b.const("scale", 255.0 / (hi - lo), np.float32)])
    x = b.node("Add", [x, b.const("offset", 0.5 - lo * 255.0 / (hi - lo), np.float32)])
    x = b.node("Clip", [x, b.const("zero", 0.0, np.float32), b.const("top", 255.0, np.float32)])
    return b.node("Cast", [x], to=TensorProto.UINT8)  # truncation of x + 0.5: round half up


class _Builder:
    """Collects nodes and initializers with unique names."""

    def __init__(self, dtype: Any, prefix: str = "") -> None:
        self.dtype = dtype
        self.prefix = prefix
        self.nodes: list = []
        self.initializers: list = []
        self._count = 0

    def name(self, stem: str) -> str:
        self._count += 1
        return f"{self.prefix}{stem}_{self._count}"

    def const(self, stem: str, value: np.ndarray, dtype: Any = None) -> str:
        name = self.name(stem)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype or self.dtype), name))
        return name

    def node(self, op: str, inputs: list[str], **attrs: Any) -> str:
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out + "_node", **attrs))
        return out


def _check_fp16_range(params: dict[str, np.ndarray], spec: dict, index: int, count: int) -> None:
    largest = float(np.finfo(np.float16).max)
    for name, value in params.items():
        peak = float(np.abs(value).max(initial=0.0))
        if not peak <= largest:
            raise ValueError(f"the {name} of the exported graph's layer {index} of {count} ({spec['type']}, batch "
                             f"norms folded into their neighbours) reaches magnitude {peak:.3g}, beyond float16's "
                             f"largest {largest:g}; export without --fp16")


def _gemm(b: _Builder, x: str, spec: dict, p: dict) -> str:
    inputs = [x, b.const("weight", p["weight"])] + ([b.const("bias", p["bias"])] if "bias" in p else [])
    return b.node("Gemm", inputs, transB=1)


def _reshape(b: _Builder, x: str, spec: dict, p: dict) -> str:
    return b.node("Reshape", [x, b.const("shape", [0, *spec["shape"]], np.int64)])  # 0 keeps the batch


def _conv(b: _Builder, x: str, spec: dict, p: dict) -> str:
    k, s, pad = spec["kernel_size"], spec["stride"], spec["padding"]
    attrs: dict[str, Any] = dict(kernel_shape=[k, k], strides=[s, s], pads=[pad] * 4)
    if spec["type"] == "conv_transpose2d":
        attrs["output_padding"] = [spec["output_padding"]] * 2
    inputs = [x, b.const("weight", p["weight"])] + ([b.const("bias", p["bias"])] if "bias" in p else [])
    return b.node("ConvTranspose" if spec["type"] == "conv_transpose2d" else "Conv", inputs, **attrs)


def _batch_norm(b: _Builder, x: str, spec: dict, p: dict) -> str:
    inputs = [x] + [b.const(n, p[n]) for n in ("weight", "bias", "running_mean", "running_var")]
    return b.node("BatchNormalization", inputs, epsilon=spec["eps"])


def _upsample(b: _Builder, x: str, spec: dict, p: dict) -> str:
    s = float(spec["scale"])
    scales = b.const("scales", [1.0, 1.0, s, s], np.float32)
    return b.node("Resize", [x, "", scales], mode="nearest", coordinate_transformation_mode="asymmetric",
                  nearest_mode="floor")


_NODES = {
    "linear": _gemm,
    "reshape": _reshape,
    "conv2d": _conv,
    "conv_transpose2d": _conv,
    "batch_norm": _batch_norm,
    "upsample": _upsample,
    "relu": lambda b, x, s, p: b.node("Relu", [x]),
    "leaky_relu": lambda b, x, s, p: b.node("LeakyRelu", [x], alpha=s["slope"]),
    "tanh": lambda b, x, s, p: b.node("Tanh", [x]),
    "sigmoid": lambda b, x, s, p: b.node("Sigmoid", [x]),
    "dropout": lambda b, x, s, p: x,
}


def serialize(model: "onnx.ModelProto") -> bytes:
    return model.SerializeToString()
