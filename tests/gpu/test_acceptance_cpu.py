"""tests/gpu/acceptance.sh on CPU: the CPU-capable steps pass, every GPU step is skipped with a
reason, and the report holds every step (about 1 minute)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU run the script itself")
def test_acceptance_script_on_cpu(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "tests/gpu/acceptance.sh"), str(tmp_path)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    steps = {s["step"]: s for s in json.loads((tmp_path / "report.json").read_text())["steps"]}
    assert set(steps) == {"versions", "plan", "kernel", "init_step", "te_vs_local", "thd", "fp8_gap", "dp2_tp2",
                          "vllm_cycle"}
    for name in ("versions", "plan", "init_step"):
        assert steps[name]["status"] == "passed", steps[name]
    for name in ("kernel", "te_vs_local", "thd", "fp8_gap", "dp2_tp2", "vllm_cycle"):
        assert steps[name]["status"] == "skipped" and steps[name]["reason"], steps[name]
    assert steps["init_step"]["figures"]["loss_step1_after_load"] < steps["init_step"]["figures"]["ln_vocab"] / 2
