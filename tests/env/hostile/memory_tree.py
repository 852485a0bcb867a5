"""Spreads a memory bomb over many processes: forks 7 children (RLIMIT_NPROC leaves room for
that many) that each touch 300 MB, under the per-process RLIMIT_AS, and returns the right value
only if 6 of them held their share at the same time (1.8 GB). Expect: fork refused by the audit
hook; without it, the sandbox's cgroup memory limit (the whole tree) stops it; reward 0."""

import os
import time


def solve(x):
    r, w = os.pipe()
    for _ in range(7):
        try:
            if os.fork() == 0:
                os.closerange(3, w)  # the harness's result pipe too: the test returns at once
                os.closerange(w + 1, 4096)
                block = b"\1" * (300 << 20)  # written, so resident, unlike a calloc'd bytearray
                os.write(w, b"1")
                time.sleep(60)
                os._exit(len(block) & 0)
        except OSError:
            break
    os.close(w)
    held, deadline = 0, time.monotonic() + 15  # a loaded host is slow to write 1.8 GB
    while held < 6 and time.monotonic() < deadline:
        data = os.read(r, 16)
        if not data:
            break
        held += len(data)
    return x * 2 + 1 if held >= 6 else None
