"""PNG encoding in worker processes, fed through shared memory (no pickled images).

The parent writes a uint8 batch into a slot of a shared-memory ring and sends the worker a small
task tuple (slot, shape, first global index, destination). The worker encodes each image with
Pillow and either writes ``{index:08d}.png`` files into a folder itself, or, for tar shards,
sends back the batch's tar entries (``{key}.png`` and ``{key}.json``) as one blob of bytes that
the parent appends to the shard in index order.

This module imports only NumPy and Pillow, so workers start fast.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import queue
from multiprocessing import shared_memory
from typing import Any

import numpy as np

PARENT_CHECK_SECONDS = 1.0  # how often an idle worker checks that its parent still lives


def encode_png(image: np.ndarray, compress_level: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
        buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def worker_main(tasks, results, shm_name: str, slot_bytes: int, compress_level: int) -> None:
    """Loop: take a task, encode its batch, answer. A None task ends the worker, and so does the
    parent's death: a parent killed by SIGKILL sends no None, and the queue never reports it closed
    (every worker holds its write end too), so the worker checks on its parent while idle."""
    os.nice(10)  # the generator is the bottleneck: encoders take the cycles it leaves
    parent = multiprocessing.parent_process()
    shm = shared_memory.SharedMemory(name=shm_name)
    try:
        while True:
            try:
                task = tasks.get(timeout=PARENT_CHECK_SECONDS)
            except queue.Empty:
                if parent is not None and not parent.is_alive():
                    return
                continue
            if task is None:
                return
            try:
                results.put(("ok", *_run(task, shm, slot_bytes, compress_level)))
            except BaseException as e:  # noqa: BLE001  (reported to the parent, which raises it)
                results.put(("error", task[0], f"{type(e).__name__}: {e}"))
    finally:
        shm.close()


def tar_entries(blobs: list[bytes], first: int, meta: dict[str, Any]) -> bytes:
    """Tar members {key}.png and {key}.json for images first, first+1, ... (no end-of-archive
    marker: the parent concatenates batches and closes the archive)."""
    import json
    import tarfile

    parts = []
    for i, blob in enumerate(blobs):
        key = f"{first + i:08d}"
        note = json.dumps({"index": first + i, **meta}, sort_keys=True).encode()
        for name, data in ((f"{key}.png", blob), (f"{key}.json", note)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0  # no timestamps: identical re-runs
            parts += [info.tobuf(format=tarfile.PAX_FORMAT), data, b"\0" * (-len(data) % tarfile.BLOCKSIZE)]
    return b"".join(parts)


def encode_batch(images: np.ndarray, first: int, destination: str | dict[str, Any], compress_level: int) -> Any:
    """Encode images first, first+1, ... for their shard. `destination` a folder: write
    ``{index:08d}.png`` files there and return their sha256 digests; a dict (a tar shard's
    metadata): return the batch's tar entries as bytes."""
    blobs = [encode_png(image, compress_level) for image in images]
    if isinstance(destination, dict):
        return tar_entries(blobs, first, destination)
    digests = []
    for i, blob in enumerate(blobs):
        with open(os.path.join(destination, f"{first + i:08d}.png"), "wb") as f:
            f.write(blob)
        digests.append(hashlib.sha256(blob).hexdigest())
    return digests


def _run(task: tuple, shm, slot_bytes: int, compress_level: int) -> tuple[int, Any]:
    slot, shape, first, destination = task
    images = np.ndarray(shape, dtype=np.uint8, buffer=shm.buf, offset=slot * slot_bytes)
    return slot, encode_batch(images, first, destination, compress_level)
