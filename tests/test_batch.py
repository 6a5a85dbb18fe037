"""Bulk generation: shard arithmetic, any split == one run, resumable after SIGKILL, formats, refusals."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganserve import Generator, batch
from ganserve._files import named_os_error
from ganserve.batch import RunParams, generate, images_in, prepare, shard_range, shards_for
from ganserve.encode import EncoderError
from ganserve.latents import max_index


@pytest.fixture(scope="module")
def gen(tiny_model_dir):
    return Generator.load(tiny_model_dir, backend="numpy")


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (relative name -> bytes), manifests included."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_shard_arithmetic():
    assert shard_range(0, 25, 10) == (0, 10) and shard_range(2, 25, 10) == (20, 25)
    assert list(shards_for(25, 10)) == [0, 1, 2]
    assert list(shards_for(95, 10, shard_index=1, num_shards=3)) == [1, 4, 7]
    assert list(shards_for(95, 10, shard_index=2, num_shards=3)) == [2, 5, 8]
    all_shards = sorted(s for i in range(4) for s in shards_for(1000, 7, i, 4))
    assert all_shards == list(range(143))  # every shard exactly once
    with pytest.raises(ValueError, match=r"--shard-index must be in \[0, 2\]"):
        shards_for(95, 10, shard_index=3, num_shards=3)
    for n, size, k in [(25, 10, 1), (25, 10, 2), (95, 10, 3), (1000, 7, 4), (5, 10, 3)]:
        for i in range(k):
            mine = shards_for(n, size, i, k)
            counted = sum(stop - start for start, stop in (shard_range(s, n, size) for s in mine))
            assert images_in(mine, n, size) == counted


def test_huge_runs_are_counted_not_listed():
    n = 2**60 + 1  # n / 1 as a float is 2**60: one shard short
    assert shards_for(n, 1)[-1] == n - 1 and images_in(shards_for(n, 1), n, 1) == n
    assert images_in(shards_for(2**64 - 1, 1, 1, 2), 2**64 - 1, 1) == 2**63 - 1  # more shards than sys.maxsize


@pytest.mark.parametrize("fmt", ["png", "tar", "npz"])
def test_k_shard_runs_equal_one_run(tmp_path, gen, fmt):
    generate(gen, tmp_path / "one", n=23, shard_size=5, fmt=fmt, seed=4, workers=2, log=lambda _: None)
    for i in range(3):
        summary = generate(gen, tmp_path / "split", n=23, shard_size=5, fmt=fmt, seed=4, shard_index=i,
                           num_shards=3, workers=1, log=lambda _: None)
    assert summary["complete"]
    assert tree(tmp_path / "one") == tree(tmp_path / "split")


@pytest.mark.parametrize("fmt", ["png", "tar"])
def test_encoding_in_process_equals_the_worker_pool(tmp_path, gen, fmt):
    generate(gen, tmp_path / "pool", n=11, shard_size=5, fmt=fmt, seed=3, workers=2, log=lambda _: None)
    generate(gen, tmp_path / "here", n=11, shard_size=5, fmt=fmt, seed=3, workers=0, log=lambda _: None)
    assert tree(tmp_path / "pool") == tree(tmp_path / "here")


def test_files_are_the_generators_images(tmp_path, gen):
    generate(gen, tmp_path / "o", n=12, shard_size=5, seed=2, workers=2, log=lambda _: None)
    expected = gen.sample(12, seed=2, batch_size=5)  # the shards' batches: [0, 5), [5, 10), [10, 12)
    files = sorted((tmp_path / "o").glob("shard-*/*.png"))
    assert [f.name for f in files] == [f"{j:08d}.png" for j in range(12)]
    for j, f in enumerate(files):
        np.testing.assert_array_equal(np.asarray(Image.open(f)), expected[j, ..., 0])
    records = [json.loads(x) for x in (tmp_path / "o" / "manifest.jsonl").read_text().splitlines()]
    assert [(r["shard"], r["start"], r["stop"], r["count"]) for r in records] == [(0, 0, 5, 5), (1, 5, 10, 5),
                                                                                  (2, 10, 12, 2)]
    assert all(r["model_hash"] == gen.model_hash and len(r["sha256"]) == 64 for r in records)
    assert all(r["backend"] == "numpy" for r in records)  # backends may differ by a level in a few pixels
    assert all(set(r) == batch.RECORD_KEYS | {"backend"} for r in records)  # what a re-run reads as whole


def test_tar_and_npz_read_back(tmp_path, gen):
    generate(gen, tmp_path / "t", n=7, shard_size=4, fmt="tar", seed=1, workers=1, log=lambda _: None)
    generate(gen, tmp_path / "z", n=7, shard_size=4, fmt="npz", seed=1, log=lambda _: None)
    with tarfile.open(tmp_path / "t" / "shard-000001.tar") as tar:
        names = tar.getnames()
        assert names == ["00000004.png", "00000004.json", "00000005.png", "00000005.json", "00000006.png",
                         "00000006.json"]
        meta = json.loads(tar.extractfile("00000005.json").read())
        assert meta["index"] == 5 and meta["seed"] == 1 and meta["model_hash"] == gen.model_hash
        png = np.asarray(Image.open(tar.extractfile("00000005.png")))
    with np.load(tmp_path / "z" / "shard-000001.npz") as data:
        assert data["images"].dtype == np.uint8 and data["images"].shape == (3, 28, 28, 1)
        np.testing.assert_array_equal(data["indices"], [4, 5, 6])
        np.testing.assert_array_equal(data["images"][1, ..., 0], png)


def test_rerun_skips_finished_shards(tmp_path, gen):
    generate(gen, tmp_path / "o", n=10, shard_size=5, log=lambda _: None, workers=1)
    before = tree(tmp_path / "o")
    summary = generate(gen, tmp_path / "o", n=10, shard_size=5, log=lambda _: None, workers=1)
    assert summary["made"] == 0 and summary["skipped"] == 10
    assert tree(tmp_path / "o") == before


@pytest.mark.parametrize("change,message", [
    (dict(seed=1), "other parameters"),
    (dict(shard_size=4), "other parameters"),
    (dict(fmt="tar"), "other parameters"),
    (dict(truncation=0.5), "other parameters"),
])
def test_refuses_to_mix_runs(tmp_path, gen, change, message):
    generate(gen, tmp_path / "o", n=10, shard_size=5, log=lambda _: None, workers=0)
    args = dict(n=10, shard_size=5, log=lambda _: None, workers=0)
    args.update(change)
    with pytest.raises(ValueError, match=message):
        generate(gen, tmp_path / "o", **args)


def test_refuses_another_model(tmp_path, gen):
    generate(gen, tmp_path / "o", n=4, shard_size=2, log=lambda _: None, workers=0)
    other = Generator.load(backend="numpy")  # the shipped model
    with pytest.raises(ValueError, match="another model"):
        generate(other, tmp_path / "o", n=4, shard_size=2, log=lambda _: None, workers=0)


@pytest.mark.parametrize("kwargs,message", [
    (dict(n=0), "--n must be at least 1, got 0"),
    (dict(shard_size=0), "--shard-size must be at least 1"),
    (dict(fmt="jpeg"), "unknown --format 'jpeg'"),
    (dict(shard_index=5, num_shards=2), "--shard-index must be in"),
    (dict(num_shards=0), "--num-shards must be at least 1"),
    (dict(batch_size=-1), "--batch-size must be at least 1, got -1"),
    (dict(batch_size=0), "--batch-size must be at least 1"),
])
def test_bad_parameters(tmp_path, gen, kwargs, message):
    args = dict(n=10, shard_size=5, log=lambda _: None)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        generate(gen, tmp_path / "o", **args)
    assert not (tmp_path / "o").exists()


def test_processes_starting_together_agree_on_generate_json(tmp_path, monkeypatch):
    """Process A finds no generate.json and writes its temporary copy; then B creates generate.json
    and C starts, and they remove the temporary files they find, A's too; A, linking its copy, must
    then use B's."""
    out, params = tmp_path / "o", RunParams(4, 0, 2, "png", None, "m", "c", (1, 28, 28))
    link, others = os.link, []

    def racing_link(src, dst):
        if not others:
            others.append("B and C")
            prepare(out, params)  # B, in between A's write and A's link
            prepare(out, params)  # C
        return link(src, dst)

    monkeypatch.setattr(batch.os, "link", racing_link)
    prepare(out, params)
    assert sorted(p.name for p in out.iterdir()) == ["generate.json", "manifest"]  # no temporary file left


