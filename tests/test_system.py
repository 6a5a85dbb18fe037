"""ganserve._system: facts about the machine, and the one process setting training makes."""

from __future__ import annotations

import platform

from ganserve._system import keep_freed_memory, total_memory, usable_cpus


def test_keep_freed_memory_takes_effect_on_glibc_only():
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert keep_freed_memory() is glibc


def test_machine_facts():
    assert usable_cpus() >= 1
    assert total_memory() is None or total_memory() > 2**20
