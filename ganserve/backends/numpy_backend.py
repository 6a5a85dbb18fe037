"""The reference backend: the eval-mode forward pass in NumPy, float32 throughout.

At load, batch norms are folded into the neighbouring linear/conv layers (`ganserve.fold`) and each
layer is compiled into a function on channels-last arrays: vectors are (N, F), images (N, H, W, C),
so that every conv is one GEMM over a whole chunk of the batch:

- conv2d: im2col (one strided copy per kernel tap) then (N*Ho*Wo, k*k*C) @ (k*k*C, O);
- conv_transpose2d: (N*H*W, C) @ (C, k*k*O), then col2im: each kernel tap added into its
  strided slice of the output;
- nearest upsample: one broadcast copy.

A batch is cut into chunks whose working set fits `workspace_mb` (about the L3 cache), and the
chunks run on one thread per core with BLAS single-threaded meanwhile: then the elementwise work
(col2im, activations, uint8 conversion), which NumPy does on one core, runs on all of them too. A
batch of one chunk runs on the calling thread, BLAS single-threaded too (threaded BLAS made batch 1
five times slower).
Memory stays bounded by (threads x chunk working set) plus the output.

This backend is what every other backend is tested against.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np

from .._system import usable_cpus
from ..config import param_shapes
from ..errors import BackendUnavailableError
from ..fold import batch_norm_affine, fold_batch_norm
from ..images import to_uint8
from ..latents import check_index
from .base import Backend

Op = Callable[[np.ndarray], np.ndarray]
_F32 = np.float32


class NumpyBackend(Backend):
    """Pure-NumPy forward pass.

    Option ``workspace_mb``: working memory of one batch chunk (default 32, about an L3 cache;
    larger chunks measured slower on dcgan64, see BENCHMARKS.md).
    """

    name = "numpy"

    @classmethod
    def check_available(cls, device: str = "auto") -> None:
        if device not in ("auto", "cpu"):
            raise BackendUnavailableError(f"the numpy backend runs on the CPU only, not {device!r}")

    def __init__(self, model, workspace_mb: int = 32, threads: int | None = None, device: str = "cpu",
                 **options: Any) -> None:
        super().__init__(model)
        self.check_available(device)
        if options:
            raise TypeError(f"numpy backend: unknown option(s) {sorted(options)}; "
                            f"valid: ['workspace_mb', 'threads']")
        check_index(workspace_mb, "numpy backend: workspace_mb", minimum=1)
        if threads is not None:  # None or 0: every usable CPU
            check_index(threads, "numpy backend: threads")
        folded, weights = fold_batch_norm(model.config, model.weights)
        shapes = folded.layer_shapes()
        self.ops: list[Op] = []
        for i, spec in enumerate(folded.layers):
            params = {name: weights[f"layers.{i}.{name}"] for name in param_shapes(spec)}
            self.ops.append(_BUILDERS[spec["type"]](spec, params, shapes[i], shapes[i + 1]))
        self.chunk = max(1, (workspace_mb << 20) // _bytes_per_sample(folded))
        self.threads = threads or usable_cpus()
        self._pool: ThreadPoolExecutor | None = None
        self._blas = None
        self._lock = threading.Lock()

    def forward_nhwc(self, z: np.ndarray) -> np.ndarray:
        """(n, H, W, C) float32 images of one chunk, on the calling thread."""
        x = np.array(z, dtype=_F32)  # a copy we own: activations work in place
        for op in self.ops:
            x = op(x)
        return x

    def run(self, z: np.ndarray) -> np.ndarray:
        out = np.empty((len(z), *self.config.output_shape), dtype=_F32)

        def work(lo: int, hi: int) -> None:
            out[lo:hi] = self.forward_nhwc(z[lo:hi]).transpose(0, 3, 1, 2)

        self._map(work, len(z))
        return out

    def run_uint8(self, z: np.ndarray) -> np.ndarray:
        c, h, w = self.config.output_shape
        out = np.empty((len(z), h, w, c), dtype=np.uint8)

        def work(lo: int, hi: int) -> None:
            out[lo:hi] = to_uint8(self.forward_nhwc(z[lo:hi]).transpose(0, 3, 1, 2), self.config.value_range)

        self._map(work, len(z))
        return out

    def _map(self, work: Callable[[int, int], None], n: int) -> None:
        """Run `work(lo, hi)` over chunks of [0, n): in parallel threads (one chunk: on this one), BLAS
        on one thread each."""
        count = -(-n // self.chunk)
        if self.threads > 1 and n > 1:
            count = -(-max(count, self.threads) // self.threads) * self.threads  # a multiple of threads
        size = -(-n // count)
        bounds = [(lo, min(n, lo + size)) for lo in range(0, n, size)]
        pool, blas = self._workers()
        with blas.limit(limits=1, user_api="blas"):  # also for one chunk: small GEMMs run slower threaded
            if len(bounds) == 1:
                work(*bounds[0])
                return
            for future in [pool.submit(work, lo, hi) for lo, hi in bounds]:
                future.result()

    def _workers(self):
        with self._lock:
            if self._pool is None:
                from threadpoolctl import ThreadpoolController

                self._blas = ThreadpoolController()
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="ganserve-numpy")
            return self._pool, self._blas


def _bytes_per_sample(config) -> int:
    """Peak working memory of one sample: a layer's input, output and im2col/col2im buffer."""
    shapes = config.layer_shapes()
    peak = 0
    for spec, src, dst in zip(config.layers, shapes, shapes[1:]):
        cols = 0
        if spec["type"] == "conv2d":
            cols = spec["kernel_size"] ** 2 * src[0] * dst[1] * dst[2]
        elif spec["type"] == "conv_transpose2d":
            cols = spec["kernel_size"] ** 2 * dst[0] * src[1] * src[2]
        peak = max(peak, int(np.prod(src)) + int(np.prod(dst)) + cols)
    return 4 * peak


