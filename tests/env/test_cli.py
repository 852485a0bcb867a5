"""`sweet-colbench` generate / score / play, called through main() as the console script does."""

import json

import pytest

from sweet_megatron.env import cli
from sweet_megatron.env.colbench_backend.tasks import load_tasks


@pytest.fixture(scope="module")
def task_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "tasks.jsonl"
    assert cli.main(["generate", "--n", "8", "--seed", "4", "--split", "heldout", "--out", str(path)]) == 0
    return path


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_generate(task_file):
    tasks = load_tasks(task_file)
    assert len(tasks) == 8 and tasks[0].task_id == "syn-heldout-s4-00000"
    assert [t.synthetic["split"] for t in tasks] == ["heldout"] * 8


def test_score_summary_and_results(task_file, tmp_path, capsys):
    tasks = load_tasks(task_file)
    answers = tmp_path / "answers.jsonl"
    lines = [{"index": 0, "answer": tasks[0].ground_truth},
             {"index": 1, "answer": f"```python\n{tasks[1].ground_truth}\n```"},
             {"index": 2, "answer": "def nothing():\n    pass"},
             {"index": 3, "answer": None}]
    answers.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "results.jsonl"
    capsys.readouterr()
    assert cli.main(["score", "--tasks", str(task_file), "--answers", str(answers), "--out", str(out)]) == 0
    summary = last_json(capsys.readouterr().out)
    assert summary["n"] == 4 and summary["mean_reward"] == 0.5 and summary["success_rate"] == 0.5
    assert summary["failed_task_ids"] == [tasks[2].task_id, tasks[3].task_id]
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["index"] for r in results] == [0, 1, 2, 3]
    assert [r["success"] for r in results] == [True, True, False, False]


def test_score_self(task_file, capsys):
    capsys.readouterr()
    assert cli.main(["score", "--tasks", str(task_file), "--self", "--backend", "process"]) == 0
    summary = last_json(capsys.readouterr().out)
    assert summary["n"] == 8 and summary["success_rate"] == 1.0 and summary["backend"] == "process"


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"index": 99, "answer": "x"}', "answers.jsonl:1: field 'index' must be an integer in [0, 8), got 99"),
        ('{"index": 0}', 'answers.jsonl:1: expected {"index": <int>, "answer": <string or null>}'),
        ('{"index": 0, "answer": 5}', "answers.jsonl:1: field 'answer' must be a string or null"),
        ('{"index": 0, "answer": "a"}\n{"index": 0, "answer": "b"}', "answers.jsonl:2: field 'index': task 0 already"),
        ("nope", "answers.jsonl:1: not valid JSON"),
    ],
)
def test_bad_answers_file(task_file, tmp_path, capsys, line, message):
    answers = tmp_path / "answers.jsonl"
    answers.write_text(line + "\n")
    assert cli.main(["score", "--tasks", str(task_file), "--answers", str(answers)]) == 2
    assert message in capsys.readouterr().err


def test_play_scripted(task_file, capsys):
    capsys.readouterr()
    assert cli.main(["play", "--tasks", str(task_file), "--index", "1", "--agent", "scripted"]) == 0
    out = capsys.readouterr().out
    result = last_json(out)
    assert result["success"] and result["answered"]
    assert result["turns"] == len(load_tasks(task_file)[1].synthetic["hidden"]) + 1
    assert "agent: I WANT TO ANSWER:" in out and "person: " in out


def test_play_human(task_file, monkeypatch, capsys):
    task = load_tasks(task_file)[0]
    code_lines = task.ground_truth.splitlines()
    # a trailing backslash continues the action on the next line
    typed = iter(["What is the weather like?", "I WANT TO ANSWER:\\", *[ln + "\\" for ln in code_lines[:-1]], code_lines[-1]])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(typed))
    capsys.readouterr()
    assert cli.main(["play", "--tasks", str(task_file), "--index", "0", "--agent", "human"]) == 0
    out = capsys.readouterr().out
    assert "person: The weather does not matter." in out
    assert last_json(out) == {"task_id": task.task_id, "turns": 2, "answered": True, "reward": 1.0, "success": True}
