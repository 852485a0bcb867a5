"""The trainer's packed layout (shared-prefix trees, several groups a row, rows laid out again into
unpadded microbatches, attention piece by piece) against the plain computation: each sequence alone
in its own forward with causal attention and full logits. Same log-probs, loss and gradients on one
rank, under TP=2 and DP=2 (each rank lays out its own rows), and with two rows a microbatch."""

from __future__ import annotations

import pytest
import torch

from sweet_megatron.config import OptimConfig
from sweet_megatron.data.packing import group_length, pack_groups
from sweet_megatron.model import ModelConfig
from sweet_megatron.parallel import ParallelConfig
from tests.dist import run_distributed
from tests.multirank.test_shared_prefix import groups, label_logps

MODEL = ModelConfig(num_layers=2, hidden_size=64, ffn_hidden_size=128, num_attention_heads=4, num_query_groups=2,
                    vocab_size=96, seq_length=160)
OPTIM = OptimConfig(optimizer="adam", lr=1e-3, min_lr=1e-3, warmup_steps=0, decay_style="constant", clip_grad=0.0)


def _alone(runner, flat) -> tuple[dict, float, dict]:
    """Each sequence in its own forward (plain causal attention, full vocab-parallel logits): label
    log-probs per (sequence, turn), the token-mean NLL over action tokens and its gradients."""
    from megatron.core import tensor_parallel

    (model,) = runner.chunks
    model.train()
    model.zero_grad_buffer()
    total = sum(sum(1 for t in s.turn_of_token[1:] if t >= 0) for s in flat)
    logps, loss = {}, 0.0
    for i, s in enumerate(flat):
        tokens = torch.tensor(s.ids)[None]
        logits = model(tokens, torch.arange(len(s.ids))[None], None)
        logp = -tensor_parallel.vocab_parallel_cross_entropy(logits.float(), torch.tensor(s.ids[1:] + [0])[None])[0]
        mask = torch.tensor([float(t >= 0) for t in s.turn_of_token[1:]] + [0.0])
        nll = -(logp * mask).sum()
        (nll / total).backward()
        loss += float(nll) / total
        for pos, turn in enumerate(s.turn_of_token[1:]):
            if turn >= 0:
                logps.setdefault((i, turn), []).append(float(logp[pos]))
    grads = {n: p.main_grad.clone() for n, p in model.module.named_parameters()}
    return logps, loss, grads


def _worker(rank, world_size, layout: dict):
    from sweet_megatron.parallel import initialize
    from sweet_megatron.training.runner import ModelRunner, sft_loss

    par = ParallelConfig(**layout)
    platform = initialize(par, seed=3)
    runner = ModelRunner(MODEL, par, platform, OPTIM, total_steps=1)
    # rows as short as the longest group (several groups in some): the runner lays them out again, several
    # to a microbatch of up to model.seq_length tokens
    gs = groups(1)
    rows, flat = pack_groups(gs, max(group_length(g, True) for g in gs), pad_id=0, share_prefix=True)
    packed = {"rows": len(rows), "merges": runner.merges_rows,
              "microbatches": len(runner._microbatches(runner._shard(rows)[0])),
              "logps": label_logps(rows, runner.token_logprobs(rows))}
    for c in runner.chunks:
        c.zero_grad_buffer()
    m = runner._reduce_metrics(runner._run(runner._microbatches(runner._shard(rows)[0]), sft_loss, False),
                               ["loss_sum", "count"])
    packed["loss"] = m["loss_sum"] / m["count"]
    (model,) = runner.chunks
    packed["grads"] = {n: p.main_grad.clone() for n, p in model.module.named_parameters()}
    # the whole batch on every rank, its gradients unreduced: what the packed step's reduced gradients are
    alone = dict(zip(("logps", "loss", "grads"), _alone(runner, flat), strict=True))
    return packed, alone


@pytest.mark.parametrize("layout,world", [({}, 1), ({"micro_batch_size": 2}, 1), ({"tensor_parallel": 2}, 2),
                                          ({"use_distributed_optimizer": False}, 2)],  # all-reduced, not sharded, grads
                         ids=["single", "mbs2", "tp2", "dp2"])
def test_packed_layout_equals_each_sequence_alone(layout, world):
    results = run_distributed(_worker, world, args=(layout,))
    for packed, alone in results:
        assert packed["merges"] and packed["rows"] >= 4 and packed["microbatches"] < packed["rows"] / world
        assert packed["logps"].keys() == alone["logps"].keys()
        for key, want in alone["logps"].items():
            torch.testing.assert_close(torch.tensor(packed["logps"][key]), torch.tensor(want), atol=2e-5, rtol=0)
        assert packed["loss"] == pytest.approx(alone["loss"], rel=1e-5)
        for k, want in alone["grads"].items():
            torch.testing.assert_close(packed["grads"][k], want, atol=1e-6, rtol=1e-4, msg=k)
