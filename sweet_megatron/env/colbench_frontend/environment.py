"""The frontend environments as registered `Environment`s, and what the episode loop needs from them:

- SYSTEM_PROMPT (format with problem_description) and ANSWER_MARK: the agent asks questions or
  shows draft pages; "I WANT TO ANSWER:" followed by the page ends the episode.
- `ColBenchFrontend` (task.source=colbench_frontend): real records (records.load_frontend_tasks;
  default builtin:colbench/frontend_test_0-49.jsonl). No demonstrations or oracle: the warm start
  reads sweet.offline_episodes, or train.steps=0 starts from the initial weights.
- `FrontendSynthetic` (task.source=frontend_synthetic, the task=frontend_synthetic config group):
  the compact synthetic page family (synthetic.FAMILY_MINI, page-mini-v1), with scripted
  demonstrations, the oracle and a fixed baseline agent (training.py).
- simulator: simulator.FrontendRuleSimulator() (same respond(tasks, dialogues) interface as
  env/simulators.py), or simulator.build_frontend_simulator(SimulatorConfig) for rule/http/engine;
  the critic's training-time information is FrontendTask.hidden_information, the reference page.
- reward: FrontendRewarder(pool).score(tasks, answers) -> one similarity in [0, 1] per answer
  (answer text after the mark; the page is cut out with extract_html; no page -> 0.0);
  FrontendEvaluator wraps it as the episode loop's evaluator (one Score per answer). Every
  `evaluator()` call of one process returns the same FrontendEvaluator: one BrowserPool per
  process (per rank: each rank scores the episodes it played), started at the first page and
  closed at exit, reference renders kept per task, and scores cached by (task, page) so a page
  seen again is not rendered again.
- `eval_metrics(tasks, episodes)`: the held-out mean similarity, per-task similarities (for the
  win rate against the warm start, stages/eval.py) and, for the synthetic family, the win rate
  against the fixed baseline agent (training.baseline_page: asks nothing, answers from the
  description alone): the share of tasks where the agent's page scores higher, ties half.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import random

from sweet_megatron.env.base import ANSWER_MARK, Environment, Score, TaskConfigError
from sweet_megatron.env.colbench_frontend.protocol import PROTOCOL, SYSTEM_PROMPT, opening  # noqa: F401 (re-exported)
from sweet_megatron.env.colbench_frontend.records import FrontendTask, extract_html, load_frontend_tasks
from sweet_megatron.env.colbench_frontend.render import BrowserPool, RenderConfig, RenderResult
from sweet_megatron.env.colbench_frontend.similarity import PageScore, page_similarity, win_rate
from sweet_megatron.env.colbench_frontend.simulator import FrontendRuleSimulator, build_frontend_simulator
from sweet_megatron.env.colbench_frontend.synthetic import FAMILY_MINI, generate_frontend_tasks
from sweet_megatron.env.colbench_frontend.training import (
    FrontendDemonstrations,
    FrontendOracle,
    baseline_page,
)

SAMPLE = "builtin:colbench/frontend_test_0-49.jsonl"


class FrontendRewarder:
    """Rewards for final answers: the agent's page rendered and compared with the reference.
    References are rendered once per task id and kept; scores are cached by (task id, page): the
    same page of the same task is rendered once (`renders` counts the pages rendered)."""

    def __init__(self, pool: BrowserPool, max_cached: int = 100_000):
        self.pool = pool
        self._references: dict[str, RenderResult] = {}
        self._scores: dict[tuple[str, str], PageScore] = {}
        self.max_cached = max_cached
        self.renders = 0

    @staticmethod
    def _key(task: FrontendTask, page: str | None) -> tuple[str, str]:
        return task.task_id, "" if page is None else hashlib.sha256(page.encode()).hexdigest()

    def score_details(self, tasks: list[FrontendTask], answers: list[str | None]) -> list[PageScore]:
        pages = [extract_html(a) for a in answers]
        keys = [self._key(t, p) for t, p in zip(tasks, pages, strict=True)]
        todo, seen = [], set()  # the first answer of each (task, page) not scored before
        for i, k in enumerate(keys):
            if k not in self._scores and k not in seen:
                seen.add(k)
                todo.append(i)
        refs = [t for t in dict((tasks[i].task_id, tasks[i]) for i in todo).values()
                if t.task_id not in self._references]
        for t, r in zip(refs, self.pool.render([t.ground_truth for t in refs])):
            self._references[t.task_id] = r
        rendered = self.pool.render([pages[i] for i in todo])
        self.renders += len(todo) + len(refs)
        if len(self._scores) + len(todo) > self.max_cached:
            self._scores.clear()
        for i, r in zip(todo, rendered, strict=True):
            self._scores[keys[i]] = page_similarity(r, self._references[tasks[i].task_id])
        return [self._scores[k] for k in keys]

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
            self._rewarder = None


_SHARED: dict[int, FrontendEvaluator] = {}


def shared_evaluator() -> FrontendEvaluator:
    """This process's FrontendEvaluator (one browser pool per process, closed at exit)."""
    pid = os.getpid()
    if pid not in _SHARED:
        _SHARED[pid] = FrontendEvaluator()
        atexit.register(_SHARED[pid].close)
    return _SHARED[pid]


