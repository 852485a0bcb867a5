"""Fused segment log-prob: per-token log-probs of the labels, and their per-segment sum / count / mean,
without materializing the [T, V] logits. Tensor-parallel (vocab-sharded output layer) and
context-parallel (sequence split across ranks) aware.

Legend: T tokens (this rank's, after flattening batch x sequence), H hidden dim, V vocab,
V_local = V / tensor-parallel size (the rows of the output-layer weight this rank holds),
C tokens in one chunk, S segments, K tokens that lie inside some segment.

    logp_T[t] = log_softmax(hidden_TH @ W_full^T)[t, labels_T[t]]

The triad, Liger-style:
- kernels: `triton_rows.py` (row-wise online softmax stats + target gather; in-place gradient);
- autograd Functions here (`_FusedLinearLogprob`, `_VocabParallelLogprob`), which loop over token
  chunks: the torch matmul makes one chunk's logits [C, V_local], a row kernel reduces it to three
  float32 [C] numbers (max, sum-exp, target logit), the chunk is freed. Backward recomputes each
  chunk's logits and overwrites them with their gradient; only [T] statistics are saved. The PyTorch
  path (CPU) on float32 chunks the vocabulary rows instead of the tokens, forward
  (`_forward_by_vocab`, an online log-sum-exp over chunks) and backward (`_backward_by_vocab`): each
  matmul keeps all T tokens as rows, every weight row is read once and its gradient written once,
  and one reused buffer holds the chunk;
- functional API: `fused_linear_logprob`, `vocab_parallel_logprob`, `segment_sum_count`,
  `segment_mean`, `segment_logprob_mean`;
- reference: `reference.py` (the naive full-logits path, and the PyTorch row operations that run
  when Triton cannot).

Tensor parallelism (megatron's vocab-parallel cross-entropy math): rank r of `tp_group` holds
vocab rows [r * V_local, (r + 1) * V_local). Local maxima are all-reduced with MAX, the rescaled
sum-exps and the target logits (0 on ranks that do not own the label) with one SUM. `hidden_TH`
must be the same on every rank of the group (no sequence parallelism): backward all-reduces its
gradient, as megatron's ColumnParallelLinear does for its input. With `vocab_size` set, the
columns of global id >= vocab_size (megatron pads the vocab to a multiple of 8 x TP; those ids
never occur) are left out of the softmax, their weight rows never multiplied.

Context parallelism: each rank of `cp_group` holds a piece of the sequence and the matching
segment ids; per-segment partial sums and counts are all-reduced before the mean. The per-segment
results are then identical on every CP rank, and backward hands each rank the gradient of its own
tokens unchanged (the data-parallel gradient reduction over the CP group sums them).

Simplifications on purpose: log-probs are float32 whatever the input dtype; labels < 0 are
ignored (log-prob 0, no gradient); labels are not range-checked.
"""

from __future__ import annotations

import math
import os
from typing import NamedTuple

import torch
import torch.distributed as dist
from torch import Tensor

from sweet_kernels import reference

# The one import check for the Triton path. Whether Triton compiles for the GPU or interprets on the
# CPU was fixed by TRITON_INTERPRET when `triton_rows` (and so @triton.jit) was imported.
MIN_TRITON = (3, 2)


def triton_version_problem(version: str | None) -> str | None:
    """Why this Triton cannot run the kernels (None: it can). `version` is `triton.__version__`,
    None when Triton is not installed."""
    if version is None:
        return "Triton is not installed; install `triton` for the fused kernel"
    try:
        got = tuple(int(p) for p in version.split("+")[0].split(".")[:2])
    except ValueError:
        return f"Triton {version!r}: unrecognised version string"
    if got < MIN_TRITON:
        return f"Triton {version} is older than {'.'.join(map(str, MIN_TRITON))}: upgrade it for the fused kernel"
    return None


def _import_triton_rows():
    try:
        import triton
    except ImportError:
        return None, triton_version_problem(None)
    problem = triton_version_problem(getattr(triton, "__version__", "0"))
    if problem:
        return None, problem
    try:
        from sweet_kernels import triton_rows as mod
    except Exception as exc:  # noqa: BLE001 - any failure falls back to the PyTorch path, with the reason
        return None, f"Triton {triton.__version__} failed to build the kernels ({type(exc).__name__}: {exc})"
    return mod, None


