"""Pair construction (turn and trajectory level) and pairwise ranking accuracy."""

from __future__ import annotations

import itertools

import pytest
import torch

from sweet_megatron.algorithms import pairwise_ranking_accuracy, trajectory_pairs, turn_pairs


def test_turn_pairs_top_half_vs_bottom_half():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(5, 16, generator=gen)
    pairs = turn_pairs(scores, num_pairs=4, generator=torch.Generator().manual_seed(7))
    assert len(pairs.chosen_P) == 5 * 4
    flat = scores.reshape(-1)
    for c, r, g in zip(pairs.chosen_P.tolist(), pairs.rejected_P.tolist(), pairs.group_P.tolist()):
        assert c // 16 == g and r // 16 == g
        rank = scores[g].argsort(descending=True).tolist()
        assert rank.index(c % 16) < 8 <= rank.index(r % 16)  # top half vs bottom half
        assert flat[c] > flat[r]
    for g in range(5):  # no candidate twice within a state
        used = [i for i, gg in zip(pairs.chosen_P.tolist() + pairs.rejected_P.tolist(), pairs.group_P.tolist() * 2) if gg == g]
        assert len(used) == len(set(used)) == 8


def test_turn_pairs_deterministic_given_seed():
    scores = torch.randn(3, 16, generator=torch.Generator().manual_seed(1))
    a = turn_pairs(scores, generator=torch.Generator().manual_seed(5))
    b = turn_pairs(scores, generator=torch.Generator().manual_seed(5))
    c = turn_pairs(scores, generator=torch.Generator().manual_seed(6))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a.chosen_P, c.chosen_P) or not torch.equal(a.rejected_P, c.rejected_P)


def test_turn_pairs_min_margin_by_hand():
    # one state, 4 candidates: scores 3, 2.9, 0, -0.1 -> std (population) = 1.476...; halves {3, 2.9} vs {0, -0.1}
    scores = torch.tensor([[3.0, 2.9, 0.0, -0.1]])
    std = scores.std(correction=0).item()
    kept = turn_pairs(scores, num_pairs=2, generator=torch.Generator().manual_seed(0), min_margin=1.0)
    assert len(kept.chosen_P) == 2  # every cross-half gap (>= 2.9) exceeds 1 std
    none = turn_pairs(scores, num_pairs=2, generator=torch.Generator().manual_seed(0), min_margin=3.1 / std)
    assert len(none.chosen_P) == 0  # no gap exceeds 3.1
    gaps = (scores[0, kept.chosen_P] - scores[0, kept.rejected_P]).tolist()
    some = turn_pairs(scores, num_pairs=2, generator=torch.Generator().manual_seed(0), min_margin=2.95 / std)
    assert len(some.chosen_P) == sum(g > 2.95 for g in gaps)


def test_turn_pairs_ties_skipped():
    scores = torch.tensor([
        [1.0, 1.0, 1.0, 1.0],  # all tied: no pair
        [3.0, 2.0, 2.0, 0.0],  # top {3, 2}, bottom {2, 0}: the 2-vs-2 draw is skipped
        [4.0, 3.0, 2.0, 1.0],  # no ties: two pairs
    ])
    counts = []
    for seed in range(20):
        pairs = turn_pairs(scores, num_pairs=4, generator=torch.Generator().manual_seed(seed))
        flat = scores.reshape(-1)
        assert (flat[pairs.chosen_P] > flat[pairs.rejected_P]).all()
        counts.append([int((pairs.group_P == g).sum()) for g in range(3)])
    assert all(c[0] == 0 and c[2] == 2 for c in counts)
    assert {c[1] for c in counts} == {1, 2}  # depends on the draw: (3 vs 2, 2 vs 0) or (3 vs 0, 2 vs 2)
    assert len(turn_pairs(scores, num_pairs=1).chosen_P) == 2  # at most num_pairs per state


def test_trajectory_pairs():
    task = torch.tensor([0, 0, 0, 1, 1, 2, 2, 0])
    reward = torch.tensor([0.5, 1.0, 0.0, 0.3, 0.3, 1.0, 0.0, 1.0])
    best = trajectory_pairs(task, reward)
    # task 0: best is index 1 (first of the tied 1.0s) vs 0 and 2, not vs 7 (equal); task 1 tied; task 2: 5 vs 6
    assert list(zip(best.chosen_P.tolist(), best.rejected_P.tolist())) == [(1, 0), (1, 2), (5, 6)]
    assert best.group_P.tolist() == [0, 0, 2]
    every = trajectory_pairs(task, reward, strategy="all_ordered")
    expected = {
        (i, j) for i, j in itertools.permutations(range(8), 2) if task[i] == task[j] and reward[i] > reward[j]
    }
    assert set(zip(every.chosen_P.tolist(), every.rejected_P.tolist())) == expected
    assert len(every.chosen_P) == len(expected)
    only_success = trajectory_pairs(task, torch.tensor([0.5, 0.9, 0.0, 0.3, 0.1, 1.0, 0.0, 0.2]), min_best_reward=1.0)
    assert only_success.chosen_P.tolist() == [5] and only_success.rejected_P.tolist() == [6]
    with pytest.raises(ValueError, match="strategy"):
        trajectory_pairs(task, reward, strategy="random")