class ColBenchFrontend(Environment):
    name = "colbench_frontend"
    summary = "ColBench frontend design: pages rendered in headless Chromium, whole-page similarity"
    protocol = PROTOCOL

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

    def check_ready(self) -> None:
        """Chromium, Playwright and the Tailwind stylesheet are there (no browser is started)."""
        from sweet_megatron.env.colbench_frontend.render import RenderUnavailable
        from sweet_megatron.env.colbench_frontend.tailwind import TailwindMissing

        try:
            BrowserPool(RenderConfig()).close()
        except (RenderUnavailable, TailwindMissing) as exc:
            raise TaskConfigError(f"task.source={self.name}: rewards are rendered pages, and {exc}") from None

    def evaluator(self) -> FrontendEvaluator:
        """This process's shared evaluator (one browser pool per rank, score cache)."""
        return shared_evaluator()

    def eval_metrics(self, tasks: list, episodes: list) -> dict:
        """Mean similarity and the per-task similarities (task id -> reward) of held-out episodes."""
        rewards = {e.task_id: float(e.reward) for e in episodes}
        return {"mean_similarity": sum(rewards.values()) / max(len(rewards), 1), "task_rewards": rewards}


class FrontendSynthetic(ColBenchFrontend):
    name = "frontend_synthetic"
    summary = ("page-mini-v1: compact Tailwind pages with hidden details (colours, order, columns, texts, "
               "size), tiny-model scale, offline")
    demonstrations = FrontendDemonstrations()
    oracle = FrontendOracle()

    def check_task_config(self, cfg) -> None:
        if cfg.train_file or cfg.eval_file or cfg.path:
            raise TaskConfigError("task.path/task.train_file/task.eval_file: task.source=frontend_synthetic generates "
                                  "its pages from task.seed; for page files use task=colbench_frontend task.path=FILE")

    def task_splits(self, cfg, val: list | None = None) -> tuple[list, list]:
        """task.num_train training and task.num_eval held-out pages (disjoint by a hash of the page),
        hidden details task.min_difficulty..task.max_difficulty, seeds task.seed and task.eval_seed."""
        difficulty = (cfg.min_difficulty, cfg.max_difficulty)
        held_seed = cfg.seed if cfg.eval_seed is None else cfg.eval_seed
        return (generate_frontend_tasks(cfg.num_train, cfg.seed, "train", difficulty, FAMILY_MINI),
                generate_frontend_tasks(cfg.num_eval, held_seed, "heldout", difficulty, FAMILY_MINI))

    def eval_metrics(self, tasks: list, episodes: list) -> dict:
        """Also the fixed baseline agent's mean similarity and the win rate against it."""
        out = super().eval_metrics(tasks, episodes)
        by_id = {t.task_id: t for t in tasks}
        ids = list(out["task_rewards"])
        base = self.evaluator()([by_id[i] for i in ids],
                                [f"{ANSWER_MARK}\n{baseline_page(by_id[i])}" for i in ids])
        base_rewards = [s.reward for s in base]
        out["baseline_mean_similarity"] = sum(base_rewards) / max(len(ids), 1)
        out["win_rate"] = win_rate([out["task_rewards"][i] for i in ids], base_rewards) if ids else 0.0
        return out
