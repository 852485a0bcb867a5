"""The actor-pair diagnostic against the synthetic oracle, on a hand-built state."""

from __future__ import annotations

from sweet_megatron.data.chat import Message
from sweet_megatron.env.synthetic import ANSWER_MARK, QUESTIONS, generate_tasks, spec_of
from sweet_megatron.training.episodes import TurnState, pair_oracle_agreement


def test_agreement_fractions_by_hand():
    task = next(t for t in generate_tasks(40, seed=3, difficulty=(2, 2)) if "rate" in spec_of(t).hidden)
    state = TurnState(task, [Message("system", task.problem_description)])
    useful = QUESTIONS["rate"]  # reveals a hidden detail: +1
    distractor = "Does the weather matter?"  # -1
    right = f"{ANSWER_MARK}\n{task.ground_truth}"  # +2
    pairs = [(0, useful, distractor), (0, distractor, useful), (0, right, useful), (0, distractor, "Hello?")]
    got = pair_oracle_agreement([state], pairs)
    assert got == {"pairs_oracle_agree": 0.5, "pairs_oracle_disagree": 0.25, "pairs_oracle_tie": 0.25}
    assert pair_oracle_agreement([state], []) is None


def test_none_for_real_tasks():
    task = generate_tasks(1)[0]
    real = type(task)(task.problem_description, task.ground_truth, task.hidden_information, task.test_cases,
                      "real-0", 0, None)
    assert pair_oracle_agreement([TurnState(real, [Message("system", "x")])], [(0, "a?", "b?")]) is None


def test_credit_check_menu_spreads_over_tasks_and_values_match_the_oracle():
    from sweet_megatron.env.bytetok import ByteTokenizer
    from sweet_megatron.env.simulators import RuleBasedSimulator
    from sweet_megatron.env.synthetic import oracle_action_value
    from sweet_megatron.training.episodes import oracle_candidates

    tasks = generate_tasks(30, seed=5, split="heldout", difficulty=(1, 3))
    args = (tasks, RuleBasedSimulator(), ByteTokenizer(), 10)
    states, cands, values = oracle_candidates(*args, max_states=20)
    assert len(states) == len(cands) == len(values) == 20
    # Drawn over all tasks' turns, not the first few tasks' turns (30 tasks have ~60 turns).
    assert len({s.task.task_id for s in states}) >= 12
    again = oracle_candidates(*args, max_states=20)
    assert [s.messages for s in again[0]] == [s.messages for s in states] and again[2] == values
    for s, menu, vals in zip(states, cands, values):
        assert len(menu) == 11 and vals == [oracle_action_value(s.task, s.messages, c) for c in menu]
        # Once every hidden detail was asked, the answer from what is known is right; a miscopied
        # value never is.
        asked = sum(m.role == "assistant" for m in s.messages)
        assert vals[-2] == 2.0 or asked < spec_of(s.task).difficulty
        assert vals[-1] == -1.0
    everything = oracle_candidates(*args, max_states=10_000)[0]
    assert len(everything) == sum(spec_of(t).difficulty + 1 for t in tasks)


def test_questions_only_the_code_decides():
    from sweet_megatron.env.synthetic import depends_on_hidden_code

    task = next(t for t in generate_tasks(60, seed=2, difficulty=(2, 2)) if "rule" in spec_of(t).hidden)
    start = [Message("system", task.problem_description)]
    for q in (QUESTIONS["threshold"], QUESTIONS["fee"], QUESTIONS["discount"]):
        assert depends_on_hidden_code(task, start, q)
    for q in (QUESTIONS["rate"], QUESTIONS["rule"], "Does the weather matter?", f"{ANSWER_MARK}\n{task.ground_truth}"):
        assert not depends_on_hidden_code(task, start, q)
    told = [*start, Message("assistant", QUESTIONS["rule"]), Message("user", "...")]
    assert not depends_on_hidden_code(task, told, QUESTIONS["fee"])  # the rule is known now
    stated = next(t for t in generate_tasks(60, seed=2, difficulty=(1, 1)) if "rule" not in spec_of(t).hidden)
    assert not depends_on_hidden_code(stated, [Message("system", stated.problem_description)], QUESTIONS["fee"])
