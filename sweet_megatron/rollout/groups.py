"""Which ranks drive one rollout engine together, and how work is split over engine groups.

A co-located vLLM engine with tensor parallelism T spans T consecutive ranks: vLLM's
`initialize_model_parallel` (vllm/distributed/parallel_state.py) lays the world out as
[..., PP, TP] with TP the fastest-varying dimension, so ranks g*T .. g*T+T-1 form engine group g.
Under `distributed_executor_backend="external_launcher"` every rank of a group must pass the same
prompts and the same sampling seeds (vllm/v1/executor/uniproc_executor.py
`ExecutorWithExternalLauncher`: scheduling is deterministic only then). So rollout work is split
over engine *groups*, not ranks, and each group's result is taken from its first rank.

All functions are pure (no torch.distributed); `episodes._shard_gather` does the gathering.
"""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def engine_groups(world: int, group_size: int) -> int:
    """The number of engine groups of `group_size` consecutive ranks in a world of `world`."""
    if group_size < 1 or world % group_size:
        raise ValueError(f"rollout.vllm_tensor_parallel={group_size} does not divide the world size {world}: "
                         "set it to a divisor of the number of processes")
    return world // group_size


def engine_group(rank: int, world: int, group_size: int) -> int:
    """The engine group of `rank` (ranks g*group_size .. (g+1)*group_size - 1 are group g)."""
    engine_groups(world, group_size)
    return rank // group_size


def group_share(items: list[T], rank: int, world: int, group_size: int) -> list[T]:
    """This rank's share of `items`: round robin over engine groups, identical on every rank of a group."""
    num = engine_groups(world, group_size)
    return items[engine_group(rank, world, group_size) :: num]


def merge_group_shares(parts: list[list[T]], num_items: int, group_size: int) -> list[T]:
    """Reassemble the per-rank results of `group_share` (parts[r] from rank r) in item order.

    Only each group's first rank is read: the other ranks of a group computed the same items."""
    world = len(parts)
    num = engine_groups(world, group_size)
    out: list = [None] * num_items
    for g in range(num):
        part = parts[g * group_size]
        for j, x in enumerate(part):
            out[g + j * num] = x
    if any(x is None for x in out) and num_items:
        missing = [i for i, x in enumerate(out) if x is None]
        raise RuntimeError(f"merge_group_shares: no result for items {missing[:5]} (a group returned too few)")
    return out


def engine_seed(base_seed: int, rank: int, world: int, group_size: int) -> int:
    """The rollout engine's seed on `rank`: one per engine group (equal on the ranks of a group, as the
    external launcher requires; verl seeds its rollout by the inference data-parallel rank likewise)."""
    return base_seed + engine_group(rank, world, group_size)
