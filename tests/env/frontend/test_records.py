"""Frontend records: the released schema, errors naming file:line:field, the agent's HTML."""

import json

import pytest

from sweet_megatron.env.colbench_frontend.records import (
    FrontendFormatError,
    extract_html,
    load_frontend_tasks,
    save_frontend_tasks,
)


def test_real_records_load(frontend_tasks):
    assert len(frontend_tasks) == 50
    t = frontend_tasks[0]
    assert t.problem_description.startswith("Healthcare Provider Website")
    assert t.ground_truth.startswith("<html>") and "tailwindcss@2.2.19" in t.ground_truth
    assert t.task_id == "frontend_test_0-49:1" and frontend_tasks[49].index == 49
    assert t.hidden_information == t.ground_truth


def test_round_trip(tmp_path, frontend_tasks):
    path = tmp_path / "f.jsonl"
    save_frontend_tasks(frontend_tasks[:3], path)
    again = load_frontend_tasks(path)
    assert [a.to_record() for a in again] == [b.to_record() for b in frontend_tasks[:3]]


@pytest.mark.parametrize("line,needle", [
    ('{"problem_description": "x"}', "2: missing field 'ground_truth'"),
    ('{"problem_description": 3, "ground_truth": "<html></html>"}', "2: field 'problem_description' must be a string"),
    ('{"problem_description": "x", "ground_truth": "  "}', "2: field 'ground_truth' is empty"),
    ('{"problem_description": "x", "ground_truth": "just prose"}', "2: field 'ground_truth' holds no <html>"),
    ('{"problem_description": "x", "ground_truth": "<html></html>", "task_id": 5}', "2: field 'task_id'"),
    ('{"problem_description": "x", "ground_truth": "<html>', "2: not valid JSON"),
    ('[1, 2]', "2: expected a JSON object"),
])
def test_bad_records_name_file_line_field(tmp_path, line, needle):
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"problem_description": "a page", "ground_truth": "<html><body></body></html>"})
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(FrontendFormatError) as e:
        load_frontend_tasks(path)
    assert str(e.value).startswith(f"{path}:") and needle in str(e.value)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="frontend task file"):
        load_frontend_tasks("/nonexistent/x.jsonl")


def test_extract_html_order():
    page = "<html><body><h1>A</h1></body></html>"
    assert extract_html(f"Here it is:\n{page}\nThanks") == page
    # <html> wins over an earlier <body> fragment? The first <html> block is the page.
    assert extract_html("<body>draft</body> then <html><body>final</body></html>") == "<html><body>final</body></html>"
    assert extract_html("I WANT TO ANSWER: <body class='x'><p>hi</p></body> done") == "<body class='x'><p>hi</p></body>"
    assert extract_html("```html\n<div>fenced</div>\n```") == "<div>fenced</div>"
    assert extract_html("<HTML><BODY>caps</BODY></HTML>") == "<HTML><BODY>caps</BODY></HTML>"
    assert extract_html("<html><body>cut off by the length cap") == "<html><body>cut off by the length cap"
    assert extract_html("What colour should the header be?") is None
    assert extract_html("") is None and extract_html(None) is None
