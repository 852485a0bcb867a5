"""`sweet-bench evaluator`: both scorers agree on the rows they time."""

import json

from sweet_megatron.bench.evaluator import main, score_in_process
from sweet_megatron.env.colbench_backend.tasks import load_tasks


def test_both_scorers_score_the_references_fully(tmp_path, capsys):
    out = tmp_path / "e.json"
    assert main(["--limit", "4", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["rows"] == 4 and res["tests"] == 40
    assert res["sandboxed"]["success_rate"] == res["in_process_unsafe"]["success_rate"] == 1.0
    assert res["sandboxed"]["backend"] == "bwrap" and res["sandboxed_over_unsafe_time"] > 0


def test_the_unsafe_baseline_is_a_real_scorer():
    tasks = load_tasks("builtin:colbench/backend_test_0-199.jsonl", limit=2)
    wrong = [f"def {t.function_name}(*a, **k):\n    return 'x'" for t in tasks]
    assert score_in_process(tasks, wrong) == [0.0, 0.0]
