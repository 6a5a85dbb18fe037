"""What creating one small file costs the kernel here, fresh and right after deleting many.

    python bench/bench_files.py --dir /tmp --n 3000 --folders 10

On an ext4 without a journal (as on these machines: /proc/fs/jbd2 is empty) the kernel skips, for
every new inode, each free inode of the block group that was deleted within the last minute or
more (`recently_deleted()` in fs/ext4/ialloc.c), so the CPU cost of creating a file grows with the
number of files just removed near it. `ganserve generate` never deletes files while it writes, but
a run started right after removing a large output folder can pay for it, and so does a benchmark
that follows another one's clean-up. `perf record -a -g` during a slow phase shows the time in
`recently_deleted` under `find_inode_bit`. How slow depends on the block groups the kernel picks
for the new folders, so the effect varies from run to run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time

from ganserve.encode import write_new_file


def create(folder: str, n: int, data: bytes) -> float:
    """Create n files in `folder` (made here) as the PNG encoders do; CPU seconds per file, this
    thread (mostly the kernel)."""
    os.mkdir(folder)
    start = time.thread_time()
    for i in range(n):
        write_new_file(os.path.join(folder, f"{i:08d}.png"), data)
    return (time.thread_time() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default=None, help="where to write (default: the temporary folder)")
    parser.add_argument("--n", type=int, default=3000, help="files per folder")
    parser.add_argument("--folders", type=int, default=10, help="folders of n files to make and delete (>= 1)")
    parser.add_argument("--sync", action="store_true", help="flush the deletions to disk (sync) first")
    parser.add_argument("--wait", type=float, default=0.0, help="seconds to wait before measuring once more")
    args = parser.parse_args()
    if args.n < 1 or args.folders < 1:
        parser.error("--n and --folders must be at least 1")
    data = os.urandom(700)  # about a 28x28 PNG
    root = tempfile.mkdtemp(dir=args.dir, prefix="bench-files-")
    deleted = args.n * args.folders
    try:
        print(f"folders of {args.n} files of 700 bytes in {root}, us of CPU per file created:")
        fresh = [create(os.path.join(root, f"a{k}"), args.n, data) for k in range(args.folders)]
        print(f"  {args.folders} new folders, median             {1e6 * statistics.median(fresh):7.0f}")
        for k in range(args.folders):
            shutil.rmtree(os.path.join(root, f"a{k}"))
        if args.sync:
            os.sync()
        print(f"  a new folder just after deleting {deleted} files: {1e6 * create(os.path.join(root, 'b'), args.n, data):7.0f}")
        print(f"  another new folder                      {1e6 * create(os.path.join(root, 'c'), args.n, data):7.0f}")
        if args.wait:
            time.sleep(args.wait)
            print(f"  {args.wait:.0f} s later, another                  {1e6 * create(os.path.join(root, 'd'), args.n, data):7.0f}")
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