def test_a_process_starting_while_another_writes_the_manifest(tmp_path, gen, monkeypatch):
    """A finishes and writes manifest.jsonl; B starts on the folder in between A's write of the
    temporary file and its rename, and removes it with the temporary files of killed runs. A must
    write it again, not fail after all its shards are done."""
    out = tmp_path / "o"
    write_text, starts = Path.write_text, []

    def racing_write(path, *args, **kwargs):
        result = write_text(path, *args, **kwargs)
        if path.name.startswith(".manifest.jsonl.") and not starts:
            starts.append("B")
            prepare(out, RunParams(6, 0, 3, "png", None, gen.model_hash, gen.config.digest(), gen.image_shape))  # B
        return result

    monkeypatch.setattr(Path, "write_text", racing_write)
    generate(gen, out, n=6, shard_size=3, workers=0, log=lambda _: None)
    assert starts == ["B"]
    assert [json.loads(line)["shard"] for line in (out / "manifest.jsonl").read_text().splitlines()] == [0, 1]
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_a_temporary_generate_json_of_a_killed_start_is_removed(tmp_path):
    out, params = tmp_path / "o", RunParams(4, 0, 2, "png", None, "m", "c", (1, 28, 28))
    out.mkdir()
    (out / ".generate.json.0123abcd.tmp").write_text("{}")  # killed between writing it and linking it
    prepare(out, params)
    assert sorted(p.name for p in out.iterdir()) == ["generate.json", "manifest"]


