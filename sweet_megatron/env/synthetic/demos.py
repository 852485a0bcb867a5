"""The synthetic family's scripted agent, its demonstrations (the SFT warm start's data and the
tokenizer's dialogue text) and its base-model corpus (stage=pretrain)."""

from __future__ import annotations

import random

from sweet_megatron.data.chat import Message, action_ids
from sweet_megatron.data.tokenizer import Tokenizer
from sweet_megatron.env.colbench_backend.tasks import Task
from sweet_megatron.env.episode import Action, run_episodes
from sweet_megatron.env.synthetic.family import (
    ScriptPolicy,
    answer_is_correct,
    base_documents,
    scripted_action,
)
from sweet_megatron.env.synthetic.protocol import PROTOCOL, SYSTEM_PROMPT


class ScriptedAgent:
    """The scripted reference agent for synthetic tasks: asks about a chosen subset of the hidden
    details (ScriptPolicy: all, none, or a noisy subset with distractor questions and free-form
    phrasing), then answers with what it was told and default guesses for the rest. Works on text
    and tokenizes its actions (log-probs are 0.0: the script is deterministic)."""

    uses_tasks = True

    def __init__(self, tokenizer: Tokenizer, policy: ScriptPolicy | None = None, tasks: list[Task] | None = None,
                 system_prompt: str = SYSTEM_PROMPT):
        self.tokenizer = tokenizer
        self.policy = policy or ScriptPolicy()
        self._prefix = system_prompt.split("{problem_description}")[0]
        self._by_description = {t.problem_description: t for t in tasks or []}

    def _find(self, dialogue: list[Message]) -> Task:
        system = dialogue[0].content if dialogue and dialogue[0].role == "system" else ""
        task = self._by_description.get(system.removeprefix(self._prefix))
        if task is None:
            raise ValueError("ScriptedAgent: no task for this dialogue; construct it with tasks=[...] "
                             "or call act(..., tasks=[...])")
        return task

    def act(self, prompts_ids: list[list[int]], dialogues: list[list[Message]],
            tasks: list[Task] | None = None) -> list[Action]:
        if tasks is None:
            tasks = [self._find(d) for d in dialogues]
        actions = []
        for task, dialogue in zip(tasks, dialogues, strict=True):
            turns = [(m.role, m.content) for m in dialogue if m.role != "system"]
            text = scripted_action(task, turns, self.policy)
            ids = action_ids(self.tokenizer, text)
            actions.append((ids, [0.0] * len(ids), text))
        return actions


class SyntheticDemonstrations:
    """Scripted episodes of the synthetic family (env.base.Demonstrations)."""

    def episodes(self, cfg, tasks: list, simulator, tokenizer: Tokenizer, max_turns: int) -> list:
        """Noisy scripted demonstrations: cfg.num_demos tasks drawn with cfg.seed, each hidden detail
        asked about with probability cfg.demo_ask_prob, some distractor questions and free-form
        phrasings; many demonstrations fail."""
        rng = random.Random(cfg.seed)
        picked = [tasks[rng.randrange(len(tasks))] for _ in range(cfg.num_demos)]
        demos = []
        for k in range(0, len(picked), 64):  # a fresh plan seed per block: the same task gets varied demos
            policy = ScriptPolicy(ask_prob=cfg.demo_ask_prob, distractor_prob=0.15, free_form_prob=0.2,
                                  seed=cfg.seed + k)
            agent = ScriptedAgent(tokenizer, policy, picked[k : k + 64])
            demos += run_episodes(agent, picked[k : k + 64], simulator, max_turns=max_turns, tokenizer=tokenizer,
                                  protocol=PROTOCOL)
        return demos

    def tokenizer_texts(self, tasks: list) -> list[str]:
        """The messages of unscored noisy scripted episodes on the synthetic tasks, played with a
        byte-level tokenizer (the real one is what these texts train)."""
        from sweet_megatron.env.bytetok import ByteTokenizer
        from sweet_megatron.env.synthetic.simulator import SyntheticSimulator

        synthetic = [t for t in tasks if t.synthetic]
        if not synthetic:
            return []
        policy = ScriptPolicy(ask_prob=0.7, distractor_prob=0.3, free_form_prob=0.3)
        agent = ScriptedAgent(ByteTokenizer(), policy, synthetic)
        episodes = run_episodes(agent, synthetic, SyntheticSimulator(), max_turns=10, score=False, protocol=PROTOCOL)
        return [m.content for e in episodes for m in e.messages()]


class SyntheticBaseCorpus:
    """Specifications with every detail stated and their code (env.base.BaseCorpus)."""

    def documents(self, n: int, seed: int, split: str = "train") -> list[tuple[Task, str, str]]:
        return base_documents(n, seed, split=split)

    def is_correct(self, task: Task, code: str) -> bool:
        return answer_is_correct(task, code)
