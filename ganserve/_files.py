"""Writing files so that a crash never leaves a half-written one under the final name."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from pathlib import Path
from typing import Any, Iterator


def temp_name(path: Path) -> Path:
    """A hidden, unique sibling of `path` to write into before renaming."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


_TEMP = re.compile(r"\.(.+)\.[0-9a-f]{8}\.tmp")  # what temp_name() makes: .{final name}.{8 hex digits}.tmp


def final_name(name: str) -> str:
    """The name a temporary file or folder (see `temp_name`) is renamed to; other names as they are."""
    m = _TEMP.fullmatch(name)
    return m[1] if m else name


def named_os_error(error: BaseException, target: Path) -> BaseException:
    """An OSError as the user should read it: about the final names of the temporary ones in its
    path, or about `target` (what is being written) when it names no file (a write to a full disk)."""
    if not isinstance(error, OSError) or error.errno is None:  # not from a system call: as it is
        return error
    if error.filename is None:
        return OSError(error.errno, error.strerror, str(target))
    parts = Path(os.fsdecode(error.filename)).parts
    if not any(_TEMP.fullmatch(part) for part in parts):
        return error
    return OSError(error.errno, error.strerror, str(Path(*map(final_name, parts))))


@contextlib.contextmanager
def os_errors_named(target: Path) -> Iterator[None]:
    """Raise the block's OSErrors as `named_os_error` renames them: about final names, not temporary
    ones, or about `target` where they name no file."""
    try:
        yield
    except OSError as e:
        named = named_os_error(e, target)
        if named is e:
            raise
        raise named from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success fsync it and rename it onto `path`.

    On an exception the temporary file is removed and `path` is left as it was; an OSError about
    the temporary file, or about no file (a write to a full disk), is raised as one about `path`
    (what the user asked to write).
    """
    path = Path(path)
    tmp = temp_name(path)
    with os_errors_named(path):
        try:
            yield tmp
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)  # some writers create private files; models are meant to be shared
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def dumps_json(obj: Any) -> str:
    """JSON as ganserve writes it: sorted keys, indented, newline-terminated."""
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_bytes(path, dumps_json(obj).encode())


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sync_filesystem(path: Path) -> None:
    """Flush every file written on the filesystem that holds `path` (Linux `syncfs`; elsewhere
    `os.sync`). One call makes a folder of many new files durable at a fraction of the cost of
    fsyncing each one."""
    try:
        import ctypes

        syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError, TypeError):  # no syncfs (not Linux)
        if hasattr(os, "sync"):
            os.sync()
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        if syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)
