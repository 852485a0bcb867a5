"""Stream a megatron model's weights as full Hugging Face Llama tensors, in bounded buckets.

The trainer holds each weight as TP shards (megatron layout: QKV grouped per query group, fc1 =
[gate; up] per shard, vocab rows padded) on the ranks of one pipeline stage (or virtual stage). A
rollout engine wants full HF-named tensors. For each bucket of consecutive weights owned by one
pipeline stage:

1. the owning stage's TP ranks gather each weight's shards over the TP group
   (`[T, *shard_shape]`, one weight at a time) and copy them, re-laid-out by
   `weights.llama_mapping.to_hf_views`, into one flat bucket buffer;
2. the owner broadcasts the flat buffer over the pipeline group;
3. every rank yields `(hf_name, tensor)` views into the buffer.

So **every rank** iterates the same full tensors in the same order (each data-parallel replica
streams from its own copy). All ranks must iterate the stream to the end, in step: the
collectives happen inside the iteration. Yielded tensors are views into one reused bucket
buffer, valid until the next bucket is requested: copy what you keep (engines copy into their own
parameters anyway).

Extra memory at the peak: the bucket buffer plus, on the owning stage, one gathered weight
(`[T, *shard_shape]`, i.e. one full tensor; the vocab-parallel embedding and output layer, the
largest, are broadcast shard by shard straight into the buffer and need none). A bucket holds at
least one weight, so the buffer is max(bucket_bytes, largest tensor). Measured by
`sweet-bench reshard`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from sweet_megatron.model import ModelConfig
from sweet_megatron.weights.llama_mapping import (
    WeightSpec,
    hf_shapes_of,
    parse_mcore_name,
    to_hf_views,
    weight_specs,
)

log = logging.getLogger(__name__)

DEFAULT_BUCKET_BYTES = 512 * 2**20


def unwrap(chunk: torch.nn.Module) -> torch.nn.Module:
    """The GPTModel inside DDP / Float16Module wrappers."""
    while hasattr(chunk, "module"):
        chunk = chunk.module
    return chunk


def local_weights(model_chunks: Sequence[torch.nn.Module]) -> dict[str, tuple[WeightSpec, torch.Tensor]]:
    """This rank's weights by global megatron name: {name: (spec, TP shard)}."""
    out: dict[str, tuple[WeightSpec, torch.Tensor]] = {}
    for chunk in model_chunks:
        model = unwrap(chunk)
        layers = model.decoder.layers if hasattr(model, "decoder") else []
        for name, param in model.named_parameters():
            offset = 0
            if name.startswith("decoder.layers."):
                local = int(name.split(".")[2])
                offset = layers[local].layer_number - 1 - local  # layer_number is global, 1-based
            spec = parse_mcore_name(name, layer_offset=offset)
            out[spec.mcore_name] = (spec, param.detach())
    return out


@dataclass(frozen=True)
class Bucket:
    """Consecutive weights owned by one pipeline rank, streamed as one flat buffer."""

    owner: int
    """Pipeline-group rank that holds these weights."""
    specs: tuple[WeightSpec, ...]
    numel: int
    """Elements of all the HF tensors of the bucket."""


