"""`sweet-colbench`: list the environments, generate synthetic tasks, score answers in the sandbox,
play an episode.

    sweet-colbench envs                                       # one line per registered environment
    sweet-colbench generate --n 200 --seed 0 --split train --out tasks.jsonl
    sweet-colbench score --tasks tasks.jsonl --answers answers.jsonl [--out results.jsonl]
    sweet-colbench score --tasks tasks.jsonl --self          # each task's reference as its answer
    sweet-colbench score --kind frontend --self              # render the 50 shipped frontend pages
    sweet-colbench play --tasks tasks.jsonl --index 3 --agent human

`score` reads answers as JSONL objects {"index": <task line index, 0-based>, "answer": <str|null>}
and prints a JSON summary ({"n", "mean_reward", "success_rate", ...}) as its last line. Frontend
task files (detected from the first record, or `--kind frontend`; default file with `--kind frontend`:
builtin:colbench/frontend_test_0-49.jsonl) are rendered and scored by env/colbench_frontend instead
(its summary: render_seconds, matched_self_best, mean_similarity, win_rate with --baseline).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from sweet_megatron.data.chat import Message, action_ids
from sweet_megatron.env import registry
from sweet_megatron.env.bytetok import ByteTokenizer
from sweet_megatron.env.colbench_backend.evaluator import BackendEvaluator, EvaluatorConfig
from sweet_megatron.env.colbench_backend.tasks import TaskFormatError, load_tasks, save_tasks
from sweet_megatron.env.episode import run_episodes
from sweet_megatron.env.jsonl import iter_jsonl
from sweet_megatron.env.sandbox import SandboxConfig, SandboxUnavailable, sandbox_backend
from sweet_megatron.env.synthetic.demos import ScriptedAgent
from sweet_megatron.env.synthetic.family import ScriptPolicy, check_record, generate_tasks

POLICIES = {
    "all": ScriptPolicy(),
    "none": ScriptPolicy(ask_prob=0.0),
    "noisy": ScriptPolicy(ask_prob=0.7, distractor_prob=0.3, free_form_prob=0.5),
}


def load_answers(path: Path, num_tasks: int) -> dict[int, str | None]:
    """index -> answer from a JSONL file; errors name file, line and field."""
    answers: dict[int, str | None] = {}
    for where, _, rec in iter_jsonl(path, TaskFormatError):
        if not isinstance(rec, dict) or "index" not in rec or "answer" not in rec:
            raise TaskFormatError(f'{where}: expected {{"index": <int>, "answer": <string or null>}}')
        index, answer = rec["index"], rec["answer"]
        if type(index) is not int or not 0 <= index < num_tasks:
            raise TaskFormatError(f"{where}: field 'index' must be an integer in [0, {num_tasks}), got {index!r}")
        if answer is not None and not isinstance(answer, str):
            raise TaskFormatError(f"{where}: field 'answer' must be a string or null")
        if index in answers:
            raise TaskFormatError(f"{where}: field 'index': task {index} already has an answer")
        answers[index] = answer
    return answers


def _evaluator(args: argparse.Namespace) -> BackendEvaluator:
    backend = {} if args.backend is None else {"backend": args.backend}
    sandbox = SandboxConfig(test_timeout_s=args.test_timeout, **backend)
    return BackendEvaluator(EvaluatorConfig(sandbox=sandbox, max_concurrency=args.max_concurrency))


def cmd_envs(args: argparse.Namespace) -> int:
    """One line per registered environment: its name, what it has, what its tasks are."""
    for name in registry.names():
        print(registry.get(name).describe())
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    tasks = generate_tasks(args.n, seed=args.seed, split=args.split, difficulty=tuple(args.difficulty))
    save_tasks(tasks, args.out)
    print(json.dumps({"written": len(tasks), "out": str(args.out), "split": args.split, "seed": args.seed}))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from sweet_megatron.env.colbench_frontend import __main__ as frontend
    from sweet_megatron.env.colbench_frontend.records import is_frontend_file

    if args.kind == "frontend" or (args.kind is None and args.tasks is not None and is_frontend_file(args.tasks)):
        args.tasks = args.tasks or frontend.FRONTEND_RECORDS
        return frontend.cmd_score(args)
    if args.tasks is None:
        raise SystemExit("score: pass --tasks T.jsonl (or --kind frontend for the shipped frontend pages)")
    if args.baseline is not None:
        raise SystemExit("score: --baseline is for frontend tasks only")
    tasks = load_tasks(args.tasks, check=check_record)
    if args.self_check:
        answers = {t.index: t.ground_truth for t in tasks}
    elif args.answers is not None:
        answers = load_answers(args.answers, len(tasks))
    else:
        raise SystemExit("score: pass --answers A.jsonl or --self")
    indices = sorted(answers)
    evaluator = _evaluator(args)
    start = time.perf_counter()
    scores = evaluator.score([tasks[i] for i in indices], [answers[i] for i in indices])
    seconds = time.perf_counter() - start
    if args.out is not None:
        with Path(args.out).open("w", encoding="utf-8") as f:
            for i, s in zip(indices, scores):
                f.write(json.dumps({"index": i, "task_id": tasks[i].task_id, "reward": s.reward,
                                    "success": s.success, "passed": s.passed,
                                    "statuses": s.details["statuses"], "errors": s.details["errors"]}) + "\n")
    failures = [tasks[i].task_id for i, s in zip(indices, scores) if not s.success]
    n = len(scores)
    summary = {
        "n": n,
        "mean_reward": sum(s.reward for s in scores) / n if n else 0.0,
        "success_rate": sum(s.success for s in scores) / n if n else 0.0,
        "failed_task_ids": failures[:20],
        "seconds": round(seconds, 2),
        "backend": sandbox_backend(evaluator.config.sandbox),
    }
    if summary["backend"] == "process":
        summary["UNISOLATED"] = "opted in with --backend process: answers ran without namespaces"
    print(json.dumps(summary))
    return 0


class HumanAgent:
    """A person at the terminal plays the agent (one episode at a time)."""

    def __init__(self, tokenizer, read=None, write=print):
        self.tokenizer = tokenizer
        self._read = read or (lambda prompt: input(prompt))
        self._write = write

    def act(self, prompts_ids: list[list[int]], dialogues: list[list[Message]]):
        actions = []
        for dialogue in dialogues:
            if dialogue and dialogue[-1].role == "user":
                self._write(f"person: {dialogue[-1].content}")
            lines = [self._read("agent> ")]
            while lines[-1].endswith("\\"):  # a trailing backslash continues the action on a new line
                lines[-1] = lines[-1][:-1]
                lines.append(self._read("... "))
            text = "\n".join(lines)
            ids = action_ids(self.tokenizer, text)
            actions.append((ids, [0.0] * len(ids), text))
        return actions


def cmd_play(args: argparse.Namespace) -> int:
    if args.tasks is not None:
        tasks = load_tasks(args.tasks, check=check_record)
    else:
        tasks = generate_tasks(args.index + 1, seed=args.seed, split=args.split)
    if not 0 <= args.index < len(tasks):
        raise SystemExit(f"play: --index {args.index} is out of range (0..{len(tasks) - 1})")
    task = tasks[args.index]
    task.index = 0
    # A generated (synthetic) record plays in the synthetic environment, a real one in the backend's.
    env = registry.get("synthetic" if task.synthetic is not None else "colbench_backend")
    if args.agent == "scripted" and env.name != "synthetic":
        raise SystemExit(f"play: --agent scripted plays synthetic tasks only; task {task.task_id} is a real "
                         "ColBench record (use --agent human)")
    tok = ByteTokenizer()
    print(f"task {task.task_id}: {task.problem_description}")
    if args.agent == "human":
        print('Ask questions; write "I WANT TO ANSWER:" and the code to finish (end a line with \\ to continue it).')
        agent = HumanAgent(tok)
    else:
        agent = ScriptedAgent(tok, POLICIES[args.policy])
    episode = run_episodes(agent, [task], env.rule_simulator(), evaluator=_evaluator(args), max_turns=args.max_turns,
                           protocol=env.protocol)[0]
    if args.agent != "human":
        for turn in episode.turns:
            print(f"agent: {turn.action_text}")
            if turn.simulator_reply is not None:
                print(f"person: {turn.simulator_reply}")
    print(json.dumps({"task_id": task.task_id, "turns": len(episode.turns), "answered": episode.answer is not None,
                      "reward": episode.reward, "success": episode.success}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sweet-colbench", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def sandbox_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--backend", choices=("auto", "bwrap", "process"), default=None,
                       help="sandbox backend: auto/bwrap = bubblewrap (refuses to score without it); process = an "
                            "explicit opt-in to unisolated scoring (default: $SWEET_SANDBOX_BACKEND, else auto)")
        p.add_argument("--max-concurrency", type=int, default=0, help="sandboxes at once (0: twice the CPU cores)")
        p.add_argument("--test-timeout", type=float, default=2.0, help="wall-clock seconds per test")

    e = sub.add_parser("envs", help="list the registered environments and what each has")
    e.set_defaults(func=cmd_envs)

    g = sub.add_parser("generate", help="write synthetic tasks as JSONL")
    g.add_argument("--n", type=int, required=True)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--split", choices=("train", "heldout"), default="train")
    g.add_argument("--difficulty", type=int, nargs=2, default=(1, 4), metavar=("MIN", "MAX"))
    g.add_argument("--out", type=Path, required=True)
    g.set_defaults(func=cmd_generate)

    s = sub.add_parser("score", help="score answers on tasks in the sandbox")
    s.add_argument("--tasks", type=Path, help="task file (required for backend tasks)")
    s.add_argument("--kind", choices=("backend", "frontend"), default=None,
                   help="task kind (default: read from the file's first record)")
    s.add_argument("--answers", type=Path, help='JSONL of {"index": i, "answer": "..."}')
    s.add_argument("--self", dest="self_check", action="store_true", help="score each task's reference as its answer")
    s.add_argument("--out", type=Path, help="per-answer results as JSONL")
    s.add_argument("--baseline", type=Path, help="frontend: a baseline agent's answers, same format: adds win_rate")
    s.add_argument("--browsers", type=int, default=2, help="frontend: browsers rendering in parallel")
    s.add_argument("--timeout", type=float, default=15.0, help="frontend: seconds per page")
    sandbox_options(s)
    s.set_defaults(func=cmd_score)

    p = sub.add_parser("play", help="play one episode in the terminal")
    p.add_argument("--tasks", type=Path, help="task file (default: a synthetic task)")
    p.add_argument("--index", type=int, default=0)
    p.add_argument("--seed", type=int, default=0, help="synthetic seed when no --tasks")
    p.add_argument("--split", choices=("train", "heldout"), default="train")
    p.add_argument("--agent", choices=("human", "scripted"), default="human")
    p.add_argument("--policy", choices=sorted(POLICIES), default="all", help="scripted agent policy")
    p.add_argument("--max-turns", type=int, default=10)
    sandbox_options(p)
    p.set_defaults(func=cmd_play)
    return parser


def main(argv: list[str] | None = None) -> int:
    from sweet_megatron.env.colbench_frontend.render import RenderUnavailable

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (TaskFormatError, FileNotFoundError, ValueError, SandboxUnavailable, RenderUnavailable) as e:
        print(f"sweet-colbench {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
