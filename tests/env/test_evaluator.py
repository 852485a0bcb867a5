"""The sandboxed evaluator on hand-computed examples, on both backends, and on the 200 real records."""

import threading
import time
import warnings

import pytest

from sweet_megatron.env import sandbox as sandbox_module
from sweet_megatron.env.colbench_backend import evaluator as evaluator_module
from sweet_megatron.env.colbench_backend.evaluator import (
    BackendEvaluator,
    EvaluatorConfig,
    Opaque,
    decode_value,
    extract_code,
    values_equal,
)
from sweet_megatron.env.colbench_backend.tasks import Task
from sweet_megatron.env.sandbox import SandboxConfig, run_tests
from sweet_megatron.env.synthetic.family import (
    ANSWER_MARK,
    ScriptPolicy,
    generate_tasks,
    scripted_action,
    spec_of,
    template_test_results,
)

REFERENCE = "def f(x):\n    return x * 2 + 1\n"
TASK = Task("Double plus one. The signature of the function is: def f(x)", REFERENCE, REFERENCE,
            {f"test{i + 1}": f"f({i})" for i in range(10)})


def make_evaluator(backend="auto", **kw):
    return BackendEvaluator(EvaluatorConfig(sandbox=SandboxConfig(backend=backend, **kw)))


@pytest.fixture(scope="module", params=["bwrap", "process"])
def evaluator(request):
    if request.param == "bwrap" and sandbox_module._bwrap_problem(SandboxConfig()) is not None:
        pytest.skip(f"bubblewrap unusable here: {sandbox_module._bwrap_problem(SandboxConfig())}")
    return make_evaluator(request.param)


def test_extract_code():
    assert extract_code("Here:\n```python\ndef f(x):\n    return 1\n```\nDone") == "def f(x):\n    return 1"
    assert extract_code("```\ndef g(): pass\n```") == "def g(): pass"
    assert extract_code("```js\nx\n```\n```python\ny = 1\n```") == "y = 1"  # python block preferred
    assert extract_code("```python\ndef f():\n    return 2") == "def f():\n    return 2"  # unterminated
    assert extract_code("\n    def f():\n        return 3\n") == "def f():\n    return 3"  # dedented


def test_value_decoding_is_plain_data():
    assert decode_value('{"t": [1, {"l": [2.5, null]}]}') == (1, [2.5, None])
    assert decode_value('{"d": [[{"t": [1, 2]}, {"s": ["a"]}]]}') == {(1, 2): {"a"}}
    assert not values_equal('{"t": [1, 2]}', '{"l": [1, 2]}')  # a tuple is not a list
    assert values_equal('{"s": [1, 2]}', '{"f": [2, 1]}')  # set == frozenset, as in Python
    assert values_equal("1", "1.0") and values_equal("true", "1")  # Python's own == on numbers
    assert not values_equal("NaN", "NaN")  # nan != nan
    assert not values_equal('{"o": "x.A"}', '{"o": "x.A"}')  # opaque objects equal nothing
    assert Opaque("A") != Opaque("A")
    assert not values_equal("[1", "[1")  # malformed
    assert not values_equal('{"l": [1]}', '{"zz": [1]}')  # unknown tag


def test_correct_partial_wrong_and_missing(evaluator):
    half = "def f(x):\n    return x * 2 + 1 if x < 5 else 0"
    scores = evaluator.score([TASK] * 4, [REFERENCE, half, "def f(x):\n    return x", None])
    assert [s.reward for s in scores] == [1.0, 0.5, 0.0, 0.0]
    assert [s.success for s in scores] == [True, False, False, False]
    assert scores[1].passed == [True] * 5 + [False] * 5
    assert scores[1].details["statuses"] == ["ok"] * 5 + ["mismatch"] * 5
    assert scores[3].details["statuses"] == ["no_answer"] * 10


def test_imports_helpers_recursion_and_fences(evaluator):
    answer = (
        "Sure, here it is:\n```python\nimport math\nfrom functools import lru_cache\n\nSCALE = 2\n\n"
        "def helper(x):\n    return int(math.sqrt(x * x)) * SCALE\n\n@lru_cache\n"
        "def ones(n):\n    return 0 if n == 0 else 1 + ones(n - 1)\n\n"
        "def f(x):\n    return helper(x) + ones(1)\n```\nHope it helps."
    )
    assert evaluator.score([TASK], [answer])[0].success


