"""The ColBench backend as an `Environment` (task.source=colbench_backend, the task=colbench_backend
config group): real backend records from JSONL files, ColBench's agent instructions, the
code-reply simulated person and the sandboxed test evaluator. No scripted demonstrations, base
corpus or oracle: the warm start reads sweet.offline_episodes, and the credit check needs an oracle."""

from __future__ import annotations

import logging
import random

from sweet_megatron.env.base import AnswerProtocol, Environment, ScoreFn, TaskConfigError
from sweet_megatron.env.colbench_backend.simulator import CodeReplySimulator
from sweet_megatron.env.colbench_backend.tasks import Task, TaskFormatError, load_tasks, read_task_file

log = logging.getLogger("sweet_megatron")

SYSTEM_PROMPT = (
    "You are an assistant helping a person with a Python programming problem.\n"
    "1) The problem is personal: what the person wants depends on details and constraints they have not "
    "told you, so find them out by asking the person clarifying questions. Asking questions is expected.\n"
    "2) Keep each question simple: the person answers only briefly, in about two sentences.\n"
    "3) Once you have gathered enough information, begin your message with \"I WANT TO ANSWER:\" and give "
    "your final answer.\n"
    "4) You have at most {max_turns} rounds of conversation with the person, and you must give your final "
    "answer within them.\n"
    "5) Be as concise as you can with the person.\n\n"
    "When you answer, write the final answer directly after \"I WANT TO ANSWER:\" as raw Python code."
)
"""ColBench's backend agent instructions (prompts/llm_agent_code_prompt.txt of the reference) in
this project's words, same rules: clarifying questions, brief answers expected, the answer marker,
the round limit, concision, the answer as raw Python code after the marker."""


def opening(task: Task, max_turns: int) -> tuple[str, str | None]:
    """ColBench's protocol: the instructions as the system message, the problem as the person's
    first message, as the reference's agent sees it."""
    return SYSTEM_PROMPT.format(max_turns=max_turns), task.problem_description


PROTOCOL = AnswerProtocol(opening)


class ColBenchBackend(Environment):
    name = "colbench_backend"
    summary = "ColBench backend programming: real records (JSONL), sandboxed unit tests"
    protocol = PROTOCOL

    def check_task_config(self, cfg) -> None:
        if not (cfg.path or cfg.train_file):
            raise TaskConfigError("task.source=colbench_backend needs task.train_file (with task.eval_file or "
                                  "task.val_size) or task.path (one JSONL file split num_train/num_eval)")
        if cfg.eval_file and not cfg.train_file:
            raise TaskConfigError("task.eval_file needs task.train_file too (the training tasks)")
        if cfg.train_file and not cfg.eval_file and cfg.val_size < 1:
            raise TaskConfigError("task.train_file without task.eval_file: set task.eval_file (the held-out tasks) "
                                  "or task.val_size >= 1 (validation tasks carved from the train file)")

    def task_splits(self, cfg, val: list | None = None) -> tuple[list, list]:
        """task.train_file (+ task.eval_file or task.val_size), or task.path split num_train/num_eval
        by a seeded shuffle."""
        if cfg.train_file:
            return _task_files(cfg, val)
        tasks = load_tasks(cfg.path)
        order = list(range(len(tasks)))
        random.Random(cfg.seed).shuffle(order)
        train = [tasks[i] for i in order[: cfg.num_train]]
        held = [tasks[i] for i in order[cfg.num_train : cfg.num_train + cfg.num_eval]]
        return train, held

    def rule_simulator(self) -> CodeReplySimulator:
        return CodeReplySimulator()

    def evaluator(self) -> ScoreFn:
        from sweet_megatron.env.colbench_backend.evaluator import default_evaluator

        return default_evaluator()


def _task_files(cfg, val: list | None) -> tuple[list, list]:
    """The usable rows of task.train_file less task.val_size validation tasks (appended to `val`),
    and task.eval_file's rows (or the validation tasks when there is none)."""
    files = {}
    for key, path, limit in (("task.train_file", cfg.train_file, cfg.train_limit),
                             ("task.eval_file", cfg.eval_file, cfg.eval_limit)):
        if path is None:
            continue
        try:
            files[key] = read_task_file(path, limit, key)
        except (FileNotFoundError, TaskFormatError) as exc:
            raise TaskConfigError(str(exc)) from None
        log.info("%s", files[key].summary(key))
        for problem in files[key].problems[3:]:
            log.debug("skipped: %s", problem)
    train = files["task.train_file"].tasks
    if cfg.val_size >= len(train):
        raise TaskConfigError(f"task.val_size={cfg.val_size} leaves no training task ({len(train)} usable rows in "
                              f"{files['task.train_file'].path}); set it below {len(train)}")
    order = list(range(len(train)))
    random.Random(cfg.seed).shuffle(order)
    carved = sorted(order[: cfg.val_size])
    keep = sorted(order[cfg.val_size:])
    val_tasks, train = [train[i] for i in carved], [train[i] for i in keep]
    if val is not None:
        val.extend(val_tasks)
    held = files["task.eval_file"].tasks if "task.eval_file" in files else val_tasks
    log.info("tasks: %d training, %d validation, %d held-out", len(train), len(val_tasks), len(held))
    return train, held
