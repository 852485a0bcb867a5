"""Offline episodes in the reference implementation's layout (github facebookresearch/sweet_rl,
scripts/simulate_interactions.py and scripts/evaluate_code.py): the problem statement opens the
dialogue, tasks carry no id, rewards may be missing, and only tasks whose best rollout succeeds pair."""

from __future__ import annotations

import json

from sweet_megatron.env.bytetok import ByteTokenizer
from sweet_megatron.env.colbench_backend.environment import PROTOCOL
from sweet_megatron.env.colbench_backend.environment import SYSTEM_PROMPT as COLBENCH_SYSTEM_PROMPT
from sweet_megatron.env.colbench_backend.tasks import load_tasks
from sweet_megatron.env.episode import MAX_TURNS
from sweet_megatron.training.episodes import load_episodes, save_episodes, trajectory_pair_groups

SAMPLE = "builtin:colbench/backend_test_0-199.jsonl"
WRONG = "I WANT TO ANSWER:\n```python\ndef {name}(*args, **kwargs):\n    return None\n```"


def _reference_records(tasks, answers_per_task):
    """Records as the reference writes them: user problem statement first, assistant turns with the
    extra 'input'/'output' keys, the task record without an id, the k rollouts in k blocks."""
    k = len(answers_per_task[0])
    out = []
    for j in range(k):
        for task, answers in zip(tasks, answers_per_task, strict=True):
            record = {key: v for key, v in task.to_record().items() if key != "task_id"}
            history = [{"role": "user", "content": task.problem_description},
                       {"role": "assistant", "content": "What should it return for bad input?", "input": "<prompt>",
                        "output": "What should it return for bad input?"},
                       {"role": "user", "content": "Raise ValueError."},
                       {"role": "assistant", "content": answers[j], "input": "<prompt>", "output": answers[j]}]
            out.append({"task": record, "dialogue_history": history,
                        "answer": answers[j].split("I WANT TO ANSWER:", 1)[1]})
    return out


def test_reference_layout_pairs_rollouts_by_content_and_scores_missing_rewards(tmp_path):
    tasks = load_tasks(SAMPLE, limit=3)
    right = [f"I WANT TO ANSWER:\n```python\n{t.ground_truth}\n```" for t in tasks]
    wrong = [WRONG.format(name=t.function_name) for t in tasks]
    # task 0 and 1: one right rollout and two wrong ones; task 2: all wrong (no success: filtered)
    answers = [[wrong[0], right[0], wrong[0]], [right[1], wrong[1], wrong[1]], [wrong[2], wrong[2], wrong[2]]]
    records = _reference_records(tasks, answers)
    records[4]["reward"] = 0.0  # a given reward is kept as it is (task 1's wrong second rollout)
    path = tmp_path / "offline.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))

    episodes, by_id = load_episodes(path, PROTOCOL)
    assert len(episodes) == 9 and len(by_id) == 3
    # the three rollouts of each task share one content id, in the reference's block order
    ids = [e.task_id for e in episodes]
    assert ids[0:3] == ids[3:6] == ids[6:9] and len(set(ids[:3])) == 3
    # the dialogue opens as a live ColBench episode does: ColBench's instructions, then the problem as
    # the person's first message (not the demo's system prompt with the problem inside it)
    messages = episodes[0].messages()
    assert [m.role for m in messages] == ["system", "user", "assistant", "user", "assistant"]
    assert messages[0].content == COLBENCH_SYSTEM_PROMPT.format(max_turns=MAX_TURNS)
    assert messages[1].content == tasks[0].problem_description
    assert messages[2].content == "What should it return for bad input?"
    # rewards computed by the evaluator where absent: the ground truth passes, the stub does not
    rewards = [[episodes[j * 3 + i].reward for j in range(3)] for i in range(3)]
    assert rewards[0][1] == 1.0 and rewards[1][0] == 1.0
    assert max(rewards[0][0], rewards[0][2], rewards[1][1], rewards[1][2], *rewards[2]) < 1.0
    assert episodes[4].reward == 0.0 and episodes[4].score is None and episodes[1].score is not None

    tok = ByteTokenizer()
    # the reference's filter (min_best_reward=1.0): task 2 has no success and gives no pair
    groups, _ = trajectory_pair_groups(tok, episodes, by_id, with_reference=True, min_best_reward=1.0)
    assert len(groups) == 4
    chosen = {g[0].extra["pair"]: g[0] for g in groups}
    assert all(g[0].extra["chosen"] and not g[1].extra["chosen"] for g in groups)
    assert len(chosen) == 4
    # without it, task 2's rollouts pair too when their rewards differ (else the count stays 4)
    unfiltered, _ = trajectory_pair_groups(tok, episodes, by_id, with_reference=True, min_best_reward=None)
    assert len(unfiltered) >= 4


def test_export_to_reference_layout_round_trips(tmp_path):
    tasks = load_tasks(SAMPLE, limit=2)
    records = _reference_records(tasks, [[f"I WANT TO ANSWER:\n{t.ground_truth}"] for t in tasks])
    for r in records:
        r["reward"] = 1.0
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records))
    episodes, by_id = load_episodes(src, PROTOCOL)
    out = tmp_path / "out.jsonl"
    save_episodes(out, episodes, by_id, layout="reference")
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    for got, want in zip(exported, records, strict=True):
        assert "task_id" not in got["task"] and got["task"] == want["task"]
        assert got["dialogue_history"] == [{"role": d["role"], "content": d["content"]}
                                           for d in want["dialogue_history"]]
        assert got["reward"] == 1.0
    again, by_id2 = load_episodes(out, PROTOCOL)
    assert [e.task_id for e in again] == [e.task_id for e in episodes]
    assert [e.messages() for e in again] == [e.messages() for e in episodes]
