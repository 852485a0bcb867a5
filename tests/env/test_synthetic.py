"""The synthetic tariff family: schema, splits, test coverage of every hidden detail, the simulated
person's replies, the oracle, and the scripted agent's success rates."""

import collections

import pytest

from sweet_megatron.env.colbench_backend.evaluator import ordered_tests
from sweet_megatron.env.colbench_backend.tasks import Task
from sweet_megatron.env.synthetic.family import (
    ANSWER_MARK,
    QUESTIONS,
    ScriptPolicy,
    SyntheticSpec,
    answer_is_correct,
    build_answer,
    generate_tasks,
    miscopied,
    parse_facts,
    parse_question,
    scripted_action,
    spec_of,
    split_of,
    synthetic_reply,
    tariff_code,
    tariff_value,
    wrong_guess_survivors,
)
from sweet_megatron.env.synthetic.oracle import (
    ORACLE_BAD,
    ORACLE_CORRECT_ANSWER,
    ORACLE_USEFUL_QUESTION,
    oracle_action_value,
)

# A hand-built task: rate 3, fee of 10 above 20, cap 500, 1 decimal; rate, rule and amount hidden.
SPEC = SyntheticSpec(
    family="tariff-v1",
    function="shipping_cost",
    params={"rate": 3, "threshold": 20, "rule": "fee", "amount": 10, "cap": 500, "digits": 1},
    hidden=("rate", "rule", "amount"),
    distractors=("weekday", "distance"),
)
CODE = tariff_code(SPEC.skin, SPEC.params)
TASK = Task("Write it. The signature of the function is: def shipping_cost(weight, distance)", CODE, CODE,
            {"test1": "shipping_cost(10.25, 1)", "test2": "shipping_cost(30.5, 2)", "test3": "shipping_cost(400.5, 3)"},
            "hand", 0, SPEC.to_dict())


@pytest.fixture(scope="module")
def tasks():
    return generate_tasks(400, seed=0)


def test_code_matches_the_python_model():
    assert CODE == (
        "def shipping_cost(weight, distance):\n"
        "    cost = weight * 3\n"
        "    if weight > 20:\n"
        "        cost = cost + 10\n"
        "    cost = min(cost, 500)\n"
        "    return round(cost, 1)"
    )
    # by hand: 10.25*3 = 30.75 -> 30.8; 30.5*3+10 = 101.5; 400.5*3+10 = 1211.5 -> capped at 500
    assert [tariff_value(SPEC.params, a) for a in (10.25, 30.5, 400.5)] == [30.8, 101.5, 500]


def test_schema_and_shape(tasks):
    assert len(tasks) == 400
    for task in tasks:
        assert task.problem_description.endswith(f"The signature of the function is: {task.signature}")
        assert task.hidden_information == task.ground_truth
        assert list(task.test_cases) == [f"test{i}" for i in range(1, 11)]
        assert 30 <= len(task.problem_description.split()) <= 100
        assert 3 <= len(task.ground_truth.splitlines()) <= 6
        spec = spec_of(task)
        assert 1 <= spec.difficulty <= 4
        assert spec.difficulty == len(spec.hidden) and set(spec.hidden) <= set(spec.slots)
    assert collections.Counter(spec_of(t).difficulty for t in tasks) == {1: 100, 2: 100, 3: 100, 4: 100}


def test_generated_code_computes_the_model(tasks):
    for task in tasks[:100]:
        spec = spec_of(task)
        namespace: dict = {}
        exec(task.ground_truth, namespace)  # our own generated code
        for _, expr in ordered_tests(task):
            args = eval(expr.replace(spec.function, "", 1))
            assert namespace[spec.function](*args) == tariff_value(spec.params, args[0])


def test_every_wrong_guess_fails_a_test(tasks):
    for task in tasks:
        spec = spec_of(task)
        inputs = [eval(expr.replace(spec.function, "", 1))[0] for _, expr in ordered_tests(task)]
        assert wrong_guess_survivors(spec.params, spec.hidden, inputs) == [], task.task_id


def test_wrong_guess_check_detects_weak_tests():
    # Inputs all below the threshold cannot tell the fee amount: the check must say so.
    weak = wrong_guess_survivors(SPEC.params, ("amount",), [1.5, 2.25, 3.125])
    assert ("amount", 15) in weak and len(weak) == 5


def test_deterministic_and_splits_disjoint():
    a, b = generate_tasks(50, seed=7), generate_tasks(50, seed=7)
    assert [t.to_record() for t in a] == [t.to_record() for t in b]
    assert generate_tasks(5, seed=8)[0].ground_truth != a[0].ground_truth or \
        generate_tasks(5, seed=8)[0].problem_description != a[0].problem_description
    held = generate_tasks(200, seed=7, split="heldout")
    assert {t.ground_truth for t in held}.isdisjoint(t.ground_truth for t in generate_tasks(400, seed=7))
    assert all(split_of(t.ground_truth) == "heldout" for t in held)
    assert held[0].task_id == "syn-heldout-s7-00000"
    with pytest.raises(ValueError, match="split='test'"):
        generate_tasks(1, split="test")
    with pytest.raises(ValueError, match="difficulty"):
        generate_tasks(1, difficulty=(0, 5))


