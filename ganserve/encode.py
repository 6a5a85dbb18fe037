"""PNG encoding in worker processes, fed through shared memory (no pickled images).

The parent writes a uint8 batch into a slot of a shared-memory ring and sends the worker a small
task tuple (slot, shape, first global index, where to put the files). The worker encodes each
image with Pillow and either writes ``{index:08d}.png`` files itself or sends the PNG bytes back
as one blob per batch (for tar shards, which the parent writes in order).

This module imports only NumPy and Pillow, so workers start fast.
"""

from __future__ import annotations

import hashlib
import io
import os
from multiprocessing import shared_memory
from typing import Any

import numpy as np


def encode_png(image: np.ndarray, compress_level: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
        buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def worker_main(tasks, results, shm_name: str, slot_bytes: int, compress_level: int) -> None:
    """Loop: take a task, encode its batch, answer. A None task ends the worker."""
    shm = shared_memory.SharedMemory(name=shm_name)
    try:
        while True:
            task = tasks.get()
            if task is None:
                return
            try:
                results.put(("ok", *_run(task, shm, slot_bytes, compress_level)))
            except BaseException as e:  # noqa: BLE001  (reported to the parent, which raises it)
                results.put(("error", task[0], f"{type(e).__name__}: {e}"))
    finally:
        shm.close()


def _run(task: tuple, shm, slot_bytes: int, compress_level: int) -> tuple[int, Any]:
    slot, shape, first, folder = task
    count = shape[0]
    images = np.ndarray(shape, dtype=np.uint8, buffer=shm.buf, offset=slot * slot_bytes)
    blobs = [encode_png(images[i], compress_level) for i in range(count)]
    if folder is None:  # send the bytes back: one blob, with the offsets
        sizes = [len(b) for b in blobs]
        return slot, (b"".join(blobs), sizes)
    digests = []
    for i, blob in enumerate(blobs):
        path = os.path.join(folder, f"{first + i:08d}.png")
        with open(path, "wb") as f:
            f.write(blob)
        digests.append(hashlib.sha256(blob).hexdigest())
    return slot, digests
