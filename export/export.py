"""`ganserve export`: a checkpoint or model directory -> a complete, verified model directory.

Steps (all files are made in a temporary folder next to the output and moved in only when every
check has passed, so a failed export leaves nothing half-written):

1. read the generator: a training checkpoint (EMA weights by default, batch-norm statistics
   recomputed as the training run does) or an existing model directory;
2. write ``config.json`` and ``generator.safetensors``;
3. write ``generator.onnx`` (and ``generator.fp16.onnx`` with fp16=True) and verify each:
   onnx.checker, a symbolic batch axis, then ONNX Runtime against the NumPy reference on fixed
   latents at two batch sizes (FP32 within 1e-4 max abs; FP16 within 3e-2, no NaN/Inf);
4. with tensorrt=True, build ``generator.engine`` from the FP16 graph and verify it the same way;
5. with triton=REPO, write a Triton model repository from the staged files (all or nothing);
6. move the staged files into the output folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ganserve.backends import create_backend
from ganserve.errors import ModelFormatError
from ganserve.latents import make_latents
from ganserve.model_io import (
    CONFIG_NAME,
    ENGINE_NAME,
    EXPORT_NAMES,
    ONNX_FP16_NAME,
    ONNX_NAME,
    WEIGHTS_NAME,
    Model,
    check_weights,
    list_shipped_models,
    load_model,
    save_model,
)

FP32_TOLERANCE = 1e-4
FP16_TOLERANCE = 3e-2
VERIFY_BATCHES = (1, 7)
ENGINE_UINT8_OUTPUT = True  # engines also output uint8 images (HWC), 4x fewer bytes to copy back


class VerificationError(ValueError):
    """An exported file does not reproduce the NumPy reference within tolerance."""


@dataclass
class ExportOptions:
    weights: str = "ema"  # "ema" or "raw" (checkpoints only)
    onnx: bool = True
    fp16: bool = False
    opset: int = 17
    verify: bool = True
    tensorrt: bool = False
    min_batch: int = 1
    opt_batch: int = 64
    max_batch: int = 1024
    timing_cache: str | None = None
    triton: str | None = None
    triton_name: str = "ganserve_generator"
    triton_version: int = 1
    triton_overwrite: bool = False


def export(source: str | os.PathLike, out: str | os.PathLike, opts: ExportOptions | None = None,
           log: Callable[[str], None] = print) -> Path:
    """Export `source` (a checkpoint file or a model directory) to the model directory `out`."""
    opts = opts or ExportOptions()
    _check_options(opts)
    model = read_source(Path(source), opts.weights)
    if opts.triton:  # a config.pbtxt other versions share, refused now rather than after a long engine build
        from .triton import check_shared_config

        kind = "tensorrt" if opts.tensorrt else "onnx"
        outputs = ["images"] + (["images_uint8"] if opts.tensorrt and ENGINE_UINT8_OUTPUT else [])
        check_shared_config(opts.triton, opts.triton_name, opts.triton_version, model.config, kind, opts.max_batch,
                            outputs)
    out = Path(out)
    created = next((p for p in [*reversed(out.parents), out] if not p.exists()), None)  # the first folder made here
    out.mkdir(parents=True, exist_ok=True)
    # Staged inside `out`, so the final renames never cross a filesystem (`out` may be a mount point).
    try:
        staging = Path(tempfile.mkdtemp(prefix=".export.", suffix=".tmp", dir=out))
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(out)) from None
    try:
        save_model(staging, model.config, model.weights, model.metadata)
        staged = load_model(staging)  # what users will load, with its weights hash
        if opts.onnx or opts.tensorrt:
            for fp16 in sorted({False, opts.fp16 or opts.tensorrt}):
                write_onnx(staged, staging / (ONNX_FP16_NAME if fp16 else ONNX_NAME), fp16, opts.opset)
                if opts.verify:
                    verify(staged, "onnxruntime", {"device": "cpu", "precision": "fp16" if fp16 else "fp32"}, log)
        if opts.tensorrt:
            from .tensorrt_engine import build_engine

            build_engine(staging / ONNX_FP16_NAME, staging / ENGINE_NAME, min_batch=opts.min_batch,
                         opt_batch=opts.opt_batch, max_batch=opts.max_batch, timing_cache=opts.timing_cache,
                         uint8_output=ENGINE_UINT8_OUTPUT)
            if opts.verify:
                verify(load_model(staging), "tensorrt", {}, log, fp16=True)
        if opts.triton:  # before the move, so that a failure here leaves `out` as it was
            from .triton import write_triton_repository

            kind = "tensorrt" if opts.tensorrt else "onnx"
            repo = write_triton_repository(opts.triton, opts.triton_name, staging, kind=kind,
                                           max_batch_size=opts.max_batch, version=opts.triton_version,
                                           overwrite=opts.triton_overwrite)
            log(f"Triton repository: {repo}")
        _move_into(staging, out, log, same_model=_model_hash(out) == staged.model_hash)
    except BaseException as e:
        shutil.rmtree(staging, ignore_errors=True)
        if created is not None:  # a failed export leaves nothing behind, the folders it made neither
            shutil.rmtree(created, ignore_errors=True)
        if isinstance(e, OSError) and str(e.filename or "").startswith(str(staging)):  # name `out`, not staging
            raise OSError(e.errno, e.strerror, str(out) + str(e.filename)[len(str(staging)):]) from None
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return out


def _check_options(opts: ExportOptions) -> None:
    if opts.weights not in ("ema", "raw"):
        raise ValueError(f"--weights must be 'ema' or 'raw', got {opts.weights!r}")
    if opts.tensorrt and not 1 <= opts.min_batch <= opts.opt_batch <= opts.max_batch:
        raise ValueError(f"need 1 <= --min-batch <= --opt-batch <= --max-batch, got "
                         f"{opts.min_batch}, {opts.opt_batch}, {opts.max_batch}")
    if opts.max_batch < 1:  # without --tensorrt, the largest batch Triton sends
        raise ValueError(f"--max-batch must be at least 1, got {opts.max_batch}")
    if opts.triton and opts.tensorrt and opts.min_batch > 1:  # found before the engine's build, not after
        raise ValueError(f"--triton: Triton sends batches from 1 (single requests, dynamic batching); an engine "
                         f"built with --min-batch {opts.min_batch} cannot serve them: use --min-batch 1")
    if opts.triton and not (opts.onnx or opts.tensorrt):
        raise ValueError("--triton serves generator.onnx or generator.engine: drop --no-onnx, or add --tensorrt")
    if opts.triton:  # refused before any work, not after the model directory is written
        from .triton import check_version_folder

        check_version_folder(opts.triton, opts.triton_name, opts.triton_version, opts.triton_overwrite)
    if opts.onnx or opts.tensorrt:
        from .onnx_graph import supported_opsets

        if opts.opset not in supported_opsets():
            import onnx

            raise ValueError(f"--opset {opts.opset}: the installed onnx {onnx.__version__} writes opsets "
                             f"{supported_opsets().start}..{supported_opsets().stop - 1}")
    if opts.tensorrt:
        from ganserve.backends import unavailable_reason

        reason = unavailable_reason("tensorrt")
        if reason:
            raise ImportError(f"--tensorrt: {reason}")


def read_source(path: Path, weights: str = "ema") -> Model:
    """The generator in a model directory or a training checkpoint (``*.pt``)."""
    if path.is_dir() or (not path.exists() and str(path) in list_shipped_models()):
        if weights != "ema":  # the default; a model directory holds one set of weights, chosen when it was exported
            raise ValueError(f"--weights {weights} picks weights in a training checkpoint; {path} is a model directory")
        try:
            return load_model(str(path))
        except ModelFormatError as e:
            found = [f"{p} ({what})" for p, what in ((path / "last.pt", "a checkpoint"),
                                                      (path / "model", "the exported model")) if p.exists()]
            if found and not (path / CONFIG_NAME).exists():  # a training run folder
                raise ModelFormatError(f"{e}; {path} looks like a training run: pass {' or '.join(found)}") from None
            raise
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint or model directory at {path}")
    return _from_checkpoint(path, weights)


def _from_checkpoint(path: Path, which: str) -> Model:
    try:
        import torch
    except ImportError as e:
        raise ImportError("exporting a checkpoint needs torch: pip install 'ganserve[train]'") from e
    from ganserve.training.checkpoint import load_checkpoint
    from ganserve.training.loop import (
        exported_weights,
        inference_generator,
        training_metadata,
    )
    from ganserve.training.options import TrainOptions

    from ganserve.config import GeneratorConfig
    from ganserve.torch_model import build_generator, export_weights, load_weights

    state = load_checkpoint(path)
    try:
        config = GeneratorConfig.from_dict(state["config"])
    except (ValueError, TypeError) as e:
        raise ModelFormatError(f"{path}: invalid architecture in checkpoint: {e}") from None
    weights = exported_weights(state["options"], which)  # a run without EMA: its raw weights, whatever was asked
    tensors = {k: v for k, v in state["EMA" if weights == "ema" else "G"].items()
               if not k.endswith("num_batches_tracked")}
    check_weights({k: v.float().numpy() for k, v in tensors.items()}, config, f"{path} ({weights} weights)")
    net = load_weights(build_generator(config), tensors)
    net = inference_generator(net, TrainOptions.from_saved(state["options"]), torch.device("cpu"))
    exported_from = {"checkpoint": str(path), "step": state["step"], "weights": weights}
    if weights != which:
        exported_from["note"] = f"--weights {which} was asked for, but the run kept no EMA (--ema-decay 0): " \
                                f"these are its raw weights"
    return Model(config, export_weights(net), {"exported_from": exported_from, **training_metadata(state, which)})


def write_onnx(model: Model, path: Path, fp16: bool, opset: int) -> None:
    from ganserve._files import write_bytes

    from .onnx_graph import build_onnx

    graph = build_onnx(model.config, model.weights, fp16=fp16, opset=opset,
                       metadata={"weights_sha256": model.weights_sha256, "model_sha256": model.model_hash})
    check_symbolic_batch(graph, path)
    write_bytes(path, graph.SerializeToString())


def check_symbolic_batch(graph, where: Path) -> None:
    """Every graph input and output must have a named (symbolic) first dimension."""
    for value in list(graph.graph.input) + list(graph.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        if not dim.dim_param or dim.HasField("dim_value"):
            raise VerificationError(f"{where}: the batch axis of {value.name!r} is fixed, not symbolic")


def verify(model: Model, backend: str, options: dict, log: Callable[[str], None], fp16: bool | None = None) -> None:
    """Compare `backend` with the NumPy reference on fixed latents at two batch sizes."""
    fp16 = options.get("precision") == "fp16" if fp16 is None else fp16
    tolerance = FP16_TOLERANCE if fp16 else FP32_TOLERANCE
    reference, candidate = create_backend("numpy", model), create_backend(backend, model, **options)
    worst = 0.0
    for batch in VERIFY_BATCHES:
        z = make_latents(batch, model.config.latent_dim, seed=2024)
        step = candidate.max_batch  # an engine built with a small --max-batch runs 7 latents in parts
        got = np.concatenate([candidate.run(z[i:i + step]) for i in range(0, batch, step)])
        want = reference.run(z)
        if got.shape != want.shape:
            raise VerificationError(f"{backend}: output shape {got.shape} at batch {batch}, expected {want.shape}")
        if not np.isfinite(got).all():
            raise VerificationError(f"{backend} ({'fp16' if fp16 else 'fp32'}): NaN or Inf in the output at batch {batch}")
        worst = max(worst, float(np.abs(got - want).max()))
    if worst > tolerance:
        raise VerificationError(f"{backend} ({'fp16' if fp16 else 'fp32'}) differs from the NumPy reference by "
                                f"{worst:.2e} (max abs), more than the tolerance {tolerance:g}")
    log(f"verified {backend} {'fp16' if fp16 else 'fp32'}: max abs difference {worst:.2e} <= {tolerance:g} "
        f"at batch sizes {VERIFY_BATCHES}")


def _model_hash(path: Path) -> str | None:
    """The hash of the model directory at `path` (architecture and weights), None if there is none."""
    try:
        return load_model(path).model_hash if (path / CONFIG_NAME).is_file() else None
    except (ModelFormatError, OSError):
        return None


def _move_into(staging: Path, out: Path, log: Callable[[str], None], same_model: bool) -> None:
    """Move the staged files into `out`, each by an atomic rename (weights before config), and,
    unless `out` held this same model before, remove the exports this export did not replace:
    they were made from other weights and would not match."""
    out.mkdir(parents=True, exist_ok=True)
    order = [WEIGHTS_NAME, CONFIG_NAME, ONNX_NAME, ONNX_FP16_NAME, ENGINE_NAME]
    staged = sorted((p.name for p in staging.iterdir()), key=lambda n: (order.index(n) if n in order else 9, n))
    graph_changed = _engine_is_stale(out / ENGINE_NAME, staging / ONNX_FP16_NAME)
    for name in staged:
        os.replace(staging / name, out / name)
    log(f"wrote {', '.join(sorted(staged))} to {out}")
    stale_names = EXPORT_NAMES if not same_model else [ENGINE_NAME] if graph_changed else []
    for stale in stale_names:
        if stale not in staged and (out / stale).exists():
            (out / stale).unlink()
            why = f"it was built from another {ONNX_FP16_NAME}" if same_model else "it was exported from other weights"
            log(f"removed {out / stale}: {why}")


def _engine_is_stale(engine: Path, graph: Path) -> bool:
    """Whether `engine` was built from another FP16 graph than `graph` (another --opset, another
    ganserve version): the engine is checked against the graph it records, so it would be refused."""
    if not engine.is_file() or not graph.is_file():
        return False
    from .tensorrt_engine import read_engine_header

    try:
        recorded = read_engine_header(engine)["onnx_sha256"]
    except (ModelFormatError, OSError):  # unreadable: left for the backend to refuse, with its reason
        return False
    return recorded != hashlib.sha256(graph.read_bytes()).hexdigest()
