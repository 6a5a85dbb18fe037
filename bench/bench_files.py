"""What creating one small file costs the kernel here, fresh and right after deleting many.

    python bench/bench_files.py --dir /tmp --n 3000

On an ext4 without a journal (as on these machines: /proc/fs/jbd2 is empty) the kernel skips, for
every new inode, each free inode of the block group that was deleted within the last minute or
more (`recently_deleted()` in fs/ext4/ialloc.c), so the CPU cost of creating a file grows with the
number of files just removed. `ganserve generate` never deletes files while it writes, but a run
started right after removing a large output folder pays for it, and so does a benchmark that
follows another one's clean-up. `perf record -a -g` during the slow phase shows the time in
`recently_deleted` under `find_inode_bit`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time


def create(folder: str, n: int, data: bytes) -> float:
    """Create n files in `folder` (made here); CPU seconds per file, this thread (mostly the kernel)."""
    os.mkdir(folder)
    start = time.thread_time()
    for i in range(n):
        fd = os.open(os.path.join(folder, f"{i:08d}.png"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, data)
        os.close(fd)
    return (time.thread_time() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default=None, help="where to write (default: the temporary folder)")
    parser.add_argument("--n", type=int, default=3000, help="files per step")
    parser.add_argument("--wait", type=float, default=120.0, help="seconds to wait before the last step")
    args = parser.parse_args()
    data = os.urandom(700)  # about a 28x28 PNG
    root = tempfile.mkdtemp(dir=args.dir, prefix="bench-files-")
    try:
        print(f"{args.n} files of 700 bytes in {root}, us of CPU per file created:")
        print(f"  a new folder                          {1e6 * create(os.path.join(root, 'a'), args.n, data):7.0f}")
        shutil.rmtree(os.path.join(root, "a"))
        print(f"  just after deleting {args.n} files       {1e6 * create(os.path.join(root, 'b'), args.n, data):7.0f}")
        print(f"  again, nothing deleted meanwhile      {1e6 * create(os.path.join(root, 'c'), args.n, data):7.0f}")
        time.sleep(args.wait)
        print(f"  {args.wait:.0f} s later                          {1e6 * create(os.path.join(root, 'd'), args.n, data):7.0f}")
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
