"""The synthetic family's oracle: the value of one agent action given the dialogue before it, from
the hidden details (credit-assignment checks and sweet.actor_scorer=oracle): +2 a correct final
answer, +1 a question that reveals a relevant hidden detail not yet known, -1 anything else
(repeating a known detail, a distractor or irrelevant question, text that asks nothing, an answer
while details are missing or a wrong answer).

`SyntheticOracle` is what the environment offers the trainer (env.base.Oracle): these values, the
questions only the code decides, and a fixed menu of candidate actions at the scripted agent's
turn states.
"""

from __future__ import annotations

from sweet_megatron.env.base import ANSWER_MARK
from sweet_megatron.env.colbench_backend.tasks import Task
from sweet_megatron.env.synthetic.family import (
    DISTRACTOR_WORDS,
    QUESTIONS,
    SyntheticSpec,
    answer_is_correct,
    build_answer,
    distractor_question,
    miscopied,
    parse_facts,
    parse_question,
    reveals,
    spec_of,
)


def known_slots(spec: SyntheticSpec, dialogue_texts: list[tuple[str, str]]) -> set[str]:
    """Relevant slots known after a dialogue: those the description states plus those revealed by
    each earlier question. `dialogue_texts` is [(role, content)] of the agent/person turns."""
    known = {s for s in spec.slots if s not in spec.hidden}
    for role, content in dialogue_texts:
        if role == "assistant" and ANSWER_MARK not in content:
            for topic in parse_question(content, spec):
                known |= reveals(spec, topic)
    return known


def _role_content(dialogue: list) -> list[tuple[str, str]]:
    """(role, content) pairs of chat Messages or of such pairs."""
    return [(m.role, m.content) if hasattr(m, "role") else tuple(m) for m in dialogue]


ORACLE_CORRECT_ANSWER = 2.0
ORACLE_USEFUL_QUESTION = 1.0
ORACLE_BAD = -1.0


def oracle_action_value(task: Task, dialogue_so_far: list, action_text: str) -> float:
    """Value of one agent action given the dialogue before it, from the hidden details.

    `dialogue_so_far` is a list of chat Messages (or (role, content) pairs): the system prompt and
    the turns before this action. Returns ORACLE_CORRECT_ANSWER (+2) for a final answer that is
    correct, ORACLE_USEFUL_QUESTION (+1) for a question revealing at least one relevant hidden
    detail not known yet, and ORACLE_BAD (-1) otherwise: a repeated or already stated detail, a
    distractor, an irrelevant branch (the fee when it is a discount, the threshold when there is no
    rule), text that asks nothing, or a wrong answer (including answering while details are missing).
    """
    spec = spec_of(task)
    if ANSWER_MARK in action_text:
        answer = action_text.split(ANSWER_MARK, 1)[1]
        return ORACLE_CORRECT_ANSWER if answer_is_correct(task, answer) else ORACLE_BAD
    pairs = _role_content(dialogue_so_far)
    known = known_slots(spec, pairs)
    new = set()
    for topic in parse_question(action_text, spec):
        new |= reveals(spec, topic) - known
    return ORACLE_USEFUL_QUESTION if new else ORACLE_BAD


RULE_DEPENDENT_TOPICS = ("threshold", "fee", "discount")


def depends_on_hidden_code(task: Task, dialogue_so_far: list, action_text: str) -> bool:
    """Whether a question's oracle value depends on code the description and dialogue do not show:
    it asks about the threshold, the fee or the discount while the rule is hidden and not yet
    revealed. Only the code tells then whether a threshold exists and which amount question reveals
    anything, so these are the questions a critic can credit better with the reference solution;
    for every other question the text shows as much as the reference."""
    if ANSWER_MARK in action_text:
        return False
    spec = spec_of(task)
    pairs = _role_content(dialogue_so_far)
    if "rule" in known_slots(spec, pairs):
        return False
    return any(t in RULE_DEPENDENT_TOPICS for t in parse_question(action_text, spec))


class SyntheticOracle:
    """The oracle of the synthetic family (env.base.Oracle)."""

    def covers(self, task) -> bool:
        return task.synthetic is not None

    def action_value(self, task: Task, dialogue_so_far: list, action_text: str) -> float:
        return oracle_action_value(task, dialogue_so_far, action_text)

    def depends_on_hidden_code(self, task: Task, dialogue_so_far: list, action_text: str) -> bool:
        return depends_on_hidden_code(task, dialogue_so_far, action_text)

    def menu(self, tasks: list, simulator, tokenizer, max_turns: int) -> list[tuple[Task, list, list[str]]]:
        """Every turn state of the scripted ask-everything agent on the covered tasks (so some details
        are known, some not), each with 11 candidates, all actions an agent could take from what the
        dialogue shows: the canonical question of every topic, two distractor questions, the answer
        from what is known so far (defaults for the rest; correct once every detail is known) and the
        same answer with one known value miscopied.

        The correct answer itself is not offered before its details are known: no agent can write it
        there, so no collected trajectory teaches a critic anything about it (measured: a menu with
        it made every critic prefer questions to it, docs/algorithm.md)."""
        from sweet_megatron.env.episode import run_episodes
        from sweet_megatron.env.synthetic.demos import ScriptedAgent
        from sweet_megatron.env.synthetic.protocol import PROTOCOL

        synthetic = [t for t in tasks if self.covers(t)]
        episodes = run_episodes(ScriptedAgent(tokenizer, tasks=synthetic), synthetic, simulator, max_turns=max_turns,
                                tokenizer=tokenizer, score=False, protocol=PROTOCOL)
        out = []
        for task, e in zip(synthetic, episodes, strict=True):
            spec = spec_of(task)
            msgs = e.messages()
            for k in range(len(e.turns)):
                state = msgs[: 1 + 2 * k]
                facts = parse_facts(task.problem_description)
                for m in state:
                    if m.role == "user":
                        facts.update(parse_facts(m.content))
                words = [w for w in DISTRACTOR_WORDS if w not in spec.distractors][:2]
                menu = [*QUESTIONS.values(), *(distractor_question(w) for w in words),
                        f"{ANSWER_MARK}\n{build_answer(spec.skin, facts)}",
                        f"{ANSWER_MARK}\n{build_answer(spec.skin, miscopied(facts))}"]
                out.append((task, state, menu))
        return out