# --- one builder per layer type: (spec, params, in_shape, out_shape) -> op on channels-last arrays


def _linear(spec, params, src, dst) -> Op:
    weight_t = np.ascontiguousarray(params["weight"].T)  # (in, out)
    bias = params.get("bias")

    def op(x):
        y = x @ weight_t
        if bias is not None:
            y += bias
        return y

    return op


def _reshape(spec, params, src, dst) -> Op:
    # Shapes follow PyTorch's (C, H, W) order; the arrays here are channels-last.
    def op(x):
        n = x.shape[0]
        nchw = x.transpose(0, 3, 1, 2) if x.ndim == 4 else x
        y = nchw.reshape(n, *dst)
        return np.ascontiguousarray(y.transpose(0, 2, 3, 1)) if len(dst) == 3 else np.ascontiguousarray(y)

    return op


def _batch_norm(spec, params, src, dst) -> Op:
    scale, shift = (v.astype(_F32) for v in batch_norm_affine(params, spec["eps"]))

    def op(x):
        x *= scale  # channels are the last axis of both vectors and images
        x += shift
        return x

    return op


def _relu(spec, params, src, dst) -> Op:
    return lambda x: np.maximum(x, 0, out=x)


def _leaky_relu(spec, params, src, dst) -> Op:
    slope = _F32(spec["slope"])
    if slope <= 1:
        return lambda x: np.maximum(x, x * slope, out=x)
    return lambda x: np.where(x >= 0, x, x * slope)


def _tanh(spec, params, src, dst) -> Op:
    return lambda x: np.tanh(x, out=x)


def _sigmoid(spec, params, src, dst) -> Op:
    def op(x):  # 0.5 * (1 + tanh(x / 2)): no overflow for large |x|
        x *= _F32(0.5)
        np.tanh(x, out=x)
        x += _F32(1)
        x *= _F32(0.5)
        return x

    return op


def _identity(spec, params, src, dst) -> Op:
    return lambda x: x


def _upsample(spec, params, src, dst) -> Op:
    s = spec["scale"]

    def op(x):
        n, h, w, c = x.shape
        y = np.empty((n, h * s, w * s, c), x.dtype)  # a new array: the next op may work in place
        y.reshape(n, h, s, w, s, c)[...] = x[:, :, None, :, None, :]
        return y

    return op


def _conv2d(spec, params, src, dst) -> Op:
    k, s, p = spec["kernel_size"], spec["stride"], spec["padding"]
    cin, (cout, ho, wo) = src[0], dst
    # (O, I, kh, kw) -> (kh * kw * I, O), matching the (kh, kw, c) order of the im2col columns.
    weight = np.ascontiguousarray(params["weight"].transpose(2, 3, 1, 0).reshape(k * k * cin, cout))
    bias = params.get("bias")

    def op(x):
        n = x.shape[0]
        if p:
            x = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        cols = np.empty((n, ho, wo, k, k, cin), dtype=_F32)
        for i in range(k):
            for j in range(k):
                cols[:, :, :, i, j, :] = x[:, i:i + s * (ho - 1) + 1:s, j:j + s * (wo - 1) + 1:s, :]
        y = cols.reshape(n * ho * wo, k * k * cin) @ weight
        if bias is not None:
            y += bias
        return y.reshape(n, ho, wo, cout)

    return op


