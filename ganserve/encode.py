"""PNG encoding, in this process or in a pool of light worker processes.

The pool (`EncoderPool`) is fed without pickling images: the parent keeps a ring of batch slots in
an anonymous shared-memory file (memfd on Linux) that every worker maps read-only, writes each
uint8 batch into a free slot, and sends one worker a line of JSON on its stdin (slot, image count,
first global index, destination). The worker encodes the images with Pillow and either writes
``{index:08d}.png`` files into a folder itself and answers their sha256 digests, or, for tar
shards, answers the batch's tar entries (``{key}.png`` and ``{key}.json``) as one blob of bytes
that the parent appends to the shard in index order. Answers are a JSON header line, then
`size` bytes of payload, on a pipe of the worker's own.

Workers are plain subprocesses running `serve`: they import Pillow and this module (whose package
`__init__` imports nothing up front), never NumPy nor the parent's main script, so each starts in
about half the CPU time a multiprocessing child took. A worker exits when its stdin closes, which
also happens when the parent dies, even by SIGKILL (it then drops the tasks still queued); the
parent sees a dead worker as the end of its answer pipe.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import mmap
import os
import queue
import signal
import subprocess
import sys
import threading
from typing import Any, BinaryIO, Sequence

# Free heap that glibc's malloc keeps in the workers. Each PNG opens a zlib stream (about 270 KiB
# of state) and closes it; with glibc's defaults that memory goes back to the kernel every time
# and is faulted in again: encoding a 28x28 image then took 1.3-1.6x the CPU
# (bench/bench_encode.py). Other C libraries ignore the variable.
MALLOC_TOP_PAD = 8 << 20

_BOOT = "import json, sys; sys.path[:] = json.loads(sys.argv[1]); from ganserve.encode import serve; serve()"


def png_bytes(image, compress_level: int) -> bytes:
    """PNG file bytes of a Pillow image."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def tar_entries(blobs: list[bytes], first: int, meta: dict[str, Any]) -> bytes:
    """Tar members {key}.png and {key}.json for images first, first+1, ... (no end-of-archive
    marker: the parent concatenates batches and closes the archive)."""
    parts = []
    for i, blob in enumerate(blobs):
        key = f"{first + i:08d}"
        note = json.dumps({"index": first + i, **meta}, sort_keys=True).encode()
        for name, data in ((f"{key}.png", blob), (f"{key}.json", note)):
            parts += [tar_header(name, len(data)), data, b"\0" * (-len(data) % 512)]
    return b"".join(parts)


def tar_header(name: str, size: int) -> bytes:
    """The 512-byte header of a regular file in a tar archive, mode 644, owner 0, mtime 0 (so
    re-runs are identical): what `tarfile.TarInfo.tobuf()` makes, in a tenth of its time (it
    was half the CPU of encoding a 28x28 image)."""
    encoded = name.encode()
    if not name.isascii() or len(encoded) > 100 or not 0 <= size < 8**11:  # beyond plain ustar: tarfile
        import tarfile

        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o644, 0
        return info.tobuf(format=tarfile.PAX_FORMAT)
    header = bytearray(_USTAR_TEMPLATE)
    header[0:len(encoded)] = encoded
    header[124:136] = b"%011o\0" % size
    header[148:156] = b"%06o\0 " % sum(header)  # the checksum counts its own field as spaces
    return bytes(header)


def _ustar_template() -> bytes:
    fields = [b"", b"0000644", b"0000000", b"0000000", b"00000000000", b"00000000000", b"        ", b"0", b"",
              b"ustar\x0000", b"", b"", b"", b"", b""]
    widths = [100, 8, 8, 8, 12, 12, 8, 1, 100, 8, 32, 32, 8, 8, 155]
    header = b"".join(f.ljust(w, b"\0") for f, w in zip(fields, widths))
    return header.ljust(512, b"\0")


_USTAR_TEMPLATE = _ustar_template()


def encode_batch(images: Sequence, first: int, destination: str | dict[str, Any], compress_level: int) -> Any:
    """Encode Pillow images first, first+1, ... for their shard. `destination` a folder: write
    ``{index:08d}.png`` files there and return their sha256 digests; a dict (a tar shard's
    metadata): return the batch's tar entries as bytes."""
    blobs = [png_bytes(image, compress_level) for image in images]
    if isinstance(destination, dict):
        return tar_entries(blobs, first, destination)
    digests = []
    for i, blob in enumerate(blobs):
        write_new_file(os.path.join(destination, f"{first + i:08d}.png"), blob)
        digests.append(hashlib.sha256(blob).hexdigest())
    return digests


