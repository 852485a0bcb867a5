"""Writes where a sandbox should not: /tmp, /var/tmp, /dev/shm (open and POSIX shared memory),
the project's checkout (found through the .pth files of site-packages) and the interpreter's own
directories, by path and relative to a directory fd it may read (os.open(..., dir_fd=)), whose
path the audit event does not carry. The host test looks for every file named here. Returns the
right value only if a write took effect. Expect: all refused; no new file; reward 0."""

import os
import sys

NAME = "sweet-hostile-pwned"


def targets():
    """Directories it tries to write in (the host test computes the same list)."""
    dirs = ["/tmp", "/var/tmp", "/dev/shm", sys.base_prefix, sys.prefix]
    for entry in sys.path:
        try:
            for name in os.listdir(entry):
                if name.endswith(".pth"):
                    with open(os.path.join(entry, name)) as f:
                        dirs += [line.strip() for line in f if line.startswith("/")]
        except Exception:
            pass
    return [d for d in dict.fromkeys(dirs) if d]


def solve(x):
    wrote = False
    for d in targets():
        try:
            with open(os.path.join(d, NAME), "w") as f:
                f.write("pwned")
            wrote = True
        except Exception:
            pass
        try:
            fd = os.open(d, os.O_RDONLY)
            os.close(os.open(NAME + ".dirfd", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
            wrote = True
        except Exception:
            pass
    try:
        from multiprocessing import shared_memory

        shared_memory.SharedMemory(name=NAME, create=True, size=4096)
        wrote = True
    except Exception:
        pass
    return x * 2 + 1 if wrote else None
