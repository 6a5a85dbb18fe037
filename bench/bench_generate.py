"""`ganserve generate` against its ceiling, measured in one run.

    python bench/bench_generate.py --preset dcgan28 --n 3000

With a CPU backend the generator and the PNG encoders share the cores, so the best a pipeline can
do is 1 / (1/G + 1/E), where G is generation alone and E is PNG encoding alone, each on all cores.
This measures G (Generator.sample), E (Pillow PNG encoding by a pool of one process per core,
on images made beforehand, with the encoders' malloc setting) and the pipeline
(`ganserve.batch.generate`), in rounds. Each round times G (on n/2 images) and E just before and
just after the pipeline and averages the two, so that a drift of this shared machine's speed
during the round weighs on both sides alike; it prints each round's pipeline / ceiling and the
medians. Goal (issue 5): at least 90%.

It also prints what creating one small file costs the kernel in the output folder, before the
first round and after the last: on an ext4 without a journal (these machines) a new inode is
looked for past every inode deleted in the last minute or more (the kernel's `recently_deleted`),
so right after many files were removed each new file can cost ten times its usual CPU.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import tempfile
import time

from ganserve import Generator, create_config, save_model
from ganserve._system import usable_cpus
from ganserve.batch import generate
from ganserve.benchmark import random_model
from ganserve.encode import MALLOC_TOP_PAD, png_bytes
from ganserve.images import to_pil

from bench_files import create  # bench/, this script's folder


def _encode_chunk(args):
    images, level = args
    return sum(len(png_bytes(to_pil(img), level)) for img in images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="dcgan28")
    parser.add_argument("--model", help="a model directory (default: random weights of --preset)")
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--backend", default="numpy")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--png-compression", type=int, default=6)
    parser.add_argument("--batch-size", type=int, help="images per forward pass (default: the backend's)")
    parser.add_argument("--format", default="png", choices=["png", "tar"])
    parser.add_argument("--dir", help="where the pipeline writes (default: a temporary folder on the default "
                                      "disk); /dev/shm takes the filesystem's per-file cost out")
    args = parser.parse_args()
    cores = usable_cpus()
    # E's processes run with the malloc setting the pipeline's encoders get (ganserve.encode), so
    # that the ceiling uses the best encoding speed known here.
    os.environ.setdefault("MALLOC_TOP_PAD_", str(MALLOC_TOP_PAD))

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        model_dir = args.model
        if model_dir is None:
            model = random_model(create_config(args.preset))
            model_dir = save_model(os.path.join(tmp, "model"), model.config, model.weights)
        gen = Generator.load(model_dir, backend=args.backend)
        images = gen.sample(min(args.n, 2000), seed=1)
        chunks = [(images[i:i + 100], args.png_compression) for i in range(0, len(images), 100)]
        G, E, P = [], [], []
        # the cost of a new 700-byte file there, before and after (the files stay: removing them
        # would slow the next creations)
        costs = [create(os.path.join(tmp, "file-cost-before"), 300, os.urandom(700))]
        with mp.get_context("spawn").Pool(cores) as pool:
            pool.map(_encode_chunk, chunks[:cores])  # start the workers
            for r in range(args.rounds):
                g_time, e_time = [], []  # seconds per image, measured just before and just after the pipeline
                for when in ("before", "after"):
                    if when == "after":
                        out = os.path.join(tmp, f"run{r}")
                        start = time.perf_counter()
                        generate(gen, out, n=args.n, seed=r, shard_size=args.shard_size, fmt=args.format,
                                 workers=cores, batch_size=args.batch_size, compress_level=args.png_compression,
                                 log=lambda _: None)
                        P.append(args.n / (time.perf_counter() - start))
                    start = time.perf_counter()
                    for _ in gen.iter_batches(args.n // 2, seed=r, start=0, batch_size=args.batch_size):
                        pass
                    g_time.append((time.perf_counter() - start) / (args.n // 2))
                    start = time.perf_counter()
                    pool.map(_encode_chunk, chunks)
                    e_time.append((time.perf_counter() - start) / len(images))
                G.append(1 / statistics.mean(g_time))
                E.append(1 / statistics.mean(e_time))
                print(f"round {r + 1}: G {G[-1]:.0f}, E {E[-1]:.0f}, pipeline {P[-1]:.0f} images/s, "
                      f"{100 * P[-1] * (1 / G[-1] + 1 / E[-1]):.0f}% of that round's ceiling")
        costs.append(create(os.path.join(tmp, "file-cost-after"), 300, os.urandom(700)))
    g, e, p = statistics.median(G), statistics.median(E), statistics.median(P)
    ceiling = 1 / (1 / g + 1 / e)
    ratios = sorted(pr * (1 / gr + 1 / er) for gr, er, pr in zip(G, E, P))  # each round against its own ceiling
    print(f"\n{args.model or args.preset} with the {gen.backend} backend, {cores} cores, n={args.n}, PNG level "
          f"{args.png_compression}, format {args.format}, written to {args.dir or tempfile.gettempdir()}")
    print(f"generation alone (G)      {g:8.0f} images/s")
    print(f"PNG encoding alone (E)    {e:8.0f} images/s")
    print(f"ceiling 1/(1/G + 1/E)     {ceiling:8.0f} images/s")
    print(f"pipeline                  {p:8.0f} images/s = {100 * p / ceiling:.0f}% of the ceiling")
    print(f"creating a small file there: {1e6 * costs[0]:.0f} us of CPU before the first round, "
          f"{1e6 * costs[1]:.0f} us after the last")
    print(f"per round: {', '.join(f'{100 * x:.0f}%' for x in ratios)} of that round's ceiling "
          f"(median {100 * statistics.median(ratios):.0f}%)")


if __name__ == "__main__":
    main()
