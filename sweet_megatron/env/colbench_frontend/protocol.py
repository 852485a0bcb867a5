"""The frontend answer protocol: the agent instructions with the problem in the system message,
ColBench's answer marker and last-turn rule (shared by colbench_frontend and frontend_synthetic)."""

from __future__ import annotations

from sweet_megatron.env.base import ANSWER_MARK, AnswerProtocol
from sweet_megatron.env.colbench_frontend.records import FrontendTask

SYSTEM_PROMPT = (
    "You are a frontend design agent. A person wants a web page built with Tailwind CSS "
    "(<link href=\"https://cdn.jsdelivr.net/npm/tailwindcss@2.2.19/dist/tailwind.min.css\" rel=\"stylesheet\">); "
    "images come from https://picsum.photos/id/48/W/H. Ask one short question per turn about the "
    "design, or show a draft page in <html>...</html> and the person will tell you how it differs "
    "from what they want. When you are ready, write I WANT TO ANSWER: and then the whole page.\n\n"
    "{problem_description}"
)


def opening(task: FrontendTask, max_turns: int) -> tuple[str, None]:
    """The frontend instructions with the problem in the system message."""
    return SYSTEM_PROMPT.format(problem_description=task.problem_description), None


PROTOCOL = AnswerProtocol(opening, ANSWER_MARK)
