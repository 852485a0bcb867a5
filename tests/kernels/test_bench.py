"""The benchmark's measurement runs for both paths (tiny shapes, in this process)."""

from __future__ import annotations

import pytest
from sweet_kernels import bench_segment_logprob as bench


@pytest.mark.parametrize("path", ["naive", "fused"])
def test_benchmark_measures(path):
    args = bench.parse_args(["--tokens", "64", "--hidden", "16", "--vocab", "300", "--repeats", "1"])
    result = bench.run_one(path, args)
    assert result["path"] == path and result["forward_backward_ms"] > 0 and result["peak_mb"] >= 0


def test_triton_backend_on_cpu_fails_with_its_reason():
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-m", "sweet_kernels.bench_segment_logprob", "--backend", "triton",
                          "--device", "cpu", "--tokens", "64", "--hidden", "16", "--vocab", "300"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode != 0
    assert "--backend triton on cpu" in out.stderr and "TRITON_INTERPRET=1" in out.stderr
    assert "Traceback" not in out.stderr and "CalledProcessError" not in out.stderr
