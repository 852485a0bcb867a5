"""Reads the task records: finds the project's checkout through the .pth files of the importable
site-packages (an editable install names it), the shipped ColBench rows under it, and the test's
own sources, which hold the reference. Returns the right value only if one could be read.
Expect: the checkout is not in the sandbox's view (bwrap) and the hook refuses it; reward 0."""

import os
import sys

NAMES = ("sweet_megatron/assets/colbench/backend_test_0-199.jsonl", "tests/env/test_hostile.py", "README.md")


def _roots():
    roots = {"/work/main", os.path.expanduser("~")}
    for entry in sys.path:
        try:
            for name in os.listdir(entry):
                if name.endswith(".pth"):
                    with open(os.path.join(entry, name)) as f:
                        roots.update(line.strip() for line in f if line.startswith("/"))
        except Exception:
            pass
    return roots


def solve(x):
    for root in _roots():
        for name in NAMES:
            try:
                with open(os.path.join(root, name)) as f:
                    if f.read(100):
                        return x * 2 + 1
            except Exception:
                pass
    return None
