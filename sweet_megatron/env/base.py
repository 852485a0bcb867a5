"""The `Environment` interface: what the trainer and the tools ask of a kind of collaborative task.

An environment (one folder beside this file: colbench_backend/, colbench_frontend/, synthetic/) is
registered by name in env/registry.py; `task.source` (the `task=` config group) picks one. It gives:

- task splits: `task_splits(cfg, val)` -> (training tasks, held-out tasks) from the task config;
- the answer protocol (`protocol`): how a dialogue opens (system prompt, the person's first
  message), the answer marker, and the last-turn rule;
- a simulated person: `rule_simulator()`, the environment's own deterministic person
  (simulator=rule); for simulator=http/engine `llm_simulator(cfg)`, None by default: the
  LLM-backed person every environment shares (env/simulators.py, ColBench's prompt with the
  task's hidden information);
- an evaluator: `evaluator()` -> a function (tasks, answers) -> [Score]; optionally
  `eval_metrics(tasks, episodes)`, held-out metrics of its own (the frontend's similarity and win rate);
- optional capabilities, None when absent: `demonstrations` (scripted episodes for the SFT warm
  start, and dialogues for the tokenizer's training text), `base_corpus` (documents for
  stage=pretrain) and `oracle` (the true value of an agent action, for the credit check and
  sweet.actor_scorer=oracle);
- `supports_training`: False for an environment the trainer cannot run yet, with
  `missing_for_training` saying what is missing.

`require(name)` returns a capability or raises MissingCapability naming the environment, the
capability and what to do instead. This module imports nothing of the project, so
that the task loaders and the sandbox stay free of torch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

ANSWER_MARK = "I WANT TO ANSWER:"
"""ColBench's answer marker: the agent's message ends the episode with the text after it."""


HUMAN_RESPONSE_CHARACTER_LIMIT = 400
"""ColBench's cut for a simulated person's reply, in characters."""


def last_agent_message(dialogue: list) -> str:
    """The content of the last assistant message of a dialogue of chat Messages ('' when none)."""
    for msg in reversed(dialogue):
        if msg.role == "assistant":
            return msg.content
    return ""


@dataclass
class Score:
    """How one answer did on its task."""

    reward: float
    """In [0, 1] (backend: the fraction of the tests passed; frontend: the page similarity)."""
    success: bool
    """Backend: all tests passed; frontend: the page matches the reference exactly (similarity 1)."""
    passed: list[bool]
    """Per test, in the task's test order (empty when the environment has no tests)."""
    details: dict = field(default_factory=dict)
    """Environment-specific (backend: 'statuses', 'errors', 'reference_failures', 'backend')."""


def win_rate(agent_scores: list[float], baseline_scores: list[float]) -> float:
    """Share of tasks where the agent's score beats the baseline's on the same task (ties half)."""
    if len(agent_scores) != len(baseline_scores) or not agent_scores:
        raise ValueError(f"win_rate: {len(agent_scores)} agent and {len(baseline_scores)} baseline scores; "
                         "give one of each per task, at least one task")
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(agent_scores, baseline_scores))
    return wins / len(agent_scores)



ScoreFn = Callable[[list, list["str | None"]], list[Score]]
"""evaluator(tasks, answers) -> one Score per answer (None: the agent never answered)."""


@dataclass(frozen=True)
class AnswerProtocol:
    """How an episode's dialogue opens and how the agent ends it."""

    opening: Callable[[Any, int], tuple[str, str | None]]
    """(task, max_turns) -> (the system message, the person's first message or None when the problem
    is part of the system message)."""
    marker: str = ANSWER_MARK
    """The agent's final answer is the text after this marker."""
    last_turn_answers: bool = True
    """On the last allowed turn, an action without the marker is the answer as a whole (the ColBench
    reference: `self.answer = response` when `steps >= max_steps`)."""

    def extract_answer(self, action_text: str) -> str | None:
        """The text between the first marker and a second one (or the end), stripped, as the
        reference takes `response.split(marker)[1]`; None when the marker is absent. (Stripped: the
        reference passes the text on unstripped, where a leading space would fail its exec.)"""
        if self.marker not in action_text:
            return None
        return action_text.split(self.marker)[1].strip()

    def final_answer(self, action_text: str, last_turn: bool) -> str | None:
        """The answer an action gives: the marked answer, or, on the last allowed turn under the
        last-turn rule, the whole text."""
        answer = self.extract_answer(action_text)
        if answer is None and last_turn and self.last_turn_answers:
            return action_text.strip()
        return answer


class Simulator(Protocol):
    """A simulated person, batched: one call per turn for all episodes still asking."""

    def respond(self, tasks: list, dialogues: list[list]) -> list[str]:
        """One reply per (task, dialogue); each dialogue (chat Messages) ends with the agent's message."""


class TaskConfigError(ValueError):
    """A task config the environment cannot use; the message names the key and the fix."""


class MissingCapability(ValueError):
    """An environment asked for something it does not have; the message names both and the fix."""


class Demonstrations(Protocol):
    """Scripted episodes: the SFT warm start's data and dialogues for the tokenizer's text."""

    def episodes(self, cfg: Any, tasks: list, simulator: Any, tokenizer: Any, max_turns: int) -> list:
        """task.num_demos scripted episodes (env.episode.Episode) on `tasks`, scored."""

    def tokenizer_texts(self, tasks: list) -> list[str]:
        """Dialogue texts (unscored scripted episodes) the tiny tokenizer is trained on."""


