"""task.train_file / task.eval_file / task.eval_limit / task.val_size: which tasks each split gets,
unusable rows counted by line, missing files named by key."""

from __future__ import annotations

import json

import pytest

from sweet_megatron.builtin import resolve_builtin
from sweet_megatron.config import ConfigError, TaskConfig
from sweet_megatron.training.episodes import load_task_splits

SAMPLE = "builtin:colbench/backend_test_0-199.jsonl"


def _rows(n: int, start: int = 0) -> list[str]:
    lines = resolve_builtin(SAMPLE).read_text().splitlines()
    return lines[start:start + n]


def test_train_and_eval_files_keep_their_rows_in_order(tmp_path):
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    train.write_text("\n".join(_rows(12)) + "\n")
    test.write_text("\n".join(_rows(8, start=100)) + "\n")
    val: list = []
    tr, held = load_task_splits(TaskConfig(source="colbench_backend", train_file=str(train), eval_file=str(test),
                                           eval_limit=5, val_size=3), val)
    descriptions = [json.loads(line)["problem_description"] for line in _rows(12)]
    # the held-out set is the first eval_limit rows of the eval file, in file order
    assert [t.problem_description for t in held] == [json.loads(x)["problem_description"] for x in _rows(5, 100)]
    assert [t.task_id for t in held] == [f"test:{i}" for i in range(1, 6)]
    # validation and training tasks partition the train file, none of them held out
    assert len(val) == 3 and len(tr) == 9
    assert sorted(t.problem_description for t in tr + val) == sorted(descriptions)
    assert not {t.task_id for t in val} & {t.task_id for t in tr}


def test_val_split_is_the_held_out_set_without_eval_file(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(_rows(10)) + "\n")
    tr, held = load_task_splits(TaskConfig(source="colbench_backend", train_file=str(train), val_size=4, seed=3))
    assert len(held) == 4 and len(tr) == 6
    assert not {t.task_id for t in held} & {t.task_id for t in tr}


def test_unusable_rows_are_counted_by_line_not_fatal(tmp_path, caplog):
    rows = _rows(4)
    bad_schema = json.dumps({"problem_description": "no signature here", "ground_truth": "x",
                             "hidden_information": "", "test_cases": {"t": "f()"}})
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join([rows[0], "{not json", rows[1], bad_schema, rows[2], rows[3]]) + "\n")
    with caplog.at_level("INFO", logger="sweet_megatron"):
        tr, held = load_task_splits(TaskConfig(source="colbench_backend", train_file=str(train), val_size=1))
    assert len(tr) + len(held) == 4
    text = caplog.text
    assert "2 unusable rows skipped" in text
    assert "train.jsonl:2: not valid JSON" in text and "train.jsonl:4: field 'problem_description'" in text


def test_missing_file_and_bad_keys_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"task.eval_file=.*nope.jsonl: no such file"):
        load_task_splits(TaskConfig(source="colbench_backend", train_file=SAMPLE, eval_file=str(tmp_path / "nope.jsonl")))
    with pytest.raises(ConfigError, match="task.val_size"):
        TaskConfig(source="colbench_backend", train_file=SAMPLE)
    with pytest.raises(ConfigError, match="task.eval_limit"):
        TaskConfig(source="colbench_backend", train_file=SAMPLE, eval_file=SAMPLE, eval_limit=0)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("{}\n")
    with pytest.raises(ConfigError, match=r"task.train_file=.*no usable task.*missing field"):
        load_task_splits(TaskConfig(source="colbench_backend", train_file=str(empty), eval_file=SAMPLE))


def test_path_split_is_still_the_default():
    tr, held = load_task_splits(TaskConfig(source="colbench_backend", path=SAMPLE, num_train=150, num_eval=50))
    assert len(tr) == 150 and len(held) == 50
    assert not {t.task_id for t in tr} & {t.task_id for t in held}
