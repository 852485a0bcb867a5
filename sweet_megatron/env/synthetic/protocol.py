"""The synthetic family's answer protocol: the embedded demo's single system message with the
problem inside it (the shipped checkpoints were trained on it), ColBench's answer marker and
last-turn rule."""

from __future__ import annotations

from sweet_megatron.env.base import AnswerProtocol

SYSTEM_PROMPT = (
    "You are a coding agent. A person asks you to write a Python function. Ask one short question "
    "per turn about details you need. When you are ready, write I WANT TO ANSWER: and then the function.\n\n"
    "{problem_description}"
)


def opening(task, max_turns: int) -> tuple[str, None]:
    """The system message with the problem in it; the person does not open the dialogue."""
    return SYSTEM_PROMPT.format(problem_description=task.problem_description), None


PROTOCOL = AnswerProtocol(opening)
