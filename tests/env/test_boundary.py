"""Tests are decided in the trusted process: the split at the sandbox boundary, by hand, and the
evaluator on comparison-style tests an always-equal answer used to pass."""

import pytest

from sweet_megatron.builtin import resolve_builtin
from sweet_megatron.env.colbench_backend.boundary import SplitError, split_test
from sweet_megatron.env.colbench_backend.evaluator import BackendEvaluator, EvaluatorConfig
from sweet_megatron.env.colbench_backend.tasks import Task
from sweet_megatron.env.sandbox import SandboxConfig

TASKS_FILE = resolve_builtin("builtin:colbench/backend_test_0-199.jsonl")

ALWAYS_EQUAL = '''
class E(float):
    def __eq__(self, other):
        return True
    def __ne__(self, other):
        return False
    def __lt__(self, other):
        return True
    def __gt__(self, other):
        return True
    def __len__(self):
        return 3
    def __round__(self, n=None):
        return self
    __hash__ = float.__hash__

def {name}(*args, **kwargs):
    return E(0.0)
'''


@pytest.mark.parametrize("expr, calls, values, want", [
    ("f(2)", ("f(2)",), (7,), 7),  # a plain call: its value is the test's value
    ("f(2) == 7.5", ("f(2)",), (7.5,), True),
    ("f(2, [1, 3]) == 7.5 and g(1) > 0", ("f(2, [1, 3])", "g(1)"), (7.5, -1), False),
    ("round(f(x=1), 2) == 0.33", ("f(x=1)",), (1 / 3,), True),  # round() applied here
    ("len(f('ab')) == 2", ("f('ab')",), ([1, 2],), True),
    ("abs(f(1) - f(2)) < 1e-9", ("f(1)", "f(2)"), (0.1 + 0.2, 0.3), True),
    ("f(lambda t, x: t * x, 1)", ("f(lambda t, x: t * x, 1)",), (2,), 2),  # a lambda stays with its call
    ("(1, 2) == (1, 2)", (), (), True),  # nothing of the answer's: decided here alone
    ("sorted(f(3)) == [1, 2, 3]", ("f(3)",), ({3, 1, 2},), True),
    ("f(2).real == 2", ("f(2).real",), (2,), True),  # an attribute of the answer's value: in the sandbox
])
def test_split_by_hand(expr, calls, values, want):
    split = split_test(expr)
    assert split.calls == calls
    assert split.sandbox_expr == "(" + "".join(c + ", " for c in calls) + ")"
    assert split.evaluate(values) == want


def test_parent_builtins_are_the_real_ones_and_nothing_else():
    split = split_test("open('/etc/passwd') == 1")  # open is not a pure builtin: the sandbox's business
    assert split.calls == ("open('/etc/passwd')",)
    with pytest.raises(SplitError, match="not a Python expression"):
        split_test("f(1) ==")


@pytest.fixture(scope="module")
def evaluator():
    return BackendEvaluator(EvaluatorConfig(sandbox=SandboxConfig(backend="bwrap")))


REFERENCE = "def area(w, h):\n    return w * h\n"
COMPARISONS = {"test1": "area(2, 3) == 6", "test2": "area(2, 5) > 9", "test3": "len(str(area(10, 10))) == 3",
               "test4": "round(area(0.5, 0.5), 2) == 0.25", "test5": "area(1, 1) == 7"}  # test5: False for the reference
TASK = Task("Area. The signature of the function is: def area(w, h)", REFERENCE, REFERENCE, COMPARISONS)


def test_comparison_tests_are_decided_outside_the_answer(evaluator):
    lying, right, wrong = ALWAYS_EQUAL.format(name="area"), REFERENCE, "def area(w, h):\n    return w + h\n"
    s_lying, s_right, s_wrong = evaluator.score([TASK] * 3, [lying, right, wrong])
    assert s_lying.passed == [False] * 5 and s_lying.details["statuses"] == ["opaque"] * 5
    assert s_right.success
    # w + h: 5 == 6 False, 7 > 9 False, len('20') == 3 False, round(1.0) == 0.25 False; and test5 is
    # False on both sides (the reference misses 7 too), which matches, as ColBench scores it
    assert s_wrong.passed == [False, False, False, False, True]


def test_always_equal_earns_nothing_on_the_real_rows(evaluator, real_tasks):
    scores = evaluator.score(real_tasks, [ALWAYS_EQUAL.format(name=t.function_name) for t in real_tasks])
    assert [s.reward for s in scores] == [0.0] * len(real_tasks)


def test_no_silent_downgrade_without_bubblewrap(tmp_path):
    """bwrap hidden from PATH: `sweet-colbench score` refuses with the install command; the explicit
    opt-in runs and says so in its summary."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "PATH": str(tmp_path)}  # no bwrap on it
    env.pop("SWEET_SANDBOX_BACKEND", None)
    cmd = [sys.executable, "-m", "sweet_megatron.env.cli", "score", "--tasks", "builtin:colbench/backend_test_0-199.jsonl",
           "--self"]
    refused = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "refusing to run untrusted answer code" in refused.stderr and "apt-get install -y bubblewrap" in refused.stderr
    assert "Traceback" not in refused.stderr
    small = tmp_path / "three.jsonl"
    small.write_text("".join(open(str(TASKS_FILE)).readlines()[:3]))
    opted = subprocess.run([*cmd[:5], str(small), "--self", "--backend", "process"], env=env, capture_output=True,
                           text=True, timeout=300)
    assert opted.returncode == 0, opted.stderr[-2000:]
    summary = json.loads(opted.stdout.strip().splitlines()[-1])
    assert summary["backend"] == "process" and "UNISOLATED" in summary and summary["success_rate"] == 1.0
