"""`sweet-bench evaluator`: scored rows per second, sandboxed, against the in-process scorer a user
would otherwise run, in one run.

Both score the same rows (default: the 200 shipped real ColBench records) with each record's own
reference solution as the answer, so every row does its full work (all tests pass) and the unsafe
side runs only trusted code:
- **sandboxed**: `BackendEvaluator` as the trainer uses it (bubblewrap, one sandbox per answer and one
  per reference, a forked child per test, values decided in this process), from a cold reference
  cache;
- **in-process**: what the reference implementation's scorer does, `exec` of the answer and of the
  reference into fresh namespaces in this process, `eval` of each test against both, `==` of the
  results; no isolation, no limits.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from sweet_megatron.env.colbench_backend.evaluator import BackendEvaluator
from sweet_megatron.env.colbench_backend.tasks import load_tasks, ordered_tests
from sweet_megatron.env.sandbox import sandbox_backend


def score_in_process(tasks: list, answers: list[str]) -> list[float]:
    """The unsafe scorer: exec + eval in this process (trusted code only). Reward per row."""
    rewards = []
    for task, answer in zip(tasks, answers, strict=True):
        passed = 0
        tests = ordered_tests(task)
        for _, expr in tests:
            try:
                ref_ns: dict = {}
                exec(task.ground_truth, ref_ns)  # noqa: S102 - the benchmark's unsafe baseline, trusted code
                ans_ns: dict = {}
                exec(answer, ans_ns)  # noqa: S102
                passed += eval(expr, ans_ns) == eval(expr, ref_ns)  # noqa: S307
            except Exception:  # noqa: BLE001 - a failing test, as in the reference scorer
                pass
        rewards.append(passed / len(tests))
    return rewards


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sweet-bench evaluator", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--tasks", default="builtin:colbench/backend_test_0-199.jsonl", help="task file (JSONL)")
    p.add_argument("--limit", type=int, default=None, help="score only the first N rows")
    p.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = p.parse_args(argv)

    tasks = load_tasks(args.tasks, limit=args.limit)
    answers = [t.ground_truth for t in tasks]
    evaluator = BackendEvaluator()
    t0 = time.perf_counter()
    sandboxed = evaluator.score(tasks, answers)
    t_sandbox = time.perf_counter() - t0
    t0 = time.perf_counter()
    unsafe = score_in_process(tasks, answers)
    t_unsafe = time.perf_counter() - t0
    out = {
        "rows": len(tasks), "tests": sum(len(t.test_cases) for t in tasks),
        "sandboxed": {"backend": sandbox_backend(evaluator.config.sandbox), "seconds": round(t_sandbox, 3),
                      "rows_per_s": round(len(tasks) / t_sandbox, 2),
                      "success_rate": round(sum(s.success for s in sandboxed) / len(tasks), 4)},
        "in_process_unsafe": {"seconds": round(t_unsafe, 3), "rows_per_s": round(len(tasks) / t_unsafe, 2),
                              "success_rate": round(sum(r == 1.0 for r in unsafe) / len(tasks), 4)},
        "sandboxed_over_unsafe_time": round(t_sandbox / t_unsafe, 2),
    }
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0
