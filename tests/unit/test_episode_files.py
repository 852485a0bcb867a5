"""Episodes in the reference implementation's JSONL layout: round trip and line-numbered errors."""

from __future__ import annotations

import json

import pytest

from sweet_megatron.env.bytetok import ByteTokenizer
from sweet_megatron.env.episode import run_episodes
from sweet_megatron.env.synthetic.demos import ScriptedAgent
from sweet_megatron.env.synthetic.family import ScriptPolicy, generate_tasks
from sweet_megatron.env.synthetic.protocol import PROTOCOL
from sweet_megatron.env.synthetic.simulator import SyntheticSimulator
from sweet_megatron.training.episodes import EpisodeFormatError, load_episodes, save_episodes


def test_round_trip_keeps_dialogue_reward_and_task(tmp_path):
    tasks = generate_tasks(3, seed=4, split="train", difficulty=(2, 2))
    episodes = run_episodes(ScriptedAgent(ByteTokenizer(), ScriptPolicy(ask_prob=1.0), tasks), tasks,
                            SyntheticSimulator(), max_turns=10, protocol=PROTOCOL)
    path = tmp_path / "episodes.jsonl"
    save_episodes(path, episodes, {t.task_id: t for t in tasks})
    loaded, by_id = load_episodes(path, PROTOCOL)
    assert [e.messages()[1:] for e in loaded] == [e.messages()[1:] for e in episodes]
    assert [e.reward for e in loaded] == [e.reward for e in episodes] == [1.0, 1.0, 1.0]
    assert by_id[episodes[0].task_id].ground_truth == tasks[0].ground_truth


@pytest.mark.parametrize(
    "bad, match",
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"task": {"problem_description": "x"}, "reward": 1}), "missing field 'dialogue_history'"),
        (json.dumps({"task": {"problem_description": "x"}, "dialogue_history": [{"role": "user", "content": "hi"}],
                     "reward": 0}), "dialogue_history has no agent turn"),
        (json.dumps({"task": {"problem_description": "x"}, "dialogue_history": [
            {"role": "user", "content": "x"}, {"role": "user", "content": "hi"}], "reward": 0}),
         "turn 1 after the problem statement should be a assistant turn"),
        (json.dumps({"task": {"problem_description": "x"}, "dialogue_history": [{"role": "assistant", "content": "a"}]}),
         "no 'reward' and the task has no 'test_cases'"),
    ],
)
def test_malformed_line_is_reported_with_its_number(tmp_path, bad, match):
    good = {"task": {"problem_description": "p", "ground_truth": "def f(): pass"},
            "dialogue_history": [{"role": "assistant", "content": "I WANT TO ANSWER: def f(): pass"}],
            "answer": "def f(): pass", "reward": 1.0}
    path = tmp_path / "offline.jsonl"
    path.write_text(json.dumps(good) + "\n" + bad + "\n")
    with pytest.raises(EpisodeFormatError, match=rf"offline.jsonl:2: .*{match}"):
        load_episodes(path, PROTOCOL)