@pytest.mark.parametrize("content,message", [
    ("[]", "not a run's parameters (a JSON list, not an object)"),
    ("null", "not a run's parameters (a JSON NoneType, not an object)"),
    ("{", "unreadable"),
    (b"\xff\xfe{}", "unreadable"),
])
def test_an_unreadable_generate_json_is_refused(tmp_path, content, message):
    out, params = tmp_path / "o", RunParams(4, 0, 2, "png", None, "m", "c", (1, 28, 28))
    out.mkdir()
    path = out / "generate.json"
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    with pytest.raises(ValueError, match=re.escape(message) + ".*remove it or use another --out"):
        prepare(out, params)


@pytest.mark.parametrize("fmt", ["png", "tar"])
def test_refuses_a_folder_that_holds_no_run(tmp_path, gen, fmt):
    out = tmp_path / "d"
    (out / "shard-000001").mkdir(parents=True)
    (out / "shard-000000.tar").write_text("precious")
    (out / "shard-000001" / "important.txt").write_text("x")
    before = tree(out)
    with pytest.raises(ValueError, match=rf"{out} is not empty \(shard-000000.tar, shard-000001\) and holds no run"):
        generate(gen, out, n=20, shard_size=10, fmt=fmt, log=lambda _: None, workers=0)
    assert tree(out) == before and sorted(p.name for p in out.iterdir()) == ["shard-000000.tar", "shard-000001"]
    (tmp_path / "empty").mkdir()  # an empty folder is fine
    assert generate(gen, tmp_path / "empty", n=2, fmt=fmt, log=lambda _: None, workers=0)["complete"]
    (tmp_path / "volume" / "lost+found").mkdir(parents=True)  # so is the root of a freshly formatted volume
    assert generate(gen, tmp_path / "volume", n=2, fmt=fmt, log=lambda _: None, workers=0)["complete"]


