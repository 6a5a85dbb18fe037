"""Training checkpoints: everything needed to resume exactly, written atomically.

A checkpoint is a dict of tensors and plain Python values, saved with `torch.save` and read with
``torch.load(weights_only=True)``, so loading one never executes code. ``RUN/last.pt`` is always a
complete checkpoint (temp file + rename); ``RUN/checkpoints/step-XXXXXXXX.pt`` keep the last few,
``RUN/best.pt`` the best by the quality metric (hard links: no extra space).
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from ganserve._files import atomic_path, temp_name
from ganserve.errors import first_line

FORMAT = "ganserve-train-checkpoint"
VERSION = 1
REQUIRED_KEYS = {"format", "version", "step", "config", "options", "G", "D", "EMA", "opt_G", "opt_D", "rng", "data",
                 "history", "best_fd", "elapsed_s"}


class CheckpointError(ValueError):
    """A file is not a usable ganserve training checkpoint."""


def save_checkpoint(state: dict[str, Any], run: Path, keep: int = 3) -> Path:
    """Write `state` to run/last.pt atomically, link it as checkpoints/step-N.pt, prune old ones."""
    state = {"format": FORMAT, "version": VERSION, **state}
    last = run / "last.pt"
    with atomic_path(last) as tmp:
        torch.save(state, tmp)
    history = run / "checkpoints"
    history.mkdir(exist_ok=True)
    link(last, history / f"step-{state['step']:08d}.pt")
    old = sorted(history.glob("step-*.pt"))
    for path in old[:max(0, len(old) - keep)]:  # keep=0: none kept (last.pt is the newest)
        path.unlink(missing_ok=True)
    return last


def link(src: Path, dst: Path) -> None:
    """Make `dst` a hard link to `src` (a copy where links are impossible), replacing it atomically."""
    tmp = temp_name(dst)
    try:
        os.link(src, tmp)
    except OSError:
        import shutil

        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


class RunInUse(FileExistsError):
    """Another process trains in the run folder."""


class RunLock:
    """An exclusive lock on a run folder (flock on the folder itself), held by the process that trains
    in it (rank 0 under torchrun), so that a second one, say a `--resume` started while the run is
    still alive, is refused instead of both writing last.pt in turn. The lock goes with the process,
    however it ends. Where the system or file system has no flock, nothing is locked."""

    def __init__(self, run: Path) -> None:
        self.fd: int | None = None
        try:
            import fcntl
        except ImportError:  # not a POSIX system
            return
        fd = os.open(run, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunInUse(f"{run} is in use: another process is training in it; let it finish or stop it "
                           f"before --resume, or choose another --out") from None
        except OSError:  # a file system without locks
            os.close(fd)
            return
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the lock
            self.fd = None

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # at interpreter exit the descriptor goes with the process anyway
            pass


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`, refusing anything else (no code executes)."""
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    state = load_torch_file(path, "checkpoint", map_location)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a ganserve training checkpoint")
    if state.get("version", 0) > VERSION:
        raise CheckpointError(f"{path}: checkpoint version {state['version']} is newer than this ganserve reads")
    missing = sorted(REQUIRED_KEYS - set(state))
    if missing:
        raise CheckpointError(f"{path}: checkpoint is missing {missing}")
    return state


def load_torch_file(path: Path, what: str, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(weights_only=True)`` of a whole, undamaged `torch.save` file; CheckpointError naming
    `what` (the kind of file expected) otherwise."""
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive, its directory at the end
        raise CheckpointError(f"{path}: truncated, corrupt or not a {what} (not a whole torch checkpoint file: "
                              f"cut short, or another kind of file)")
    damaged = _damaged_member(path)
    if damaged:
        raise CheckpointError(f"{path}: corrupt {what} ({damaged} fails its CRC check: the file changed on disk "
                              f"after it was written)")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of files it then refuses
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001  (torch raises many types for a malformed file)
        raise CheckpointError(load_failure(path, e, f"truncated, corrupt or not a {what}")) from None


def _damaged_member(path: Path) -> str | None:
    """The first archive member whose bytes no longer match their CRC-32 (torch.save records one for
    each; torch.load does not check them), or None. Reading a checkpoint twice costs milliseconds."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        return f"its archive ({first_line(e)})"


def load_failure(path: Path, error: Exception, otherwise: str) -> str:
    """Why ``torch.load(weights_only=True)`` failed on `path`, in one line of ganserve's own words:
    torch's message for a refused pickle leads with advice to load the file unsafely, which ganserve
    never does. `otherwise` says what the file is not, for every other failure."""
    if isinstance(error, pickle.UnpicklingError):
        name = re.search(r"GLOBAL (\S+)", str(error))
        if name or "Unsupported" in str(error):
            return (f"{path}: refused: it holds pickled objects other than tensors and plain containers"
                    f"{f' ({name[1]})' if name else ''}; ganserve never executes code from a file")
        return f"{path}: {otherwise} (not a torch tensor file)"
    return f"{path}: {otherwise} ({first_line(error)})"
