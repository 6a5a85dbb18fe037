"""PNG encoding: the worker pool (light processes, failures reported, never a hang) and tar headers."""

from __future__ import annotations

import errno
import io
import os
import signal
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganserve.encode import EncoderError, EncoderPool, encode_batch, tar_entries, tar_header, write_new_file
from ganserve.images import to_pil


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(5, 12, 10, 3), dtype=np.uint8)


# Names over 100 bytes or not ASCII, and sizes from 8**11 on, need PAX records: those cases check
# that tar_header hands them to tarfile rather than writing a wrong plain header.
@pytest.mark.parametrize("name", ["00000001.png", "a", "x" * 100, "x" * 101, "\u00fc.png", "dir/00000001.json"])
@pytest.mark.parametrize("size", [0, 1, 511, 512, 700, 12345678, 8**11 - 1, 8**11])
def test_tar_header_is_tarfiles(name, size):
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    assert tar_header(name, size) == info.tobuf(format=tarfile.PAX_FORMAT)


def test_tar_entries_read_back():
    blobs = [b"png-bytes-%d" % i * (i + 1) for i in range(3)]
    data = tar_entries(blobs, 40, {"seed": 7}) + b"\0" * 1024
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.getnames() == ["00000040.png", "00000040.json", "00000041.png", "00000041.json",
                                  "00000042.png", "00000042.json"]
        assert tar.extractfile("00000042.png").read() == blobs[2]
        assert tar.extractfile("00000041.json").read() == b'{"index": 41, "seed": 7}'


def test_write_new_file(tmp_path):
    data = bytes(range(256)) * 40
    write_new_file(str(tmp_path / "a.png"), data)
    assert (tmp_path / "a.png").read_bytes() == data
    assert (tmp_path / "a.png").stat().st_mode & 0o777 == 0o666 & ~_umask()
    with pytest.raises(FileExistsError):  # never over a file: a shard folder starts empty
        write_new_file(str(tmp_path / "a.png"), b"other")
    assert (tmp_path / "a.png").read_bytes() == data


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_pool_writes_what_this_process_writes(tmp_path, images):
    (tmp_path / "pool").mkdir()
    (tmp_path / "here").mkdir()
    with EncoderPool(2, images.shape[1:], 8, 6) as pool:
        pool.submit(images[:3], 10, str(tmp_path / "pool"))
        pool.submit(images[3:], 13, str(tmp_path / "pool"))
        pool.submit(images, 10, {"seed": 1})
        answers = sorted((pool.collect() for _ in range(3)), key=lambda answer: isinstance(answer[1], bytes))
    pils = [to_pil(image) for image in images]
    here = str(tmp_path / "here")
    digests = encode_batch(pils[:3], 10, here, 6) + encode_batch(pils[3:], 13, here, 6)
    assert sorted(answers[0][1] + answers[1][1]) == sorted(digests)
    assert answers[2][1] == encode_batch(pils, 10, {"seed": 1}, 6)
    for j in range(10, 15):
        assert (tmp_path / "pool" / f"{j:08d}.png").read_bytes() == (tmp_path / "here" / f"{j:08d}.png").read_bytes()
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "pool" / f"{j:08d}.png")), images[j - 10])


def test_workers_load_neither_numpy_nor_the_parents_script(tmp_path, images):
    with EncoderPool(1, images.shape[1:], 8, 6) as pool:
        pool.submit(images, 0, str(tmp_path))
        pool.collect()
        maps = Path(f"/proc/{pool._procs[0].pid}/maps")
        if not maps.exists():
            pytest.skip("needs Linux /proc")
        libraries = maps.read_text()
    assert "PIL" in libraries and "numpy" not in libraries


def test_a_dead_worker_is_reported_not_waited_for(images):
    pool = EncoderPool(1, images.shape[1:], 8, 6)
    try:
        os.kill(pool._procs[0].pid, signal.SIGKILL)
        pool.submit(images, 0, {"seed": 0})
        with pytest.raises(EncoderError, match="died \\(killed by SIGKILL\\)"):
            pool.collect()
    finally:
        pool.close(abort=True)


def test_a_failed_batch_is_reported_and_the_worker_goes_on(tmp_path, images):
    with EncoderPool(1, images.shape[1:], 8, 6) as pool:
        pool.submit(images, 0, str(tmp_path / "missing"))
        with pytest.raises(EncoderError, match="No such file or directory.*missing") as failure:
            pool.collect()
        assert failure.value.errno == errno.ENOENT  # as the system said it: the parent names the user's path
        assert failure.value.filename == str(tmp_path / "missing" / "00000000.png")
        pool.submit(images, 0, str(tmp_path))
        assert len(pool.collect()[1]) == len(images)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Popen(process_group=...) is Python 3.11+")
def test_workers_leave_signals_to_the_parent_and_end_with_the_pool(tmp_path, images):
    pool = EncoderPool(2, images.shape[1:], 8, 6)
    procs = list(pool._procs)
    try:
        for k, _ in enumerate(procs):
            pool.submit(images, 10 * k, str(tmp_path))  # files are created, never overwritten
        for _ in procs:
            pool.collect()
        for proc in procs:
            assert os.getpgid(proc.pid) == proc.pid  # their own group: a terminal's Ctrl-C skips them
            assert os.getsid(proc.pid) == os.getsid(0)  # but not their own session (see _OWN_GROUP)
            os.kill(proc.pid, signal.SIGINT)
            os.kill(proc.pid, signal.SIGTERM)
        pool.submit(images, 100, str(tmp_path))
        assert len(pool.collect()[1]) == len(images)
    finally:
        pool.close()
    assert all(proc.returncode == 0 for proc in procs)


def test_collect_times_out_when_nothing_comes(images):
    with EncoderPool(1, images.shape[1:], 8, 6) as pool:
        with pytest.raises(TimeoutError):
            pool.collect(timeout=0.05)


def test_workers_start_whatever_sys_path_holds(tmp_path, images, monkeypatch):
    monkeypatch.syspath_prepend(tmp_path / "not-a-folder")  # a Path object, as notebooks add them
    monkeypatch.setattr(sys, "path", [Path(p) for p in sys.path[:1]] + sys.path[1:])
    monkeypatch.chdir(tmp_path)  # relative entries would now point elsewhere
    with EncoderPool(1, images.shape[1:], 8, 6) as pool:
        pool.submit(images, 0, str(tmp_path))
        assert len(pool.collect()[1]) == len(images)
