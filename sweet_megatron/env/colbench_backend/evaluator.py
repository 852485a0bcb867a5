"""Score backend answers: the answer's and the reference's code run on each test's calls in
sandboxes; the test itself is decided in this process.

The rule: a test expression is split at the sandbox boundary (boundary.py). Every maximal
sub-expression that involves the answer's names (its function calls, with their arguments) runs in
the sandbox; the values come back as tagged JSON of plain data (sandbox_worker._encode_value) and are
rebuilt here from builtin types only. Everything around them (`==`, `<`, arithmetic, `and`/`or`,
literals, and the pure builtins `len`, `round`, `sorted`, `abs`, ...) is evaluated here, on those
values. This process never unpickles, calls a method of, or evals anything the answer created.
Anything that is not plain data decodes to an `Opaque` marker that equals nothing, and a test whose
answer values hold one fails: an object whose __eq__ always returns True cannot pass, neither in a
plain call test nor in a comparison-style one (`f(x) == 3`). The reference is scored the same way.

A test passes when the reference's calls returned, the answer's calls returned plain data, and the
test's value computed here from the answer's values equals the value computed from the reference's.
So a comparison-style test compares booleans computed here, as ColBench's scorer compares them.

Differences from the ColBench reference scorer (sweet_rl code_utils.check_correctness), on purpose:
a test whose reference legitimately returns None can pass (the reference scorer used None as its
error marker, so such tests never passed), and answers are not rejected for merely containing
words like "import os" or "print(": the sandbox, not a word list, keeps them harmless.

Reward = fraction of the tests passed; success = all passed.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sweet_megatron.env.base import Score
from sweet_megatron.env.colbench_backend.boundary import SplitError, SplitTest, holds_opaque, split_test
from sweet_megatron.env.colbench_backend.tasks import Task, extract_code, ordered_tests
from sweet_megatron.env.sandbox import SandboxConfig, TestRun, run_tests, sandbox_backend

__all__ = ["BackendEvaluator", "EvaluatorConfig", "Score", "decode_value", "default_evaluator", "extract_code",
           "ordered_tests", "score_answers", "values_equal"]


@dataclass(frozen=True)
class EvaluatorConfig:
    """How backend answers are scored."""

    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    """Isolation and limits for both the answer and the reference runs."""
    max_concurrency: int = 0
    """Most sandboxes running at once; 0 = twice the number of CPU cores (a sandbox spends part of
    its life starting processes and waiting on pipes, so twice the cores keeps them busy)."""

    def __post_init__(self) -> None:
        if self.max_concurrency < 0:
            raise ValueError(f"EvaluatorConfig.max_concurrency={self.max_concurrency}: use 0 (cores) or more")

    @property
    def workers(self) -> int:
        """Sandboxes at once: max_concurrency, or twice the CPU cores."""
        return self.max_concurrency or 2 * (os.cpu_count() or 1)

    @property
    def memory_ceiling_mb(self) -> int:
        """Most memory the sandboxes of a score() call hold at once, where cgroups are usable: workers x
        sandbox.tree_memory_mb (each sandbox's cgroup limit), this process not included."""
        return self.workers * self.sandbox.tree_memory_mb


class Opaque:
    """Stands for a value that is not plain data; equal to nothing, itself included."""

    __slots__ = ("type_name",)

    def __init__(self, type_name: str):
        self.type_name = type_name

    def __eq__(self, other: object) -> bool:
        return False

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"Opaque({self.type_name})"


@dataclass(frozen=True)
class ReprValue:
    """A stdlib value type (Decimal, Fraction, date/time) compared by type name and repr."""

    type_name: str
    text: str


def _rebuild(node: Any) -> Any:
    if node is None or type(node) in (bool, int, float, str):
        return node
    if type(node) is not dict or len(node) != 1:
        raise ValueError(f"bad value node {type(node).__name__}")
    (tag, body), = node.items()
    if tag == "l":
        return [_rebuild(v) for v in body]
    if tag == "t":
        return tuple(_rebuild(v) for v in body)
    if tag == "s":
        return {_rebuild(v) for v in body}
    if tag == "f":
        return frozenset(_rebuild(v) for v in body)
    if tag == "d":
        return {_rebuild(k): _rebuild(v) for k, v in body}
    if tag == "b":
        return bytes.fromhex(body)
    if tag == "ba":
        return bytearray.fromhex(body)
    if tag == "c":
        return complex(float(body[0]), float(body[1]))
    if tag == "r":
        return ReprValue(str(body[0]), str(body[1]))
    if tag == "o":
        return Opaque(str(body))
    raise ValueError(f"unknown value tag {tag!r}")


def decode_value(value_json: str) -> Any:
    """Rebuild a sandbox result from its tagged JSON, using builtin types only.

    Raises ValueError (or RecursionError) for anything malformed.
    """
    return _rebuild(json.loads(value_json))


def values_equal(expected_json: str, actual_json: str) -> bool:
    """Whether two encoded results are equal as Python values (False if either is malformed)."""
    try:
        return bool(decode_value(expected_json) == decode_value(actual_json))
    except (ValueError, TypeError, RecursionError, MemoryError, AttributeError):
        return False


FastPath = Callable[[Task, str], "list[bool] | None"]
"""(task, answer) -> per-test pass/fail decided without running the answer, or None when only the
sandbox can tell (e.g. the synthetic family's synthetic.family.template_test_results)."""


class BackendEvaluator:
    """Scores answers to backend tasks; caches the reference outputs of each task.

    `fast_path` (None: off, every answer goes through the sandbox; 128 synthetic tasks take about
    4 s) decides some answers in this process instead: same results, no process, but no time or
    memory limit (a few lines of repeated squaring run for half a minute)."""

    def __init__(self, config: EvaluatorConfig | None = None, fast_path: FastPath | None = None):
        self.config = config or EvaluatorConfig()
        self.fast_path = fast_path
        self._reference_cache: dict[str, list[TestRun]] = {}
        self._lock = threading.Lock()

    def _reference_key(self, task: Task) -> str:
        h = hashlib.sha256(task.ground_truth.encode("utf-8", "surrogatepass"))
        for _, expr in ordered_tests(task):
            h.update(b"\0" + expr.encode("utf-8", "surrogatepass"))
        return h.hexdigest()

    def _run(self, code: str, tests: list[str]) -> list[TestRun]:
        return run_tests(code, tests, self.config.sandbox)

    def _splits(self, task: Task) -> list[SplitTest | None]:
        """The task's tests split at the sandbox boundary (None for one that does not parse)."""
        out = []
        for _, expr in ordered_tests(task):
            try:
                out.append(split_test(expr))
            except SplitError:
                out.append(None)
        return out

    def score(self, tasks: list[Task], answers: list[str | None]) -> list[Score]:
        """One Score per (task, answer); None answers score 0 without running anything."""
        if len(tasks) != len(answers):
            raise ValueError(f"score: {len(tasks)} tasks but {len(answers)} answers")
        scores: list[Score | None] = [
            _unanswered(task) if answer is None else self._fast_path(task, answer)
            for task, answer in zip(tasks, answers)
        ]
        todo = [i for i, s in enumerate(scores) if s is None]
        if not todo:
            return scores
        backend = sandbox_backend(self.config.sandbox)
        with ThreadPoolExecutor(max_workers=self.config.workers, thread_name_prefix="sandbox") as pool:
            refs: dict[str, Any] = {}
            splits = {i: self._splits(tasks[i]) for i in todo}
            calls = {i: [s.sandbox_expr if s is not None else "()" for s in splits[i]] for i in todo}
            for i in todo:
                key = self._reference_key(tasks[i])
                with self._lock:
                    cached = self._reference_cache.get(key)
                if key not in refs:
                    refs[key] = cached if cached is not None else pool.submit(
                        self._run, tasks[i].ground_truth, calls[i])
            runs = {i: pool.submit(self._run, extract_code(answers[i]), calls[i]) for i in todo}
            for key, ref in refs.items():
                if not isinstance(ref, list):
                    refs[key] = ref.result()
                    with self._lock:
                        self._reference_cache[key] = refs[key]
            for i in todo:
                scores[i] = _compare(refs[self._reference_key(tasks[i])], runs[i].result(), splits[i], backend)
        return scores

    def _fast_path(self, task: Task, answer: str | None) -> Score | None:
        if self.fast_path is None or answer is None:
            return None
        passed = self.fast_path(task, answer)
        if passed is None:
            return None
        return Score(sum(passed) / len(passed), all(passed), passed,
                     {"statuses": ["ok" if p else "mismatch" for p in passed], "errors": [],
                      "reference_failures": [], "backend": "interpreter"})

    __call__ = score


def _unanswered(task: Task) -> Score:
    n = len(task.test_cases)
    return Score(0.0, False, [False] * n, {"statuses": ["no_answer"] * n, "errors": [],
                                            "reference_failures": [], "backend": "none"})


def _decide(split: SplitTest | None, run: TestRun, answer: bool) -> tuple[str, Any]:
    """(status, the test's value computed here) of one side's run of a split test."""
    if split is None:
        return "bad_test", None
    if run.status != "ok":
        return run.status, None
    try:
        values = decode_value(run.value_json)
    except (ValueError, TypeError, RecursionError):
        return "sandbox_error", None
    if type(values) is not tuple:
        return "sandbox_error", None
    if answer and holds_opaque(values, Opaque):
        return "opaque", None  # not plain data: the answer's own object never takes part in a comparison
    try:
        return "ok", split.evaluate(values)
    except Exception as e:  # noqa: BLE001 - e.g. len() of a number the answer returned: the test fails
        return "error", f"{type(e).__name__}: {e}"[:200]


def _compare(reference: list[TestRun], answer: list[TestRun], splits: list[SplitTest | None], backend: str) -> Score:
    passed, statuses, errors, ref_failures = [], [], [], []
    for i, (ref, run, split) in enumerate(zip(reference, answer, splits, strict=True)):
        ref_status, want = _decide(split, ref, answer=False)
        status, got = _decide(split, run, answer=True)
        if ref_status != "ok":
            ref_failures.append(i)
        ok = ref_status == "ok" and status == "ok" and _same(want, got)
        passed.append(ok)
        statuses.append(status if status != "ok" or ok else "mismatch")
        error = run.error or (got if status == "error" else None)
        if error and len(errors) < 3:
            errors.append(error[:200])
    n = len(reference)
    reward = sum(passed) / n if n else 0.0
    return Score(
        reward=reward,
        success=n > 0 and all(passed),
        passed=passed,
        details={"statuses": statuses, "errors": errors, "reference_failures": ref_failures, "backend": backend},
    )


def _same(want: Any, got: Any) -> bool:
    """Equality of two values computed here from plain data (False when comparing fails)."""
    try:
        return bool(want == got)
    except (TypeError, ValueError, RecursionError, MemoryError):
        return False


_DEFAULT: BackendEvaluator | None = None


def default_evaluator() -> BackendEvaluator:
    """A process-wide evaluator with the default configuration (and a shared reference cache)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = BackendEvaluator()
    return _DEFAULT


def score_answers(
    tasks: list[Task], answers: list[str | None], config: EvaluatorConfig | None = None
) -> list[Score]:
    """Score each answer on its task (see BackendEvaluator.score)."""
    evaluator = default_evaluator() if config is None else BackendEvaluator(config)
    return evaluator.score(tasks, answers)