def plan_buckets(owners: dict[str, int], cfg: ModelConfig, bucket_bytes: int, element_size: int) -> list[Bucket]:
    """Group the model's weights, in canonical order, into buckets of at most `bucket_bytes`.

    owners: {global megatron name: pipeline rank holding it}. A bucket never spans two owners and
    holds at least one weight. Raises ValueError if a weight has no owner.
    """
    missing = [s.mcore_name for s in weight_specs(cfg) if s.mcore_name not in owners]
    if missing:
        raise ValueError(f"weights missing from every pipeline stage: {missing[:4]}{'...' if len(missing) > 4 else ''}")
    buckets: list[Bucket] = []
    cur: list[WeightSpec] = []
    cur_numel, cur_owner = 0, -1
    for spec in weight_specs(cfg):
        numel = sum(_numel(s) for s in hf_shapes_of(spec, cfg).values())
        owner = owners[spec.mcore_name]
        if cur and (owner != cur_owner or (cur_numel + numel) * element_size > bucket_bytes):
            buckets.append(Bucket(cur_owner, tuple(cur), cur_numel))
            cur, cur_numel = [], 0
        cur.append(spec)
        cur_numel += numel
        cur_owner = owner
    buckets.append(Bucket(cur_owner, tuple(cur), cur_numel))
    return buckets


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def iter_hf_buckets(
    model_chunks: Sequence[torch.nn.Module],
    cfg: ModelConfig,
    bucket_bytes: int = DEFAULT_BUCKET_BYTES,
    dtype: torch.dtype | None = None,
) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """Yield buckets of full HF-named tensors on every rank (see the module docstring).

    model_chunks: this rank's chunks (one per virtual stage), possibly DDP-wrapped.
    dtype: dtype of the streamed tensors (default: the parameters' dtype), e.g. bf16 for vLLM.
    parallel_state must be initialised; collective over the TP and PP groups.
    """
    from megatron.core import parallel_state as ps

    tp_group, pp_group = ps.get_tensor_model_parallel_group(), ps.get_pipeline_model_parallel_group()
    tp, pp = ps.get_tensor_model_parallel_world_size(), ps.get_pipeline_model_parallel_world_size()
    mine = local_weights(model_chunks)
    if not mine:
        raise ValueError("iter_hf_buckets: the model chunks hold no parameters")
    param_dtype = next(iter(mine.values()))[1].dtype
    device = next(iter(mine.values()))[1].device
    dtype = dtype or param_dtype

    # Who holds what: one small object exchange over the pipeline group.
    if pp > 1:
        names_by_rank: list[list[str]] = [[] for _ in range(pp)]
        dist.all_gather_object(names_by_rank, sorted(mine), group=pp_group)
    else:
        names_by_rank = [sorted(mine)]
    owners = {name: r for r, names in enumerate(names_by_rank) for name in names}
    pp_ranks = dist.get_process_group_ranks(pp_group) if pp > 1 else None
    my_pp_rank = ps.get_pipeline_model_parallel_rank()

    buckets = plan_buckets(owners, cfg, bucket_bytes, torch.empty((), dtype=dtype).element_size())
    # One buffer for every bucket: the consumer is done with bucket k when it asks for bucket k+1
    # (a fresh buffer per bucket would stay referenced by the consumer's loop variable meanwhile).
    buffer = torch.empty(max(b.numel for b in buckets), dtype=dtype, device=device)
    for bucket in buckets:
        flat = buffer[: bucket.numel]
        if bucket.owner == my_pp_rank:
            offset = 0
            for spec in bucket.specs:
                shard = mine[spec.mcore_name][1]
                if spec.kind == "vocab" and tp > 1:
                    offset += _gather_vocab_into(flat[offset:], shard, cfg, tp_group)
                    continue
                gathered = _gather_tp(shard, tp, tp_group) if tp > 1 else shard.unsqueeze(0)
                for _, view in to_hf_views(spec, gathered, cfg):
                    flat[offset : offset + view.numel()].view(view.shape).copy_(view)
                    offset += view.numel()
                del gathered
        if pp > 1:
            dist.broadcast(flat, src=pp_ranks[bucket.owner], group=pp_group)
        out, offset = [], 0
        for spec in bucket.specs:
            for name, shape in hf_shapes_of(spec, cfg).items():
                n = _numel(shape)
                out.append((name, flat[offset : offset + n].view(shape)))
                offset += n
        yield out


def _gather_tp(shard: torch.Tensor, tp: int, group) -> torch.Tensor:
    """All TP shards [T, *shard_shape], by one broadcast per TP rank straight into the output.

    Not `all_gather`: gloo's all_gather stages the whole output in a second buffer (measured: 2x the
    full tensor at the peak), while in-place broadcasts need no staging on gloo or NCCL.
    """
    out = torch.empty((tp, *shard.shape), dtype=shard.dtype, device=shard.device)
    me = dist.get_rank(group)
    ranks = dist.get_process_group_ranks(group)
    out[me].copy_(shard)
    for r in range(tp):
        dist.broadcast(out[r], src=ranks[r], group=group)
    return out


def _gather_vocab_into(dest: torch.Tensor, shard: torch.Tensor, cfg: ModelConfig, group) -> int:
    """Vocab-parallel shards straight into `dest` (no gathered copy); returns elements written.

    The HF tensor is the TP shards concatenated, padding rows (>= V) dropped: `to_hf_views`'s
    vocab case, done shard by shard so the largest tensor (the embedding) needs no [T, ...] buffer.
    """
    rows, hidden = shard.shape
    V = cfg.vocab_size
    me, ranks = dist.get_rank(group), dist.get_process_group_ranks(group)
    for r, src in enumerate(ranks):
        a, b = r * rows, min((r + 1) * rows, V)
        if a >= b:
            continue  # a shard of padding only
        part = dest[a * hidden : b * hidden].view(b - a, hidden)
        if r == me:
            part.copy_(shard[: b - a])
        dist.broadcast(part, src=src, group=group)
    return V * hidden


def stream_hf_weights(
    model_chunks: Sequence[torch.nn.Module],
    cfg: ModelConfig,
    bucket_bytes: int = DEFAULT_BUCKET_BYTES,
    dtype: torch.dtype | None = None,
) -> Iterator[tuple[str, torch.Tensor]]:
    """Full HF-named tensors, one at a time, on every rank: the flattened `iter_hf_buckets`.

    Feed it to `RolloutEngine.update_weights`. Tensors are valid until the next bucket.
    """
    for bucket in iter_hf_buckets(model_chunks, cfg, bucket_bytes, dtype):
        yield from bucket


def sync_weights(engine, model_chunks: Sequence[torch.nn.Module], cfg: ModelConfig,
                 bucket_bytes: int = DEFAULT_BUCKET_BYTES, dtype: torch.dtype | None = None) -> None:
    """Stream the trainer's weights into `engine` (every rank; engine may be None on ranks without one)."""
    stream = stream_hf_weights(model_chunks, cfg, bucket_bytes, dtype)
    if engine is None:
        for _ in stream:  # take part in the collectives
            pass
    else:
        engine.update_weights(stream)
