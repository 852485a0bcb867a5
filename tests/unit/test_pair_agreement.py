"""The actor-pair diagnostic against the synthetic oracle, on a hand-built state."""

from __future__ import annotations

import pytest

from sweet_megatron.data.chat import Message
from sweet_megatron.env import registry
from sweet_megatron.env.synthetic.family import ANSWER_MARK, QUESTIONS, generate_tasks, spec_of
from sweet_megatron.training.episodes import TurnState, oracle_scores, pair_oracle_agreement

SYN = registry.get("synthetic")


def test_agreement_fractions_by_hand():
    task = next(t for t in generate_tasks(40, seed=3, difficulty=(2, 2)) if "rate" in spec_of(t).hidden)
    state = TurnState(task, [Message("system", task.problem_description)])
    useful = QUESTIONS["rate"]  # reveals a hidden detail: +1
    distractor = "Does the weather matter?"  # -1
    right = f"{ANSWER_MARK}\n{task.ground_truth}"  # +2
    pairs = [(0, useful, distractor), (0, distractor, useful), (0, right, useful), (0, distractor, "Hello?")]
    got = pair_oracle_agreement(SYN, [state], pairs)
    assert got == {"pairs_oracle_agree": 0.5, "pairs_oracle_disagree": 0.25, "pairs_oracle_tie": 0.25}
    assert pair_oracle_agreement(SYN, [state], []) is None


def test_none_for_real_tasks():
    task = generate_tasks(1)[0]
    real = type(task)(task.problem_description, task.ground_truth, task.hidden_information, task.test_cases,
                      "real-0", 0, None)
    assert pair_oracle_agreement(SYN, [TurnState(real, [Message("system", "x")])], [(0, "a?", "b?")]) is None


def test_oracle_scores_rank_candidates_and_give_only_strict_pairs():
    """sweet.actor_scorer=oracle: the oracle's value per candidate, by hand; pairs from them agree with it."""
    from sweet_megatron.algorithms.pairs import turn_pairs

    task = next(t for t in generate_tasks(40, seed=3, difficulty=(2, 2)) if "rate" in spec_of(t).hidden)
    state = TurnState(task, [Message("system", task.problem_description)])
    right = f"{ANSWER_MARK}\n{task.ground_truth}"
    row = [QUESTIONS["rate"], "Does the weather matter?", right, "Hello?", QUESTIONS["rate"], right]
    scores = oracle_scores(SYN, [state], [row])
    assert scores.tolist() == [[1.0, -1.0, 2.0, -1.0, 1.0, 2.0]]
    pairs = turn_pairs(scores, num_pairs=3)
    got = [(row[c], row[r]) for c, r in zip(pairs.chosen_P.tolist(), pairs.rejected_P.tolist(), strict=True)]
    assert got and pair_oracle_agreement(SYN, [state], [(0, c, r) for c, r in got])["pairs_oracle_agree"] == 1.0
    real = type(task)(task.problem_description, task.ground_truth, task.hidden_information, task.test_cases,
                      "real-0", 0, None)
    with pytest.raises(ValueError, match="actor_scorer=oracle: no oracle values the actions of task 'real-0'"):
        oracle_scores(SYN, [TurnState(real, state.messages)], [row])


def test_credit_check_menu_spreads_over_tasks_and_values_match_the_oracle():
    from sweet_megatron.env.bytetok import ByteTokenizer
    from sweet_megatron.env.synthetic.oracle import oracle_action_value
    from sweet_megatron.training.episodes import oracle_candidates

    tasks = generate_tasks(30, seed=5, split="heldout", difficulty=(1, 3))
    args = (SYN, tasks, SYN.rule_simulator(), ByteTokenizer(), 10)
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
    from sweet_megatron.env.synthetic.oracle import depends_on_hidden_code

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


def test_credit_accuracy_by_kind_by_hand():
    import torch

    from sweet_megatron.training.episodes import credit_accuracy

    task = next(t for t in generate_tasks(40, seed=3, difficulty=(2, 2)) if "rate" in spec_of(t).hidden)
    state = TurnState(task, [Message("system", task.problem_description)])
    useful, distractor = QUESTIONS["rate"], "Does the weather matter?"
    right, wrong = f"{ANSWER_MARK}\n{task.ground_truth}", f"{ANSWER_MARK}\nprint(1)"
    actions = [(0, useful), (0, distractor), (0, right), (0, wrong), (1, useful), (1, distractor)]
    oracle = [[1.0, -1.0, 2.0, -1.0], [1.0, -1.0]]
    # State 0 pairs with different values: q-q (useful>distractor) right; a-a (right>wrong) wrong;
    # mixed: right>useful right, useful>wrong wrong, right>distractor right (distractor~wrong tie:
    # not counted). State 1: q-q tied score: 1/2.
    scores = torch.tensor([0.5, 0.1, 0.9, 1.0, 0.3, 0.3])
    got = credit_accuracy(SYN, scores, [state, state], actions, oracle)
    assert got["pairs"] == 6 and got["questions_pairs"] == 2 and got["answers_pairs"] == 1
    assert got["questions_accuracy"] == 0.75 and got["answers_accuracy"] == 0.0
    assert got["mixed_pairs"] == 3 and abs(got["mixed_accuracy"] - 2 / 3) < 1e-12
    assert abs(got["turn_ranking_accuracy"] - 3.5 / 6) < 1e-12


def test_policy_candidates_are_the_actors_own_distinct_actions_valued_by_the_oracle():
    from sweet_megatron.config import RolloutConfig
    from sweet_megatron.env.bytetok import ByteTokenizer
    from sweet_megatron.env.synthetic.oracle import oracle_action_value
    from sweet_megatron.rollout.base import Generation, RolloutEngine
    from sweet_megatron.training.episodes import policy_candidates

    tok = ByteTokenizer()
    texts = [QUESTIONS["rate"], "Does the weather matter?", QUESTIONS["rate"], f"{ANSWER_MARK}\nprint(1)"]

    class CycleEngine(RolloutEngine):
        """Test double: the k-th continuation of every prompt is texts[k % 4]; records each call's n."""

        def __init__(self):
            self.ns = []

        def generate(self, prompts, params):
            self.ns.append(params.n)
            return [[Generation(tok.encode(texts[k % 4]) + [tok.eot_id], [], "stop") for k in range(params.n)]
                    for _ in prompts]

        def score(self, prompts, continuations):
            raise NotImplementedError

        def update_weights(self, named_tensors):
            raise NotImplementedError

    tasks = generate_tasks(12, seed=4, split="heldout", difficulty=(1, 3))
    real = type(tasks[0])(tasks[0].problem_description, tasks[0].ground_truth, tasks[0].hidden_information,
                          tasks[0].test_cases, "real-0", 0, None)
    engine = CycleEngine()
    cfg = RolloutConfig(max_turns=3, max_tokens=64)
    states, actions, values = policy_candidates(SYN, engine, tok, [*tasks, real], SYN.rule_simulator(), cfg,
                                                num_states=10, n=8, seed=0)
    assert len(states) == len(actions) == len(values) == 10
    assert all(s.task.synthetic for s in states)  # the real task has no oracle: left out
    assert engine.ns[-1] == 8 and set(engine.ns[:-1]) == {1}  # episodes first, then 8 candidates a state
    for s, row, vals in zip(states, actions, values, strict=True):
        assert row == texts[:2] + texts[3:]  # each distinct action once, in first-sampled order
        assert vals == [oracle_action_value(s.task, s.messages, a) for a in row]
        assert s.messages[0].role == "system" and len(s.messages) % 2 == 1
