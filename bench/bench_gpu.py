"""GPU backends side by side: images/s at several batch sizes, end to end and on the device alone.

    python bench/bench_gpu.py --preset dcgan64 --batches 1,64,1024 --json gpu.json

For each backend usable here (torch FP32, FP16 and FP16 compiled, channels-last as on CUDA by
default; onnxruntime CUDA FP32/FP16 with onnxruntime-gpu; tensorrt with TensorRT) and batch size it
reports
- end to end: latents on the host -> uint8 (n, H, W, C) images on the host (`Backend.run_uint8`);
- on device: latents already on the GPU, output left there (the forward pass alone);
and the fraction of the GPU's dense FP16 tensor-core peak that the on-device rate reaches, from the
model's FLOPs (2 x multiply-accumulates of its linear and conv layers). Cold start (load + first
batch in a fresh process) is measured by `--cold-start`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from ganserve import create_config, load_model
from ganserve.backends import create_backend
from ganserve.benchmark import random_model
from ganserve.latents import make_latents

# Dense FP16 tensor-core peak (no sparsity), TFLOP/s, from NVIDIA's data sheets.
FP16_PEAK_TFLOPS = {"H100 80GB HBM3": 989.4, "H100 SXM": 989.4, "H100 PCIe": 756.0, "H200": 989.4,
                    "A100": 312.0, "L4": 121.0, "L40S": 362.0}

BACKENDS = [
    ("torch", {"device": "cuda"}),
    ("torch", {"device": "cuda", "precision": "fp16"}),
    ("torch", {"device": "cuda", "precision": "fp16", "compile": True}),
    ("onnxruntime", {"device": "cuda"}),
    ("onnxruntime", {"device": "cuda", "precision": "fp16"}),
    ("tensorrt", {}),
]


def peak_tflops(name: str) -> float | None:
    return next((v for k, v in FP16_PEAK_TFLOPS.items() if k in name), None)


def timed(fn, sync, min_seconds: float, rounds: int = 3) -> float:
    """Median calls/s over `rounds` timed windows of at least `min_seconds` each."""
    rates = []
    for _ in range(rounds):
        calls, start = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            if time.perf_counter() - start >= min_seconds:
                sync()
                rates.append(calls / (time.perf_counter() - start))
                break
    return statistics.median(rates)


def on_device_fn(backend, batch: int):
    """(fn, sync) running the forward pass with input and output on the GPU, or None."""
    if backend.name == "torch":
        import torch

        z = torch.randn(batch, backend.config.latent_dim, device=backend.device, dtype=backend.dtype)

        def fn():
            with torch.inference_mode():
                backend.net(z)

        return fn, torch.cuda.synchronize
    if backend.name == "onnxruntime" and backend.device == "cuda":
        import onnxruntime as ort

        z = ort.OrtValue.ortvalue_from_numpy(make_latents(batch, backend.config.latent_dim), "cuda", 0)
        binding = backend.session.io_binding()
        binding.bind_ortvalue_input("z", z)
        binding.bind_output("images", "cuda")

        def fn():
            backend.session.run_with_iobinding(binding)

        return fn, binding.synchronize_outputs
    if backend.name == "tensorrt":
        return backend.device_benchmark(batch)
    return None


def cold_start(model_dir: str, backend: str, options: dict) -> dict:
    """Seconds to import ganserve, and to load + make the first batch, in a fresh process."""
    code = (
        "import time, json; t0 = time.perf_counter(); import ganserve; t1 = time.perf_counter(); "
        f"g = ganserve.Generator.load({model_dir!r}, backend={backend!r}, **{options!r}); "
        "g.sample(1); t2 = time.perf_counter(); print(json.dumps({'import_s': t1 - t0, 'load_and_first_batch_s': t2 - t1}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="dcgan64")
    parser.add_argument("--model", help="a model directory (default: random weights of --preset)")
    parser.add_argument("--batches", default="1,64,1024")
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--cold-start", help="a model directory to time cold starts with (run twice: the "
                                             "first run fills caches)")
    parser.add_argument("--skip", default="", help="comma-separated labels to skip, e.g. 'torch precision=fp16 compile=True'")
    parser.add_argument("--json")
    args = parser.parse_args()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}

    try:
        import torch
    except ImportError:
        sys.exit("bench_gpu.py needs torch built with CUDA: pip install 'ganserve[torch]'")
    if not torch.cuda.is_available():
        sys.exit(f"bench_gpu.py needs a CUDA GPU, and torch {torch.__version__} sees none")
    gpu = torch.cuda.get_device_name(0)
    peak = peak_tflops(gpu)
    model = load_model(args.model) if args.model else random_model(create_config(args.preset))
    flops = 2 * model.config.macs()
    print(f"{args.model or args.preset}: {flops / 1e9:.3f} GFLOP/image on {gpu} (FP16 peak {peak} TFLOP/s)")
    rows = []
    for name, options in BACKENDS:
        label = name + "".join(f" {k}={v}" for k, v in options.items() if k != "device")
        if label in skip:
            continue
        try:
            backend = create_backend(name, model, **options)
        except (ImportError, ValueError) as e:
            print(f"{label:40s} unavailable: {e}")
            rows.append({"backend": label, "error": str(e)})
            continue
        for batch in [int(b) for b in args.batches.split(",")]:
            z = make_latents(batch, model.config.latent_dim)
            start = time.perf_counter()
            backend.run_uint8(z)  # warm-up (and compilation)
            warm = time.perf_counter() - start
            e2e = timed(lambda: backend.run_uint8(z), lambda: None, args.seconds) * batch
            device = on_device_fn(backend, batch)
            dev = timed(*device, args.seconds) * batch if device else None
            frac = dev * flops / (peak * 1e12) if dev and peak else None
            row = {"backend": label, "batch": batch, "end_to_end_images_per_s": e2e, "on_device_images_per_s": dev,
                   "fp16_peak_fraction": frac, "first_call_s": warm}
            rows.append(row)
            print(f"{label:40s} batch {batch:5d}: end to end {e2e:10.0f} img/s, on device "
                  f"{dev or float('nan'):10.0f} img/s ({100 * (frac or float('nan')):.2f}% of FP16 peak)")
        backend = None  # free its GPU memory before the next one
        torch.cuda.empty_cache()
    if args.cold_start:
        for name, options in [("torch", {"device": "cuda"}), ("onnxruntime", {"device": "cuda"}),
                              ("tensorrt", {})]:
            try:
                first = cold_start(args.cold_start, name, options)
                second = cold_start(args.cold_start, name, options)
            except subprocess.CalledProcessError as e:
                print(f"cold start {name}: failed: {e.stderr.strip().splitlines()[-1] if e.stderr else e}")
                continue
            rows.append({"backend": name, "cold_start_first": first, "cold_start": second})
            print(f"cold start {name}: import {second['import_s']:.2f} s, load + first batch "
                  f"{second['load_and_first_batch_s']:.2f} s (first ever run: {first['load_and_first_batch_s']:.2f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"gpu": gpu, "gflop_per_image": flops / 1e9, "fp16_peak_tflops": peak, "rows": rows}, f,
                      indent=2)


if __name__ == "__main__":
    main()
