"""Atomic writes: a failure leaves the old file whole, no temporary file, and an error naming the path."""

from __future__ import annotations

import subprocess

import pytest

from ganserve._files import atomic_path, write_bytes


def test_a_failed_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("the writer failed")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_a_full_disk_is_said_about_the_path(tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(full)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        (full / "weights.bin").write_bytes(b"old")
        with pytest.raises(OSError) as failure:
            write_bytes(full / "weights.bin", bytes(1 << 20))  # the write itself fails: an OSError without a file
        assert failure.value.errno == 28 and failure.value.filename == str(full / "weights.bin")
        assert (full / "weights.bin").read_bytes() == b"old" and [p.name for p in full.iterdir()] == ["weights.bin"]
    finally:
        subprocess.run(["umount", str(full)], check=False)
