"""The frontend environment as a registered `Environment` (task.source=colbench_frontend), and what
the episode loop needs from it, in one place:

- SYSTEM_PROMPT (format with problem_description) and ANSWER_MARK: the agent asks questions or
  shows draft pages; "I WANT TO ANSWER:" followed by the page ends the episode.
- tasks: records.load_frontend_tasks(path) (real: builtin:colbench/frontend_test_0-49.jsonl), or
  synthetic.generate_frontend_tasks(n, seed) (synthetic pages; synthetic.oracle_action is their oracle).
- simulator: simulator.FrontendRuleSimulator() (same respond(tasks, dialogues) interface as
  env/simulators.py), or simulator.build_frontend_simulator(SimulatorConfig) for rule/http/engine;
  the critic's training-time information is FrontendTask.ground_truth (and `synthetic` when set).
- reward: FrontendRewarder(pool).score(tasks, answers) -> one similarity in [0, 1] per answer
  (answer text after the mark; the page is cut out with extract_html; no page -> 0.0);
  FrontendEvaluator wraps it as the episode loop's evaluator (one Score per answer).

`ColBenchFrontend` says `supports_training = False`: the trainer refuses every stage on it with
the reason (`missing_for_training`). It offers none of the optional capabilities yet (the page
family's synthetic.oracle_action is not wired to the env.base.Oracle interface).
"""

from __future__ import annotations

import random

from sweet_megatron.env.base import ANSWER_MARK, AnswerProtocol, Environment, Score, TaskConfigError
from sweet_megatron.env.colbench_frontend.records import FrontendTask, extract_html, load_frontend_tasks
from sweet_megatron.env.colbench_frontend.render import BrowserPool, RenderConfig, RenderResult
from sweet_megatron.env.colbench_frontend.similarity import PageScore, page_similarity
from sweet_megatron.env.colbench_frontend.simulator import FrontendRuleSimulator, build_frontend_simulator

SAMPLE = "builtin:colbench/frontend_test_0-49.jsonl"
SYSTEM_PROMPT = (
    "You are a frontend design agent. A person wants a web page built with Tailwind CSS "
    "(<link href=\"https://cdn.jsdelivr.net/npm/tailwindcss@2.2.19/dist/tailwind.min.css\" rel=\"stylesheet\">); "
    "images come from https://picsum.photos/id/48/W/H. Ask one short question per turn about the "
    "design, or show a draft page in <html>...</html> and the person will tell you how it differs "
    "from what they want. When you are ready, write I WANT TO ANSWER: and then the whole page.\n\n"
    "{problem_description}"
)


class FrontendRewarder:
    """Rewards for final answers: the agent's page rendered and compared with the reference.
    References are rendered once per task id and kept."""

    def __init__(self, pool: BrowserPool):
        self.pool = pool
        self._references: dict[str, RenderResult] = {}

    def score_details(self, tasks: list[FrontendTask], answers: list[str | None]) -> list[PageScore]:
        todo = [t for t in dict((t.task_id, t) for t in tasks).values() if t.task_id not in self._references]
        for t, r in zip(todo, self.pool.render([t.ground_truth for t in todo])):
            self._references[t.task_id] = r
        pages = self.pool.render([extract_html(a) for a in answers])
        return [page_similarity(p, self._references[t.task_id]) for p, t in zip(pages, tasks, strict=True)]

    def score(self, tasks: list[FrontendTask], answers: list[str | None]) -> list[float]:
        return [s.score for s in self.score_details(tasks, answers)]


class FrontendEvaluator:
    """The episode loop's evaluator: a FrontendRewarder on `pool`, or on a BrowserPool started at the
    first call (RenderUnavailable names what is missing: Chromium, Playwright, the Tailwind stylesheet).
    Score.reward is the page similarity; success means an exact match (similarity 1 up to float
    rounding: the colour term of identical renders sums to 1 - 6e-16)."""

    def __init__(self, config: RenderConfig | None = None, pool: BrowserPool | None = None):
        self.config = config
        self._rewarder: FrontendRewarder | None = None if pool is None else FrontendRewarder(pool)

    def __call__(self, tasks: list[FrontendTask], answers: list[str | None]) -> list[Score]:
        if self._rewarder is None:
            self._rewarder = FrontendRewarder(BrowserPool(self.config))
        return [Score(s.score, s.score >= 1.0 - 1e-9, [], s.as_dict()) for s in self._rewarder.score_details(tasks, answers)]

    def close(self) -> None:
        if self._rewarder is not None:
            self._rewarder.pool.close()


def opening(task: FrontendTask, max_turns: int) -> tuple[str, None]:
    """The frontend instructions with the problem in the system message."""
    return SYSTEM_PROMPT.format(problem_description=task.problem_description), None


PROTOCOL = AnswerProtocol(opening, ANSWER_MARK)


class ColBenchFrontend(Environment):
    name = "colbench_frontend"
    summary = "ColBench frontend design: pages rendered in headless Chromium, whole-page similarity"
    protocol = PROTOCOL
    supports_training = False
    missing_for_training = ("the trainer's stages read backend task records and have not been run on pages: no "
                            "demonstrations, no base corpus, no oracle, and rewards need a Chromium pool per rank; "
                            "score pages with `sweet-colbench score --kind frontend`")

    def check_task_config(self, cfg) -> None:
        if cfg.train_file or cfg.eval_file:
            raise TaskConfigError("task.train_file/task.eval_file are read by task.source=colbench_backend only; "
                                  f"for colbench_frontend give task.path (default {SAMPLE})")

    def task_splits(self, cfg, val: list | None = None) -> tuple[list, list]:
        """task.path (default: the shipped 50-row sample) split num_train/num_eval by a seeded shuffle."""
        tasks = load_frontend_tasks(cfg.path or SAMPLE)
        order = list(range(len(tasks)))
        random.Random(cfg.seed).shuffle(order)
        return ([tasks[i] for i in order[: cfg.num_train]],
                [tasks[i] for i in order[cfg.num_train : cfg.num_train + cfg.num_eval]])

    def rule_simulator(self) -> FrontendRuleSimulator:
        return FrontendRuleSimulator()

    def llm_simulator(self, cfg, seed: int = 0):
        """The frontend's LLM-backed person (FRONTEND_HUMAN_PROMPT with the reference HTML)."""
        return build_frontend_simulator(cfg, seed)

    def evaluator(self) -> FrontendEvaluator:
        return FrontendEvaluator()
