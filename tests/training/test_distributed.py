"""Two real processes (torchrun, gloo on the CPU): replicas stay identical, resume is exact, and weights
gone bad on one rank stop both."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
WORKER = Path(__file__).with_name("ddp_worker.py")


def torchrun(*args, ok=True, timeout=600):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER), *args]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            _, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()  # torchrun stops its workers on SIGTERM (a SIGKILL would leave them running)
            proc.communicate(timeout=60)
            raise
    assert (proc.returncode == 0) == ok, stderr[-3000:]


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


@pytest.mark.slow
def test_weights_gone_bad_on_one_rank_stop_every_rank(tmp_path):
    """Only rank 1's EMA holds a NaN: both ranks stop with the same error at the first check (neither goes
    on alone into a collective), and nothing is saved."""
    run = tmp_path / "r"
    torchrun(str(run), "4", "poison-rank1", ok=False, timeout=180)
    error = ("the weights became NaN/Inf by step 1; no checkpoint was written before it "
             "(run again with a lower --lr-g/--lr-d or --label-smoothing)")
    assert [(run / f"rank{r}.error").read_text() for r in (0, 1)] == [error, error]
    assert not (run / "last.pt").exists() and not (run / "model").exists()
