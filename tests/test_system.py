"""ganserve._system: facts about the machine, and the one process setting training makes."""

from __future__ import annotations

import ctypes
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from ganserve._system import keep_freed_memory, total_memory, usable_cpus


def test_keep_freed_memory_takes_effect_on_glibc_only():
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert keep_freed_memory() is glibc


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this system")
def test_usable_cpus_follows_the_affinity_mask():
    """In a fresh process pinned to one CPU (as a container's cpuset pins it)."""
    code = ("import os; from ganserve._system import usable_cpus; "
            "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); print(usable_cpus())")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "1\n"


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity on this system")
@pytest.mark.parametrize("cpu_max, limit", [("max 100000", None), ("150000 100000", 1), ("50000 100000", 1),
                                            ("100000000 100000", None), ("garbage", None)])
def test_usable_cpus_keeps_within_a_cgroup_quota(tmp_path, cpu_max, limit):
    """cgroup v2's cpu.max: a quota of 1.5 or 0.5 CPUs gives one worker; "max", a quota above the
    CPUs, or a file that does not parse leave the affinity mask's count."""
    (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    mask = len(os.sched_getaffinity(0))
    assert usable_cpus(str(tmp_path / "cpu.max")) == (mask if limit is None else min(mask, limit))
    assert usable_cpus(str(tmp_path / "absent")) == mask


@pytest.mark.skipif(not Path("/proc/meminfo").exists(), reason="no /proc/meminfo")
def test_total_memory_is_the_systems():
    mem_total_kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
    assert total_memory() == mem_total_kib * 1024


MALLOC_PROBE = """
import ctypes, sys
from ganserve._system import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
libc = ctypes.CDLL(None)
class Info(ctypes.Structure):
    _fields_ = [(f, ctypes.c_size_t) for f in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc.mallinfo2.restype = Info
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
size = 24 << 20
block = libc.malloc(size)
mapped = libc.mallinfo2().hblkhd >= size
libc.free(block)
print(int(mapped), int(libc.mallinfo2().fordblks >= size))
"""


@pytest.mark.skipif(not (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"), reason="glibc only")
def test_freed_memory_is_kept_for_reuse():
    """In a fresh process: a 24 MiB block is mapped and handed back by default, and after
    keep_freed_memory() comes from the heap and stays there once freed."""
    if not hasattr(ctypes.CDLL(None), "mallinfo2"):
        pytest.skip("glibc older than 2.33 has no mallinfo2")

    def probe(mode: str) -> list[str]:
        return subprocess.run([sys.executable, "-c", MALLOC_PROBE, mode], capture_output=True, text=True,
                              check=True).stdout.split()

    assert probe("as-is") == ["1", "0"]  # mapped, nothing kept: the probe tells the two apart
    assert probe("keep") == ["0", "1"]