def test_canonical_questions_and_replies():
    # each value comes with the line of the code that holds it, verbatim
    assert synthetic_reply(SPEC, QUESTIONS["rate"]) == "The rate is 3 (cost = weight * 3)."
    assert synthetic_reply(SPEC, QUESTIONS["threshold"]) == "The threshold is 20 (if weight > 20)."
    assert synthetic_reply(SPEC, QUESTIONS["rule"]) == "Above the threshold there is a fee."
    assert synthetic_reply(SPEC, QUESTIONS["fee"]) == "The fee is 10 (cost = cost + 10)."
    assert synthetic_reply(SPEC, QUESTIONS["discount"]) == "There is no discount."
    assert synthetic_reply(SPEC, QUESTIONS["cap"]) == "The maximum is 500 (cost = min(cost, 500))."
    assert synthetic_reply(SPEC, QUESTIONS["digits"]) == "Round to 1 decimals (return round(cost, 1))."
    for line in ("cost = weight * 3", "if weight > 20", "cost = cost + 10", "cost = min(cost, 500)",
                 "return round(cost, 1)"):
        assert line in CODE
    assert synthetic_reply(SPEC, "Does the distance matter?") == "The distance does not matter."


def test_free_form_questions():
    assert parse_question("Could you tell me the cap and how to round it?", SPEC) == ["cap", "digits"]
    assert synthetic_reply(SPEC, "Which applies, a fee or maybe a discount? And the rate?") == \
        "Above the threshold there is a fee. The rate is 3 (cost = weight * 3)."
    # at most two topics, so at most two sentences
    assert synthetic_reply(SPEC, "rate, threshold, maximum and rounding please") == \
        "The rate is 3 (cost = weight * 3). The threshold is 20 (if weight > 20)."
    assert synthetic_reply(SPEC, "Hello there!").startswith("I am not sure")
    none_spec = SyntheticSpec("tariff-v1", "shipping_cost", {**SPEC.params, "rule": "none", "threshold": None,
                                                            "amount": None}, ("rule",), ("threshold",))
    assert synthetic_reply(none_spec, "What is the threshold?") == "There is no threshold."
    assert synthetic_reply(none_spec, QUESTIONS["rule"]) == "There is no fee or discount."


def test_parse_facts_reads_descriptions_and_replies():
    text = "The rate is 3. The threshold is 20. Above the threshold there is a discount. The amount is 15. " \
           "The maximum is 500. Round to 2 decimals."
    assert parse_facts(text) == {"rate": 3, "threshold": 20, "rule": "discount", "amount": 15, "cap": 500, "digits": 2}
    assert parse_facts("There is no fee or discount.") == {"rule": "none"}
    assert parse_facts("The fee is 25.") == {"rule": "fee", "amount": 25}


def test_oracle_action_values():
    system = ("system", TASK.problem_description)
    assert oracle_action_value(TASK, [system], "What is the rate?") == ORACLE_USEFUL_QUESTION
    asked = [system, ("assistant", "What is the rate?"), ("user", "The rate is 3.")]
    assert oracle_action_value(TASK, asked, "What is the rate?") == ORACLE_BAD  # repeat
    assert oracle_action_value(TASK, asked, "What is the threshold?") == ORACLE_BAD  # stated in the description
    assert oracle_action_value(TASK, asked, "Does the weekday matter?") == ORACLE_BAD  # distractor
    assert oracle_action_value(TASK, asked, "What is the discount?") == ORACLE_BAD  # the other branch
    assert oracle_action_value(TASK, asked, "Is there a fee or a discount?") == ORACLE_USEFUL_QUESTION
    assert oracle_action_value(TASK, asked, "What is the fee?") == ORACLE_USEFUL_QUESTION  # reveals rule and amount
    assert oracle_action_value(TASK, asked, "Nice weather today.") == ORACLE_BAD
    assert oracle_action_value(TASK, asked, f"{ANSWER_MARK}\n{CODE}") == ORACLE_CORRECT_ANSWER
    wrong = CODE.replace("+ 10", "+ 15")
    assert oracle_action_value(TASK, asked, f"{ANSWER_MARK}\n{wrong}") == ORACLE_BAD


