"""bench/compare_recipes.py: the plan, the table, and one real run of both recipes on digits."""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))
import compare_recipes as compare  # noqa: E402  (bench/ is scripts, not a package)


def test_parse_network():
    assert compare.parse_network("upconv32") == ("upconv32", None)
    assert compare.parse_network("dcgan28:48") == ("dcgan28", 48)
    for bad in ("", ":48", "dcgan28:", "dcgan28:x", "dcgan28:-4", "dcgan28:0"):
        with pytest.raises(argparse.ArgumentTypeError, match="PRESET or PRESET:WIDTH"):
            compare.parse_network(bad)


def test_plan_names_the_seeds_initialisation(tmp_path):
    args = argparse.Namespace(seeds=[0], ours=[("dcgan28", 48)], out=tmp_path, data="digits", images=128, device="cpu",
                              batch_size=16, train_args="", seeds_init="script")
    seeds = compare.plan(args)[0]
    assert seeds["name"] == "seeds-upconv32-s0" and "--init" not in seeds["commands"][0]  # as commands made before it
    args.seeds_init = "dcgan"
    seeds = compare.plan(args)[0]
    assert seeds["name"] == "seeds-upconv32-dcgan-init-s0" and seeds["network"] == "upconv32-dcgan-init"
    assert seeds["commands"][0][-2:] == ["--init", "dcgan"]


def _run(recipe, network, seed, fd_eval, fd_train, cs=5.0, real=1.0):
    """A run's scores; `real` scales them for the real images at their own size (a 32x32 model's differ)."""
    kinds = {"as sampled": (fd_eval, fd_train)} if recipe == "seeds" else {
        "as sampled": (fd_eval, fd_train), "raw": (fd_eval + 1, fd_train + 1)}
    return {"recipe": recipe, "network": network, "seed": seed, "scores": {
        kind: {"eval_mode": {"fd": e, "cs": cs}, "train_mode": {"fd": t, "cs": cs - 1},
               "real": {"size": [28, 28], "eval_mode": {"fd": e * real, "cs": cs}, "train_mode": {"fd": t * real, "cs": cs}}}
        for kind, (e, t) in kinds.items()}}


def test_rows_use_the_mode_each_recipe_is_sampled_in():
    runs = [_run("seeds", "upconv32", 0, 9.0, 7.0, real=3), _run("ganserve", "dcgan28-w48", 0, 5.0, 6.0),
            _run("seeds", "upconv32", 1, 9.5, 8.0, real=3), _run("ganserve", "dcgan28-w48", 1, 8.5, 6.5)]
    table = {(r["recipe"], r["kind"]): r for r in compare.rows(runs)}
    seeds, ours, raw = table["seeds", "as sampled"], table["ganserve", "as sampled"], table["ganserve", "raw"]
    assert seeds["fd"] == [7.0, 8.0] and seeds["cs"] == [4.0, 4.0]  # train mode, as the seeds' script samples
    assert ours["fd"] == [5.0, 8.5] and ours["cs"] == [5.0, 5.0]  # eval mode, as Generator.sample
    assert raw["fd"] == [7.0, 7.5]  # the raw generator sampled as the seeds' script would
    assert seeds["fd_mean"] == 7.5 and ours["fd_mean"] == 6.75
    assert seeds["fd_real"] == [21.0, 24.0] and ours["fd_real"] == [5.0, 8.5] and seeds["fd_real_mean"] == 22.5
    verdict, real = compare.verdicts(list(table.values()))
    assert "model's resolution: mean FD 6.750 against the seeds' 7.500 (0.90x); lower for 1 of 2 seeds" in verdict
    assert verdict.endswith("every ganserve run below every seeds' run: no")
    assert "their own: mean FD 6.750 against the seeds' 22.500 (0.30x); lower for 2 of 2 seeds" in real
    assert real.endswith("every ganserve run below every seeds' run: yes")
    text = compare.markdown(list(table.values()), 128_000)
    assert "| seeds, `upconv32` | train mode | 7.00 / 8.00 | 7.50 |" in text
    assert "| ganserve, `dcgan28-w48`, raw generator (no EMA) | train mode | 7.00 / 7.50 |" in text
    assert text.splitlines()[4].endswith("| 9.00 / 9.50 | 7.00 / 8.00 | 21.00 / 24.00 | 22.50 |")  # the seeds' row


def test_rows_without_a_real_score_show_none():
    run = _run("seeds", "upconv32", 0, 9.0, 7.0)
    run["scores"]["as sampled"]["real"] = None  # a model smaller than the data: no exact way back
    [row] = compare.rows([run])
    assert row["fd_real"] == [None] and row["fd_real_mean"] is None
    assert "| - | - |" in compare.markdown([row], 128_000)


@pytest.mark.slow
def test_a_real_comparison_runs_resumes_and_scores(tmp_path):
    out = tmp_path / "cmp"
    # 1856 images: 29 batches of 64, one whole pass over the 1797 digits, so the seeds' run leaves a state.pt
    command = [sys.executable, str(BENCH / "compare_recipes.py"), "--images", "1856", "--seeds", "0", "--data", "digits",
               "--ours", "dcgan28:8", "--samples", "64", "--jobs", "2", "--out", str(out)]

    def run(*extra):
        return subprocess.run(command + list(extra), capture_output=True, text=True, timeout=600)

    first = run()
    assert first.returncode == 0, first.stdout + first.stderr
    report = json.loads((out / "compare.json").read_text())
    assert {(r["recipe"], r["network"], r["kind"]) for r in report["rows"]} == {
        ("seeds", "upconv32", "as sampled"), ("ganserve", "dcgan28-w8", "as sampled"), ("ganserve", "dcgan28-w8", "raw")}
    for row in report["rows"]:
        assert row["seeds"] == [0] and all(math.isfinite(v) and v > 0 for v in row["fd"] + row["cs"] + row["fd_real"])
    assert (out / "compare.md").read_text().startswith("1,856 images per run")
    ours = out / "ganserve-dcgan28-w8-s0"
    assert json.loads((ours / "model" / "config.json").read_text())["metadata"]["training"]["steps"] == 29
    stamps = {p: p.stat().st_mtime_ns for p in [ours / "model" / "config.json", *(out / "scores").iterdir()]}
    assert len(stamps) == 4  # the model, and the scores of the seeds' model, ganserve's and its raw generator

    again = run()  # everything kept: nothing trained, nothing scored again
    assert again.returncode == 0, again.stdout + again.stderr
    assert "seeds-upconv32-s0: kept" in again.stdout and "ganserve-dcgan28-w8-s0: kept" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert json.loads((out / "compare.json").read_text())["rows"] == report["rows"]

    other = run("--images", "1920")  # the same --out for another comparison: refused, not reused
    assert other.returncode != 0 and "was trained by other commands than this one's" in other.stderr

    shutil.rmtree(ours / "model")  # as if stopped before its export: the run resumes from its last.pt
    shutil.rmtree(out / "seeds-upconv32-s0" / "model")  # as if stopped before its samples: resumes from state.pt
    resumed = run()
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    commands = [line for line in (out / "ganserve-dcgan28-w8-s0.log").read_text().splitlines() if line.startswith("$")]
    assert " train " in commands[-2] and commands[-2].endswith(" --resume") and " export " in commands[-1]
    seeds_log = (out / "seeds-upconv32-s0.log").read_text()
    assert "state.pt at step 29" in seeds_log  # all 29 steps done: nothing trained again
    assert [line for line in seeds_log.splitlines() if line.startswith("$")][-1].endswith(" --resume")
    assert json.loads((out / "compare.json").read_text())["rows"] == report["rows"]
