"""ganserve's training recipe against the seeds' (issue 3, item 7): several seeds of each, one machine.

    python bench/compare_recipes.py --images 1280000 --seeds 0 1 2 --out runs/compare --device cuda
    python bench/compare_recipes.py --images 3840000 --seeds 0 1 2 --ours dcgan28:48 --ours upconv32 \
        --batch-size 128 --out runs/compare-3.84M --device cuda --jobs 9

For each seed it trains, as separate processes run side by side (--jobs at a time):
- the seeds' recipe: `python -m ganserve.training.baseline` (PyTorch-GAN's DCGAN script, `upconv32`,
  batch 64, samples taken in train mode as its script does; initialised as the script does, or with
  `--seeds-init dcgan` as ganserve's loop, the README's stronger yardstick);
- ganserve's recipe for each --ours network (PRESET or PRESET:WIDTH): `ganserve train` for the same
  number of images at --batch-size, then `ganserve export --weights raw` of its raw generator.
Then it scores every model (bench/score_models.py: 10,000 samples, eval mode and train mode, against
the data resized to the model's resolution and against the real images at their own) and writes
compare.md (the table, per seed and mean) and compare.json into --out. A run that stops can be
started again with the same command: finished models and scores are kept, a ganserve run whose
last.pt exists resumes, and so does a seeds' run from its state.pt (written after every pass over
the data); models made by other commands (another --images, --data, --batch-size, ...) are refused
rather than reused.

On a CPU each job gets --threads threads (default: the cores divided by --jobs).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from score_models import score_model

from ganserve._files import write_bytes, write_json
from ganserve.model_io import load_model

SEEDS_PRESET = "upconv32"  # the seeds' script trains only this network, at batch 64
SEEDS_BATCH = 64


def parse_network(text: str) -> tuple[str, int | None]:
    preset, colon, width = text.partition(":")
    if not preset or (colon and not (width.isdigit() and int(width) > 0)):
        raise argparse.ArgumentTypeError(f"expected PRESET or PRESET:WIDTH (a width of at least 1), got {text!r}")
    return preset, int(width) if colon else None


def network_label(network: tuple[str, int | None]) -> str:
    preset, width = network
    return preset if width is None else f"{preset}-w{width}"


def plan(args: argparse.Namespace) -> list[dict]:
    """The runs to train: name, the commands (run in order), and the model directories they make."""
    py, runs = sys.executable, []
    dcgan = args.seeds_init == "dcgan"
    for seed in args.seeds:
        network = SEEDS_PRESET + ("-dcgan-init" if dcgan else "")
        out = args.out / f"seeds-{network}-s{seed}"
        runs.append({"name": out.name, "recipe": "seeds", "network": network, "seed": seed,
                     "models": {"as sampled": out / "model"},
                     "commands": [[py, "-m", "ganserve.training.baseline", "--preset", SEEDS_PRESET,
                                   "--data", args.data, "--images", str(args.images), "--samples", "1000",
                                   "--fast-data", "--device", args.device, "--seed", str(seed), "--out", str(out)]
                                  + (["--init", "dcgan"] if dcgan else [])]})
        for network in args.ours:
            out = args.out / f"ganserve-{network_label(network)}-s{seed}"
            train = [py, "-m", "ganserve", "train", "--preset", network[0], "--data", args.data, "--out", str(out),
                     "--steps", str(args.images // args.batch_size), "--batch-size", str(args.batch_size),
                     "--seed", str(seed), "--device", args.device, "--eval-every", str(args.images // args.batch_size),
                     "--eval-samples", "1000", "--log-every", "500"]
            train += ["--width", str(network[1])] if network[1] else []
            train += shlex.split(args.train_args)
            export = [py, "-m", "ganserve", "export", "--ckpt", str(out / "last.pt"), "--out", str(out / "raw"),
                      "--weights", "raw"]
            runs.append({"name": out.name, "recipe": "ganserve", "network": network_label(network), "seed": seed,
                         "models": {"as sampled": out / "model", "raw": out / "raw"}, "commands": [train, export]})
    for run in runs:
        run["done"] = args.out / f"{run['name']}.done.json"  # the commands that made its models
        run["log"] = args.out / f"{run['name']}.log"
    return runs


def train(run: dict, threads: int | None) -> float:
    """Run one plan entry's commands unless its models exist, made by the same commands; their output
    goes to NAME.log. A ganserve run with a last.pt, or a seeds' run with a state.pt, resumes (both refuse
    a state made with other options)."""
    commands = [[arg for arg in command if arg != sys.executable] for command in run["commands"]]
    if all((m / "config.json").exists() for m in run["models"].values()):
        if run["done"].exists() and json.loads(run["done"].read_text()) == commands:
            return 0.0
        raise ValueError(f"{run['models']['as sampled'].parent} was trained by other commands than this one's "
                         f"(see {run['done']}); use another --out")
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    state = "last.pt" if run["recipe"] == "ganserve" else "state.pt"
    resume = (run["models"]["as sampled"].parent / state).exists()
    start = time.perf_counter()
    with open(run["log"], "a") as log:
        for i, command in enumerate(run["commands"]):
            command = command + ["--resume"] if resume and i == 0 else command
            print("$", shlex.join(command), file=log, flush=True)
            if subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env).returncode != 0:
                raise RuntimeError(f"{run['name']} failed: see {run['log']}")
    write_json(run["done"], commands)
    return time.perf_counter() - start


def scores(runs: list[dict], samples: int, data: str, out: Path) -> None:
    """Attach {"as sampled"/"raw": score} to each run, scoring each model once: a score is kept in
    scores/ with the model's hash, the samples and the data, and reused only while all three match
    (and it has the "real" scores, which older scores lack)."""
    evaluators: dict = {}
    for run in runs:
        run["scores"] = {}
        for kind, model in run["models"].items():
            cached = out / "scores" / f"{run['name']}-{kind.replace(' ', '-')}.json"
            key = {"model_hash": load_model(model).model_hash, "samples": samples, "data": data}
            kept = json.loads(cached.read_text()) if cached.exists() else {}
            if "real" in kept and all(kept.get(k) == v for k, v in key.items()):  # "real": scored since 2026-11-25
                run["scores"][kind] = kept
                continue
            cached.parent.mkdir(exist_ok=True)
            run["scores"][kind] = {**score_model(str(model), samples, data, evaluators), **key}
            write_json(cached, run["scores"][kind])


def sampled_in(recipe: str, kind: str) -> str:
    """The mode a model is scored in as its users see it: the seeds' script and any raw generator in
    train mode, ganserve's exported model in eval mode (as `Generator.sample` gives it)."""
    return "train_mode" if recipe == "seeds" or kind == "raw" else "eval_mode"