def loop_ranking_accuracy(pred, oracle, group):
    agree = total = 0.0
    for i in range(len(pred)):
        for j in range(i + 1, len(pred)):
            if group[i] != group[j] or oracle[i] == oracle[j]:
                continue
            total += 1
            if pred[i] == pred[j]:
                agree += 0.5
            elif (pred[i] > pred[j]) == (oracle[i] > oracle[j]):
                agree += 1
    return agree / total, int(total)


def test_ranking_accuracy_by_hand():
    acc, n = pairwise_ranking_accuracy(torch.tensor([3.0, 2.0, 1.0]), torch.tensor([1.0, 0.0, 0.0]))
    assert n == 2 and acc.item() == 1.0  # the (0.0, 0.0) oracle tie is not counted
    acc, n = pairwise_ranking_accuracy(torch.tensor([1.0, 2.0, 2.0]), torch.tensor([0.0, 1.0, 2.0]))
    assert n == 3 and acc.item() == pytest.approx(2.5 / 3)  # a predicted tie counts 1/2
    acc, n = pairwise_ranking_accuracy(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 1.0]))
    assert n == 0 and torch.isnan(acc)


def test_ranking_accuracy_matches_python_loop():
    gen = torch.Generator().manual_seed(3)
    pred = torch.randint(0, 5, (60,), generator=gen).float()
    oracle = torch.randint(0, 3, (60,), generator=gen).float()
    group = torch.randint(0, 6, (60,), generator=gen)
    acc, n = pairwise_ranking_accuracy(pred, oracle, group)
    loop_acc, loop_n = loop_ranking_accuracy(pred.tolist(), oracle.tolist(), group.tolist())
    assert n == loop_n and acc.item() == pytest.approx(loop_acc, rel=1e-5)


def test_distinct_actions_score_copies_once_and_never_pair_them():
    """Repeated candidates share one score slot, so the strict top-vs-bottom pairing never trains an
    action against a copy of itself, even when separate scoring would differ in the last bit."""
    from sweet_megatron.training.episodes import distinct_actions

    cands = [["ask rate", "ask rate", "answer", "ask rate"], ["a", "b", "c", "d"], ["x", "x", "x", "x"]]
    distinct, slot_GM = distinct_actions(cands)
    assert distinct == [(0, "ask rate"), (0, "answer"), (1, "a"), (1, "b"), (1, "c"), (1, "d"), (2, "x")]
    assert slot_GM.tolist() == [[0, 0, 1, 0], [2, 3, 4, 5], [6, 6, 6, 6]]
    # the same text in another state is another action (its own slot)
    assert distinct_actions([["q"], ["q"]])[1].tolist() == [[0], [1]]
    # scores of the distinct actions gathered back: copies are exact ties, never paired
    scores_GM = torch.tensor([0.3, -0.2, 1.0, 0.5, -1.0, 0.1, 0.7])[slot_GM]
    pairs = turn_pairs(scores_GM, num_pairs=2, generator=torch.Generator().manual_seed(0))
    flat = [c for row in cands for c in row]
    for c, r in zip(pairs.chosen_P.tolist(), pairs.rejected_P.tolist(), strict=True):
        assert flat[c] != flat[r]
    assert 2 not in pairs.group_P.tolist()  # four copies of one action: nothing to prefer
    assert pairs.group_P.tolist().count(0) == 1  # "ask rate" vs "answer" once; the copies tie


def test_trajectory_pair_groups_follow_the_strategy_and_show_the_reference():
    from sweet_megatron.env.bytetok import ByteTokenizer
    from sweet_megatron.env.episode import Episode, Turn
    from sweet_megatron.env.synthetic.family import generate_tasks
    from sweet_megatron.training.episodes import trajectory_pair_groups

    (task,) = generate_tasks(1, seed=3)
    tok = ByteTokenizer()
    episodes = []
    for i, reward in enumerate((0.5, 1.0, 0.0)):  # episode i asks question number i
        e = Episode(0, task.task_id, "You help.", reward=reward)
        e.turns.append(Turn([], [], [], action_text=f"Question number {i}?", simulator_reply="No idea."))
        episodes.append(e)
    tasks = {task.task_id: task}

    def which(seq) -> int:
        return next(i for i in range(3) if f"Question number {i}?" in tok.decode(seq.ids))

    best, _ = trajectory_pair_groups(tok, episodes, tasks, with_reference=True)
    every, _ = trajectory_pair_groups(tok, episodes, tasks, with_reference=False, strategy="all_ordered")
    assert sorted((which(c), which(r)) for c, r in best) == [(1, 0), (1, 2)]
    assert sorted((which(c), which(r)) for c, r in every) == [(0, 2), (1, 0), (1, 2)]
    assert all(c.extra["chosen"] and not r.extra["chosen"] for c, r in best + every)
    ref = task.hidden_information[:40]
    assert ref in tok.decode(best[0][0].ids) and ref not in tok.decode(every[0][0].ids)
