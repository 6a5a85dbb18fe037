"""Bulk generation: sharded, resumable, atomic (`ganserve generate`).

Images 0 .. n-1 are cut into shards of `shard_size` consecutive global indices; the process with
``shard_index=i, num_shards=k`` makes shards i, i+k, i+2k, ... Image j comes from latent (seed, j),
so any split of the work gives the same images, and a shard is made the same way whichever
process makes it (its batches start at the shard's first index).

Layout of the output folder::

    generate.json                 the run's parameters and model hash (refuses to mix another run)
    shard-000000/00000000.png     format png: one folder per shard, files named by global index
    shard-000001.tar              format tar: WebDataset shard, {key}.png + {key}.json per image
    shard-000002.npz              format npz: images (uint8 n,H,W,C) and their indices
    manifest/shard-000000.json    one record per finished shard (written last, atomically)
    manifest.jsonl                all records, sorted by shard (rewritten at the end of each run)

A shard is written under a temporary name and renamed when complete; only then is its record
written. A re-run skips shards that have a record and redoes the others, so a run killed at any
moment (SIGKILL included) and re-run ends with exactly the files of an uninterrupted run. A folder
that is not empty and holds no generate.json is refused, and only what this code writes is ever
removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import re
import shutil
import signal
import tarfile
import threading
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ._files import (atomic_path, dumps_json, final_name, fsync_dir, named_os_error, os_errors_named,
                     sync_filesystem, temp_name, write_json)
from ._system import usable_cpus
from .encode import EncoderError, EncoderPool, encode_batch
from .errors import plural
from .images import to_pil
from .latents import check_index, check_truncation, max_index

FORMATS = ("png", "tar", "npz")
PARAMS_NAME = "generate.json"
MANIFEST_DIR = "manifest"
MANIFEST_NAME = "manifest.jsonl"
MAX_COMMITS = 2  # finished shards waiting to be flushed and recorded
STOP_CHECK_SECONDS = 0.5  # how often a wait for the encoders checks for SIGINT/SIGTERM
RECORD_KEYS = {"shard", "start", "stop", "count", "path", "format", "sha256", "seed", "truncation", "model_hash",
               "config_sha256"}  # what every record holds ("backend" too, since it is recorded)


@dataclass(frozen=True)
class RunParams:
    """What must be the same for every process and re-run writing into one output folder."""

    n: int
    seed: int
    shard_size: int
    format: str
    truncation: float | None
    model_hash: str
    config_sha256: str
    image_shape: tuple[int, int, int]

    def check(self) -> None:
        check_index(self.n, "--n", minimum=1)
        check_index(self.seed, "--seed")
        check_index(self.shard_size, "--shard-size", minimum=1)
        check_truncation(self.truncation)
        if self.format not in FORMATS:
            raise ValueError(f"unknown --format {self.format!r}; choose one of {', '.join(FORMATS)}")

    @property
    def num_shard_files(self) -> int:
        return shard_count(self.n, self.shard_size)


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived; the run stopped cleanly and can be resumed."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def shard_range(shard: int, n: int, shard_size: int) -> tuple[int, int]:
    """Global indices [start, stop) of `shard`."""
    start = shard * shard_size
    return start, min(n, start + shard_size)


def shard_count(n: int, shard_size: int) -> int:
    """Shards of a run of `n` images (integer ceiling: exact beyond 2**53, unlike math.ceil(n / size))."""
    return -(-n // shard_size)


def shards_for(n: int, shard_size: int, shard_index: int = 0, num_shards: int = 1) -> range:
    """The shards process `shard_index` of `num_shards` makes: shard_index, +num_shards, ... (a range:
    a run may have more shards than fit in memory as a list)."""
    check_index(num_shards, "--num-shards", minimum=1)
    if not isinstance(shard_index, int) or not 0 <= shard_index < num_shards:
        raise ValueError(f"--shard-index must be in [0, {num_shards - 1}] for --num-shards {num_shards}, "
                         f"got {shard_index}")
    return range(shard_index, shard_count(n, shard_size), num_shards)


def _length(shards: range) -> int:
    """len(shards), also beyond sys.maxsize."""
    return max(0, -(-(shards.stop - shards.start) // shards.step))


def images_in(shards: range, n: int, shard_size: int) -> int:
    """Images in `shards` (from `shards_for`), without listing them: all are full but the run's last."""
    last = shard_count(n, shard_size) - 1
    return _length(shards) * shard_size - ((last + 1) * shard_size - n if last in shards else 0)


def shard_name(shard: int, fmt: str) -> str:
    return f"shard-{shard:06d}" + ("" if fmt == "png" else f".{fmt}")


