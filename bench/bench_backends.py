"""CPU backends side by side: NumPy vs ONNX Runtime vs PyTorch eager, in one run.

    python bench/bench_backends.py --preset dcgan64 --batch 64

Uses random weights (DCGAN init) unless --model names a model directory. Prints a table with
ratios to ONNX Runtime. Goals (issue 2/4): numpy >= 0.8x onnxruntime, onnxruntime >= 1.2x torch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform

from ganserve import create_config, load_model
from ganserve.benchmark import compare_backends, format_table, random_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="dcgan64")
    parser.add_argument("--model", help="a model directory (default: random weights of --preset)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="timed seconds per backend per round")
    parser.add_argument("--float", action="store_true", help="time the raw float output, not uint8 images")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    model = load_model(args.model) if args.model else random_model(create_config(args.preset))
    backends = [("numpy", {}), ("onnxruntime", {"device": "cpu"}), ("torch", {"device": "cpu"})]
    print(f"{args.model or args.preset}, batch {args.batch}, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
    results = compare_backends(model, backends, batch=args.batch, rounds=args.rounds, min_seconds=args.seconds,
                               uint8=not args.float, log=print)
    print(format_table(results, reference="onnxruntime"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
