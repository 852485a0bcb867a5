"""The fused log-prob path under sequence parallelism (issue 18 #11): hidden states gathered over TP
give the same log-probs as the full hidden states, and each rank's slice gets its slice of the
gradient (against float64 log-softmax), on two gloo ranks."""

from __future__ import annotations

import torch

from tests.dist import run_distributed

S, H, V = 8, 16, 40


def _case(rank, world_size):
    from sweet_kernels import fused_linear_logprob
    from sweet_kernels.megatron_seam import sequence_parallel_gather

    from sweet_megatron.parallel import ParallelConfig, initialize

    initialize(ParallelConfig(tensor_parallel=2), seed=0)
    from megatron.core import parallel_state as ps

    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(S, 1, H, generator=g, dtype=torch.float64)
    weight = torch.randn(V, H, generator=g, dtype=torch.float64)
    labels = torch.randint(0, V, (S,), generator=g)
    coef = torch.randn(S, generator=g, dtype=torch.float64)
    # float64 reference over the full vocabulary
    ref_h = hidden.clone().requires_grad_(True)
    ref = (ref_h[:, 0] @ weight.T).log_softmax(-1).gather(-1, labels[:, None])[:, 0]
    (ref * coef).sum().backward()
    # sequence parallel: this rank holds S/2 positions and V/2 vocabulary rows
    mine = hidden[rank * S // 2 : (rank + 1) * S // 2].float().clone().requires_grad_(True)
    w_local = weight[rank * V // 2 : (rank + 1) * V // 2].float()
    full = sequence_parallel_gather(mine)
    logp = fused_linear_logprob(full[:, 0], w_local, labels, tp_group=ps.get_tensor_model_parallel_group(),
                                backend="torch")
    (logp * coef.float()).sum().backward()
    want_grad = ref_h.grad[rank * S // 2 : (rank + 1) * S // 2]
    return float((logp.double() - ref.detach()).abs().max()), float((mine.grad.double() - want_grad).abs().max())


def test_sequence_parallel_fused_logprob_matches_float64():
    for fwd, grad in run_distributed(_case, 2):
        assert fwd < 1e-5 and grad < 1e-5, (fwd, grad)