def test_answer_checker_without_running_code():
    assert answer_is_correct(TASK, f"```python\n{CODE}\n```")
    equivalent = ("def shipping_cost(weight, distance):\n    total = 3 * weight\n    if weight > 20:\n"
                  "        total += 10\n    return round(min(total, 500), 1)")
    assert answer_is_correct(TASK, equivalent)
    assert not answer_is_correct(TASK, CODE.replace("500", "450"))
    assert not answer_is_correct(TASK, "import os\nos.system('true')\n" + CODE)  # outside the subset: not run
    assert not answer_is_correct(TASK, "def shipping_cost(weight, distance):\n    while True:\n        pass")
    assert not answer_is_correct(TASK, "not python at all")


def test_a_miscopied_answer_is_always_wrong(tasks):
    """The credit check's slip: the facts of a complete dialogue with one number moved make code
    that differs and fails the tests, for every task (and for partial facts it still differs)."""
    for task in tasks:
        spec = spec_of(task)
        full = {k: v for k, v in spec.params.items() if v is not None}
        assert answer_is_correct(task, build_answer(spec.skin, full))
        assert not answer_is_correct(task, build_answer(spec.skin, miscopied(full)))
        for partial in ({}, {"rule": spec.params["rule"]}, {"cap": 600}, {"threshold": 24}):
            assert build_answer(spec.skin, miscopied(partial)) != build_answer(spec.skin, partial)


def play(task, policy):
    dialogue = []
    for _ in range(10):
        action = scripted_action(task, dialogue, policy)
        dialogue.append(("assistant", action))
        if ANSWER_MARK in action:
            return answer_is_correct(task, action.split(ANSWER_MARK, 1)[1]), dialogue
        dialogue.append(("user", synthetic_reply(spec_of(task), action)))
    return False, dialogue


def test_scripted_agent_ask_all_always_succeeds(tasks):
    for task in tasks:
        ok, dialogue = play(task, ScriptPolicy())
        assert ok, task.task_id
        questions = [c for r, c in dialogue if r == "assistant"][:-1]
        assert len(questions) <= spec_of(task).difficulty  # asks hidden details only


def test_scripted_agent_asking_nothing_rarely_succeeds(tasks):
    rate = collections.defaultdict(list)
    for task in tasks:
        ok, dialogue = play(task, ScriptPolicy(ask_prob=0.0))
        assert len(dialogue) == 1
        rate[spec_of(task).difficulty].append(ok)
    rate = {k: sum(v) / len(v) for k, v in rate.items()}
    assert rate[1] < 0.25 and rate[2] < 0.1 and rate[3] < 0.02 and rate[4] < 0.02, rate


def test_oracle_prefers_ask_all_actions(tasks):
    # Every action of the ask-all script is +1 (a question) or +2 (the answer); a scripted agent
    # that asks distractors collects -1s.
    for task in tasks[:100]:
        _, dialogue = play(task, ScriptPolicy())
        history = [("system", task.problem_description)]
        for role, content in dialogue:
            if role == "assistant":
                value = oracle_action_value(task, history, content)
                assert value == (ORACLE_CORRECT_ANSWER if ANSWER_MARK in content else ORACLE_USEFUL_QUESTION)
            history.append((role, content))
    noisy = ScriptPolicy(ask_prob=1.0, distractor_prob=1.0)
    _, dialogue = play(tasks[0], noisy)
    history, values = [("system", tasks[0].problem_description)], []
    for role, content in dialogue:
        if role == "assistant":
            values.append(oracle_action_value(tasks[0], history, content))
        history.append((role, content))
    assert values.count(ORACLE_BAD) == len(spec_of(tasks[0]).distractors)


def test_spec_validation():
    with pytest.raises(ValueError, match="hidden"):
        SyntheticSpec.from_dict({**SPEC.to_dict(), "hidden": ["colour"]})
    with pytest.raises(ValueError, match="unknown keys"):
        SyntheticSpec.from_dict({**SPEC.to_dict(), "extra": 1})
    with pytest.raises(ValueError, match="not a synthetic"):
        spec_of(Task("x The signature of the function is: def f()", "def f(): pass", "", {"test1": "f()"}))


def test_base_documents_state_every_detail_and_hold_no_dialogue():
    """A base-model document states each hidden detail in its canonical sentence (so the code follows
    from the text alone), asks nothing, uses training functions only, and is reproducible."""
    from sweet_megatron.env.synthetic.family import base_documents, parse_facts

    docs = base_documents(60, seed=3)
    assert docs == base_documents(60, seed=3) and docs != base_documents(60, seed=4)
    for task, text, code in docs:
        spec = spec_of(task)
        assert code == task.ground_truth and split_of(code) == "train"
        assert "?" not in text and ANSWER_MARK not in text
        facts = parse_facts(text)
        for slot in spec.slots:
            if slot in ("threshold", "amount") and spec.params["rule"] == "none":
                continue
            assert facts.get(slot) == spec.params[slot], (slot, text)
        assert build_answer(spec.skin, facts) == code
    held = base_documents(20, seed=3, split="heldout")
    assert all(split_of(code) == "heldout" for _, _, code in held)
