"""`sweet-colbench score` on frontend records (detected from the file, or --kind frontend), and the
frontend module's `generate`, called through main() as the console scripts do."""

import json

import pytest

from sweet_megatron.env import cli
from sweet_megatron.env.colbench_frontend.__main__ import main as frontend_main
from sweet_megatron.env.colbench_frontend.records import is_frontend_file, load_frontend_tasks


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def page_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("fe_cli") / "pages.jsonl"
    assert frontend_main(["generate", "--n", "4", "--seed", "2", "--out", str(path)]) == 0
    return path


def test_generate_and_detection(page_file):
    tasks = load_frontend_tasks(page_file)
    assert len(tasks) == 4 and tasks[0].task_id == "fe-syn-train-s2-00000" and tasks[0].synthetic
    assert is_frontend_file(page_file) and is_frontend_file("builtin:colbench/frontend_test_0-49.jsonl")
    assert not is_frontend_file("builtin:colbench/backend_test_0-199.jsonl")


def test_backend_score_still_needs_tasks(capsys):
    with pytest.raises(SystemExit, match="--kind frontend"):
        cli.main(["score", "--self"])


@pytest.mark.slow
def test_score_self_and_answers_on_frontend_records(page_file, tmp_path, capsys):
    from .conftest import _pool_or_skip

    _pool_or_skip(num_browsers=1).close()  # skips without Chromium / the stylesheet
    assert cli.main(["score", "--tasks", str(page_file), "--self"]) == 0  # detected from the records
    summary = last_json(capsys.readouterr().out)
    assert summary["n"] == 4 and summary["matched_self_best"] == 4 and summary["render_errors"] == []
    assert "render_seconds" in summary
    tasks = load_frontend_tasks(page_file)
    answers, baseline = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    answers.write_text("\n".join(json.dumps({"index": i, "answer": f"I WANT TO ANSWER: {t.ground_truth}"})
                                 for i, t in enumerate(tasks)))
    baseline.write_text("\n".join(json.dumps({"index": i, "answer": None}) for i in range(4)))
    assert cli.main(["score", "--kind", "frontend", "--tasks", str(page_file), "--answers", str(answers),
                     "--baseline", str(baseline), "--out", str(tmp_path / "r.jsonl")]) == 0
    summary = last_json(capsys.readouterr().out)
    assert summary["mean_similarity"] == pytest.approx(1.0) and summary["baseline_mean_similarity"] == 0.0
    assert summary["win_rate"] == 1.0
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 4