triton_rows, _problem = _import_triton_rows()
if triton_rows is None:
    TRITON_UNAVAILABLE_REASON = f"{_problem}; the PyTorch path runs instead"
else:
    TRITON_UNAVAILABLE_REASON = (
        "Triton kernels need a CUDA tensor, or TRITON_INTERPRET=1 set before Triton is first imported "
        f"(it was {os.environ.get('TRITON_INTERPRET')!r} then)"
    )

Backend = str  # "auto" | "triton" | "torch"


def select_backend(device: torch.device, backend: Backend = "auto") -> str:
    """Pick the row-kernel implementation: "triton" or "torch".

    "auto" gives "triton" when Triton is importable and the data is on a CUDA device or Triton
    runs in its interpreter (TRITON_INTERPRET=1); otherwise "torch" (the same chunked algorithm in
    plain PyTorch). "triton" raises with the reason when it cannot run; "torch" always works.
    """
    if backend not in ("auto", "triton", "torch"):
        raise ValueError(f"backend must be 'auto', 'triton' or 'torch', got {backend!r}")
    if backend == "torch":
        return "torch"
    triton_ok = triton_rows is not None and (device.type == "cuda" or triton_rows.INTERPRET)
    if backend == "triton" and not triton_ok:
        raise RuntimeError(TRITON_UNAVAILABLE_REASON)
    return "triton" if triton_ok else "torch"