# --- the run folder


def prepare(out: Path, params: RunParams) -> None:
    """Create `out` and its generate.json, or check that an existing one describes this run. A folder
    that is not empty and has no generate.json is refused: it is not a run, and this one would take
    over names in it."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / PARAMS_NAME
    # Listed before generate.json is looked for: a run's other files appear only once it exists.
    others = [p for p in out.iterdir() if final_name(p.name) != PARAMS_NAME and p.name != "lost+found"]
    if others and not path.exists():  # (lost+found: the root of a mounted volume, an --out in Kubernetes, has one)
        names = ", ".join(sorted(p.name for p in others)[:3]) + (", ..." if len(others) > 3 else "")
        raise ValueError(f"{out} is not empty ({names}) and holds no run of `ganserve generate` (no {PARAMS_NAME}); "
                         f"use an empty or new folder as --out")
    document = {"ganserve_generate": 1, **asdict(params), "image_shape": list(params.image_shape)}
    if not path.exists():
        tmp = temp_name(path)
        tmp.write_text(dumps_json(document))
        try:
            os.link(tmp, path)  # fails if another process created it first: then compare with theirs
        except FileExistsError:
            pass
        except FileNotFoundError:  # a process starting beside this one removed our temp file, below
            if not path.exists():
                raise
        finally:
            tmp.unlink(missing_ok=True)
    # Temporary files of killed runs. generate.json exists now; a process that is about to link its own
    # copy and loses it here finds generate.json, as above.
    for stale in [*out.glob(f".{PARAMS_NAME}.*.tmp"), *out.glob(f".{MANIFEST_NAME}.*.tmp")]:
        stale.unlink(missing_ok=True)
    try:
        existing = json.loads(path.read_text())
    except (OSError, ValueError) as e:  # (ValueError: bad JSON, bad UTF-8)
        raise ValueError(f"{path}: unreadable ({e}); remove it or use another --out") from None
    if not isinstance(existing, dict):
        raise ValueError(f"{path}: not a run's parameters (a JSON {type(existing).__name__}, not an object); "
                         f"remove it or use another --out")
    diffs = [k for k, v in document.items() if existing.get(k) != v]
    if diffs:
        what = "another model (its hash differs)" if "model_hash" in diffs else "other parameters"
        detail = ", ".join(f"{k}: {existing.get(k)!r} there, {document[k]!r} now" for k in diffs)
        raise ValueError(f"{out} holds a run made with {what} ({detail}); refusing to mix them: "
                         f"use another --out, or delete {out}")
    (out / MANIFEST_DIR).mkdir(exist_ok=True)


def _shard_number(name: str, suffix: str) -> int | None:
    """s for the name f"shard-{s:06d}{suffix}", else None."""
    m = re.fullmatch(rf"shard-(\d{{6,}}){re.escape(suffix)}", name)
    return int(m[1]) if m and name == f"shard-{int(m[1]):06d}{suffix}" else None


def _record(path: Path, params: RunParams) -> dict[str, Any] | None:
    """The record in `path` (manifest/shard-*.json), or None if it is unreadable or incomplete."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not RECORD_KEYS <= record.keys():
        return None
    shard = record["shard"]
    if type(shard) is not int or not 0 <= shard < params.num_shard_files or path.name != f"shard-{shard:06d}.json" \
            or record["path"] != shard_name(shard, params.format):
        return None
    return record


def finished_shards(out: Path, params: RunParams) -> set[int]:
    """Shards with a whole record whose file or folder exists."""
    return {r["shard"] for p in (out / MANIFEST_DIR).glob("shard-*.json")
            if (r := _record(p, params)) is not None and (out / r["path"]).exists()}