def rows(runs: list[dict]) -> list[dict]:
    """One row per (recipe, network, model kind): per-seed and mean FD/CS in the mode its users see.

    The seeds' models are sampled in train mode (as their script shows samples), ganserve's in eval
    mode (as `Generator.sample` gives them); both modes are kept. "fd_real": FD against the real
    images at their own resolution (None where a model is smaller than the data).
    """
    table: dict[tuple, dict] = {}
    for run in runs:
        for kind, score in run["scores"].items():
            key = (run["recipe"], run["network"], kind)
            row = table.setdefault(key, {"recipe": run["recipe"], "network": run["network"], "kind": kind,
                                         "seeds": [], "fd": [], "cs": [], "fd_eval": [], "fd_train": [],
                                         "fd_real": []})
            mode = sampled_in(run["recipe"], kind)
            row["seeds"].append(run["seed"])
            row["fd"].append(score[mode]["fd"])
            row["cs"].append(score[mode]["cs"])
            row["fd_eval"].append(score["eval_mode"]["fd"])
            row["fd_train"].append(score["train_mode"]["fd"])
            row["fd_real"].append(score["real"][mode]["fd"] if score.get("real") else None)
    for row in table.values():
        row["fd_mean"], row["cs_mean"] = statistics.fmean(row["fd"]), statistics.fmean(row["cs"])
        row["fd_real_mean"] = None if None in row["fd_real"] else statistics.fmean(row["fd_real"])
    return list(table.values())


