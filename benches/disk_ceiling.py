#!/usr/bin/env python3
"""The disk's own ceiling for the archive's write pattern, without the archive.

Per instance, for each of R replica folders (in parallel, as Strata does), mimic what
object_store's LocalFileSystem + Replica::make_durable do:
  write <root>/blobs/ab/cd/<id>#tmp  ->  rename to <id>  ->  fsync(file)  ->
  fsync(cd/), fsync(ab/), fsync(blobs/), fsync(root)
`--jobs` instances are in flight at once (like `strata import -j`).

`--mode syncfs` mimics src/store/durability.rs and src/store/direct.rs instead: one syncer thread
per filesystem (the replica folders here share one); a copy is written and renamed, then waits
for the next `syncfs(2)` that starts after its write, one syncfs shared by every copy that
finished while the previous one ran (group commit). A copy of at least 128 KiB is written with
O_DIRECT (padded to 4 KiB, then cut to its length), as Strata does; `--buffered` writes every copy
through the page cache instead (Strata's pattern before direct writes). `--replicas 1 --no-dir-fsync` is Orthanc's pattern
(one copy, fdatasync-like fsync of the file, no directory fsync).

Prints one line: instances/s, MB/s of plaintext, and per-phase mean ms.
"""
import argparse, ctypes, mmap, os, queue, secrets, sys, threading, time
from concurrent.futures import ThreadPoolExecutor

p = argparse.ArgumentParser()
p.add_argument("--dir", required=True)
p.add_argument("--instances", type=int, default=300)
p.add_argument("--size", type=int, default=512 * 1024 + 2048)
p.add_argument("--replicas", type=int, default=3)
p.add_argument("--jobs", type=int, default=4)
p.add_argument("--no-dir-fsync", action="store_true", help="fsync the file only")
p.add_argument("--mode", choices=["fsync", "syncfs"], default="fsync")
p.add_argument("--buffered", action="store_true", help="syncfs mode: no direct writes")
a = p.parse_args()

roots = [os.path.join(a.dir, f"replica-{i+1}") for i in range(a.replicas)]
for r in roots:
    os.makedirs(os.path.join(r, "blobs"), exist_ok=True)
payload = os.urandom(a.size)
lock = threading.Lock()
t_write = t_fsync_file = t_fsync_dirs = 0.0


def fsync_path(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


libc = ctypes.CDLL(None, use_errno=True)


class Syncer:
    """One thread per replica: syncfs once for every waiter queued while the last one ran."""

    def __init__(self, root):
        self.fd = os.open(root, os.O_RDONLY)
        self.q = queue.Queue()
        self.count = 0
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while True:
            waiters = [self.q.get()]
            while True:
                try:
                    waiters.append(self.q.get_nowait())
                except queue.Empty:
                    break
            if libc.syncfs(self.fd) != 0:
                sys.exit(f"syncfs: {os.strerror(ctypes.get_errno())}")
            self.count += 1
            for w in waiters:
                w.set()

    def barrier(self):
        e = threading.Event()
        self.q.put(e)
        e.wait()


shared = Syncer(a.dir) if a.mode == "syncfs" else None
syncers = {r: shared for r in roots} if shared else {}
DIRECT_MIN, ALIGN = 128 * 1024, 4096
direct = a.mode == "syncfs" and not a.buffered and a.size >= DIRECT_MIN
aligned = threading.local()


def write_direct(path):
    """O_DIRECT from a page-aligned buffer (one per thread), padded, then cut to the size."""
    if not hasattr(aligned, "buf"):
        aligned.buf = mmap.mmap(-1, (a.size + ALIGN - 1) // ALIGN * ALIGN)
        aligned.buf[: a.size] = payload
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_DIRECT, 0o644)
    try:
        os.write(fd, aligned.buf)
        os.ftruncate(fd, a.size)
    finally:
        os.close(fd)


def one_copy(root, h):
    global t_write, t_fsync_file, t_fsync_dirs
    d = os.path.join(root, "blobs", h[0:2], h[2:4])
    t0 = time.perf_counter()
    os.makedirs(d, exist_ok=True)
    final = os.path.join(d, h)
    tmp = final + "#1"
    if direct:
        write_direct(tmp)
    else:
        with open(tmp, "wb") as f:
            f.write(payload)
    os.rename(tmp, final)
    t1 = time.perf_counter()
    if a.mode == "syncfs":
        syncers[root].barrier()
        t2 = t3 = time.perf_counter()
        with lock:
            t_write += t1 - t0
            t_fsync_file += t2 - t1
        return
    fsync_path(final)
    t2 = time.perf_counter()
    if not a.no_dir_fsync:
        cur = d
        while True:
            fsync_path(cur)
            if cur == root:
                break
            cur = os.path.dirname(cur)
    t3 = time.perf_counter()
    with lock:
        t_write += t1 - t0
        t_fsync_file += t2 - t1
        t_fsync_dirs += t3 - t2


copy_pool = ThreadPoolExecutor(max_workers=a.replicas * a.jobs)


def one_instance(_):
    h = secrets.token_hex(32)
    for f in [copy_pool.submit(one_copy, r, h) for r in roots]:
        f.result()


start = time.perf_counter()
with ThreadPoolExecutor(max_workers=a.jobs) as pool:
    list(pool.map(one_instance, range(a.instances)))
elapsed = time.perf_counter() - start
n = a.instances * a.replicas
if a.mode == "syncfs":
    how = f"mode=syncfs{' direct' if direct else ''} ({shared.count} syncfs calls)"
else:
    how = f"dir_fsync={'no' if a.no_dir_fsync else 'yes'}"
print(
    f"disk ceiling: jobs={a.jobs} replicas={a.replicas} size={a.size}B "
    f"{how}: {a.instances} instances in {elapsed:.2f}s = "
    f"{a.instances/elapsed:.0f} instances/s, {a.instances*a.size/elapsed/1e6:.0f} MB/s per replica; "
    f"per copy: write+rename {1000*t_write/n:.2f} ms, "
    f"{'wait for syncfs' if a.mode == 'syncfs' else 'fsync file'} {1000*t_fsync_file/n:.2f} ms, "
    f"fsync dirs {1000*t_fsync_dirs/n:.2f} ms"
)
