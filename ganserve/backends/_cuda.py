"""Whether a CUDA GPU is present, asked of the driver directly (no torch import)."""

from __future__ import annotations

import ctypes
import functools


@functools.lru_cache(maxsize=1)
def cuda_device_count() -> int:
    """Number of CUDA devices the driver sees; 0 without a driver or GPU."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    count = ctypes.c_int(0)
    if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return count.value


@functools.lru_cache(maxsize=1)
def compute_capability(device: int = 0) -> tuple[int, int] | None:
    """(major, minor) of a CUDA device, or None without one."""
    if cuda_device_count() <= device:
        return None
    lib = ctypes.CDLL("libcuda.so.1")
    major, minor = ctypes.c_int(0), ctypes.c_int(0)
    # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75, _MINOR = 76
    lib.cuDeviceGetAttribute(ctypes.byref(major), 75, device)
    lib.cuDeviceGetAttribute(ctypes.byref(minor), 76, device)
    return (major.value, minor.value)


@functools.lru_cache(maxsize=None)
def gpu_name(device: int = 0) -> str:
    """The CUDA device's name as the driver reports it ("" if it cannot be read)."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return ""
    handle, name = ctypes.c_int(0), ctypes.create_string_buffer(256)
    if lib.cuInit(0) != 0 or lib.cuDeviceGet(ctypes.byref(handle), device) != 0:
        return ""
    if lib.cuDeviceGetName(name, len(name), handle) != 0:
        return ""
    return name.value.decode(errors="replace")