def write_new_file(path: str, data: bytes) -> None:
    """Create `path` (it must not exist) holding `data`: open, write, close, the three system
    calls it takes; `open()` adds an fstat, an ioctl and an lseek, and took twice the CPU time on
    tmpfs. (`os.open` makes the descriptor non-inheritable; O_BINARY matters on Windows.)"""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


# --- the worker side


def serve() -> None:
    """A worker's loop (run by `EncoderPool`): tasks from stdin, answers to the original stdout."""
    for s in (signal.SIGINT, signal.SIGTERM):  # the parent stops the pool, by closing our stdin
        signal.signal(s, signal.SIG_IGN)
    from PIL import Image

    settings = json.loads(sys.argv[2])
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print must not corrupt the answers
    os.nice(10)  # the generator is the bottleneck: encoders take the cycles it leaves
    ring = memoryview(mmap.mmap(settings["ring_fd"], settings["ring_bytes"], prot=mmap.PROT_READ))
    height, width, channels = settings["image_shape"]
    mode = "L" if channels == 1 else "RGB"
    size = height * width * channels
    level = settings["compress_level"]
    parent = os.getppid()
    for line in sys.stdin.buffer:
        if os.getppid() != parent:  # the parent died with tasks still queued here: drop them
            return
        task = json.loads(line)
        slot, count, first = task["slot"], task["count"], task["first"]
        offset = slot * settings["slot_bytes"]
        try:
            images = [Image.frombuffer(mode, (width, height), ring[offset + i * size:offset + (i + 1) * size],
                                       "raw", mode, 0, 1) for i in range(count)]
            result = encode_batch(images, first, task["destination"], level)
            is_json = not isinstance(result, bytes)
            payload = json.dumps(result).encode() if is_json else result
            header = {"slot": slot, "ok": True, "size": len(payload), "json": is_json}
        except Exception as e:  # noqa: BLE001  (reported to the parent, which raises it)
            payload, header = b"", {"slot": slot, "ok": False, "error": f"{type(e).__name__}: {e}", "size": 0}
            if isinstance(e, OSError) and e.errno is not None:  # the parent raises it as it was (errno, file)
                header["os_error"] = [e.errno, e.strerror, e.filename if isinstance(e.filename, str) else None]
        answers.write(json.dumps(header).encode() + b"\n" + payload)
        answers.flush()


# --- the parent side


class EncoderError(OSError):
    """A worker failed to encode a batch, or died."""


