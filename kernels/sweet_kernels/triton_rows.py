"""Triton kernels for one chunk of logits: row-wise online softmax statistics and the in-place gradient.

Legend: C rows (tokens of one chunk), V_local columns (this rank's vocab slice).

Each program owns BLOCK_R rows and walks the vocab in BLOCK_V-wide blocks, so a row of any width
is handled with a fixed tile in registers (the design of Liger-Kernel's fused linear cross
entropy, which also overwrites the logits with their gradient):

- `_row_stats_kernel`: online max / sum-exp (rescaling the running sum when the max grows) and
  the logit at the row's target column, all in float32.
- `_row_grad_kernel`: grad * (onehot(target) - exp(logit - lse)), written to `out` (which may
  be the logits buffer itself).

Importing this module imports Triton; whether kernels compile for the GPU or run in Triton's
interpreter is decided by TRITON_INTERPRET at that moment (`triton.jit` reads it when it
decorates), recorded in INTERPRET. `segment_logprob.py` is the only importer.

INTERPRET is read off what `triton.jit` actually returned (an `InterpretedFunction` or not), not
from `triton.knobs`: knobs first appear in Triton 3.4, while 3.2/3.3 (torch 2.6/2.7, vLLM 0.10.x)
read the environment variable directly in `triton/runtime/jit.py` `jit` (issue 18 #5).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor
from triton.runtime.interpreter import InterpretedFunction

# A tile of at most 8192 elements: 32 float32 values per thread at 8 warps on a GPU, and few,
# wide programs under the interpreter (whose cost grows with the number of programs).
_TILE = 8192
_MAX_BLOCK_V = 4096


def _blocks(num_rows: int, num_cols: int) -> tuple[int, int]:
    block_v = min(triton.next_power_of_2(num_cols), _MAX_BLOCK_V)
    block_r = max(1, min(_TILE // block_v, triton.next_power_of_2(num_rows)))
    return block_r, block_v


@triton.jit
def _row_stats_kernel(
    logits_ptr, stride_row, target_ptr, max_ptr, sumexp_ptr, target_logit_ptr, num_rows, num_cols,
    BLOCK_R: tl.constexpr, BLOCK_V: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = rows < num_rows
    # Rows past the end re-read the last row (never stored), so no lane sees an all -inf row.
    safe_rows = tl.minimum(rows, num_rows - 1).to(tl.int64)
    target = tl.load(target_ptr + safe_rows)
    row_max = tl.full([BLOCK_R], float("-inf"), tl.float32)
    row_sumexp = tl.zeros([BLOCK_R], tl.float32)
    target_logit = tl.zeros([BLOCK_R], tl.float32)
    for start in range(0, num_cols, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        col_ok = cols < num_cols
        x = tl.load(
            logits_ptr + safe_rows[:, None] * stride_row + cols[None, :], mask=col_ok[None, :], other=float("-inf")
        ).to(tl.float32)
        new_max = tl.maximum(row_max, tl.max(x, axis=1))
        row_sumexp = row_sumexp * tl.exp(row_max - new_max) + tl.sum(tl.exp(x - new_max[:, None]), axis=1)
        row_max = new_max
        target_logit += tl.sum(tl.where(cols[None, :] == target[:, None], x, 0.0), axis=1)
    tl.store(max_ptr + rows, row_max, mask=row_ok)
    tl.store(sumexp_ptr + rows, row_sumexp, mask=row_ok)
    tl.store(target_logit_ptr + rows, target_logit, mask=row_ok)


@triton.jit
def _row_grad_kernel(
    logits_ptr, stride_row, out_ptr, stride_out_row, target_ptr, lse_ptr, grad_ptr, num_rows, num_cols,
    BLOCK_R: tl.constexpr, BLOCK_V: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = rows < num_rows
    safe_rows = tl.minimum(rows, num_rows - 1).to(tl.int64)
    target = tl.load(target_ptr + safe_rows)
    lse = tl.load(lse_ptr + safe_rows)
    grad = tl.load(grad_ptr + safe_rows)
    for start in range(0, num_cols, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        mask = row_ok[:, None] & (cols < num_cols)[None, :]
        x = tl.load(logits_ptr + safe_rows[:, None] * stride_row + cols[None, :], mask=mask, other=0.0)
        softmax = tl.exp(x.to(tl.float32) - lse[:, None])
        d = grad[:, None] * (tl.where(cols[None, :] == target[:, None], 1.0, 0.0) - softmax)
        tl.store(out_ptr + safe_rows[:, None] * stride_out_row + cols[None, :], d.to(out_ptr.dtype.element_ty), mask=mask)


INTERPRET: bool = isinstance(_row_stats_kernel, InterpretedFunction)


def row_stats(logits_CV: Tensor, target_C: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Triton version of `reference.row_stats_torch` (same arguments and results)."""
    num_rows, num_cols = logits_CV.shape
    assert logits_CV.stride(1) == 1, "logits rows must be contiguous"
    max_C, sumexp_C, target_logit_C = (
        torch.empty(num_rows, dtype=torch.float32, device=logits_CV.device) for _ in range(3)
    )
    if num_rows:
        block_r, block_v = _blocks(num_rows, num_cols)
        _row_stats_kernel[(triton.cdiv(num_rows, block_r),)](
            logits_CV, logits_CV.stride(0), target_C.contiguous(), max_C, sumexp_C, target_logit_C,
            num_rows, num_cols, BLOCK_R=block_r, BLOCK_V=block_v, num_warps=8,
        )
    return max_C, sumexp_C, target_logit_C


def row_grad(logits_CV: Tensor, target_C: Tensor, lse_C: Tensor, grad_C: Tensor, out_CV: Tensor) -> None:
    """Triton version of `reference.row_grad_torch` (same arguments; out_CV may be logits_CV)."""
    num_rows, num_cols = logits_CV.shape
    assert logits_CV.stride(1) == 1 and out_CV.stride(1) == 1, "rows must be contiguous"
    if num_rows:
        block_r, block_v = _blocks(num_rows, num_cols)
        _row_grad_kernel[(triton.cdiv(num_rows, block_r),)](
            logits_CV, logits_CV.stride(0), out_CV, out_CV.stride(0), target_C.contiguous(),
            lse_C.contiguous(), grad_C.contiguous(), num_rows, num_cols,
            BLOCK_R=block_r, BLOCK_V=block_v, num_warps=8,
        )
