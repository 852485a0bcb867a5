"""The synthetic frontend family: deterministic generation in the released schema, descriptions that
never hold a hidden value, the oracle's questions and final page; and on rendered pages (slow): each
reference scores highest against itself, one changed hidden detail scores in between a blank page
and the reference, and the oracle's page after asking everything scores as the reference does."""

import json
import re

import pytest

from sweet_megatron.data.chat import Message
from sweet_megatron.env.colbench_frontend.records import (
    FrontendTask,
    load_frontend_tasks,
    save_frontend_tasks,
)
from sweet_megatron.env.colbench_frontend.render import RenderConfig, blank_result
from sweet_megatron.env.colbench_frontend.similarity import page_similarity, similarity_matrix
from sweet_megatron.env.colbench_frontend.simulator import FrontendRuleSimulator, page_outline
from sweet_megatron.env.colbench_frontend.synthetic import (
    ANSWER_MARK,
    BACKGROUNDS,
    DETAILS,
    IMPORTANCE,
    QUESTIONS,
    THEMES,
    PageSpec,
    answer_page,
    default_details,
    fact_sentence,
    generate_frontend_tasks,
    oracle_action,
    page_html,
    parse_question,
    spec_of,
    split_of,
)


def test_deterministic_schema_and_splits(tmp_path):
    a = generate_frontend_tasks(12, seed=3)
    assert [t.to_record() for t in a] == [t.to_record() for t in generate_frontend_tasks(12, seed=3)]
    assert [t.ground_truth for t in a] != [t.ground_truth for t in generate_frontend_tasks(12, seed=4)]
    save_frontend_tasks(a, tmp_path / "syn.jsonl")
    back = load_frontend_tasks(tmp_path / "syn.jsonl")
    assert [t.to_record() for t in back] == [t.to_record() for t in a]
    rec = json.loads((tmp_path / "syn.jsonl").read_text().splitlines()[0])
    assert set(rec) == {"problem_description", "ground_truth", "task_id", "synthetic"}
    assert a[0].task_id == "fe-syn-train-s3-00000"
    assert [len(t.synthetic["hidden"]) for t in a[:7]] == [1, 2, 3, 4, 5, 6, 7]
    held = generate_frontend_tasks(6, seed=3, split="heldout")
    assert {split_of(t.ground_truth) for t in a} == {"train"} and {split_of(t.ground_truth) for t in held} == {"heldout"}
    for t in a:
        assert PageSpec.from_dict(t.synthetic) == spec_of(t)
        assert page_html(spec_of(t).kind, spec_of(t).details) == t.ground_truth


def test_page_has_the_real_records_shape(frontend_tasks):
    real = frontend_tasks[0].ground_truth
    for t in generate_frontend_tasks(5, seed=0):
        html, d = t.ground_truth, t.synthetic["details"]
        assert html.splitlines()[:2] == real.splitlines()[:2]  # <html>, the Tailwind 2.2.19 link
        body_bg, parts = page_outline(html)
        assert body_bg == d["background"]
        assert [p.tag for p in parts] == ["header", "section", *["section"] * len(d["order"]), "footer"]
        assert parts[0].background == f"{d['theme']}-600" and parts[0].headings == [d["title"]]
        assert parts[1].headings == [d["headline"]]


def test_description_never_holds_a_hidden_value():
    """No hidden value appears in the description once its stated facts are taken out, and no colour
    word at all when a colour is hidden and none is stated."""
    tasks = generate_frontend_tasks(200, seed=1)
    colours = sorted({c.split("-")[0] for c in (*THEMES, *BACKGROUNDS)})
    for t in tasks:
        spec, desc = spec_of(t), t.problem_description
        rest = desc
        for d in DETAILS:
            if d not in spec.hidden:
                rest = rest.replace(fact_sentence(d, spec.details[d]), "")
        for detail in spec.hidden:
            value = spec.details[detail]
            assert fact_sentence(detail, value) not in desc
            text = ", ".join(value) if detail == "order" else str(value)
            assert not re.search(rf"\b{re.escape(text.lower())}\b", rest.lower()), (detail, text, desc)
        if {"theme", "background"} <= set(spec.hidden):
            assert not any(re.search(rf"\b{c}\b", desc.lower()) for c in colours), desc
    assert sum(len(t.synthetic["hidden"]) for t in tasks) > 500


def test_questions_and_replies():
    task = generate_frontend_tasks(7, seed=2)[6]  # all seven details hidden
    spec = spec_of(task)
    sim = FrontendRuleSimulator()
    for detail, q in QUESTIONS.items():
        assert parse_question(q) == [detail]
        reply = sim.respond([task], [[Message("system", task.problem_description), Message("assistant", q)]])[0]
        assert reply == fact_sentence(detail, spec.details[detail])
    assert parse_question("What background colour and what heading?") == ["background", "theme"]
    assert parse_question(f"{ANSWER_MARK} <html></html>") == []
    assert sim.respond([task], [[Message("assistant", "Do you like cats?")]])[0].startswith("I don't know")


