"""The ColBench backend's rule-based simulated person (simulator=rule): it answers a question about
a real task from the reference code only, by keyword overlap between the question and the code's
lines (at most two lines, never the whole reference). The LLM-backed person is shared by every
environment (env/simulators.py)."""

from __future__ import annotations

import re

from sweet_megatron.env.base import HUMAN_RESPONSE_CHARACTER_LIMIT, last_agent_message
from sweet_megatron.env.colbench_backend.tasks import Task

_STOPWORDS = frozenset(
    "a an the is are was be do does did what which who whom how why when where should would could can "
    "will shall may might must i you we it its this that these those of to in on at for from by with "
    "and or not no yes if then else there here me my your our please tell know want need function "
    "code python value values use used using about any some as so just also like".split()
)


def _words(text: str) -> set[str]:
    """Lower-case words of text and identifiers (snake_case and camelCase split), light stemming."""
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)
    words = set()
    for w in re.findall(r"[A-Za-z]+|\d+(?:\.\d+)?", text.replace("_", " ")):
        w = w.lower()
        if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]
        if w not in _STOPWORDS and (len(w) > 1 or w.isdigit()):
            words.add(w)
    return words


UNKNOWN_REPLY = "I don't know that; it is not something I have decided."


def code_reply(reference: str, question: str, max_lines: int = 2) -> str:
    """Answer a question about a real task from its reference code only (deterministic).

    Scores each line of the function body by how many of the question's words it shares (comments
    included) and quotes the best line, plus the line after it when the best is a comment or a
    block header; at most `max_lines` lines and never more than a third of the body.
    """
    lines = [ln.strip() for ln in reference.splitlines()]
    body = [ln for ln in lines if ln and not ln.startswith(("def ", "import ", "from "))]
    q = _words(question)
    if not q or not body:
        return UNKNOWN_REPLY
    scores = [len(q & _words(ln)) for ln in body]
    best = max(range(len(body)), key=lambda i: (scores[i], -i))
    if scores[best] == 0:
        return UNKNOWN_REPLY
    limit = max(1, min(max_lines, len(body) // 3))
    chosen = [best]
    # A comment describes the next line; a block header (ending with ':') needs its first line.
    if (body[best].startswith("#") or body[best].endswith(":")) and best + 1 < len(body) and len(chosen) < limit:
        chosen.append(best + 1)
    sentences, code = [], []
    for i in chosen:
        if body[i].startswith("#"):
            text = body[i].lstrip("#").strip().rstrip(".")
            sentences.append(f"{text[:1].upper()}{text[1:]}.")
        else:
            code.append(body[i])
    if code:
        sentences.append("I want it to work like this: " + " ".join(code))
    return " ".join(sentences)[:HUMAN_RESPONSE_CHARACTER_LIMIT]


class CodeReplySimulator:
    """The ColBench backend's deterministic simulated person: answers from the reference code only
    (`code_reply` on the task's hidden information)."""

    def respond(self, tasks: list[Task], dialogues: list[list]) -> list[str]:
        return [code_reply(task.hidden_information, last_agent_message(dialogue))
                for task, dialogue in zip(tasks, dialogues, strict=True)]
