"""The end-of-run report: headline numbers, the credit-check table over both populations, the plot."""

from __future__ import annotations

import json

from sweet_megatron.training.report import write_report


def _check(acc: float, pre: str = "") -> dict:
    kinds = {"": (acc, 10), "questions_": (acc + 0.1, 6), "code_questions_": (0.5, 2), "answers_": (1.0, 1),
             "mixed_": (0.25, 3)}
    out = {}
    for kind, (a, n) in kinds.items():
        out[f"{pre}{kind or 'turn_ranking_'}accuracy"] = a
        out[f"{pre}{kind}pairs"] = n
    return out


def test_report_holds_both_critics_on_both_populations(tmp_path):
    results = {
        "eval_before": {"success_rate": 0.25}, "eval_0": {"success_rate": 0.75},
        "credit_0": {"with_reference": _check(0.6) | _check(0.9, "policy_"),
                     "without_reference": _check(0.55) | _check(0.7, "policy_")},
        "rft": {"success_rate": 0.5},
    }
    md = write_report(tmp_path, results, {"time/stage_sft": 3.0}, {"seed": 0})
    head = json.loads((tmp_path / "results.json").read_text())
    assert (head["success_before"], head["success_after"], head["success_rft"]) == (0.25, 0.75, 0.5)
    assert head["critic_turn_ranking_accuracy"] == 0.6 and head["critic_noref_turn_ranking_accuracy"] == 0.55
    assert head["critic_policy_turn_ranking_accuracy"] == 0.9
    assert head["critic_noref_policy_turn_ranking_accuracy"] == 0.7
    rows = [line for line in md.read_text().splitlines() if line.startswith(("| fixed menu", "| the actor's own"))]
    assert rows == [
        "| fixed menu | with reference | 0.600 (10 pairs) | 0.700 (6 pairs) | 0.500 (2 pairs) | 1.000 (1 pairs) | 0.250 (3 pairs) |",
        "| fixed menu | without reference | 0.550 (10 pairs) | 0.650 (6 pairs) | 0.500 (2 pairs) | 1.000 (1 pairs) | 0.250 (3 pairs) |",
        "| the actor's own | with reference | 0.900 (10 pairs) | 1.000 (6 pairs) | 0.500 (2 pairs) | 1.000 (1 pairs) | 0.250 (3 pairs) |",
        "| the actor's own | without reference | 0.700 (10 pairs) | 0.800 (6 pairs) | 0.500 (2 pairs) | 1.000 (1 pairs) | 0.250 (3 pairs) |",
    ]
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_resumed_run_accounts_for_every_attempt(tmp_path):
    """Attempt 1 is killed after sft and part of collect; attempt 2 resumes, redoes collect, goes on."""
    from sweet_megatron.training.metrics import MetricsLogger, PhaseTimer, latest_records, read_jsonl

    first = MetricsLogger(tmp_path, tensorboard=False)
    timer = PhaseTimer()
    timer.record = first.log_phase
    assert first.attempt == 1
    first.log("sft", 10, {"loss": 2.0})
    first.log("critic", 5, {"loss": 0.9})  # after the last checkpoint: attempt 2 redoes it
    first.log_phase("stage_sft", 30.0)
    first.log_phase("collect_rollout", 7.0)
    with timer("tasks"):
        pass
    first.close()  # (a kill leaves the same files: they are line-buffered)
    second = MetricsLogger(tmp_path, tensorboard=False)
    assert second.attempt == 2
    second.log("critic", 5, {"loss": 0.7})
    second.log_phase("collect_rollout", 8.0)
    second.close()
    records = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["attempt"] for r in records] == [1, 1, 2]
    assert [(r["stage"], r["loss"]) for r in latest_records(records)] == [("sft", 2.0), ("critic", 0.7)]
    md = write_report(tmp_path, {}, {"time/collect_rollout": 8.0, "time/stage_actor": 4.0}, {}).read_text()
    assert "| phase | attempt 1 (earlier) | attempt 2 | total |" in md
    assert "| stage_sft | 30.0 | - | 30.0 |" in md  # only the interrupted attempt ran sft
    assert "| collect_rollout | 7.0 | 8.0 | 15.0 |" in md
    assert "| stage_actor | - | 4.0 | 4.0 |" in md
    assert "| tasks | 0.0 | - | 0.0 |" in md  # recorded through PhaseTimer.record
