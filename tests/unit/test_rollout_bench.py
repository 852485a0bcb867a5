"""`sweet-bench rollout`: the phases it reports add up and count what actually moved."""

import json
import subprocess
import sys


def test_phases_add_up_and_bytes_are_the_model(tmp_path):
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "-m", "sweet_megatron.bench.cli", "rollout", "--episodes", "4",
                           "--iterations", "2", "--max-turns", "2", "--json", str(out)],
                          capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    first = res["first_iteration"]
    # the shipped base: 4,196,608 fp32 parameters streamed as 39 HF tensors (embedding, lm_head tied off,
    # 4 layers x 9, final norm)
    assert first["weight_bytes"] == 4 * 4_196_608 and first["weight_tensors"] == 39
    assert first["episodes"] == 4 and 4 <= first["agent_turns"] <= 8 and first["new_tokens"] > 0
    assert abs(first["weight_sync"] - first["gather"] - first["load"]) < 1e-3
    assert first["rollout"] + 1e-3 >= first["generate"] + first["simulate"] + first["score"]
    assert res["steady_mean"]["generate_tokens_per_s"] > 0
