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