def _row_stats(backend: str, logits_CV: Tensor, target_C: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    if logits_CV.shape[1] == 0:  # a tensor-parallel shard made only of vocab padding
        zeros_C = logits_CV.new_zeros(logits_CV.shape[0], dtype=torch.float32)
        return zeros_C - math.inf, zeros_C, zeros_C
    if backend == "triton":
        return triton_rows.row_stats(logits_CV, target_C)
    return reference.row_stats_torch(logits_CV, target_C)


def _row_grad(backend: str, logits_CV: Tensor, target_C: Tensor, lse_C: Tensor, grad_C: Tensor, out_CV: Tensor):
    if logits_CV.shape[1] == 0:
        return
    if backend == "triton":
        triton_rows.row_grad(logits_CV, target_C, lse_C, grad_C, out_CV)
    else:
        reference.row_grad_torch(logits_CV, target_C, lse_C, grad_C, out_CV)


def default_chunk_size(num_tokens: int, hidden_dim: int, vocab_local: int) -> int:
    """Tokens per chunk so that one chunk's logits are about as large as the hidden states.

    Memory math: a chunk holds logits_CV, C * V_local elements in the input dtype (overwritten by
    their gradient in backward), plus on the PyTorch path one float32 temporary of that shape.
    C = ceil(T / ceil(V_local / H)) gives C * V_local ~= T * H, so the extra memory is about the
    size of hidden_TH instead of T * V_local for the full logits. Llama-3-8B (H=4096, V=128256),
    T=16384, TP=1: C=512, a chunk is 512 * 128256 * 2 B = 131 MB in bf16, where the full logits
    are 4.2 GB in bf16 and 8.4 GB once upcast to float32 for the softmax.
    C is at least 256 (or T): each chunk also reads and accumulates the whole [V_local, H] weight
    gradient, which must stay small next to the chunk's C * V_local * H matmul work; 256 tokens of
    a 128256-wide vocab are 66 MB in bf16.
    """
    by_memory = math.ceil(num_tokens / max(1, math.ceil(vocab_local / hidden_dim)))
    return max(1, min(num_tokens, _MIN_CHUNK), by_memory)


_MIN_CHUNK = 256


def _group_size(group) -> int:
    return 1 if group is None else dist.get_world_size(group)


def _local_targets(labels_T: Tensor, vocab_local: int, tp_group) -> Tensor:
    """Global label ids -> column in this rank's vocab slice, or -1 (not here, or ignored)."""
    vocab_start = 0 if tp_group is None else dist.get_rank(tp_group) * vocab_local
    local_T = labels_T.long() - vocab_start
    here_T = (labels_T >= 0) & (local_T >= 0) & (local_T < vocab_local)
    return torch.where(here_T, local_T, -1)


def _num_real_columns(vocab_local: int, tp_group, vocab_size: int | None) -> int:
    """Columns of this rank's slice below the true vocab size (the rest is megatron's padding)."""
    if vocab_size is None:
        return vocab_local
    vocab_start = 0 if tp_group is None else dist.get_rank(tp_group) * vocab_local
    return max(0, min(vocab_local, vocab_size - vocab_start))


def _combine_vocab_parallel(max_T: Tensor, sumexp_T: Tensor, target_logit_T: Tensor, tp_group):
    """Per-rank row stats -> (global log-sum-exp, target logit), both float32 [T]."""
    if _group_size(tp_group) > 1:
        global_max_T = max_T.clone()
        dist.all_reduce(global_max_T, op=dist.ReduceOp.MAX, group=tp_group)
        stats_2T = torch.stack([sumexp_T * torch.exp(max_T - global_max_T), target_logit_T])
        dist.all_reduce(stats_2T, op=dist.ReduceOp.SUM, group=tp_group)
        max_T, (sumexp_T, target_logit_T) = global_max_T, stats_2T
    return max_T + torch.log(sumexp_T), target_logit_T


def _chunks(num_tokens: int, chunk_size: int):
    return (slice(start, min(start + chunk_size, num_tokens)) for start in range(0, num_tokens, chunk_size))


def _cat_stats(stats: list[tuple[Tensor, Tensor, Tensor]], device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Per-chunk (max_C, sumexp_C, target_logit_C) -> the three float32 [T] vectors."""
    if not stats:
        return tuple(torch.empty(0, dtype=torch.float32, device=device) for _ in range(3))
    return tuple(torch.cat(parts) for parts in zip(*stats, strict=True))


def _inplace_path(backend: str, hidden_TH: Tensor, real_VH: Tensor) -> bool:
    """The PyTorch path on float32 data with some tokens and vocab rows: reused buffers, math in place."""
    return backend == "torch" and hidden_TH.dtype == torch.float32 and real_VH.shape[0] > 0 and len(hidden_TH) > 0


def _vocab_chunk(num_tokens: int, num_real: int, chunk_size: int) -> int:
    """Vocabulary rows per chunk on the PyTorch float32 path: a [T, Vc] chunk holds as many elements
    as a [chunk_size, V] token chunk would (the same memory rule as `default_chunk_size`)."""
    return max(1, chunk_size * num_real // max(1, num_tokens))


def _target_logits(hidden_TH: Tensor, real_VH: Tensor, target_T: Tensor) -> Tensor:
    """logits[t, target_T[t]] as a row dot product (0 where target is -1): [T] float32, T * H work
    instead of reading it out of every chunk of logits."""
    rows_TH = real_VH.index_select(0, target_T.clamp(min=0))
    return torch.where(target_T >= 0, (hidden_TH * rows_TH).sum(dim=1), 0.0)


def _forward_by_vocab(hidden_TH: Tensor, real_VH: Tensor, target_T: Tensor, vocab_chunk: int) -> tuple[Tensor, ...]:
    """The PyTorch path's forward on float32 data, in chunks of vocabulary rows (all T tokens each).

    For each chunk of Vc rows: logits_TC = hidden_TH @ W_chunk^T into one reused [T, Vc] buffer, then
    log_softmax of the chunk in place (one fused, vectorized pass per row) gives the chunk's log-sum-exp,
    merged into the running one with logaddexp. Every weight row is read once and each matmul has
    all T tokens as its rows (token chunks of a few hundred rows re-read the whole [V, H] weight per
    chunk: a third slower on a 2-core CPU). Returns (lse_T, ones_T, target_logit_T), float32 [T]: the
    max / sum-exp / target triple of `_combine_vocab_parallel` with max = this rank's log-sum-exp."""
    num_tokens, vocab = hidden_TH.shape[0], real_VH.shape[0]
    flat = hidden_TH.new_empty(num_tokens * min(vocab_chunk, vocab))
    lse_T = hidden_TH.new_full((num_tokens,), -math.inf)
    for vs in _chunks(vocab, vocab_chunk):
        w = vs.stop - vs.start
        logits_TC = torch.mm(hidden_TH, real_VH[vs].t(), out=flat[: num_tokens * w].view(num_tokens, w))
        first_T = logits_TC[:, 0].clone()
        # In place: the row kernel reads a row before it writes it (checked against float64 in the tests).
        logp_TC = torch.log_softmax(logits_TC, dim=1, out=logits_TC)
        lse_T = torch.logaddexp(lse_T, first_T - logp_TC[:, 0])  # lse = logit - logp, at any column
    return lse_T, torch.ones_like(lse_T), _target_logits(hidden_TH, real_VH, target_T)


def _backward_by_vocab(hidden_TH: Tensor, real_VH: Tensor, target_T: Tensor, lse_T: Tensor, grad_T: Tensor,
                       grad_hidden_TH: Tensor | None, grad_weight_VH: Tensor | None, vocab_chunk: int) -> None:
    """The PyTorch path's backward on float32 data, in chunks of vocabulary rows (all T tokens each).

    d(sum_t g_t logp_t)/d logits = diag(g) (onehot(target) - P), P = exp(logits - lse). Per chunk of
    Vc rows: P_TC = exp(hidden_TH @ W_chunk^T - lse) in one reused buffer (the logits recomputed, then
    two in-place passes); acc_TH += P_TC @ W_chunk; grad_weight_VH[chunk] = P_TC^T @ (-g * hidden_TH),
    each weight row written once with the whole T as the inner dimension. The -g scaling rides on
    [T, H] operands and the onehot term is added once at the end (grad_hidden += g * W[target],
    grad_weight[target] += g * hidden), so no per-chunk pass scales or scatters into the [T, Vc]
    chunk. grad_hidden_TH [T, H] and grad_weight_VH [V_real, H] (float32; every row is overwritten, so they may come uninitialised) are written,
    or None."""
    num_tokens, vocab = hidden_TH.shape[0], real_VH.shape[0]
    neg_grad_T1 = -grad_T[:, None]
    scaled_hidden_TH = hidden_TH * neg_grad_T1 if grad_weight_VH is not None else None
    if grad_hidden_TH is not None:
        grad_hidden_TH.zero_()
    flat = hidden_TH.new_empty(num_tokens * min(vocab_chunk, vocab))
    for vs in _chunks(vocab, vocab_chunk):
        width = vs.stop - vs.start
        prob_TC = torch.mm(hidden_TH, real_VH[vs].t(), out=flat[: num_tokens * width].view(num_tokens, width))
        prob_TC.sub_(lse_T[:, None]).exp_()
        if grad_hidden_TH is not None:
            grad_hidden_TH.addmm_(prob_TC, real_VH[vs])
        if grad_weight_VH is not None:
            torch.mm(prob_TC.t(), scaled_hidden_TH, out=grad_weight_VH[vs])
    rows = (target_T >= 0).nonzero().squeeze(1)
    grad_rows_R1 = grad_T[rows, None]
    if grad_hidden_TH is not None:
        grad_hidden_TH.mul_(neg_grad_T1).index_add_(0, rows, real_VH[target_T[rows]] * grad_rows_R1)
    if grad_weight_VH is not None:
        grad_weight_VH.index_add_(0, target_T[rows], hidden_TH[rows] * grad_rows_R1)


class _FusedLinearLogprob(torch.autograd.Function):
    """logp_T from hidden_TH and the vocab-sharded weight_VH, chunk by chunk (see module docstring)."""

    @staticmethod
    def forward(ctx, hidden_TH, weight_VH, labels_T, tp_group, vocab_size, chunk_size, backend):
        with torch.autocast(hidden_TH.device.type, enabled=False):  # the inputs' own precision
            return _FusedLinearLogprob._forward(ctx, hidden_TH, weight_VH, labels_T, tp_group, vocab_size, chunk_size,
                                                backend)

    @staticmethod
    def _forward(ctx, hidden_TH, weight_VH, labels_T, tp_group, vocab_size, chunk_size, backend):
        target_T = _local_targets(labels_T, weight_VH.shape[0], tp_group)
        real_VH = weight_VH[: _num_real_columns(weight_VH.shape[0], tp_group, vocab_size)]
        if _inplace_path(backend, hidden_TH, real_VH):
            max_T, sumexp_T, target_logit_T = _forward_by_vocab(
                hidden_TH, real_VH, target_T, _vocab_chunk(len(target_T), real_VH.shape[0], chunk_size))
        else:  # each chunk's logits live only inside this comprehension step: [C, V_local] -> 3 x [C]
            stats = [_row_stats(backend, hidden_TH[c] @ real_VH.t(), target_T[c])
                     for c in _chunks(len(target_T), chunk_size)]
            max_T, sumexp_T, target_logit_T = _cat_stats(stats, hidden_TH.device)
        lse_T, target_logit_T = _combine_vocab_parallel(max_T, sumexp_T, target_logit_T, tp_group)
        valid_T = labels_T >= 0
        ctx.save_for_backward(hidden_TH, weight_VH, target_T, lse_T, valid_T)
        ctx.tp_group, ctx.vocab_size, ctx.chunk_size, ctx.backend = tp_group, vocab_size, chunk_size, backend
        return torch.where(valid_T, target_logit_T - lse_T, 0.0)

    @staticmethod
    def backward(ctx, grad_logp_T):
        with torch.autocast(grad_logp_T.device.type, enabled=False):
            return _FusedLinearLogprob._backward(ctx, grad_logp_T)

    @staticmethod
    def _backward(ctx, grad_logp_T):
        hidden_TH, weight_VH, target_T, lse_T, valid_T = ctx.saved_tensors
        num_real = _num_real_columns(weight_VH.shape[0], ctx.tp_group, ctx.vocab_size)
        real_VH = weight_VH[:num_real]
        need_hidden, need_weight = ctx.needs_input_grad[:2]
        grad_T = torch.where(valid_T, grad_logp_T.float(), 0.0)
        grad_hidden_TH = torch.empty_like(hidden_TH) if need_hidden else None
        # Weight grads of low-precision weights accumulate over chunks in float32, rounded once at the end.
        inplace = _inplace_path(ctx.backend, hidden_TH, real_VH)
        grad_weight_VH = None
        if need_weight and inplace:  # every real row is written once by _backward_by_vocab; padding rows stay 0
            grad_weight_VH = torch.empty_like(weight_VH, dtype=torch.float32)
            grad_weight_VH[num_real:].zero_()
        elif need_weight:
            grad_weight_VH = torch.zeros_like(weight_VH, dtype=torch.float32)
        if inplace:
            _backward_by_vocab(hidden_TH, real_VH, target_T, lse_T, grad_T, grad_hidden_TH,
                               None if grad_weight_VH is None else grad_weight_VH[:num_real],
                               vocab_chunk=_vocab_chunk(len(target_T), num_real, ctx.chunk_size))
        else:
            for c in _chunks(len(target_T), ctx.chunk_size):
                logits_CV = hidden_TH[c] @ real_VH.t()
                _row_grad(ctx.backend, logits_CV, target_T[c], lse_T[c], grad_T[c], out_CV=logits_CV)
                if need_hidden:
                    torch.mm(logits_CV, real_VH, out=grad_hidden_TH[c])
                if need_weight:  # padding rows keep a zero gradient
                    if logits_CV.dtype == torch.float32:
                        grad_weight_VH[:num_real].addmm_(logits_CV.t(), hidden_TH[c])
                    else:
                        grad_weight_VH[:num_real] += logits_CV.t() @ hidden_TH[c]
        if need_hidden and _group_size(ctx.tp_group) > 1:
            dist.all_reduce(grad_hidden_TH, group=ctx.tp_group)
        if need_weight:
            grad_weight_VH = grad_weight_VH.to(weight_VH.dtype)
        return grad_hidden_TH, grad_weight_VH, None, None, None, None, None


class _VocabParallelLogprob(torch.autograd.Function):
    """logp_T from already computed vocab-parallel logits_TV (see module docstring)."""

    @staticmethod
    def forward(ctx, logits_TV, labels_T, tp_group, vocab_size, chunk_size, backend):
        target_T = _local_targets(labels_T, logits_TV.shape[1], tp_group)
        real_TV = logits_TV[:, : _num_real_columns(logits_TV.shape[1], tp_group, vocab_size)]
        stats = [_row_stats(backend, real_TV[c], target_T[c]) for c in _chunks(len(target_T), chunk_size)]
        max_T, sumexp_T, target_logit_T = _cat_stats(stats, logits_TV.device)
        lse_T, target_logit_T = _combine_vocab_parallel(max_T, sumexp_T, target_logit_T, tp_group)
        valid_T = labels_T >= 0
        ctx.save_for_backward(logits_TV, target_T, lse_T, valid_T)
        ctx.tp_group, ctx.vocab_size, ctx.chunk_size, ctx.backend = tp_group, vocab_size, chunk_size, backend
        return torch.where(valid_T, target_logit_T - lse_T, 0.0)

    @staticmethod
    def backward(ctx, grad_logp_T):
        logits_TV, target_T, lse_T, valid_T = ctx.saved_tensors
        grad_T = torch.where(valid_T, grad_logp_T.float(), 0.0)
        num_real = _num_real_columns(logits_TV.shape[1], ctx.tp_group, ctx.vocab_size)
        grad_logits_TV = torch.zeros_like(logits_TV)  # padding columns keep a zero gradient
        real_TV, grad_real_TV = logits_TV[:, :num_real], grad_logits_TV[:, :num_real]
        for c in _chunks(len(target_T), ctx.chunk_size):
            _row_grad(ctx.backend, real_TV[c], target_T[c], lse_T[c], grad_T[c], out_CV=grad_real_TV[c])
        return grad_logits_TV, None, None, None, None, None


def fused_linear_logprob(
    hidden_TH: Tensor,
    weight_VH: Tensor,
    labels_T: Tensor,
    *,
    tp_group: dist.ProcessGroup | None = None,
    vocab_size: int | None = None,
    chunk_size: int | None = None,
    backend: Backend = "auto",
) -> Tensor:
    """Per-token log-prob of each label under softmax(hidden @ W_full^T), never building [T, V] logits.

    hidden_TH [T, H] (same on every rank of tp_group), weight_VH [V_local, H] (this rank's vocab
    slice of the output layer), labels_T [T] int global token ids (< 0: ignored). tp_group None
    means one rank holding the whole vocab. vocab_size: the true vocabulary size; global ids at or
    above it (megatron's padding rows, which never occur) are left out of the softmax; None keeps
    every row, as megatron's own cross entropy does. chunk_size: tokens per chunk (default
    `default_chunk_size`). Returns logp_T [T] float32 (0 at ignored labels), differentiable
    w.r.t. hidden_TH and weight_VH.
    """
    # Autocast may hand over low-precision activations: the kernel runs at the weight's precision.
    hidden_TH = hidden_TH.to(weight_VH.dtype).contiguous()
    chunk_size = chunk_size or default_chunk_size(hidden_TH.shape[0], hidden_TH.shape[1], weight_VH.shape[0])
    return _FusedLinearLogprob.apply(
        hidden_TH, weight_VH, labels_T, tp_group, vocab_size, chunk_size, select_backend(hidden_TH.device, backend)
    )


def vocab_parallel_logprob(
    logits_TV: Tensor,
    labels_T: Tensor,
    *,
    tp_group: dist.ProcessGroup | None = None,
    vocab_size: int | None = None,
    chunk_size: int | None = None,
    backend: Backend = "auto",
) -> Tensor:
    """Per-token log-prob of each label from already computed vocab-parallel logits.

    logits_TV [T, V_local] (this rank's vocab slice, e.g. megatron's output layer with
    parallel_output=True, flattened from [S, B, V_local]), labels_T [T] global ids (< 0: ignored).
    tp_group, vocab_size as in `fused_linear_logprob`. chunk_size bounds the PyTorch path's float32 temporaries (default: 2**24 elements a chunk).
    Returns logp_T [T] float32, differentiable w.r.t. logits_TV. Prefer `fused_linear_logprob`,
    which never holds the logits.
    """
    logits_TV = logits_TV.contiguous()
    chunk_size = chunk_size or max(1, (1 << 24) // max(1, logits_TV.shape[1]))
    return _VocabParallelLogprob.apply(
        logits_TV, labels_T, tp_group, vocab_size, chunk_size, select_backend(logits_TV.device, backend)
    )


class _AllReduceSum(torch.autograd.Function):
    """Sum over a group in forward; the gradient passes through unchanged (each rank keeps its own)."""

    @staticmethod
    def forward(ctx, x, group):
        x = x.clone()
        dist.all_reduce(x, group=group)
        return x

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def segment_sum_count(
    values_T: Tensor, segment_ids_T: Tensor, num_segments: int, *, cp_group: dist.ProcessGroup | None = None
) -> tuple[Tensor, Tensor]:
    """Per-segment sum of values and token count.

    values_T [T] float; segment_ids_T [T] int in [0, S) or -1 (not in any segment; the value is
    not read into any sum, so it may be anything, even inf). With cp_group, partial results of the
    sequence pieces are summed over the group. Returns sum_S [S] (values' dtype, differentiable)
    and count_S [S] int64.
    """
    # Tokens outside every segment go to an extra bucket S that is dropped: no host sync, any S >= 0.
    bucket_T = torch.where(segment_ids_T >= 0, segment_ids_T.long(), num_segments)
    sum_S = values_T.new_zeros(num_segments + 1).index_add(0, bucket_T, values_T)[:num_segments]
    count_S = torch.zeros(num_segments + 1, dtype=torch.long, device=values_T.device)
    count_S = count_S.index_add_(0, bucket_T, torch.ones_like(bucket_T))[:num_segments]
    if _group_size(cp_group) > 1:
        sum_S = _AllReduceSum.apply(sum_S, cp_group)
        dist.all_reduce(count_S, group=cp_group)
    return sum_S, count_S


def segment_mean(
    values_T: Tensor, segment_ids_T: Tensor, num_segments: int, *, cp_group: dist.ProcessGroup | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-segment mean, sum and count (see `segment_sum_count`); the mean of an empty segment is 0.

    Returns mean_S [S], sum_S [S] (values' dtype), count_S [S] int64.
    """
    sum_S, count_S = segment_sum_count(values_T, segment_ids_T, num_segments, cp_group=cp_group)
    return sum_S / count_S.clamp(min=1), sum_S, count_S


class SegmentLogprob(NamedTuple):
    """Result of `segment_logprob_mean`; unpacks as (mean_S, sum_S, count_S, token_logp_T)."""

    mean_S: Tensor  # [S] float32, mean label log-prob over the segment's tokens (0 if empty)
    sum_S: Tensor  # [S] float32, sum of label log-probs over the segment's tokens
    count_S: Tensor  # [S] int64, tokens in the segment (over all CP ranks)
    token_logp_T: Tensor  # [T] float32, this rank's per-token log-probs (0 where segment id is -1)


def segment_logprob_mean(
    hidden_TH: Tensor,
    weight_VH: Tensor,
    labels_T: Tensor,
    segment_ids_T: Tensor,
    num_segments: int,
    *,
    tp_group: dist.ProcessGroup | None = None,
    cp_group: dist.ProcessGroup | None = None,
    vocab_size: int | None = None,
    chunk_size: int | None = None,
    backend: Backend = "auto",
) -> SegmentLogprob:
    """Per-segment mean / sum / count of label log-probs, straight from hidden states.

    hidden_TH [T, H], weight_VH [V_local, H], labels_T [T] global ids (labels_T[t] is the token
    that position t predicts, i.e. already shifted), segment_ids_T [T] int in [0, S) or -1. Only
    tokens inside a segment are pushed through the output layer (selecting them syncs with the
    host once). tp_group, vocab_size: vocab shards and padding (see `fused_linear_logprob`);
    cp_group: sequence pieces (see `segment_sum_count`). Differentiable w.r.t. hidden_TH and weight_VH.
    """
    index_K = (segment_ids_T >= 0).nonzero().squeeze(1)
    logp_K = fused_linear_logprob(
        hidden_TH.index_select(0, index_K), weight_VH, labels_T.index_select(0, index_K),
        tp_group=tp_group, vocab_size=vocab_size, chunk_size=chunk_size, backend=backend,
    )
    token_logp_T = logp_K.new_zeros(len(segment_ids_T)).index_copy(0, index_K, logp_K)
    mean_S, sum_S, count_S = segment_mean(logp_K, segment_ids_T.index_select(0, index_K), num_segments, cp_group=cp_group)
    return SegmentLogprob(mean_S, sum_S, count_S, token_logp_T)
