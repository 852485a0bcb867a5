"""Leaves daemons behind: double fork, a new session, every fd closed (so the test itself returns
at once), SIGTERM and SIGHUP ignored, then a loop that outlives the test. Expect: fork refused by
the audit hook; without it, the worker kills every process of the PID namespace after the test
and the host kills the sandbox's cgroup; no process left behind; reward 0."""

import os
import signal
import time


def _daemonize():
    if os.fork() != 0:
        return
    os.setsid()
    if os.fork() != 0:
        os._exit(0)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    os.closerange(0, 4096)
    while True:
        time.sleep(0.05)


def solve(x):
    try:
        _daemonize()
    except Exception:
        pass
    return None