def clean_unfinished(out: Path, params: RunParams, mine: range, done: set[int]) -> None:
    """Remove what killed runs left of the shards in `mine` that are not `done`: temporary files,
    their records (damaged, or of a shard that is not there), and a shard's final name without a
    record, if it holds what this code writes there (a kill between the rename and the record
    leaves one). Anything else under a shard's name is refused, never removed."""
    suffix = "" if params.format == "png" else f".{params.format}"
    for folder, ext in ((out, suffix), (out / MANIFEST_DIR, ".json")):
        for path in folder.iterdir():
            temporary = path.name != final_name(path.name)
            shard = _shard_number(final_name(path.name), ext)
            if shard is None or shard not in mine or (shard in done and not temporary):
                continue
            if folder == out and not temporary and not _made_here(path, shard, params):
                raise ValueError(f"{path} has no record in {out / MANIFEST_DIR} and is not a shard this run "
                                 f"makes; move it out of {out} and run again")
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def _made_here(path: Path, shard: int, params: RunParams) -> bool:
    """Whether `path`, the final name of `shard`, holds what the shard's writer puts there."""
    start, stop = shard_range(shard, params.n, params.shard_size)
    try:
        if params.format == "png":
            if path.is_symlink() or not path.is_dir():
                return False
            with os.scandir(path) as entries:
                return all(e.is_file(follow_symlinks=False) and re.fullmatch(r"\d{8,}\.png", e.name)
                           and start <= int(e.name[:-4]) < stop for e in entries)
        if path.is_symlink() or not path.is_file():
            return False
        if params.format == "tar":  # its first member is the shard's first image
            with open(path, "rb") as f:
                return f.read(100).rstrip(b"\0") == f"{start:08d}.png".encode()
        with zipfile.ZipFile(path) as z:
            return sorted(z.namelist()) == ["images.npy", "indices.npy"]
    except (OSError, zipfile.BadZipFile):
        return False


def write_manifest(out: Path, params: RunParams) -> Path:
    """manifest.jsonl: every record, sorted by shard (atomic; any process may rewrite it)."""
    for attempt in range(3):
        records = [r for p in (out / MANIFEST_DIR).glob("shard-*.json") if (r := _record(p, params)) is not None]
        lines = "".join(json.dumps(r, sort_keys=True) + "\n" for r in sorted(records, key=lambda r: r["shard"]))
        try:
            with atomic_path(out / MANIFEST_NAME) as tmp:
                tmp.write_text(lines)
            break
        except FileNotFoundError:
            # A process starting on this folder (`prepare`) removes the temporary files killed runs
            # left, and can take ours with them: write it again, unless the folder itself has gone.
            if attempt == 2 or not (out / MANIFEST_DIR).is_dir():
                raise
    return out / MANIFEST_NAME


# --- shard writers: one per format, all write to a temporary name and rename when complete


class _ShardWriter:
    def __init__(self, out: Path, shard: int, params: RunParams, batch: int, backend: str) -> None:
        self.out, self.shard, self.params, self.batch, self.backend = out, shard, params, batch, backend
        self.start, self.stop = shard_range(shard, params.n, params.shard_size)
        self.final = out / shard_name(shard, params.format)
        self.tmp = temp_name(self.final)
        self.pending = 0  # batches sent to workers and not back yet
        self.submitted = False  # every batch has been generated and handed over

    def record(self, sha256: str) -> dict[str, Any]:
        p = self.params
        return {"shard": self.shard, "start": self.start, "stop": self.stop, "count": self.stop - self.start,
                "path": self.final.name, "format": p.format, "sha256": sha256, "seed": p.seed,
                "truncation": p.truncation, "model_hash": p.model_hash, "config_sha256": p.config_sha256,
                "backend": self.backend}  # backends may differ by a level in a few pixels

    def commit(self, sha256: str) -> dict[str, Any]:
        os.replace(self.tmp, self.final)
        fsync_dir(self.out)
        record = self.record(sha256)
        write_json(self.out / MANIFEST_DIR / f"shard-{self.shard:06d}.json", record)
        return record

    def abort(self) -> None:
        if self.tmp.is_dir():
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            self.tmp.unlink(missing_ok=True)


class _PngShard(_ShardWriter):
    """A folder of {index:08d}.png; the workers write the files, the sha256 covers names and bytes."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.tmp.mkdir()
        self.digests: dict[int, list[str]] = {}

    def destination(self) -> str:
        return str(self.tmp)

    def add_result(self, first: int, digests: list[str]) -> None:
        self.digests[first] = digests

    def finish(self) -> dict[str, Any]:
        h = hashlib.sha256()
        for first in sorted(self.digests):
            for i, digest in enumerate(self.digests[first]):
                h.update(f"{first + i:08d}.png {digest}\n".encode())
        sync_filesystem(self.tmp)  # the workers' files are on disk before the shard is recorded
        return self.commit(h.hexdigest())


class _TarShard(_ShardWriter):
    """WebDataset-style tar: {key}.png and {key}.json per image, in index order. The workers make
    the members of each batch; this writes them in order and ends the archive as tarfile does."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.file = open(self.tmp, "wb")
        self.hash = hashlib.sha256()
        self.waiting: dict[int, bytes] = {}
        self.next = self.start
        self.size = 0

    def destination(self) -> dict[str, Any]:
        p = self.params
        return {"seed": p.seed, "truncation": p.truncation, "model_hash": p.model_hash}

    def add_result(self, first: int, entries: bytes) -> None:
        self.waiting[first] = entries
        while self.next in self.waiting:  # write batches in index order
            self._write(self.waiting.pop(self.next))
            self.next = min(self.stop, self.next + self.batch)

    def _write(self, data: bytes) -> None:
        self.hash.update(data)
        self.file.write(data)
        self.size += len(data)

    def finish(self) -> dict[str, Any]:
        end = 2 * tarfile.BLOCKSIZE  # two zero blocks, then zeros up to a whole record
        self._write(b"\0" * (end + (-(self.size + end) % tarfile.RECORDSIZE)))
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        return self.commit(self.hash.hexdigest())

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.file.close()
        super().abort()