@pytest.mark.parametrize("fmt", ["png", "tar", "npz"])
def test_a_shard_without_record_is_remade_only_if_it_is_one(tmp_path, gen, fmt):
    args = dict(n=20, shard_size=10, fmt=fmt, log=lambda _: None, workers=0)
    generate(gen, tmp_path / "o", **args)
    clean = tree(tmp_path / "o")
    record = tmp_path / "o" / "manifest" / "shard-000001.json"
    record.unlink()  # as a kill between the shard's rename and its record leaves it
    assert generate(gen, tmp_path / "o", **args)["made"] == 10
    assert tree(tmp_path / "o") == clean
    record.unlink()
    final = tmp_path / "o" / ("shard-000001" if fmt == "png" else f"shard-000001.{fmt}")
    if fmt == "png":
        (final / "notes.txt").write_text("mine")
    else:
        final.write_text("mine")
    with pytest.raises(ValueError, match=f"{final} has no record in .* and is not a shard this run makes"):
        generate(gen, tmp_path / "o", **args)
    assert (final / "notes.txt" if fmt == "png" else final).read_text() == "mine"


@pytest.mark.parametrize("fmt", ["png", "tar"])
@pytest.mark.parametrize("damage", ['{"shard": 1}', "truncated", "[]", "shard 0"])
def test_a_damaged_record_is_no_record(tmp_path, gen, fmt, damage):
    args = dict(n=20, shard_size=10, fmt=fmt, log=lambda _: None, workers=0)
    generate(gen, tmp_path / "o", **args)
    clean = tree(tmp_path / "o")
    record = tmp_path / "o" / "manifest" / "shard-000001.json"
    text = {"truncated": record.read_text()[:40],
            "shard 0": (tmp_path / "o" / "manifest" / "shard-000000.json").read_text()}.get(damage, damage)
    record.write_text(text)
    summary = generate(gen, tmp_path / "o", **args)
    assert summary["made"] == 10 and summary["complete"]
    assert tree(tmp_path / "o") == clean


def test_a_run_that_fails_before_any_image_leaves_nothing(tmp_path, gen):
    out = tmp_path / "o"
    with pytest.raises(ValueError, match="too small"):
        generate(gen, out, n=3, truncation=0.001, log=lambda _: None, workers=0)
    end = max_index(gen.latent_dim)
    with pytest.raises(ValueError, match=f"--n must be at most {end} for this model"):
        generate(gen, out, n=end + 1, shard_size=end + 1, fmt="npz", log=lambda _: None)
    with pytest.raises(ValueError, match="--shard-size 1000000000000000 is too large for --format npz"):
        generate(gen, out, n=10**15, shard_size=10**15, fmt="npz", log=lambda _: None)
    assert not out.exists()
    assert generate(gen, out, n=3, truncation=0.5, log=lambda _: None, workers=0)["complete"]


def test_user_paths_replace_temporary_names():
    out = Path("b/ro2")
    for error, message in [
        (PermissionError(13, "Permission denied", "b/ro2/.shard-000001.3633837b.tmp"), "'b/ro2/shard-000001'"),
        (OSError(28, "No space left on device", "b/ro2/.shard-000001.0123abcd.tmp/00000010.png"),
         "'b/ro2/shard-000001/00000010.png'"),
        (OSError(28, "No space left on device"), "No space left on device: 'b/ro2'"),
        (PermissionError(13, "Permission denied", "b/ro2/.generate.json.3633837b.tmp"), "'b/ro2/generate.json'"),
    ]:
        named = named_os_error(error, out)
        assert type(named) is type(error) and str(named).endswith(message) and ".tmp" not in str(named)
    error = EncoderError("PNG encoder process 12 died")
    assert named_os_error(error, out) is error


def _cmd(model, out, *extra):
    return [sys.executable, "-m", "ganserve", "generate", str(model), "--n", "300", "--shard-size", "10",
            "--out", str(out), "--backend", "numpy", "--batch-size", "4", "--workers", "1", *extra]


def _children(pid: int) -> list[int]:
    """The child processes of `pid` (Linux /proc; the encoder pool of a generate run)."""
    tasks = Path(f"/proc/{pid}/task")
    if not tasks.is_dir():
        pytest.skip("needs Linux /proc")
    return [int(c) for t in tasks.iterdir() for c in (t / "children").read_text().split()]


