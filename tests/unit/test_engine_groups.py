"""Rollout work over vLLM tensor-parallel groups (issue 18 #6, #12): the ranks of one engine group
get identical prompts and seeds, every item is done by exactly one group, results come back in order."""

from __future__ import annotations

import pytest

from sweet_megatron.rollout.groups import engine_group, engine_seed, group_share, merge_group_shares
from tests.dist import run_distributed


@pytest.mark.parametrize(("world", "tp"), [(1, 1), (4, 1), (4, 2), (4, 4), (8, 2), (8, 8), (16, 4)])
def test_groups_share_prompts_and_seeds_and_cover_everything(world, tp):
    items = list(range(11))
    shares = [group_share(items, r, world, tp) for r in range(world)]
    for r in range(world):
        lead = (r // tp) * tp  # vLLM: TP is the fastest-varying rank dimension
        assert shares[r] == shares[lead]
        assert engine_seed(5, r, world, tp) == engine_seed(5, lead, world, tp) == 5 + r // tp
        assert engine_group(r, world, tp) == r // tp
    leaders = [shares[g * tp] for g in range(world // tp)]
    assert sorted(x for s in leaders for x in s) == items  # each item in exactly one group
    # results: each rank returns f(item) for its share; the merge restores item order
    parts = [[x * 10 for x in s] for s in shares]
    assert merge_group_shares(parts, len(items), tp) == [x * 10 for x in items]


def test_seeds_differ_between_groups():
    assert len({engine_seed(0, r, 8, 2) for r in range(8)}) == 4


def test_a_tp_that_does_not_divide_the_world_is_refused():
    with pytest.raises(ValueError, match="rollout.vllm_tensor_parallel=3 does not divide the world size 4"):
        group_share([1, 2], 0, 4, 3)


def test_a_short_result_is_an_error():
    with pytest.raises(RuntimeError, match="no result for items"):
        merge_group_shares([[1], [1]], 3, 2)


def _gather(rank, world_size, group_size):
    import torch.distributed as dist

    from sweet_megatron.training.episodes import _shard_gather

    dist.init_process_group("gloo")
    seen = []

    def fn(shard):
        seen.extend(shard)
        return [f"done {x} by group {rank // group_size}" for x in shard]

    return seen, _shard_gather(list(range(7)), fn, group_size)


def test_shard_gather_gives_a_tp_group_the_same_prompts_on_gloo():
    results = run_distributed(_gather, 4, args=(2,))
    assert results[0][0] == results[1][0] and results[2][0] == results[3][0]
    assert sorted(results[0][0] + results[2][0]) == list(range(7))
    for _, out in results:
        assert out == [f"done {x} by group {x % 2}" for x in range(7)]