def _play_oracle(task, max_questions=None):
    """The oracle against the rule-based person until it answers: (dialogue, final action)."""
    sim, dialogue = FrontendRuleSimulator(), [Message("system", task.problem_description)]
    for _ in range(len(DETAILS) + 1):
        action = oracle_action(task, dialogue, max_questions=max_questions)
        if action.startswith(ANSWER_MARK):
            return dialogue, action
        dialogue.append(Message("assistant", action))
        dialogue.append(Message("user", sim.respond([task], [dialogue])[0]))
    raise AssertionError("the oracle never answered")


def test_oracle_asks_hidden_details_by_importance_then_answers_the_reference():
    for task in generate_frontend_tasks(14, seed=5):
        spec = spec_of(task)
        dialogue, action = _play_oracle(task)
        asked = [parse_question(m.content)[0] for m in dialogue if m.role == "assistant"]
        assert asked == [d for d in IMPORTANCE if d in spec.hidden]
        assert action == f"{ANSWER_MARK}\n{task.ground_truth}"
        # cut short: it answers with defaults for what it did not ask
        _, short = _play_oracle(task, max_questions=0)
        stated = {d for d in DETAILS if d not in spec.hidden}
        assert short == f"{ANSWER_MARK}\n{answer_page(spec, stated)}"
        guessed = default_details(spec.kind, spec.details["order"])
        assert (short == action) == all(guessed[d] == spec.details[d] for d in spec.hidden)
    with pytest.raises(ValueError, match="not a synthetic page-v1/page-mini-v1 page"):
        oracle_action(FrontendTask("d", "<html></html>", "x"), [])


def test_spec_errors_name_the_field():
    rec = generate_frontend_tasks(1, seed=0)[0].synthetic
    with pytest.raises(ValueError, match="details.theme='teal'"):
        PageSpec.from_dict({**rec, "details": {**rec["details"], "theme": "teal"}})
    with pytest.raises(ValueError, match="holding 'features'"):
        PageSpec.from_dict({**rec, "details": {**rec["details"], "order": ["about"]}})
    with pytest.raises(ValueError, match="unknown keys"):
        PageSpec.from_dict({**rec, "colour": 1})


# ---------------------------------------------------------------- rendered (slow)

OTHER = {"theme": lambda v: "red" if v != "red" else "green", "background": lambda v: "gray-200" if v == "white" else "white",
         "order": lambda v: v[1:] + v[:1], "columns": lambda v: 2 if v != 2 else 4,
         "title": lambda v: "Other Name Entirely", "headline": lambda v: "Something else completely",
         "size": lambda v: "large" if v == "small" else "small"}


def one_detail_variant(task, detail):
    spec = spec_of(task)
    return page_html(spec.kind, {**spec.details, detail: OTHER[detail](spec.details[detail])})


@pytest.fixture(scope="module")
def syn_tasks():
    return generate_frontend_tasks(8, seed=11)


@pytest.fixture(scope="module")
def syn_renders(pool, syn_tasks):
    return pool.render([t.ground_truth for t in syn_tasks])


@pytest.mark.slow
def test_references_match_themselves_best(syn_renders):
    scores = similarity_matrix(syn_renders, syn_renders, clip=None)
    assert all(r.error is None for r in syn_renders)
    assert scores.diagonal() == pytest.approx(1.0)
    assert [int(scores[i].argmax()) for i in range(len(syn_renders))] == list(range(len(syn_renders)))


@pytest.mark.slow
def test_one_hidden_detail_scores_between_blank_and_reference(pool, syn_tasks, syn_renders):
    blank = blank_result(RenderConfig())
    cases = [(i, d) for i, d in zip(range(len(syn_tasks)), [*DETAILS, "theme"])]
    variants = pool.render([one_detail_variant(syn_tasks[i], d) for i, d in cases])
    for (i, detail), v in zip(cases, variants):
        ref = syn_renders[i]
        score = page_similarity(v, ref, clip=None).score
        b = page_similarity(blank, ref, clip=None).score
        assert b < score < 1.0, (i, detail, b, score)


@pytest.mark.slow
def test_oracle_final_page_scores_as_the_reference(pool, syn_tasks, syn_renders):
    answers = [_play_oracle(t)[1].split(ANSWER_MARK, 1)[1] for t in syn_tasks[:4]]
    pages = pool.render(answers)
    for page, ref in zip(pages, syn_renders):
        assert page_similarity(page, ref, clip=None).score == pytest.approx(
            page_similarity(ref, ref, clip=None).score, abs=1e-6)
