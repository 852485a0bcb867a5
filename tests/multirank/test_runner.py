"""ModelRunner details that the layout tests do not cover."""

from __future__ import annotations

import torch

from sweet_megatron.model import ModelConfig
from sweet_megatron.parallel import ParallelConfig
from tests.dist import run_distributed
from tests.multirank.layout_cases import rows


def _padded_vocab_logprobs(rank, world_size):
    from sweet_megatron.data.packing import block_causal_mask, collate
    from sweet_megatron.parallel import initialize
    from sweet_megatron.training.runner import ModelRunner

    cfg = ModelConfig(num_layers=2, hidden_size=32, ffn_hidden_size=64, num_attention_heads=4, num_query_groups=2,
                      vocab_size=90, seq_length=64)
    par = ParallelConfig()
    runner = ModelRunner(cfg, par, initialize(par, seed=3), optim=None)
    batch = rows()
    got = torch.stack(runner.token_logprobs(batch))
    mb = collate(batch)
    with torch.no_grad():
        logits = runner.modules()[0](mb["tokens"], mb["position_ids"], block_causal_mask(mb["doc_ids"]))
    assert logits.shape[-1] == 96  # padded to a multiple of 8
    want = logits[..., :90].double().log_softmax(-1).gather(-1, mb["labels"][..., None])[..., 0]
    used = torch.zeros_like(got, dtype=torch.bool)
    for i, r in enumerate(batch):
        used[i, : r.used] = True
    assert (~used).any() and (got[~used] == 0).all()  # a row's padding tail is never computed: 0
    return (got.double() - want)[used].abs().max().item()


def test_padded_vocabulary_rows_are_excluded_from_log_probs():
    """Token log-probs are over the true vocabulary (90), not the padded embedding (96): the rollout
    engines have only the true vocabulary, and trainer and engine must agree."""
    (diff,) = run_distributed(_padded_vocab_logprobs, 1)
    assert diff < 1e-5


def _weights_after_two_steps(rank, world_size, overlap: bool):
    from sweet_megatron.parallel import initialize
    from sweet_megatron.training.runner import ModelRunner, sft_loss
    from tests.multirank.layout_cases import MODEL, OPTIM

    par = ParallelConfig(overlap_grad_reduce=overlap)
    runner = ModelRunner(MODEL, par, initialize(par, seed=7), OPTIM, total_steps=2)
    assert runner.chunks[0].ddp_config.overlap_grad_reduce is overlap
    batch = rows(num_seqs=12, seed=rank)  # each data-parallel rank its own rows
    losses = [runner.train_step(batch, sft_loss, []) for _ in range(2)]
    weights = {k: v.detach().clone() for k, v in runner.modules()[0].state_dict().items() if "_extra_state" not in k}
    return [m["loss_sum"] / m["count"] for m in losses], weights


def test_overlapped_gradient_reduction_gives_the_same_steps():
    """parallel.overlap_grad_reduce (on by default with CUDA) runs megatron's bucketed asynchronous
    reduction during backward: on two data-parallel gloo ranks, two steps with it give the same
    losses and weights as the synchronous reduction, and the ranks agree."""
    plain = run_distributed(_weights_after_two_steps, 2, (False,))
    overlapped = run_distributed(_weights_after_two_steps, 2, (True,))
    for (loss_a, w_a), (loss_b, w_b) in zip(plain, overlapped, strict=True):
        assert loss_a == loss_b
        for k in w_a:
            torch.testing.assert_close(w_b[k], w_a[k], rtol=1e-6, atol=1e-7, msg=k)
    for k in plain[0][1]:  # the two ranks hold the same (reduced) model
        torch.testing.assert_close(overlapped[1][1][k], overlapped[0][1][k], rtol=0, atol=0, msg=k)
    assert plain[0][0][1] != plain[0][0][0]  # the second step saw updated weights
