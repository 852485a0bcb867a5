"""The synthetic tariff family as an `Environment` (task.source=synthetic, the task=synthetic config
group, the embedded default): tasks generated from a seed, the demo's prompt, the rule-based person
answering from the hidden details, the sandboxed backend evaluator, and all three optional
capabilities: scripted demonstrations, a base-model corpus and an oracle."""

from __future__ import annotations

from sweet_megatron.env.base import Environment, ScoreFn, TaskConfigError
from sweet_megatron.env.synthetic.demos import SyntheticBaseCorpus, SyntheticDemonstrations
from sweet_megatron.env.synthetic.family import generate_tasks
from sweet_megatron.env.synthetic.oracle import SyntheticOracle
from sweet_megatron.env.synthetic.protocol import PROTOCOL
from sweet_megatron.env.synthetic.simulator import SyntheticSimulator


class SyntheticEnvironment(Environment):
    name = "synthetic"
    summary = "tariff-v1: generated functions with hidden details, tiny-model scale, offline"
    protocol = PROTOCOL
    demonstrations = SyntheticDemonstrations()
    base_corpus = SyntheticBaseCorpus()
    oracle = SyntheticOracle()

    def check_task_config(self, cfg) -> None:
        if cfg.train_file or cfg.eval_file:
            raise TaskConfigError("task.train_file/task.eval_file need task.source=colbench_backend "
                                  "(or task=colbench_backend)")

    def task_splits(self, cfg, val: list | None = None) -> tuple[list, list]:
        """task.num_train training and task.num_eval held-out tasks (disjoint functions), difficulties
        task.min_difficulty..task.max_difficulty, seeds task.seed and task.eval_seed."""
        difficulty = (cfg.min_difficulty, cfg.max_difficulty)
        return (generate_tasks(cfg.num_train, seed=cfg.seed, split="train", difficulty=difficulty),
                generate_tasks(cfg.num_eval, seed=cfg.seed if cfg.eval_seed is None else cfg.eval_seed,
                               split="heldout", difficulty=difficulty))

    def rule_simulator(self) -> SyntheticSimulator:
        return SyntheticSimulator()

    def evaluator(self) -> ScoreFn:
        from sweet_megatron.env.colbench_backend.evaluator import default_evaluator

        return default_evaluator()