class EncoderPool:
    """`workers` encoding processes behind a shared-memory ring of batch slots.

    `submit` copies a batch into a free slot and hands it to the least busy worker; `collect`
    returns one finished batch as (slot, payload), payload being the digests (png) or the tar
    entries (tar), and frees its slot. Use as a context manager; `close(abort=True)` kills the
    workers at once (no worker may write into a folder that is being removed).
    """

    def __init__(self, workers: int, image_shape: tuple[int, int, int], batch: int, compress_level: int,
                 malloc_top_pad: int | None = MALLOC_TOP_PAD) -> None:
        import numpy as np  # here, not at the top: the workers import this module and never need it

        self.image_shape = tuple(image_shape)
        self.slot_bytes = batch * math.prod(self.image_shape)
        self.slots = 2 * workers + 2
        self._file = _anonymous_file(self.slot_bytes * self.slots)
        self._ring = mmap.mmap(self._file.fileno(), self.slot_bytes * self.slots)
        self._array = np.frombuffer(self._ring, dtype=np.uint8)
        self.free = list(range(self.slots))
        self._answers: queue.Queue = queue.Queue()
        self._busy: list[int] = []  # batches handed to each worker and not answered yet
        self._procs: list[subprocess.Popen] = []
        self._readers: list[threading.Thread] = []
        settings = {"ring_fd": self._file.fileno(), "ring_bytes": self.slot_bytes * self.slots,
                    "slot_bytes": self.slot_bytes, "image_shape": list(self.image_shape),
                    "compress_level": compress_level}
        try:
            for k in range(workers):
                proc = subprocess.Popen([sys.executable, "-c", _BOOT, json.dumps(_import_path()), json.dumps(settings)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        pass_fds=(self._file.fileno(),), env=_worker_env(malloc_top_pad),
                                        **_OWN_GROUP)
                self._procs.append(proc)
                self._busy.append(0)
                reader = threading.Thread(target=self._read_answers, args=(k, proc.stdout), daemon=True,
                                          name=f"ganserve-encoder-{k}")
                reader.start()
                self._readers.append(reader)
        except BaseException:
            self.close(abort=True)
            raise

    def __enter__(self) -> EncoderPool:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self.close(abort=kind is not None)

    def submit(self, images, first: int, destination: str | dict[str, Any]) -> int:
        """Copy uint8 images (n, H, W, C) into a free slot and queue them; returns the slot. Call
        only when `free` is not empty (`collect` frees one)."""
        slot = self.free.pop()
        size = images.size
        self._array[slot * self.slot_bytes:slot * self.slot_bytes + size] = images.reshape(-1)
        k = min(range(len(self._procs)), key=self._busy.__getitem__)
        task = {"slot": slot, "count": len(images), "first": first, "destination": destination}
        try:
            self._procs[k].stdin.write(json.dumps(task).encode() + b"\n")
            self._procs[k].stdin.flush()
        except OSError:  # the worker is gone: its answer pipe has ended too, `collect` reports it
            pass
        self._busy[k] += 1
        return slot

    def collect(self, timeout: float | None = None) -> tuple[int, Any]:
        """Wait for one finished batch: (slot, digests or tar entries). Raises EncoderError, or
        TimeoutError when none came within `timeout` seconds."""
        try:
            k, header, payload = self._answers.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no encoded batch within {timeout} s") from None
        if header is None:
            proc = self._procs[k]
            try:
                reason = f"died ({_exit_reason(proc.wait(timeout=10))}); its error, if any, is above"
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                reason = "sent an unreadable answer and was stopped"
            raise EncoderError(f"PNG encoder process {proc.pid} {reason}")
        self._busy[k] -= 1
        self.free.append(header["slot"])
        if not header["ok"]:
            if "os_error" in header:  # writing a PNG failed (a full disk): said as the system said it
                raise EncoderError(*header["os_error"])
            raise EncoderError(f"encoding failed: {header['error']}")
        return header["slot"], payload

    def close(self, abort: bool = False) -> None:
        for proc in self._procs:
            if abort:
                proc.kill()
            try:
                proc.stdin.close()  # a worker exits when its stdin ends
            except OSError:
                pass
        for proc in self._procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for reader in self._readers:
            reader.join()
        for proc in self._procs:
            proc.stdout.close()
        self._procs, self._readers = [], []
        self._array = None
        try:
            self._ring.close()
        except BufferError:  # a view of it is still alive; it goes with the process
            pass
        self._file.close()

    def _read_answers(self, k: int, pipe: BinaryIO) -> None:
        """Reader thread of worker k: forward each answer; (k, None, None) once no more can come."""
        try:
            while True:
                line = pipe.readline()
                if not line:
                    return
                header = json.loads(line)
                payload = pipe.read(header["size"])
                if len(payload) < header["size"]:
                    return
                self._answers.put((k, header, json.loads(payload) if header.get("json") else payload))
        except (ValueError, KeyError, TypeError, OSError):  # not an answer: something else wrote here
            return
        finally:
            self._answers.put((k, None, None))


# Workers run in a process group of their own, so that a terminal's Ctrl-C reaches the parent
# alone, which then stops the pool. Not a session of their own: Linux gives each session its own
# scheduling group (autogroup), where the workers' nice value would no longer yield the cores to
# the generator. (Python 3.10 cannot do this without preexec_fn; there a worker ignores SIGINT
# once started, and one killed by a Ctrl-C while starting ends the run as interrupted.)
_OWN_GROUP: dict[str, Any] = {"process_group": 0} if sys.version_info >= (3, 11) else {}


def _import_path() -> list[str]:
    """The workers' sys.path: the folder this package was imported from, then the parent's own
    entries (as text, made absolute: a worker starts in the parent's current folder, which may
    have changed since the parent's imports)."""
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    entries = [os.path.abspath(os.fspath(p)) for p in sys.path if isinstance(p, (str, os.PathLike))]
    return [package_root, *(p for p in entries if p != package_root)]


def _worker_env(malloc_top_pad: int | None) -> dict[str, str]:
    """The parent's environment, plus glibc's MALLOC_TOP_PAD_ unless the parent sets it."""
    if malloc_top_pad is None:
        return dict(os.environ)
    return {"MALLOC_TOP_PAD_": str(malloc_top_pad), **os.environ}


def _anonymous_file(size: int):
    """A file with no name, `size` bytes: memfd where the system has it (memory only), else an
    unlinked temporary file. The kernel frees it when the last process holding it ends."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("ganserve-encoder-ring")
        f = os.fdopen(fd, "w+b")
    else:
        import tempfile

        f = tempfile.TemporaryFile()
    f.truncate(size)
    return f


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
