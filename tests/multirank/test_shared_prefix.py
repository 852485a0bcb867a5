"""Shared-prefix rows (data/packing.py) compute what flat rows compute: the same log-prob of every
labelled token of every sequence, and the same gradients, on one rank and under TP=2 and PP=2."""

from __future__ import annotations

import random

import pytest
import torch

from sweet_megatron.config import OptimConfig
from sweet_megatron.data.packing import Sequence, count_rows, pack_groups
from sweet_megatron.model import ModelConfig
from sweet_megatron.parallel import ParallelConfig
from tests.dist import run_distributed

MODEL = ModelConfig(num_layers=2, hidden_size=64, ffn_hidden_size=128, num_attention_heads=4, num_query_groups=2,
                    vocab_size=96, seq_length=160)
OPTIM = OptimConfig(optimizer="adam", lr=1.0, min_lr=1.0, adam_eps=1.0, warmup_steps=0, decay_style="constant",
                    clip_grad=0.0)


def groups(seed: int = 0) -> list[list[Sequence]]:
    """Turn states with 2-4 candidate actions each (odd lengths, one candidate repeated, one group of
    one), and a 'trajectory pair' whose common part ends inside the first action."""
    rng = random.Random(seed)
    out = []
    for size in (3, 1, 4, 2):
        state = [rng.randrange(90) for _ in range(rng.randint(12, 37))]
        cands = [[rng.randrange(90) for _ in range(rng.randint(1, 9))] for _ in range(size)]
        if size == 4:
            cands[3] = cands[1]
        out.append([Sequence(state + c, [-1] * len(state) + [0] * len(c)) for c in cands])
    head = [rng.randrange(90) for _ in range(20)]
    a = head + [5, 6, 7, 8, 9, 1, 2]
    b = head + [5, 6, 70, 80, 1, 2, 3, 4]
    turns = lambda ids: [-1] * 20 + [0] * 5 + [-1] + [1] * (len(ids) - 26)  # noqa: E731
    out.append([Sequence(a, turns(a)), Sequence(b, turns(b))])
    return out


def label_logps(rows, logps) -> dict[tuple[int, int], list[float]]:
    """(sequence, turn) -> the log-probs of its labelled tokens, in order."""
    out: dict[tuple[int, int], list[float]] = {}
    for row, lp in zip(rows, logps, strict=True):
        for pos in (row.segment_ids >= 0).nonzero().flatten().tolist():
            out.setdefault(row.segments[int(row.segment_ids[pos])], []).append(float(lp[pos]))
    return out


def _worker(rank, world_size, layout: dict):
    from sweet_megatron.parallel import initialize
    from sweet_megatron.training.runner import ModelRunner, sft_loss

    par = ParallelConfig(**layout)
    platform = initialize(par, seed=7)
    out, start = {}, None
    for share in (False, True):
        runner = ModelRunner(MODEL, par, platform, OPTIM, total_steps=1)
        if start is None:
            start = [{k: v.clone() for k, v in c.state_dict().items() if isinstance(v, torch.Tensor)}
                     for c in runner.modules()]
        else:  # the same initial weights for both layouts
            for c, sd in zip(runner.modules(), start, strict=True):
                c.load_state_dict(sd, strict=False)
            runner.optimizer.reload_model_params()
        rows, _ = pack_groups(groups(), MODEL.seq_length, pad_id=0, share_prefix=share)
        logps = label_logps(rows, runner.token_logprobs(rows))
        metrics = runner.train_step(rows, sft_loss, [])
        weights = {k: v.detach().clone() for c in runner.modules() for k, v in c.state_dict().items()
                   if isinstance(v, torch.Tensor) and "_extra_state" not in k}
        out[share] = {"rows": len(rows), "logps": logps, "loss": metrics["loss_sum"], "weights": weights}
    return out


def test_shared_prefix_layout_saves_tokens_and_keeps_labels():
    flat, _ = pack_groups(groups(), MODEL.seq_length, pad_id=0)
    tree, _ = pack_groups(groups(), MODEL.seq_length, pad_id=0, share_prefix=True)
    real = lambda rows: sum(int((r.doc_ids < r.doc_ids.max()).sum()) for r in rows)  # noqa: E731
    assert real(tree) < real(flat)
    assert count_rows(groups(), MODEL.seq_length, share_prefix=True) == len(tree)
    # every segment keeps its labels, in order
    def labels(rows):
        out = {}
        for r in rows:
            for p in (r.segment_ids >= 0).nonzero().flatten().tolist():
                out.setdefault(r.segments[int(r.segment_ids[p])], []).append(int(r.labels[p]))
        return out

    assert labels(tree) == labels(flat)
    # the pair shares its 20-token head and the first two action tokens' context, not the action
    pair = groups()[-1]
    from sweet_megatron.data.packing import shared_prefix_length

    assert shared_prefix_length(pair) == 19
    assert shared_prefix_length(groups()[1]) == 0


@pytest.mark.parametrize("layout,world", [({}, 1), ({"tensor_parallel": 2}, 2), ({"pipeline_parallel": 2}, 2)],
                         ids=["single", "tp2", "pp2"])
def test_shared_prefix_rows_match_flat_rows(layout, world):
    results = run_distributed(_worker, world, args=(layout,))
    for res in results:
        flat, tree = res[False], res[True]
        assert tree["rows"] <= flat["rows"]
        assert flat["logps"].keys() == tree["logps"].keys()
        for key, want in flat["logps"].items():
            torch.testing.assert_close(torch.tensor(tree["logps"][key]), torch.tensor(want), atol=2e-5, rtol=0)
        assert tree["loss"] == pytest.approx(flat["loss"], rel=1e-5)
        for k, w in flat["weights"].items():
            torch.testing.assert_close(tree["weights"][k], w, atol=2e-5, rtol=1e-4, msg=k)
