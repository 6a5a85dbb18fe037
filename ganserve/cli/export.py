"""`ganserve export`: checkpoint or model directory -> verified model directory (ONNX, TensorRT, Triton)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import app


@app.command()
def export(
    ckpt: Path = typer.Option(..., "--ckpt", "-c", help="A training checkpoint (.pt) or a model directory."),
    out: Path = typer.Option(..., "--out", "-o", help="The model directory to write."),
    weights: str = typer.Option("ema", "--weights", help="ema or raw (checkpoints only)."),
    onnx: bool = typer.Option(True, "--onnx/--no-onnx",
                              help="Write generator.onnx (always written with --fp16 or --tensorrt)."),
    fp16: bool = typer.Option(False, "--fp16", help="Also write generator.fp16.onnx (FP16 weights and compute)."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Check every export against NumPy."),
    tensorrt: bool = typer.Option(False, "--tensorrt", help="Build a TensorRT FP16 engine (needs a GPU)."),
    min_batch: int = typer.Option(1, "--min-batch", help="Smallest batch of the TensorRT engine."),
    opt_batch: int = typer.Option(64, "--opt-batch", help="The batch TensorRT tunes the engine for."),
    max_batch: int = typer.Option(1024, "--max-batch", help="Largest engine batch; Triton's max_batch_size."),
    timing_cache: Optional[Path] = typer.Option(None, "--timing-cache", help="TensorRT timing cache file."),
    triton: Optional[Path] = typer.Option(None, "--triton", help="Also write a Triton model repository here."),
    triton_name: str = typer.Option("ganserve_generator", "--triton-name", help="The model's name in the repository."),
    triton_version: int = typer.Option(1, "--triton-version", help="The version folder to write."),
    triton_overwrite: bool = typer.Option(False, "--triton-overwrite", help="Replace an existing version folder."),
) -> None:
    """Export a generator: safetensors + config, verified ONNX (FP32/FP16), TensorRT engine, Triton repo."""
    import importlib.util

    if (onnx or fp16 or tensorrt) and importlib.util.find_spec("onnx") is None:
        raise ImportError("ONNX export needs onnx and onnxruntime: pip install 'ganserve[onnx]' (or pass --no-onnx)")
    from ganserve.export.export import ExportOptions
    from ganserve.export.export import export as run_export

    opts = ExportOptions(weights=weights, onnx=onnx or fp16, fp16=fp16, opset=opset, verify=verify,
                         tensorrt=tensorrt, min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch,
                         timing_cache=str(timing_cache) if timing_cache else None,
                         triton=str(triton) if triton else None, triton_name=triton_name,
                         triton_version=triton_version, triton_overwrite=triton_overwrite)
    path = run_export(ckpt, out, opts, log=typer.echo)
    typer.echo(f"exported {ckpt} to {path}")  # the files: the "wrote ..." line above
