#!/usr/bin/env python3
"""Raw `pwrite` + `fdatasync` on a pre-written 64 MiB file: one sync in flight at a time, against
two threads each writing its own batch (one lock around the writes, syncs overlapping), against
one sync of twice the bytes; 160 KiB batches at 2, 3, 4 and 8 in flight; and bench-summary's
append_small window (2,048 frames of 160 B, 320 KiB) split into 2, 4 and 8 batches in flight,
against one sync of the whole window. Tells whether a journal with several commits in flight
could beat one commit of the same window.
Usage: syncs_in_flight.py FILE (the file is overwritten and left).
"""
import os
import sys
import threading
import time

FILE_BYTES = 64 << 20
SECONDS = 3.0


def prewrite(fd):
    os.ftruncate(fd, 0)
    block = b"\1" * (1 << 20)
    for _ in range(FILE_BYTES // len(block)):
        os.write(fd, block)
    os.fsync(fd)


def serial(fd, batch):
    data = b"x" * batch
    offset, syncs, start = 0, 0, time.time()
    while time.time() - start < SECONDS:
        os.pwrite(fd, data, offset)
        os.fdatasync(fd)
        offset = (offset + batch) % (FILE_BYTES - batch)
        syncs += 1
    return syncs / (time.time() - start)


def in_flight(fd, batch, depth=2):
    data = b"x" * batch
    lock = threading.Lock()
    state = {"offset": 0, "syncs": 0}
    stop = time.time() + SECONDS

    def worker():
        while time.time() < stop:
            with lock:
                offset = state["offset"]
                state["offset"] = (offset + batch) % (FILE_BYTES - batch)
                os.pwrite(fd, data, offset)
            os.fdatasync(fd)
            with lock:
                state["syncs"] += 1

    threads = [threading.Thread(target=worker) for _ in range(depth)]
    start = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return state["syncs"] / (time.time() - start)


def main():
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
    prewrite(fd)
    batch = 160 << 10
    one = serial(fd, batch)
    depths = ", ".join(f"depth {d} {in_flight(fd, batch, d) / one:.2f}x" for d in (2, 3, 4, 8))
    print(f"160 KiB batches, syncs per second against one in flight ({one * batch / 1e6:.0f} MB/s): {depths}")
    window = 2048 * 160
    whole = serial(fd, window) * window
    splits = ", ".join(
        f"{d} x {window // d >> 10} KiB in flight {in_flight(fd, window // d, d) * (window // d) / whole:.2f}x"
        for d in (2, 4, 8)
    )
    print(f"the {window >> 10} KiB window, bytes per second against one sync of it ({whole / 1e6:.0f} MB/s): {splits}")
    for batch in (128 << 10, 256 << 10):
        one = serial(fd, batch)
        two = in_flight(fd, batch)
        double = serial(fd, 2 * batch)
        print(
            f"{batch >> 10} KiB batches: one in flight {one:.0f} syncs/s ({one * batch / 1e6:.0f} MB/s); "
            f"two in flight {two:.0f} syncs/s ({two * batch / 1e6:.0f} MB/s, {two / one:.2f}x); "
            f"one of {2 * batch >> 10} KiB {double:.0f} syncs/s ({double * 2 * batch / 1e6:.0f} MB/s); "
            f"two in flight / one of twice the bytes {two * batch / (double * 2 * batch):.2f}"
        )


if __name__ == "__main__":
    main()
