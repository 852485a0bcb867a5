"""Which Tritons the fused kernel takes, and that an older Triton degrades to the PyTorch path (issue 18 #5)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sweet_kernels.segment_logprob import triton_version_problem

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("version", ["3.2.0", "3.3.1", "3.4.0", "3.9.0+git1234", "4.0.0"])
def test_supported_tritons(version):
    assert triton_version_problem(version) is None


@pytest.mark.parametrize(("version", "says"), [(None, "not installed"), ("3.1.0", "older than 3.2"),
                                               ("2.3.1", "older than 3.2"), ("weird", "unrecognised")])
def test_unsupported_tritons_say_why(version, says):
    assert says in triton_version_problem(version)


def test_a_triton_without_knobs_imports_the_kernels():
    """Triton 3.2/3.3 have no `triton.knobs` (added in 3.4): removing it reproduces them, and the
    kernels still import, compiled or interpreted as `triton.jit` decided."""
    pytest.importorskip("triton")
    code = ("import triton; del triton.knobs\n"
            "from sweet_kernels import segment_logprob as s\n"
            "assert s.triton_rows is not None, s.TRITON_UNAVAILABLE_REASON\n"
            "print(s.triton_rows.INTERPRET)\n")
    for interpret, want in (("0", "False"), ("1", "True")):
        env = {**os.environ, "TRITON_INTERPRET": interpret}
        proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.strip() == want
