"""Facts about the machine the process may use."""

from __future__ import annotations

import os


def usable_cpus(cpu_max: str = "/sys/fs/cgroup/cpu.max") -> int:
    """CPUs this process may run on: its affinity mask (what a container's cpuset allows), and no
    more than a cgroup CPU quota where one is set (a Kubernetes CPU limit; `cpu_max` is cgroup v2's
    file of it, "QUOTA PERIOD" or "max PERIOD")."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    try:
        with open(cpu_max) as f:
            quota, period = f.read().split()
        if quota != "max":
            count = min(count, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return max(1, count)


def total_memory() -> int | None:
    """Bytes of physical memory, or None where the system does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of handing it back to the system.

    By default, large blocks (a batch's activations) are mapped afresh and handed back as they are
    freed, and the heap's free top is trimmed, so each training step pays page faults for memory the
    step before it had; PyTorch's CPU tuning guide swaps the allocator for this reason. Kept, a CPU
    training step runs faster (`python bench/bench_training.py --malloc`); the process then holds
    on to its peak memory. Returns False where the C library is not glibc (or says no): nothing changes.
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the process runs on
    except (OSError, AttributeError, TypeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    # Blocks below the threshold come from the heap and go back to it. Older glibc refuses a threshold
    # above 32 MiB (HEAP_MAX_SIZE / 2 on 64-bit): then 32 MiB, above most of a step's activations.
    mapped = any(mallopt(M_MMAP_THRESHOLD, limit) == 1 for limit in (1 << 30, 1 << 25))
    trimmed = mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1  # up to 1 GiB free at the heap's top is kept
    return mapped and trimmed
