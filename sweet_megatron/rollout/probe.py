"""Did the weights arrive? Compare the rollout engine's log-probs with the trainer's on a probe batch.

After every weight sync the trainer scores a fixed probe batch (prompts + continuations) with a
megatron forward pass (`megatron_score`) and the engine scores it with its own model
(`RolloutEngine.score`). A layout bug (a wrong QKV grouping, a dropped shard) moves log-probs by
O(1); precision differences (bf16 engine, fused kernels) stay far below the default threshold.

Also here: full-vocabulary megatron logits and greedy decoding through megatron's own forward
(`megatron_logits`, `megatron_greedy`), the trainer-side references the resharding tests compare
the engines against. All run under any TP/PP/VPP layout through megatron's forward-only schedule
and return the same result on every rank.

Shape legend: B batch rows, S sequence length, V true vocabulary.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from sweet_megatron.model import ModelConfig
from sweet_megatron.rollout.base import RolloutEngine

log = logging.getLogger(__name__)


class WeightSyncError(RuntimeError):
    """The engine's log-probs disagree with the trainer's after a weight sync."""


@dataclass
class Probe:
    """A fixed batch of (prompt, continuation) token ids scored after each sync."""

    prompts: list[list[int]]
    continuations: list[list[int]]

    @classmethod
    def random(cls, vocab_size: int, num: int = 4, prompt_len: int = 12, cont_len: int = 8, seed: int = 0) -> Probe:
        g = torch.Generator().manual_seed(seed)
        prompts = torch.randint(0, vocab_size, (num, prompt_len), generator=g).tolist()
        conts = torch.randint(0, vocab_size, (num, cont_len), generator=g).tolist()
        return cls(prompts, conts)


def probe_logprob_gap(engine: RolloutEngine, trainer_logprobs_fn: Callable[[list[list[int]], list[list[int]]],
                      list[list[float]]], probe: Probe) -> float:
    """Max |engine log-prob - trainer log-prob| over every continuation token of the probe."""
    ours = trainer_logprobs_fn(probe.prompts, probe.continuations)
    theirs = engine.score(probe.prompts, probe.continuations)
    gap = 0.0
    for a, b in zip(ours, theirs, strict=True):
        if len(a) != len(b):
            raise WeightSyncError(f"engine returned {len(b)} log-probs for a {len(a)}-token continuation")
        if a:
            gap = max(gap, float((torch.tensor(a, dtype=torch.float64) - torch.tensor(b, dtype=torch.float64)).abs().max()))
    return gap


def check_weight_sync(engine: RolloutEngine, trainer_logprobs_fn, probe: Probe, threshold: float = 0.05) -> float:
    """`probe_logprob_gap`, logged; raises WeightSyncError above `threshold` (nats)."""
    gap = probe_logprob_gap(engine, trainer_logprobs_fn, probe)
    log.info("weight sync probe: max log-prob gap %.3g (threshold %.3g)", gap, threshold)
    if not gap <= threshold:  # also catches NaN
        raise WeightSyncError(
            f"after the weight sync the rollout engine's log-probs differ from the trainer's by up to {gap:.4g} "
            f"nats (threshold {threshold:.3g}): the weights did not arrive intact (a name/layout mismatch in "
            "weights/llama_mapping.py, a missed bucket, or a dtype problem). Raise rollout.sync_check_threshold "
            "only if the gap is a known precision effect"
        )
    return gap


# ---------------------------------------------------------------------------------------------
# trainer side: megatron forward under any layout


def _forward_only(model_chunks: Sequence[torch.nn.Module], tokens_BS: torch.Tensor) -> list[torch.Tensor] | None:
    """This TP rank's logits [1, S, Vp/T] for each of the B rows on the last pipeline stage, None elsewhere.

    One row per microbatch through megatron's forward-only schedule (any TP/PP/VPP layout).
    """
    from megatron.core import parallel_state as ps
    from megatron.core.pipeline_parallel import get_forward_backward_func

    B, S = tokens_BS.shape
    pp = ps.get_pipeline_model_parallel_world_size()
    # Interleaved schedules want at least (and a multiple of) PP microbatches: pad with row 0.
    num_mb = B if pp == 1 else -(-B // pp) * pp
    rows = list(range(B)) + [0] * (num_mb - B)
    position_ids = torch.arange(S, device=tokens_BS.device).unsqueeze(0)

    def batches():
        for r in rows:
            yield tokens_BS[r : r + 1]

    def forward_step(data_iterator, model):
        return model(next(data_iterator), position_ids, attention_mask=None), None

    iters = [batches() for _ in model_chunks]
    with torch.no_grad():
        out = get_forward_backward_func()(
            forward_step_func=forward_step,
            data_iterator=iters if len(model_chunks) > 1 else iters[0],
            model=list(model_chunks),
            num_microbatches=num_mb,
            seq_length=S,
            micro_batch_size=1,
            forward_only=True,
        )
    return out[:B] if ps.is_pipeline_last_stage(ignore_virtual=True) else None


def _from_last_stage(t: torch.Tensor | None, shape: tuple[int, ...], device) -> torch.Tensor:
    """Broadcast a float32 tensor from the last pipeline stage to the whole pipeline group."""
    from megatron.core import parallel_state as ps

    if ps.get_pipeline_model_parallel_world_size() == 1:
        return t
    group = ps.get_pipeline_model_parallel_group()
    if t is None:
        t = torch.empty(shape, dtype=torch.float32, device=device)
    dist.broadcast(t, src=dist.get_process_group_ranks(group)[-1], group=group)
    return t


def megatron_logits(model_chunks: Sequence[torch.nn.Module], tokens_BS: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """Full-vocabulary fp32 logits [B, S, V] of a megatron model, on every rank (for tests and probes)."""
    from megatron.core import parallel_state as ps

    B, S = tokens_BS.shape
    outs = _forward_only(model_chunks, tokens_BS)
    logits = None
    if outs is not None:
        local = torch.cat(outs).float()  # [B, S, Vp/T]
        tp = ps.get_tensor_model_parallel_world_size()
        if tp > 1:
            parts = [torch.empty_like(local) for _ in range(tp)]
            dist.all_gather(parts, local.contiguous(), group=ps.get_tensor_model_parallel_group())
            local = torch.cat(parts, dim=-1)
        logits = local[..., : cfg.vocab_size].contiguous()
    return _from_last_stage(logits, (B, S, cfg.vocab_size), tokens_BS.device)


def padded_length(longest: int, multiple: int = 1) -> int:
    """The probe's row length: `longest` rounded up to a multiple of `multiple`.

    With sequence parallelism megatron scatters the embedding output along the sequence over the
    TP ranks and asserts S % TP == 0 (tensor_parallel/mappings.py `_split_along_first_dim`), so
    probe rows are padded to a multiple of TP there (issue 18 #3)."""
    if longest < 1 or multiple < 1:
        raise ValueError(f"padded_length({longest}, {multiple}): both must be >= 1")
    return -(-longest // multiple) * multiple


def pad_multiple(model_chunks: Sequence[torch.nn.Module]) -> int:
    """What probe rows must be a multiple of for these chunks: TP with sequence parallelism, else 1."""
    from megatron.core import parallel_state as ps

    cfg = getattr(model_chunks[0], "config", None)
    return ps.get_tensor_model_parallel_world_size() if getattr(cfg, "sequence_parallel", False) else 1


def model_device(model_chunks: Sequence[torch.nn.Module]) -> torch.device:
    """The device the chunks' parameters live on (where their input tokens must go; issue 18 #2)."""
    for chunk in model_chunks:
        for p in chunk.parameters():
            return p.device
    return torch.device("cpu")


def _right_pad(seqs: Sequence[Sequence[int]], pad: int = 0, multiple: int = 1) -> torch.Tensor:
    S = padded_length(max(len(s) for s in seqs), multiple)
    return torch.tensor([list(s) + [pad] * (S - len(s)) for s in seqs], dtype=torch.long)


def megatron_score(model_chunks: Sequence[torch.nn.Module], prompts: list[list[int]],
                   continuations: list[list[int]], cfg: ModelConfig, device: torch.device | str | None = None,
                   mask_padded_vocab: bool = True) -> list[list[float]]:
    """Per-token log-probs (temperature 1) of each continuation under the megatron model, on every rank.

    Vocab-parallel: no rank materialises more than its [B, S, Vp/T] logits. With
    `mask_padded_vocab` the padded vocabulary rows (ids >= V, which the engines do not have) get
    -inf logits, so the result is the distribution over the true vocabulary that rollouts sample
    from; without it, megatron's plain cross entropy over all Vp rows. Tokens go to `device`, by
    default the chunks' own; rows are padded to what sequence parallelism needs (`pad_multiple`).
    """
    from megatron.core import parallel_state as ps
    from megatron.core.tensor_parallel import vocab_parallel_cross_entropy

    seqs = [list(p) + list(c) for p, c in zip(prompts, continuations, strict=True)]
    tokens = _right_pad(seqs, multiple=pad_multiple(model_chunks)).to(device or model_device(model_chunks))
    labels = torch.roll(tokens, -1, dims=1)  # label at position i is token i+1 (last one unused)
    B, S = tokens.shape
    outs = _forward_only(model_chunks, tokens)
    logp = None
    if outs is not None:
        logits = torch.cat(outs).float()  # [B, S, Vp/T]
        if mask_padded_vocab:
            width = logits.shape[-1]
            first = ps.get_tensor_model_parallel_rank() * width
            padded = torch.arange(first, first + width, device=logits.device) >= cfg.vocab_size
            logits = logits.masked_fill(padded, float("-inf"))
        logp = -vocab_parallel_cross_entropy(logits, labels)
    logp = _from_last_stage(logp, (B, S), tokens.device).cpu()
    return [logp[i, len(p) - 1 : len(p) - 1 + len(c)].tolist() for i, (p, c) in enumerate(zip(prompts, continuations))]


def megatron_greedy(model_chunks: Sequence[torch.nn.Module], prompts: list[list[int]], max_tokens: int,
                    cfg: ModelConfig, device: torch.device | str | None = None) -> list[list[int]]:
    """Greedy continuations by full recomputation with megatron's forward (no KV cache; tests only)."""
    seqs = [list(p) for p in prompts]
    device = device or model_device(model_chunks)
    for _ in range(max_tokens):
        logits = megatron_logits(model_chunks, _right_pad(seqs, multiple=pad_multiple(model_chunks)).to(device), cfg)
        for i, s in enumerate(seqs):
            s.append(int(logits[i, len(s) - 1].argmax()))
    return [s[len(p) :] for s, p in zip(seqs, prompts)]
