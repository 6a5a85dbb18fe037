"""bench/bench_training.py runs both loops, each in a process of its own, and prints their ratio."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_training.py"


def test_one_round_on_digits():
    done = subprocess.run([sys.executable, str(BENCH), "--data", "digits", "--steps", "2", "--rounds", "1"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rates = dict(re.findall(r"^(seeds-style|ganserve)\s+(\d+)$", done.stdout, re.M))
    assert set(rates) == {"seeds-style", "ganserve"} and all(int(v) > 0 for v in rates.values())
    assert re.search(r"ratio ganserve / seeds-style: \d+\.\d\dx", done.stdout)


def test_a_loop_whose_process_fails_ends_the_run_with_a_clear_error():
    done = subprocess.run([sys.executable, str(BENCH), "--preset", "no-such-preset", "--data", "digits", "--steps", "1",
                           "--rounds", "1"], capture_output=True, text=True, timeout=120)  # not a hang
    assert done.returncode != 0
    assert "loop's process stopped (its error is above)" in done.stderr and "no-such-preset" in done.stderr
