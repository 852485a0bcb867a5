"""What the trainer needs of the synthetic page families beyond tasks and rewards: a scripted agent,
its demonstrations (the SFT warm start and the tokenizer's text), the oracle of action values
(env.base.Oracle) and the fixed baseline agent the win rate is measured against.

- `FrontendScriptedAgent`: per task, a plan drawn with `ask_prob`: each hidden detail is asked
  about (canonical question, `synthetic.QUESTIONS`, in `synthetic.IMPORTANCE` order) with that
  chance; then `ANSWER_MARK` and the page written from the description's facts and the replies,
  defaults for the details it did not ask about (`synthetic.answer_page`). With ask_prob=1 it is
  the oracle's policy (`synthetic.oracle_action`), whose page is the reference.
- `FrontendDemonstrations` (env.base.Demonstrations): `task.num_demos` such episodes, each hidden
  detail asked with probability `task.demo_ask_prob`. They are not rendered (a demonstration's page
  is a known function of what it asked, and rendering hundreds costs minutes on 2 cores): their
  reward stays 0 and the SFT log's demo success reads 0.00.
- `FrontendOracle` (env.base.Oracle), from the hidden details (training-time information): +2 an
  answer whose page is the reference (whitespace aside), +1 a question about a detail not resolved
  yet, -1 anything else (a question about a resolved or stated detail, text that asks nothing, a
  draft, an answer with a wrong detail). The description lists the hidden details by name, so no
  question's value depends on what only the reference shows (`depends_on_hidden_code` is False).
- `baseline_page(task)`: the fixed baseline agent of the win rate: it asks nothing and answers at
  once from the description alone (stated details, defaults for the hidden ones).
"""

from __future__ import annotations

import random

from sweet_megatron.env.base import ANSWER_MARK
from sweet_megatron.env.colbench_frontend.records import FrontendTask, extract_html
from sweet_megatron.env.colbench_frontend.synthetic import (
    DETAILS,
    FAMILIES,
    IMPORTANCE,
    QUESTIONS,
    PageSpec,
    answer_page,
    page_html,
    parse_question,
    resolved_details,
    spec_of,
)

ORACLE_CORRECT_ANSWER = 2.0
ORACLE_USEFUL_QUESTION = 1.0
ORACLE_BAD = -1.0


def _role_content(dialogue: list) -> list[tuple[str, str]]:
    return [(m.role, m.content) if hasattr(m, "role") else tuple(m) for m in dialogue]


def _same_page(a: str | None, b: str) -> bool:
    return a is not None and " ".join(a.split()) == " ".join(b.split())


def baseline_page(task: FrontendTask) -> str:
    """The fixed baseline agent's page: no question, the description's facts, defaults for the rest."""
    spec = spec_of(task)
    return answer_page(spec, {d for d in DETAILS if d not in spec.hidden})


def plan(task: FrontendTask, ask_prob: float, seed: int) -> list[str]:
    """The hidden details a scripted agent asks about, in IMPORTANCE order: each with chance ask_prob
    (a seeded draw per task: the same task and seed give the same plan)."""
    spec = spec_of(task)
    rng = random.Random(f"{seed}/{task.task_id}")
    return [d for d in IMPORTANCE if d in spec.hidden and rng.random() < ask_prob]


def scripted_text(task: FrontendTask, dialogue: list, questions: list[str]) -> str:
    """The scripted agent's next action: the next planned question not asked yet, else the answer
    page from what the dialogue resolved."""
    spec = spec_of(task)
    asked = sum(1 for role, _ in _role_content(dialogue) if role == "assistant")
    if asked < len(questions):
        return QUESTIONS[questions[asked]]
    return f"{ANSWER_MARK}\n{answer_page(spec, resolved_details(spec, dialogue))}"


class FrontendScriptedAgent:
    """A scripted agent over synthetic page tasks (episode.Agent): asks its planned questions, then
    answers with the page. Log-probs are 0.0 (the script is deterministic)."""

    uses_tasks = True

    def __init__(self, tokenizer, tasks: list[FrontendTask], ask_prob: float = 1.0, seed: int = 0,
                 protocol=None):
        from sweet_megatron.env.colbench_frontend.protocol import PROTOCOL

        self.tokenizer = tokenizer
        self.ask_prob, self.seed = ask_prob, seed
        self.protocol = protocol or PROTOCOL
        self._by_system = {self.protocol.opening(t, 10)[0]: t for t in tasks}

    def act(self, prompts_ids: list[list[int]], dialogues: list, tasks: list | None = None) -> list:
        from sweet_megatron.data.chat import action_ids

        out = []
        for k, dialogue in enumerate(dialogues):
            task = tasks[k] if tasks is not None else self._by_system[dialogue[0].content]
            text = scripted_text(task, dialogue[1:], plan(task, self.ask_prob, self.seed))
            ids = action_ids(self.tokenizer, text)
            out.append((ids, [0.0] * len(ids), text))
        return out