class BaseCorpus(Protocol):
    """Documents for a base model trained from scratch (stage=pretrain)."""

    def documents(self, n: int, seed: int, split: str = "train") -> list[tuple[Any, str, str]]:
        """`n` (task, specification text, code) documents of `split` ('train' or 'heldout')."""

    def is_correct(self, task: Any, code: str) -> bool:
        """Whether code written from a document's specification solves its task."""


class Oracle(Protocol):
    """The true value of an agent action given the dialogue before it (for credit checks)."""

    def covers(self, task: Any) -> bool:
        """Whether the oracle can value actions on this task."""

    def action_value(self, task: Any, dialogue_so_far: list, action_text: str) -> float:
        """Value of one action; `dialogue_so_far` is chat Messages (or (role, content) pairs)."""

    def depends_on_hidden_code(self, task: Any, dialogue_so_far: list, action_text: str) -> bool:
        """Whether the action's value depends on what only the reference solution shows."""

    def menu(self, tasks: list, simulator: Any, tokenizer: Any, max_turns: int) -> list[tuple[Any, list, list[str]]]:
        """(task, dialogue before a turn, candidate actions) for turn states of the covered tasks:
        a fixed menu of actions whose values the oracle knows."""


class Environment(ABC):
    """One kind of collaborative task, as the trainer and the tools see it (see the module docstring)."""

    name: ClassVar[str]
    """The registry key: the value of task.source and the name of the task= config group."""
    summary: ClassVar[str]
    """One line: what the tasks are."""
    protocol: ClassVar[AnswerProtocol]
    supports_training: ClassVar[bool] = True
    missing_for_training: ClassVar[str] = ""
    """When supports_training is False: what the trainer would need that is not there yet."""

    demonstrations: Demonstrations | None = None
    base_corpus: BaseCorpus | None = None
    oracle: Oracle | None = None

    def check_task_config(self, cfg: Any) -> None:  # noqa: B027 - optional: most keys mean the same everywhere
        """Raise TaskConfigError for task config keys this environment cannot use (default: none)."""

    @abstractmethod
    def task_splits(self, cfg: Any, val: list | None = None) -> tuple[list, list]:
        """(training tasks, held-out tasks) of the task config. Validation tasks carved from the
        training tasks (when the environment supports them) are appended to `val`. A file that
        cannot be used raises TaskConfigError naming the key."""

    @abstractmethod
    def rule_simulator(self) -> Simulator:
        """The deterministic simulated person (simulator=rule; the LLM-backed ones are shared:
        env/simulators.build_llm_simulator)."""

    def llm_simulator(self, cfg: Any, seed: int = 0) -> Simulator | None:
        """The environment's own LLM-backed person for simulator=http/engine (`cfg`:
        config.SimulatorConfig), or None (the default) for the shared one with ColBench's prompt."""
        return None

    @abstractmethod
    def evaluator(self) -> ScoreFn:
        """The function that scores final answers."""

    def check_ready(self) -> None:  # noqa: B027 - optional: most environments need nothing outside Python
        """Raise TaskConfigError (naming what is missing and the fix) when the evaluator cannot run
        on this machine, before any training; checked by the trainer for every stage that scores."""

    def eval_metrics(self, tasks: list, episodes: list) -> dict:
        """Held-out metrics of the environment's own next to success rate and mean reward, from the
        greedy held-out episodes (scored) on `tasks` (default: none). A 'task_rewards' entry (task
        id -> reward) lets the eval stage report the win rate against the warm start."""
        return {}

    CAPABILITIES: ClassVar[dict[str, str]] = {
        "demonstrations": "scripted demonstrations (task.num_demos > 0)",
        "base_corpus": "base-model corpus (stage=pretrain)",
        "oracle": "oracle of action values (the credit check, sweet.actor_scorer=oracle)",
    }

    def require(self, capability: str, fix: str = "") -> Any:
        """The capability (`demonstrations`, `base_corpus` or `oracle`), or MissingCapability."""
        value = getattr(self, capability)
        if value is None:
            what = self.CAPABILITIES[capability]
            raise MissingCapability(f"task.source={self.name}: the {self.name} environment has no {what}"
                                    + (f"; {fix}" if fix else ""))
        return value

    def require_training(self, stage: str) -> None:
        """MissingCapability when the trainer cannot run `stage` on this environment."""
        if not self.supports_training:
            raise MissingCapability(
                f"task.source={self.name}: stage={stage} needs training support, which the {self.name} environment "
                f"does not have yet ({self.missing_for_training}); `sweet-colbench envs` lists the environments")

    def describe(self) -> str:
        """One line for `sweet-colbench envs`: name, what it has, the summary."""
        def mark(flag: bool, label: str) -> str:
            return label if flag else f"no {label}"

        has = [mark(self.supports_training, "training"), mark(self.demonstrations is not None, "demos"),
               mark(self.base_corpus is not None, "base corpus"), mark(self.oracle is not None, "oracle")]
        return f"{self.name:<18} {', '.join(has):<48} {self.summary}"
