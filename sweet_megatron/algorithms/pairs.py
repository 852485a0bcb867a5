"""Preference pairs: turn-level (actor DPO) from critic scores, trajectory-level (critic, DPO baseline) from rewards.

Legend: G turn states, M candidate actions per turn state, N trajectories, P pairs.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor


class Pairs(NamedTuple):
    """Pairs as index tensors, in a deterministic order (by group, then draw)."""

    chosen_P: Tensor  # [P] int64
    rejected_P: Tensor  # [P] int64
    group_P: Tensor  # [P] int64: the turn state (turn_pairs) or task id (trajectory_pairs) of each pair


def turn_pairs(scores_GM: Tensor, *, num_pairs: int = 4, generator: torch.Generator | None = None,
               min_margin: float = 0.0) -> Pairs:
    """SWEET-RL's actor pairs: per turn state, one candidate from the top half against one from the bottom.

    scores_GM [G, M] finite critic scores of M candidates for each of G turn states. Per state the
    candidates are sorted (stably, best first); the top M // 2 and the bottom M // 2 are each
    shuffled with `generator` (a CPU torch.Generator; same seed, same pairs) and zipped, and the
    first `num_pairs` zipped pairs whose chosen score is strictly higher are kept (pairs tied
    across the halves are skipped, so a state can yield fewer, or none). No candidate is used twice
    within a state. Returns chosen_P, rejected_P as flat candidate indices g * M + m, and group_P = g.

    min_margin > 0 keeps only pairs whose score gap exceeds min_margin times the state's score
    standard deviation (population, over its M candidates): the critic's near-ties are left out.
    """
    num_states, num_candidates = scores_GM.shape
    half = num_candidates // 2
    scores_GM = scores_GM.detach().cpu()
    order_GM = torch.sort(scores_GM, dim=1, descending=True, stable=True).indices
    top_GH = order_GM[:, :half].gather(1, torch.rand(num_states, half, generator=generator).argsort(dim=1))
    bottom_GH = order_GM[:, num_candidates - half :].gather(
        1, torch.rand(num_states, half, generator=generator).argsort(dim=1)
    )
    gap_GH = scores_GM.gather(1, top_GH) - scores_GM.gather(1, bottom_GH)
    keep_GH = gap_GH > min_margin * scores_GM.std(dim=1, correction=0, keepdim=True)  # min_margin 0: gap > 0
    keep_GH &= keep_GH.cumsum(dim=1) <= num_pairs
    state_P, slot_P = keep_GH.nonzero(as_tuple=True)
    offset_P = state_P * num_candidates
    return Pairs(offset_P + top_GH[state_P, slot_P], offset_P + bottom_GH[state_P, slot_P], state_P)


def trajectory_pairs(
    task_ids_N: Tensor,
    rewards_N: Tensor,
    *,
    strategy: Literal["best_vs_worse", "all_ordered"] = "best_vs_worse",
    min_best_reward: float | None = None,
) -> Pairs:
    """Pairs of trajectories of the same task, chosen with a strictly higher reward.

    task_ids_N [N] int, rewards_N [N] float. strategy "best_vs_worse" (the reference
    implementation): the task's best trajectory (the first, if tied) against each one with a lower
    reward; "all_ordered": every (i, j) with reward_i > reward_j. Tasks whose best reward is below
    `min_best_reward` give no pairs (the reference keeps only tasks with a success, reward >= 1).
    Returns trajectory indices into N; group_P is the task id. Deterministic; tasks in id order.
    """
    if strategy not in ("best_vs_worse", "all_ordered"):
        raise ValueError(f"strategy must be 'best_vs_worse' or 'all_ordered', got {strategy!r}")
    task_ids_N, rewards_N = task_ids_N.cpu().long(), rewards_N.detach().cpu()
    chosen, rejected = [], []
    for task in torch.unique(task_ids_N):
        index = (task_ids_N == task).nonzero().squeeze(1)
        reward = rewards_N[index]
        if min_best_reward is not None and reward.max() < min_best_reward:
            continue
        if strategy == "best_vs_worse":
            worse = index[reward < reward.max()]
            chosen.append(index[reward.argmax()].expand(len(worse)))
            rejected.append(worse)
        else:
            better, worse = (reward[:, None] > reward[None, :]).nonzero(as_tuple=True)
            chosen.append(index[better])
            rejected.append(index[worse])
    chosen_P = torch.cat(chosen) if chosen else torch.zeros(0, dtype=torch.long)
    rejected_P = torch.cat(rejected) if rejected else torch.zeros(0, dtype=torch.long)
    return Pairs(chosen_P, rejected_P, task_ids_N[chosen_P])
