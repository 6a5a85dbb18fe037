"""CPU cost of PNG encoding in the `ganserve generate` worker processes, side by side in rounds.

    python bench/bench_encode.py                     # the shipped model (dcgan28, 28x28 grey)
    python bench/bench_encode.py --preset dcgan64    # random weights, 64x64 RGB

Each round runs one `EncoderPool` worker per variant on the same batches and reads the worker's
own CPU time from /proc (Linux), after a first batch that pays for its start:

- png, malloc pad: the default (glibc keeps 8 MiB of free heap, `ganserve.encode.MALLOC_TOP_PAD`);
- png, glibc default: the same worker without it;
- tar: the tar entries of the batch instead of PNG files.

It also times a tar member header made by `tarfile` against `ganserve.encode.tar_header`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tarfile
import tempfile
import time

from ganserve import Generator, create_config
from ganserve.benchmark import random_model
from ganserve.encode import MALLOC_TOP_PAD, EncoderPool, tar_header


def _cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_cpu(images, destination, batches: int, pad: int | None) -> tuple[float, float]:
    """(CPU seconds of the worker's start and first batch, microseconds of CPU per image after)."""
    with EncoderPool(1, images.shape[1:], len(images), 6, malloc_top_pad=pad) as pool:
        pid = pool._procs[0].pid
        pool.submit(images, 0, destination)
        pool.collect()
        start = _cpu_seconds(pid)
        for b in range(batches):
            while not pool.free:
                pool.collect()
            pool.submit(images, (b + 1) * len(images), destination)
        while len(pool.free) < pool.slots:
            pool.collect()
        return start, 1e6 * (_cpu_seconds(pid) - start) / (batches * len(images))


def header_us(make, count: int = 20000) -> float:
    start = time.perf_counter()
    for i in range(count):
        make(f"{i:08d}.png", 700 + i % 300)
    return 1e6 * (time.perf_counter() - start) / count


def _tarfile_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    return info.tobuf(format=tarfile.PAX_FORMAT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a model directory (default: the shipped model)")
    parser.add_argument("--preset", help="random weights of this preset instead of a model")
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if args.preset:
        model = random_model(create_config(args.preset))
        gen = Generator.from_weights(model.config, model.weights)
    else:
        gen = Generator.load(args.model, backend="numpy")
    images = gen.sample(64, seed=0)
    variants = {"png, malloc pad": ("png", MALLOC_TOP_PAD), "png, glibc default": ("png", None),
                "tar, malloc pad": ("tar", MALLOC_TOP_PAD)}
    results: dict[str, list[float]] = {name: [] for name in variants}
    starts: list[float] = []
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as folder:
        meta = {"seed": 0, "truncation": None, "model_hash": gen.model_hash}
        for r in range(args.rounds):
            for name, (fmt, pad) in variants.items():
                # PNG files are created, never overwritten: a new folder for each run of a worker
                destination = tempfile.mkdtemp(dir=folder) if fmt == "png" else meta
                start, per_image = worker_cpu(images, destination, args.batches, pad)
                results[name].append(per_image)
                starts.append(start)
            print(f"round {r + 1}: " + ", ".join(f"{n} {v[-1]:.0f}" for n, v in results.items()) + " us/image")
    print(f"\n{gen.config.preset} images {gen.image_shape}, batch 64, PNG level 6, worker CPU per image "
          f"(median of {args.rounds} rounds):")
    base = statistics.median(results["png, malloc pad"])
    for name, values in results.items():
        print(f"  {name:20s} {statistics.median(values):6.0f} us  ({statistics.median(values) / base:.2f}x)")
    print(f"a worker's start and first batch: {statistics.median(starts):.2f} s of CPU (median)")
    print(f"tar member header: tarfile {header_us(_tarfile_header):.1f} us, "
          f"ganserve.encode.tar_header {header_us(tar_header):.1f} us (two per image)")


if __name__ == "__main__":
    main()