class _NpzShard(_ShardWriter):
    """images (uint8 n, H, W, C) and indices (int64), no workers needed."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.images = np.empty((self.stop - self.start, *self.params.image_shape), dtype=np.uint8)

    def add_images(self, first: int, images: np.ndarray) -> None:
        self.images[first - self.start:first - self.start + len(images)] = images

    def finish(self) -> dict[str, Any]:
        buffer = io.BytesIO()
        np.savez(buffer, images=self.images, indices=np.arange(self.start, self.stop, dtype=np.int64))
        data = buffer.getvalue()
        with open(self.tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return self.commit(hashlib.sha256(data).hexdigest())


_WRITERS = {"png": _PngShard, "tar": _TarShard, "npz": _NpzShard}


# --- the pipeline


def _commit(writer: _ShardWriter) -> dict[str, Any]:
    """Finish a complete shard (flush, rename, record); on failure remove its temporary files (a
    final name left without a record, if the rename was done, is removed by the next run)."""
    try:
        return writer.finish()
    except BaseException:
        writer.abort()
        raise


@contextlib.contextmanager
def _stop_on_signals(caught: list[int]) -> Iterator[None]:
    """Turn SIGINT/SIGTERM into entries of `caught`, which the loop checks between batches (main
    thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def generate(gen, out: str | os.PathLike, *, n: int, seed: int = 0, shard_size: int = 1000, fmt: str = "png",
             shard_index: int = 0, num_shards: int = 1, workers: int | None = None, batch_size: int | None = None,
             truncation: float | None = None, compress_level: int = 6,
             progress: Callable[[int], None] | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Make this process's shards of a bulk run into `out`; returns a summary.

    Args:
        gen: a `ganserve.Generator`.
        out: the output folder (shared by every process of the run).
        n, seed, shard_size, fmt, truncation: the run (must match any earlier run into `out`).
        shard_index, num_shards: this process's share: shards shard_index, +num_shards, ...
        workers: PNG-encoding processes (default: the CPU count; 0 encodes in this process).
        batch_size: images per forward pass (default: the backend's).
        compress_level: zlib level of the PNGs (0-9).
        progress: called with the number of images just finished.

    Raises:
        ValueError: bad parameters, or `out` holds another run or other files.
        Interrupted: SIGINT/SIGTERM; finished shards are kept, the current one is removed.
        OSError: the folder cannot be written (full, read-only), naming the shard or `out` (never a
            temporary name); no shard is recorded unfinished.
    """
    params = RunParams(n, seed, shard_size, fmt, truncation, gen.model_hash, gen.config.digest(), gen.image_shape)
    params.check()
    if not os.fspath(out):
        raise ValueError("--out is empty; give the output folder")
    if n > max_index(gen.latent_dim):
        raise ValueError(f"--n must be at most {max_index(gen.latent_dim)} for this model (latent size "
                         f"{gen.latent_dim}: image indices are counters of the latents' random generator), got {n}")
    mine = shards_for(n, shard_size, shard_index, num_shards)
    if not 0 <= compress_level <= 9:
        raise ValueError(f"--png-compression must be in [0, 9], got {compress_level}")
    if batch_size is not None:
        check_index(batch_size, "--batch-size", minimum=1)
    batch = min(batch_size or gen.default_batch_size, shard_size)
    # What can fail before an image is made fails here, before generate.json ties `out` to this run.
    if fmt == "npz":  # a shard is held in memory whole
        size = min(n, shard_size) * math.prod(gen.image_shape)
        try:
            np.empty(size, dtype=np.uint8)
        except (ValueError, MemoryError):
            raise ValueError(f"--shard-size {shard_size} is too large for --format npz, which holds a shard in "
                             f"memory ({size} bytes); use a smaller one") from None
    if truncation is not None and mine:  # the first batch's latents (the usual "too small" psi)
        first, stop = shard_range(mine[0], n, shard_size)
        gen.latents(min(batch, stop - first), seed=seed, start=first, truncation=truncation)
    out = Path(out)
    with os_errors_named(out):
        prepare(out, params)
        done = {s for s in finished_shards(out, params) if s in mine}
        clean_unfinished(out, params, mine, done)
    todo = _length(mine) - len(done)
    skipped = sum(shard_range(s, n, shard_size)[1] - shard_range(s, n, shard_size)[0] for s in done)
    if skipped:
        log(f"skipping {plural(len(done), 'shard')} already finished (of this process's {_length(mine)})")
        if progress:
            progress(skipped)
    workers = usable_cpus() if workers is None else workers
    if os.name != "posix":  # the pool passes a file descriptor to its workers
        workers = 0
    encoders: EncoderPool | None = None
    owner: dict[int, tuple[_ShardWriter, int]] = {}  # encoder slot -> (shard writer, first index)
    records: list[dict[str, Any]] = []
    active: list[_ShardWriter] = []  # shards still being made
    caught: list[int] = []  # SIGINT/SIGTERM received, checked between batches
    # A complete shard is flushed to disk, renamed and recorded on a thread of its own, so that
    # generation goes on meanwhile (a sync can wait on the disk for tens of milliseconds). At most
    # MAX_COMMITS wait there: each holds its shard (an npz shard, all of its images).
    committer = ThreadPoolExecutor(1, thread_name_prefix="ganserve-commit")
    commits: list[Future] = []

    def finish_ready() -> None:
        while active and active[0].submitted and active[0].pending == 0:
            commits.append(committer.submit(_commit, active.pop(0)))
        while commits and (commits[0].done() or len(commits) > MAX_COMMITS):
            records.append(commits.pop(0).result())  # a failed commit raises here

    def collect() -> None:
        while True:
            try:
                slot, payload = encoders.collect(timeout=STOP_CHECK_SECONDS)
                break
            except TimeoutError:  # encoders busy: a signal must still stop the run
                if caught:
                    raise Interrupted(caught[0]) from None
            except EncoderError:
                if caught:  # a Ctrl-C that reached a starting encoder too (Python 3.10, see encode.py)
                    raise Interrupted(caught[0]) from None
                raise
        writer, first = owner.pop(slot)
        writer.pending -= 1
        writer.add_result(first, payload)
        finish_ready()

    def deliver(writer: _ShardWriter, first: int, images: np.ndarray) -> None:
        """Hand a batch to its shard: raw arrays for npz, the encoder pool or this process for PNGs."""
        if isinstance(writer, _NpzShard):
            writer.add_images(first, images)
        elif encoders is not None:
            while not encoders.free:
                collect()
            owner[encoders.submit(images, first, writer.destination())] = (writer, first)
            writer.pending += 1
        else:  # workers=0: encode here
            pngs = [to_pil(image) for image in images]
            writer.add_result(first, encode_batch(pngs, first, writer.destination(), compress_level))

    try:
        with _stop_on_signals(caught), os_errors_named(out):
            if fmt != "npz" and workers > 0 and todo:
                encoders = EncoderPool(workers, gen.image_shape, batch, compress_level)
            for shard in mine:
                if shard in done:
                    continue
                writer = _WRITERS[fmt](out, shard, params, batch, gen.backend)
                active.append(writer)
                for first in range(writer.start, writer.stop, batch):
                    if caught:
                        raise Interrupted(caught[0])
                    count = min(batch, writer.stop - first)
                    images = gen.sample(count, seed=seed, start=first, batch_size=count, truncation=truncation)
                    deliver(writer, first, images)
                    if progress:
                        progress(count)
                writer.submitted = True
                finish_ready()
            while encoders is not None and any(w.pending for w in active):
                collect()
            finish_ready()
            records.extend(commit.result() for commit in commits)
    except BaseException:
        if encoders is not None:  # stop the workers first: none may write into a folder being removed
            encoders.close(abort=True)
            encoders = None
        for writer in active:
            writer.abort()
        committer.shutdown(wait=True)
        for commit in commits:  # shards handed over before the failure: committed, or say why not
            if commit.exception() is not None:
                log(f"shard not recorded (a re-run makes it again): {named_os_error(commit.exception(), out)}")
        raise
    finally:
        committer.shutdown(wait=True)  # complete shards already handed over are committed
        if encoders is not None:
            encoders.close()
        with contextlib.suppress(OSError):
            write_manifest(out, params)
    made = sum(r["count"] for r in records)
    return {"made": made, "skipped": skipped, "shards": len(records), "out": str(out),
            "complete": len(finished_shards(out, params)) == params.num_shard_files}