class FrontendDemonstrations:
    """Scripted page episodes (env.base.Demonstrations)."""

    def episodes(self, cfg, tasks: list, simulator, tokenizer, max_turns: int) -> list:
        """cfg.num_demos episodes on tasks drawn with cfg.seed, each hidden detail asked with chance
        cfg.demo_ask_prob (a fresh plan seed per block of 64, so a task drawn twice gets varied
        plans); unscored (see the module docstring)."""
        from sweet_megatron.env.colbench_frontend.protocol import PROTOCOL
        from sweet_megatron.env.episode import run_episodes

        rng = random.Random(cfg.seed)
        picked = [tasks[rng.randrange(len(tasks))] for _ in range(cfg.num_demos)]
        demos = []
        for k in range(0, len(picked), 64):
            block = picked[k : k + 64]
            agent = FrontendScriptedAgent(tokenizer, block, cfg.demo_ask_prob, seed=cfg.seed + k)
            demos += run_episodes(agent, block, simulator, max_turns=max_turns, tokenizer=tokenizer, score=False,
                                  protocol=PROTOCOL)
        return demos

    def tokenizer_texts(self, tasks: list) -> list[str]:
        """The messages of scripted episodes (every hidden detail asked with chance 0.7) on the
        synthetic tasks, played with a byte-level tokenizer, and every page of their families'
        answers (the reference pages are in the corpus already)."""
        from sweet_megatron.env.bytetok import ByteTokenizer
        from sweet_megatron.env.colbench_frontend.protocol import PROTOCOL
        from sweet_megatron.env.colbench_frontend.simulator import FrontendRuleSimulator
        from sweet_megatron.env.episode import run_episodes

        synthetic = [t for t in tasks if t.synthetic is not None]
        if not synthetic:
            return []
        agent = FrontendScriptedAgent(ByteTokenizer(), synthetic, ask_prob=0.7, seed=1)
        episodes = run_episodes(agent, synthetic, FrontendRuleSimulator(), max_turns=10, score=False,
                                protocol=PROTOCOL)
        return [m.content for e in episodes for m in e.messages()]


class FrontendOracle:
    """The oracle of the synthetic page families (env.base.Oracle; see the module docstring)."""

    def covers(self, task) -> bool:
        return isinstance(task.synthetic, dict) and task.synthetic.get("family") in FAMILIES

    def action_value(self, task, dialogue_so_far: list, action_text: str) -> float:
        spec = spec_of(task)
        if ANSWER_MARK in action_text:
            page = extract_html(action_text.split(ANSWER_MARK, 1)[1])
            return ORACLE_CORRECT_ANSWER if _same_page(page, task.ground_truth) else ORACLE_BAD
        topics = parse_question(action_text)
        known = resolved_details(spec, [(r, c) for r, c in _role_content(dialogue_so_far) if r != "system"])
        return ORACLE_USEFUL_QUESTION if set(topics) - known else ORACLE_BAD

    def depends_on_hidden_code(self, task, dialogue_so_far: list, action_text: str) -> bool:
        return False

    def menu(self, tasks: list, simulator, tokenizer, max_turns: int) -> list[tuple]:
        """Every turn state of the ask-everything scripted agent on the covered tasks, each with 9
        candidates: the 7 canonical questions, the answer from what is resolved so far (the
        reference once all is), and that answer with its colour theme changed."""
        from sweet_megatron.env.colbench_frontend.protocol import PROTOCOL
        from sweet_megatron.env.episode import run_episodes

        covered = [t for t in tasks if self.covers(t)]
        episodes = run_episodes(FrontendScriptedAgent(tokenizer, covered, 1.0), covered, simulator,
                                max_turns=max_turns, tokenizer=tokenizer, score=False, protocol=PROTOCOL)
        out = []
        for task, e in zip(covered, episodes, strict=True):
            spec = spec_of(task)
            msgs = e.messages()
            for k in range(len(e.turns)):
                state = msgs[: 1 + 2 * k]
                known = resolved_details(spec, state[1:])
                out.append((task, state, [*QUESTIONS.values(), f"{ANSWER_MARK}\n{answer_page(spec, known)}",
                                          f"{ANSWER_MARK}\n{_recoloured(spec, known)}"]))
        return out


def _recoloured(spec: PageSpec, known: set[str]) -> str:
    """The answer from the known details with the main colour replaced by another (never the
    reference's: the candidate is a wrong answer by construction)."""
    from sweet_megatron.env.colbench_frontend.synthetic import THEMES, default_details

    details = default_details(spec.kind, spec.details["order"])
    details.update({d: spec.details[d] for d in known})
    details["theme"] = next(t for t in THEMES if t not in (details["theme"], spec.details["theme"]))
    return page_html(spec.kind, details, spec.family)
