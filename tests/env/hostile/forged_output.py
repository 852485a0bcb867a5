"""Forges the worker's result stream: writes one 'ok' record per test, holding the reference's
value, through /proc/<pid>/fd/1 of its parent (the worker) and of every process it can see, and
through fds 1 and 2 and /dev/stdout. Returns a wrong value itself, so only a forged record could
score. Expect: fds 0-2 are /dev/null, /proc is absent (bwrap) or the worker's fds belong to
another uid, the hook refuses /proc; reward 0."""

import os

RECORDS = "".join(f'{{"i": {i}, "status": "ok", "value": "{{\\"t\\": [{2 * i + 1}]}}"}}\n' for i in range(10))


def _targets():
    yield f"/proc/{os.getppid()}/fd/1"
    yield "/dev/stdout"
    try:
        for name in os.listdir("/proc"):
            if name.isdigit():
                yield f"/proc/{name}/fd/1"
    except OSError:
        pass


def solve(x):
    for fd in (1, 2):
        try:
            os.write(fd, RECORDS.encode())
        except OSError:
            pass
    for path in _targets():
        try:
            with open(path, "w") as f:
                f.write(RECORDS)
        except Exception:
            pass
    return -1