def verdicts(table: list[dict]) -> list[str]:
    """Each ganserve network (as sampled) against the seeds' recipe, by FD in the mode each is sampled,
    against the data at the model's resolution and against the real images at their own."""
    base = next((r for r in table if r["recipe"] == "seeds"), None)
    lines = []
    for row in table:
        if base is None or row["recipe"] != "ganserve" or row["kind"] != "as sampled":
            continue
        for key, against in (("fd", "data at the model's resolution"), ("fd_real", "real images at their own")):
            if row[f"{key}_mean"] is None or base[f"{key}_mean"] is None:
                continue
            ours, seeds = row[key], base[key]
            better = sum(o < s for o, s in zip(ours, seeds))
            lines.append(f"ganserve {row['network']}, against the {against}: mean FD {row[f'{key}_mean']:.3f} "
                         f"against the seeds' {base[f'{key}_mean']:.3f} "
                         f"({row[f'{key}_mean'] / base[f'{key}_mean']:.2f}x); lower for {better} of {len(ours)} "
                         f"seeds; every ganserve run below every seeds' run: "
                         f"{'yes' if max(ours) < min(seeds) else 'no'}")
    return lines


def markdown(table: list[dict], images: int) -> str:
    def cells(values: list[float | None]) -> str:
        return " / ".join("-" if v is None else f"{v:.2f}" for v in values)

    lines = [f"{images:,} images per run; FD and CS of seeds {', '.join(map(str, table[0]['seeds']))}, then the mean; "
             "FD against the data at the model's resolution, and against the real images at their own",
             "", "| recipe, network, model | sampled in | FD | mean FD | CS | mean CS | FD eval mode | FD train mode "
             "| FD, real images | mean |", "| --- | --- | --- | ---: | --- | ---: | --- | --- | --- | ---: |"]
    for r in table:
        name = f"{r['recipe']}, `{r['network']}`" + (", raw generator (no EMA)" if r["kind"] == "raw" else "")
        mode = sampled_in(r["recipe"], r["kind"]).replace("_", " ")
        lines.append(f"| {name} | {mode} | {cells(r['fd'])} | {r['fd_mean']:.2f} | {cells(r['cs'])} | "
                     f"{r['cs_mean']:.2f} | {cells(r['fd_eval'])} | {cells(r['fd_train'])} | {cells(r['fd_real'])} | "
                     f"{cells([r['fd_real_mean']])} |")
    return "\n".join(lines + [""] + verdicts(table)) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, required=True, help="training images per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--ours", type=parse_network, action="append",
                        help="ganserve's network, PRESET or PRESET:WIDTH; repeat for several (default upconv32)")
    parser.add_argument("--batch-size", type=int, default=64, help="ganserve's batch (the seeds' is 64)")
    parser.add_argument("--train-args", default="", help="more options for every `ganserve train`")
    parser.add_argument("--seeds-init", choices=["script", "dcgan"], default="script",
                        help="the seeds' initialisation: as their script (default) or as ganserve's loop")
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jobs", type=int, default=os.cpu_count(), help="training processes at a time")
    parser.add_argument("--threads", type=int, help="torch threads per job on CPU (default cores / jobs)")
    parser.add_argument("--samples", type=int, default=10_000, help="samples scored per model")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.ours = args.ours or [(SEEDS_PRESET, None)]
    if args.images < max(args.batch_size, SEEDS_BATCH):
        parser.error(f"--images must be at least one batch ({max(args.batch_size, SEEDS_BATCH)})")
    threads = None if args.device != "cpu" else args.threads or max(1, (os.cpu_count() or 1) // args.jobs)

    args.out.mkdir(parents=True, exist_ok=True)
    runs = plan(args)
    start = time.perf_counter()
    with ThreadPoolExecutor(args.jobs) as pool:
        try:
            for run, seconds in zip(runs, pool.map(lambda r: train(r, threads), runs)):
                run["seconds"] = seconds
                print(f"{run['name']}: {'kept' if seconds == 0 else f'trained in {seconds:.0f} s'}", flush=True)
        except (ValueError, RuntimeError) as e:
            pool.shutdown(cancel_futures=True)
            sys.exit(f"error: {e}")
    trained = time.perf_counter() - start
    scores(runs, args.samples, args.data, args.out)
    table = rows(runs)
    text = markdown(table, args.images)
    command = shlex.join(["python", "bench/compare_recipes.py", *sys.argv[1:]])
    text += f"\n`{command}`: training {trained:.0f} s ({args.jobs} jobs at a time on {args.device}).\n"
    write_bytes(args.out / "compare.md", text.encode())
    write_json(args.out / "compare.json", {
        "command": command, "images": args.images, "training_s": trained, "rows": table,
        "runs": [{k: (str(v) if isinstance(v, Path) else v) for k, v in r.items() if k not in ("commands", "models")}
                 for r in runs]})
    print(text)


if __name__ == "__main__":
    main()
