"""Fused segment log-prob on the PyTorch path (this process) against float64 full-logits references.

The same checks run on the Triton path in `test_triton_interpret.py`'s subprocess.
"""

from __future__ import annotations

import pytest
import torch
from sweet_kernels import default_chunk_size, segment_mean, segment_sum_count, select_backend
from sweet_kernels import segment_logprob as sl

from tests.dist import run_distributed
from tests.kernels.checks import (
    check_fused_against_reference,
    check_logits_variant,
    check_segments,
    reference_segments,
)
from tests.kernels.dist_checks import run_checks

# (T, H, V, chunk_size): odd non-power-of-two shapes, chunks that do not divide T, one realistic small shape.
SHAPES = [(47, 31, 123, 10), (47, 31, 123, None), (1, 8, 5, None), (300, 128, 32000, None)]


@pytest.mark.parametrize("num_tokens,hidden_dim,vocab,chunk_size", SHAPES)
def test_fused_fp32(num_tokens, hidden_dim, vocab, chunk_size):
    check_fused_against_reference(num_tokens, hidden_dim, vocab, torch.float32, "torch", chunk_size)


def test_fused_bf16():
    check_fused_against_reference(47, 64, 123, torch.bfloat16, "torch", 10)


@pytest.mark.parametrize("chunk_size", [7, None])
def test_logits_variant(chunk_size):
    check_logits_variant(47, 123, "torch", chunk_size)


@pytest.mark.parametrize("chunk_size", [4, 10, None])
def test_segments(chunk_size):
    check_segments(47, 31, 123, "torch", chunk_size)


def test_segment_sum_count_edge_cases():
    values_T = torch.tensor([1.0, float("inf"), 2.0, float("nan"), 4.0])
    segment_ids_T = torch.tensor([0, -1, 0, -1, 3])
    mean_S, sum_S, count_S = segment_mean(values_T, segment_ids_T, 5)
    assert sum_S.tolist() == [3.0, 0.0, 0.0, 4.0, 0.0]  # inf / nan outside segments never leak in
    assert count_S.tolist() == [2, 0, 0, 1, 0] and count_S.dtype == torch.long
    assert mean_S.tolist() == [1.5, 0.0, 0.0, 4.0, 0.0]
    # all tokens ignored, and zero segments
    none_S, none_count_S = segment_sum_count(values_T, torch.full((5,), -1), 3)
    assert none_S.tolist() == [0.0] * 3 and none_count_S.tolist() == [0] * 3
    assert segment_sum_count(values_T, torch.full((5,), -1), 0)[0].shape == (0,)
    with pytest.raises((IndexError, RuntimeError)):
        segment_sum_count(values_T, segment_ids_T, 2)  # id 3 >= S


def test_segment_sum_matches_python_loop():
    gen = torch.Generator().manual_seed(5)
    values_T = torch.randn(200, generator=gen, dtype=torch.float64)
    segment_ids_T = torch.randint(-1, 9, (200,), generator=gen)
    mean_S, sum_S, count_S = segment_mean(values_T, segment_ids_T, 10)
    loop_mean, loop_sum, loop_count = reference_segments(values_T, segment_ids_T, 10)
    torch.testing.assert_close(sum_S, loop_sum, rtol=1e-5, atol=1e-12)
    torch.testing.assert_close(mean_S, loop_mean, rtol=1e-5, atol=1e-12)
    assert count_S.tolist() == loop_count.tolist()


def test_all_tokens_outside_segments():
    hidden_TH = torch.randn(9, 4, requires_grad=True)
    weight_VH = torch.randn(11, 4, requires_grad=True)
    out = sl.segment_logprob_mean(hidden_TH, weight_VH, torch.zeros(9, dtype=torch.long), torch.full((9,), -1), 3)
    out.mean_S.sum().backward()
    assert out.mean_S.tolist() == [0.0] * 3 and out.count_S.tolist() == [0] * 3
    assert out.token_logp_T.tolist() == [0.0] * 9
    assert (hidden_TH.grad == 0).all() and (weight_VH.grad == 0).all()


def test_default_chunk_size_memory_rule():
    # chunk logits C * V_local stay about the size of the hidden states T * H
    assert default_chunk_size(16384, 4096, 128256) == 512
    assert default_chunk_size(4096, 512, 32000) == 256  # by memory 66, raised to the 256 floor
    assert default_chunk_size(47, 31, 123) == 47
    assert default_chunk_size(5, 4096, 10) == 5
    assert default_chunk_size(0, 31, 123) == 1


def test_backend_selection():
    cpu = torch.device("cpu")
    interpret = sl.triton_rows is not None and sl.triton_rows.INTERPRET
    assert select_backend(cpu, "torch") == "torch"
    assert select_backend(cpu) == ("triton" if interpret else "torch")
    if not interpret:
        with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
            select_backend(cpu, "triton")
    with pytest.raises(ValueError, match="backend"):
        select_backend(cpu, "cuda")


@pytest.mark.dist
@pytest.mark.parametrize("world_size", [2, 4])
def test_tensor_and_context_parallel_gloo(world_size):
    results = run_distributed(run_checks, world_size, args=("torch",))
    assert len(results) == world_size


def test_fused_ignores_autocast():
    """Under bf16 autocast (the model's matmuls in bf16) the kernel still runs at its weight's
    precision: the same log-probs and gradients as outside autocast, from bf16 activations."""
    g = torch.Generator().manual_seed(3)
    hidden = torch.randn(37, 24, generator=g)
    weight = torch.randn(53, 24, generator=g, requires_grad=True)
    labels = torch.randint(0, 53, (37,), generator=g)
    labels[5] = -1
    plain = sl.fused_linear_logprob(hidden.bfloat16().float(), weight, labels, chunk_size=8)
    (grad_plain,) = torch.autograd.grad(plain.sum(), weight)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = sl.fused_linear_logprob(hidden.bfloat16(), weight, labels, chunk_size=8)
        (grad_auto,) = torch.autograd.grad(auto.sum(), weight)
    assert auto.dtype == torch.float32
    torch.testing.assert_close(auto, plain, rtol=0, atol=0)
    torch.testing.assert_close(grad_auto, grad_plain, rtol=0, atol=0)