def _conv_transpose2d(spec, params, src, dst) -> Op:
    k, s, p = spec["kernel_size"], spec["stride"], spec["padding"]
    (cin, h, w), (cout, ho, wo) = src, dst
    # (I, O, kh, kw) -> (I, kh * kw * O): one GEMM gives every tap's contribution.
    weight = params["weight"].transpose(0, 2, 3, 1).reshape(cin, k * k * cout)
    bias = params.get("bias")
    plan = _col2im_plan(k, s, p, (h, w), (ho, wo))
    # Few output channels (the RGB layer): work channels-first, where each tap is a contiguous
    # (N, H, W) block, and hand back a channels-last view.
    channels_first = cout < 8
    if channels_first:
        weight = np.ascontiguousarray(weight.T)  # (kh * kw * O, I)
        fill = 0 if bias is None else bias[:, None, None, None]
    else:
        weight = np.ascontiguousarray(weight)
        fill = 0 if bias is None else bias

    def op(x):
        n = x.shape[0]
        rows = x.reshape(n * h * w, cin)
        if channels_first:
            cols = (weight @ rows.T).reshape(k, k, cout, n, h, w)
            y = np.empty((cout, n, ho, wo), dtype=_F32)
            tap = lambda i, j, sh, sw: cols[i, j, :, :, sh, sw]  # noqa: E731
            region = lambda dh, dw: y[:, :, dh, dw]  # noqa: E731
        else:
            cols = (rows @ weight).reshape(n, h, w, k, k, cout)
            y = np.empty((n, ho, wo, cout), dtype=_F32)
            tap = lambda i, j, sh, sw: cols[:, sh, sw, i, j, :]  # noqa: E731
            region = lambda dh, dw: y[:, dh, dw, :]  # noqa: E731
        for action, i, j, sh, dh, sw, dw in plan:
            out = region(dh, dw)
            if action == "fill":
                out[...] = fill
            elif action == "set":
                np.add(tap(i, j, sh, sw), fill, out=out)
            else:
                out += tap(i, j, sh, sw)
        return y.transpose(1, 2, 3, 0) if channels_first else y

    return op


def _col2im_plan(k: int, s: int, p: int, size_in: tuple[int, int], size_out: tuple[int, int]) -> list:
    """The steps of a transposed conv's col2im: ("fill" | "set" | "add", tap_h, tap_w, slices...).

    Output rows fall into `s` phases (row % s). Each phase is first written by a tap that covers it
    whole ("set", which also adds the bias), or filled with the bias if none does; the other taps
    landing in it are then added. No output element is read before it is written.
    """
    axes = []
    for n_in, n_out in zip(size_in, size_out):
        taps = {}  # phase -> [(tap, src slice, dst slice, covers the whole phase)]
        for t in range(k):
            first = max(0, -(-(p - t) // s))  # smallest i with i*s - p + t >= 0
            last = min(n_in - 1, (n_out - 1 + p - t) // s)  # largest i with i*s - p + t < n_out
            if last < first:
                continue
            start = first * s - p + t
            whole = start < s and start + s * (last - first) + s >= n_out
            taps.setdefault(start % s, []).append(
                (t, slice(first, last + 1), slice(start, start + s * (last - first) + 1, s), whole))
        axes.append([(phase, taps.get(phase, [])) for phase in range(min(s, n_out))])
    plan = []
    for phase_h, taps_h in axes[0]:
        for phase_w, taps_w in axes[1]:
            pairs = [(th, tw) for th in taps_h for tw in taps_w]
            pairs.sort(key=lambda pair: not (pair[0][3] and pair[1][3]))  # a whole-phase tap first
            if not (pairs and pairs[0][0][3] and pairs[0][1][3]):
                plan.append(("fill", None, None, None, slice(phase_h, None, s), None, slice(phase_w, None, s)))
                pairs = [(None, None)] + pairs
            for n, (th, tw) in enumerate(pairs):
                if th is None:
                    continue
                plan.append(("set" if n == 0 else "add", th[0], tw[0], th[1], th[2], tw[1], tw[2]))
    return plan


_BUILDERS: dict[str, Callable[..., Op]] = {
    "linear": _linear,
    "reshape": _reshape,
    "batch_norm": _batch_norm,
    "relu": _relu,
    "leaky_relu": _leaky_relu,
    "tanh": _tanh,
    "sigmoid": _sigmoid,
    "conv2d": _conv2d,
    "conv_transpose2d": _conv_transpose2d,
    "upsample": _upsample,
    "dropout": _identity,
}
