"""ganserve._system: facts about the machine, and the one process setting training makes."""

from __future__ import annotations

import ctypes
import platform
import subprocess
import sys

import pytest

from ganserve._system import keep_freed_memory, total_memory, usable_cpus


def test_keep_freed_memory_takes_effect_on_glibc_only():
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert keep_freed_memory() is glibc


def test_machine_facts():
    assert usable_cpus() >= 1
    assert total_memory() is None or total_memory() > 2**20


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