def _alive(pid: int) -> bool:
    """Running (not exited, not a zombie waiting for its reaper)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_for_records(out: Path, count: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(list((out / "manifest").glob("shard-*.json"))) >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"no {count} finished shards in {timeout} s")


@pytest.mark.slow
def test_sigkill_then_rerun_equals_a_clean_run(tmp_path, tiny_model_dir):
    out = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(tiny_model_dir, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_records(out, 3)
    workers = _children(proc.pid)
    assert workers, "the run has no encoder process to watch"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    while workers and time.monotonic() < deadline:  # orphaned encoders notice and exit
        workers = [pid for pid in workers if _alive(pid)]
        time.sleep(0.2)
    assert not workers, f"encoder processes {workers} outlived their killed parent"
    subprocess.run(_cmd(tiny_model_dir, out), check=True, capture_output=True, timeout=300)
    subprocess.run(_cmd(tiny_model_dir, tmp_path / "clean"), check=True, capture_output=True, timeout=300)
    assert tree(out) == tree(tmp_path / "clean")
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.slow
@pytest.mark.parametrize("signum,code,group", [(signal.SIGTERM, 128 + 15, False), (signal.SIGINT, 128 + 2, False),
                                               (signal.SIGINT, 128 + 2, True)])  # Ctrl-C: the whole group
def test_sigterm_and_sigint_stop_cleanly(tmp_path, tiny_model_dir, signum, code, group):
    out = tmp_path / "o"
    proc = subprocess.Popen(_cmd(tiny_model_dir, out, "--format", "tar"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    _wait_for_records(out, 2)
    workers = _children(proc.pid)
    if group:
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert proc.returncode == code, err
    assert "run the same command again to resume" in err
    assert not [pid for pid in workers if _alive(pid)]
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    records = {json.loads(p.read_text())["path"] for p in (out / "manifest").glob("shard-*.json")}
    assert records == {p.name for p in out.glob("shard-*.tar")}  # every shard on disk is recorded, and back


def test_cli_errors_are_one_line(tmp_path, capsys, tiny_model_dir):
    from ganserve.cli import main

    for args, message in [(["--n", "-5"], "--n must be at least 1, got -5"),
                          (["--format", "gif"], "unknown --format 'gif'"),
                          (["--shard-index", "3", "--num-shards", "2"], "--shard-index must be in"),
                          (["--shard-size", "0"], "--shard-size must be at least 1, got 0"),
                          (["--seed", "-1"], "--seed must be at least 0, got -1"),
                          (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
                          (["--workers", "-1"], "--workers must be at least 0, got -1"),
                          (["--n", str(2**64 - 1), "--shard-size", "1"], "--n must be at most")]:
        code = main(["generate", str(tiny_model_dir), "--n", "10", "--out", str(tmp_path / "o"), *args])
        err = capsys.readouterr().err
        assert code == 1 and message in err and len(err.strip().splitlines()) == 1, err


def test_cli_takes_its_shard_from_the_environment(tmp_path, capsys, monkeypatch, tiny_model_dir):
    """GANSERVE_SHARD_INDEX / GANSERVE_NUM_SHARDS (what a Kubernetes Indexed Job sets) split a run as
    --shard-index / --num-shards do."""
    from ganserve.cli import main

    args = ["generate", str(tiny_model_dir), "--n", "13", "--shard-size", "3", "--backend", "numpy", "--workers", "0"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    monkeypatch.setenv("GANSERVE_NUM_SHARDS", "2")
    for index, shards in (("1", ["shard-000001", "shard-000003"]), ("0", None)):
        monkeypatch.setenv("GANSERVE_SHARD_INDEX", index)
        assert main([*args, "--out", str(tmp_path / "env")]) == 0, capsys.readouterr().err
        if shards:
            assert sorted(p.name for p in (tmp_path / "env").glob("shard-*")) == shards
    assert tree(tmp_path / "env") == tree(tmp_path / "one")
    monkeypatch.setenv("GANSERVE_SHARD_INDEX", "2")
    assert main([*args, "--out", str(tmp_path / "bad")]) == 1
    assert "--shard-index must be in" in capsys.readouterr().err


def test_png_compression_changes_the_files_not_the_pixels(tmp_path):
    gen = Generator.load(backend="numpy")  # the shipped model: images with some structure to compress
    for level in (0, 9):
        generate(gen, tmp_path / str(level), n=6, shard_size=6, seed=1, compress_level=level, workers=0,
                 log=lambda _: None)
    stored, packed = (sorted((tmp_path / str(level)).glob("shard-*/*.png")) for level in (0, 9))
    assert len(stored) == len(packed) == 6
    for a, b in zip(stored, packed):
        np.testing.assert_array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
    assert all(f.stat().st_size > 28 * 29 for f in stored)  # level 0 stores the rows (and a filter byte each)
    assert sum(f.stat().st_size for f in stored) > 1.5 * sum(f.stat().st_size for f in packed)
    with pytest.raises(ValueError, match=r"--png-compression must be in \[0, 9\], got 10"):
        generate(gen, tmp_path / "bad", n=1, compress_level=10, log=lambda _: None)
    assert not (tmp_path / "bad").exists()


def test_cli_refuses_an_empty_out(tmp_path, capsys, monkeypatch, tiny_model_dir):
    from ganserve.cli import main

    monkeypatch.chdir(tmp_path)
    code = main(["generate", str(tiny_model_dir), "--n", "2", "--out", "", "--backend", "numpy"])
    assert (code, capsys.readouterr().err) == (1, "error: --out is empty; give the output folder\n")
    assert not list(tmp_path.iterdir())


def test_cli_rerun_of_a_finished_run_shows_no_bar(tmp_path, capsys, tiny_model_dir):
    from ganserve.cli import main

    args = ["generate", str(tiny_model_dir), "--n", "1", "--out", str(tmp_path / "o"), "--backend", "numpy"]
    assert main(args) == 0
    assert capsys.readouterr().out.startswith("made 1 image in 1 shard (0 already done)")
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert out.startswith("made 0 images in 0 shards (1 already done)")
    assert "|" not in err and "0/1" not in err, err  # no progress bar left behind


def test_unwritable_output(tmp_path, capsys, tiny_model_dir):
    from ganserve.cli import main

    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["generate", str(tiny_model_dir), "--n", "4", "--out", str(blocker / "sub")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and "file" in err


@pytest.mark.parametrize("fmt,workers", [("npz", 0), ("png", 1), ("png", 0), ("tar", 1)])
def test_full_disk_records_no_unfinished_shard(tmp_path, gen, fmt, workers):
    full = tmp_path / "full"
    full.mkdir()
    # 512 KiB: room for a few shards of each format (a PNG takes a 4 KiB page), not for all 1000 images
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(full)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        with pytest.raises(OSError) as failure:
            generate(gen, full / "o", n=1000, shard_size=50, fmt=fmt, workers=workers, log=lambda _: None)
        assert failure.value.errno == 28 and str(full / "o") in str(failure.value)  # the user's path, not a temp
        assert ".tmp" not in str(failure.value)
        recorded = [json.loads(p.read_text()) for p in (full / "o" / "manifest").glob("shard-*.json")]
        assert recorded  # shards finished before the disk filled: each must be whole
        for r in recorded:  # whatever is recorded is whole on disk
            shard = full / "o" / r["path"]
            if fmt == "npz":
                with np.load(shard) as data:
                    assert len(data["indices"]) == r["count"]
            elif fmt == "tar":
                with tarfile.open(shard) as tar:
                    assert len([m for m in tar.getnames() if m.endswith(".png")]) == r["count"]
            else:
                assert len([Image.open(p).size for p in shard.iterdir()]) == r["count"]
        assert not [p for p in (full / "o").rglob("*") if p.name.endswith(".tmp")]
    finally:
        subprocess.run(["umount", str(full)], check=False)