def test_reference_none_errors_and_hash_seed(evaluator):
    reference = (
        "def g(x):\n    if x == 0:\n        return None\n    if x == 1:\n        raise ValueError('bad')\n"
        "    return ', '.join({'apple', 'kiwi', 'plum', 'fig', 'pear'}) + str(x)\n"
    )
    task = Task("g. The signature of the function is: def g(x)", reference, reference,
                {"test1": "g(0)", "test2": "g(1)", "test3": "g(2)"})
    score = evaluator.score([task], [reference])[0]
    # None is a value like any other; a test whose reference raises can never pass; set order is
    # the same in the reference's and the answer's processes (fixed PYTHONHASHSEED).
    assert score.passed == [True, False, True]
    assert score.details["reference_failures"] == [1]


def test_syntax_error_and_missing_function(evaluator):
    scores = evaluator.score([TASK, TASK], ["def f(x) return", "def other(x):\n    return 1"])
    assert [s.reward for s in scores] == [0.0, 0.0]
    assert scores[0].details["errors"][0].startswith("SyntaxError")
    assert scores[1].details["errors"][0].startswith("NameError")


def test_concurrency_bound(monkeypatch):
    live, peak, lock = [0], [0], threading.Lock()
    real = evaluator_module.run_tests

    def counting(code, tests, config=None):
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        try:
            time.sleep(0.05)
            return real(code, tests, config)
        finally:
            with lock:
                live[0] -= 1

    monkeypatch.setattr(evaluator_module, "run_tests", counting)
    for bound in (1, 3):
        peak[0] = 0
        ev = BackendEvaluator(EvaluatorConfig(max_concurrency=bound))
        scores = ev.score([TASK] * 6, [REFERENCE] * 6)
        assert all(s.success for s in scores)
        assert peak[0] == bound


def test_references_are_cached(monkeypatch):
    ev = make_evaluator()
    calls = []
    real = evaluator_module.run_tests
    monkeypatch.setattr(evaluator_module, "run_tests", lambda c, t, cfg=None: calls.append(c) or real(c, t, cfg))
    ev.score([TASK, TASK], ["def f(x):\n    return 0", "def f(x):\n    return 1"])
    ev.score([TASK], [REFERENCE])
    assert calls.count(REFERENCE) == 1  # the reference ran once for three answers
    assert calls.count(REFERENCE.strip()) == 1  # the last answer (extracted, so stripped)


def test_bwrap_missing_refuses_unless_unisolated_is_asked_for(monkeypatch):
    monkeypatch.setattr(sandbox_module.shutil, "which", lambda name: None)
    monkeypatch.setattr(sandbox_module, "_BWRAP_PROBES", {})
    monkeypatch.setattr(sandbox_module, "_warn_unisolated", sandbox_module._warn_unisolated.__wrapped__)
    for backend in ("bwrap", "auto"):  # no silent downgrade
        with pytest.raises(sandbox_module.SandboxUnavailable,
                           match="bwrap executable is not on PATH.*apt-get install -y bubblewrap.*--backend process"):
            run_tests("x = 1", ["x"], SandboxConfig(backend=backend))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runs = run_tests("x = 1", ["x"], SandboxConfig(backend="process"))
    assert runs[0].status == "ok" and runs[0].value_json == "1"
    assert any("UNISOLATED SCORING" in str(w.message) for w in caught)
    monkeypatch.setenv("SWEET_SANDBOX_BACKEND", "process")  # sweet-train's opt-in
    assert SandboxConfig().backend == "process"


def test_config_errors_name_the_fix():
    with pytest.raises(ValueError, match="backend='docker'.*use 'auto', 'bwrap' or 'process'"):
        SandboxConfig(backend="docker")
    with pytest.raises(ValueError, match="memory_mb=16"):
        SandboxConfig(memory_mb=16)
    with pytest.raises(ValueError, match="max_concurrency=-1"):
        EvaluatorConfig(max_concurrency=-1)


