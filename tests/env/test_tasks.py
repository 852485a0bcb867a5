"""Task records: the loader reads the real file and names file, line and field for bad records."""

import json

import pytest

from sweet_megatron.env.colbench_backend.tasks import Task, TaskFormatError, load_tasks, save_tasks

GOOD = {
    "problem_description": "Add two numbers.The signature of the function is: def add(a, b)",
    "ground_truth": "def add(a, b):\n    return a + b",
    "hidden_information": "def add(a, b):\n    return a + b",
    "test_cases": {"test1": "add(1, 2)", "test2": "add(-1, 1)"},
}


def write_lines(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def test_real_records_load(real_tasks):
    assert len(real_tasks) == 200
    first = real_tasks[0]
    assert first.function_name == "apply_fixed_point_fir_filter"
    assert first.signature == "def apply_fixed_point_fir_filter(input_signal, coefficients, word_length, fraction_length)"
    assert first.task_id == "backend_test_0-199:1"
    assert [t.index for t in real_tasks[:3]] == [0, 1, 2]
    assert all(len(t.test_cases) == 10 and t.synthetic is None for t in real_tasks)


def test_round_trip(tmp_path):
    path = write_lines(tmp_path / "t.jsonl", [GOOD, "", GOOD])  # a blank line is skipped
    tasks = load_tasks(path)
    assert [t.task_id for t in tasks] == ["t:1", "t:3"]
    save_tasks(tasks, tmp_path / "u.jsonl")
    again = load_tasks(tmp_path / "u.jsonl")
    assert [t.to_record() for t in again] == [t.to_record() for t in tasks]
    assert again[0].task_id == "t:1"  # the saved id is kept


@pytest.mark.parametrize(
    "record, message",
    [
        ("{not json", "t.jsonl:2: not valid JSON"),
        ([1, 2], "t.jsonl:2: expected a JSON object per line, got list"),
        ({k: v for k, v in GOOD.items() if k != "ground_truth"}, "t.jsonl:2: missing field 'ground_truth'"),
        ({**GOOD, "test_cases": ["add(1, 2)"]}, "t.jsonl:2: field 'test_cases' must be a non-empty object"),
        ({**GOOD, "test_cases": {"test1": 3}}, "t.jsonl:2: field 'test_cases.test1' must be a non-empty string"),
        ({**GOOD, "problem_description": "Add."}, "t.jsonl:2: field 'problem_description' must end with"),
        ({**GOOD, "hidden_information": None}, "t.jsonl:2: field 'hidden_information' must be a string, got NoneType"),
        ({**GOOD, "synthetic": [1]}, "t.jsonl:2: field 'synthetic' must be an object"),
    ],
)
def test_malformed_record_names_file_line_field(tmp_path, record, message):
    path = write_lines(tmp_path / "t.jsonl", [GOOD, record])
    with pytest.raises(TaskFormatError) as err:
        load_tasks(path)
    assert message in str(err.value)
    assert str(tmp_path) in str(err.value)


def test_synthetic_check_names_file_line_field(tmp_path):
    """The synthetic family checks its own field when asked (the backend loader only wants an object)."""
    from sweet_megatron.env.synthetic.family import check_record

    path = write_lines(tmp_path / "t.jsonl", [GOOD, {**GOOD, "synthetic": {"family": "other"}}])
    assert len(load_tasks(path)) == 2
    with pytest.raises(TaskFormatError, match=r"t.jsonl:2: field 'synthetic': family 'other' is not 'tariff-v1'"):
        load_tasks(path, check=check_record)


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="task file .*nope.jsonl not found"):
        load_tasks(tmp_path / "nope.jsonl")


def test_task_from_record_defaults():
    task = Task.from_record(GOOD)
    assert task.function_name == "add" and task.signature == "def add(a, b)"
    assert task.to_record() == GOOD
