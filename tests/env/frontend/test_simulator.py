"""The rule-based frontend person, checked by hand on the first real record (Healthcare Provider:
a green-500 header 'Healthcare Provider', a white nav, a main with two headings, a green-500
footer, on a gray-100 page)."""

import re

from sweet_megatron.data.chat import Message
from sweet_megatron.env.colbench_frontend.simulator import (
    UNKNOWN,
    FrontendRuleSimulator,
    differences,
    keyword_reply,
    page_outline,
)


def test_outline_of_a_real_page(frontend_tasks):
    body_bg, parts = page_outline(frontend_tasks[0].ground_truth)
    assert body_bg == "gray-100"
    assert [(p.tag, p.background) for p in parts] == [("header", "green-500"), ("nav", "white"),
                                                      ("main", None), ("footer", "green-500")]
    assert parts[2].headings == ["Patient Information", "Services"]


def test_keyword_answers(frontend_tasks):
    ref = frontend_tasks[0].ground_truth
    assert keyword_reply(ref, "What colour is the header?") == "The header 'Healthcare Provider' is green 500."
    assert keyword_reply(ref, "In what order are the sections?").startswith(
        "From top to bottom: the header 'Healthcare Provider', the nav, the main 'Patient Information', the footer")
    assert "main: 'Services'" in keyword_reply(ref, "What should the headings say?")
    assert keyword_reply(ref, "Do you like cats?") == UNKNOWN


def test_differences_of_a_draft(frontend_tasks):
    ref = frontend_tasks[0].ground_truth
    assert differences(ref, ref) == []
    blue = ref.replace('class="bg-green-500 text-white p-4">\n    <h1', 'class="bg-blue-500 text-white p-4">\n    <h1')
    assert differences(blue, ref) == ["The header background should be green 500, not blue 500."]
    no_nav = re.sub(r"<nav.*?</nav>", "", ref, flags=re.S)
    assert differences(no_nav, ref)[0] == "I want 1 nav part(s); yours has 0."


def test_simulator_batch(frontend_tasks):
    task = frontend_tasks[0]
    draft = task.ground_truth.replace("bg-gray-100", "bg-white", 1)
    dialogues = [[Message("user", task.problem_description), Message("assistant", "What colour is the footer?")],
                 [Message("user", task.problem_description), Message("assistant", f"Here is a draft:\n{draft}")]]
    replies = FrontendRuleSimulator().respond([task, task], dialogues)
    assert replies == ["The footer is green 500.",
                       "The page background should be gray 100, not white."]