def test_real_records_self_score_and_wrong_answers(real_tasks):
    ev = make_evaluator()
    start = time.perf_counter()
    scores = ev.score(real_tasks, [t.ground_truth for t in real_tasks])
    seconds = time.perf_counter() - start
    failures = [(t.task_id, s.details) for t, s in zip(real_tasks, scores) if not s.success]
    print(f"\nself-scoring {len(real_tasks)} real records: {len(real_tasks) - len(failures)} succeed, "
          f"{seconds:.1f} s; failures: {failures}")
    assert len(failures) <= 0.01 * len(real_tasks), failures
    assert seconds < 120, f"scoring 200 tasks took {seconds:.1f} s"
    subset = real_tasks[::2]
    wrong = [f"def {t.function_name}(*args, **kwargs):\n    return 'wrong-answer-sentinel'" for t in subset]
    rewards = {t.index: s.reward for t, s in zip(subset, ev.score(subset, wrong))}
    # Record 94's tests are written `f(...) == k`: where the reference misses k too, both sides are
    # False and any answer matches (as in ColBench's own scorer). Never a success, though.
    assert rewards.pop(94) == 0.8
    assert set(rewards.values()) == {0.0}


def test_synthetic_fast_path_agrees_with_the_sandbox():
    tasks = generate_tasks(24, seed=3)
    answers = []
    for i, task in enumerate(tasks):
        # the noisy script's answers get some constants right and some wrong
        policy = ScriptPolicy(ask_prob=0.5, seed=i)
        dialogue = []
        while ANSWER_MARK not in (action := scripted_action(task, dialogue, policy)):
            dialogue += [("assistant", action), ("user", "I do not know.")]
        answers.append(action.split(ANSWER_MARK, 1)[1])
    fn = spec_of(tasks[0]).function
    odd = [
        f"def {fn}(a, b):\n    return a / 0",  # ZeroDivisionError on every test
        f"def {fn}(a, b):\n    return a > 10",  # booleans: True == 1.0 would count, as in Python
        f"def {fn}(a, b):\n    c = round(a)\n    c += b\n    return max(c, 0) if a < 50 else -c",
        f"def {fn}(a, b):\n    x = a * 2",  # returns None
        f"def {fn}(a, b) return",  # syntax error
        "def other(a, b):\n    return a",  # the function is missing
        f"import math\ndef {fn}(a, b):\n    return math.floor(a)",  # outside the subset: sandbox
        tasks[0].ground_truth,
    ]
    tasks += [tasks[0]] * len(odd)
    answers += odd
    fast = BackendEvaluator(fast_path=template_test_results).score(tasks, answers)
    slow = BackendEvaluator().score(tasks, answers)
    assert [s.passed for s in fast] == [s.passed for s in slow]
    assert [s.details["backend"] for s in fast[-len(odd):]] == ["interpreter"] * 6 + [slow[0].details["backend"], "interpreter"]
    assert any(0 < s.reward < 1 for s in fast[:24]) and fast[-1].success


def test_synthetic_answers_go_through_the_sandbox_with_its_limits():
    """Answers to synthetic tasks are scored like any other: a runaway or a compiler-crashing answer
    fails its tests within the sandbox's limits and the batch goes on (in-process they took 28.7 s,
    or raised RecursionError out of score())."""
    task = generate_tasks(1, seed=5)[0]
    fn = spec_of(task).function
    squaring = f"def {fn}(a, b):\n    x = a + 3\n" + "    x = x * x\n" * 22 + "    return x\n"
    long_sum = f"def {fn}(a, b):\n    return " + " + ".join(["a"] * 3000) + "\n"
    ev = BackendEvaluator()
    start = time.perf_counter()
    scores = ev.score([task] * 3, [squaring, long_sum, task.ground_truth])
    seconds = time.perf_counter() - start
    assert [s.reward for s in scores[:2]] == [0.0, 0.0] and scores[2].success
    assert {s.details["backend"] for s in scores} == {"bwrap"}
    assert seconds < 60, seconds
