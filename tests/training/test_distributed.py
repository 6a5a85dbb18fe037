"""Two real processes (torchrun, gloo on the CPU): replicas stay identical, and resume is exact."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
WORKER = Path(__file__).with_name("ddp_worker.py")


def torchrun(*args):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def load(path):
    return torch.load(path, weights_only=True)


@pytest.mark.slow
def test_two_processes_stay_identical_and_resume_exactly(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    torchrun(str(full), "10")
    torchrun(str(part), "8")  # past the end of the first epoch (7 batches a rank)
    torchrun(str(part), "10", "resume")
    r0, r1, resumed = load(full / "rank0.pt"), load(full / "rank1.pt"), load(part / "rank1.pt")
    for part in ("G", "D", "EMA", "adam"):
        assert r0[part].keys() == r1[part].keys() == resumed[part].keys() and r0[part]
        assert [k for k in r0[part] if not torch.equal(r0[part][k], r1[part][k])] == []  # replicas agree
        assert [k for k in r0[part] if not torch.equal(r0[part][k], resumed[part][k])] == []  # resume is exact
    state = torch.load(full / "last.pt", weights_only=True)
    assert state["world"] == 2 and len(state["rng"]) == 2 and state["step"] == 10
    assert [r["step"] for r in state["history"] if "fd" in r] == [3, 6, 9, 10]
