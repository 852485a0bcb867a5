"""Megatron layouts -> streamed HF weights -> local engine: same logits, same greedy tokens.

Real multi-process gloo (tests/dist.py). Every layout loads the same reference weights (a random
transformers Llama, sharded into megatron's layout), streams them in small buckets (several per
stage) into a `LocalEngine` on every rank, and checks that (1) the engine holds exactly the
reference tensors, (2) its logits equal megatron's own forward under that layout (the independent
check of the layout mapping: megatron's attention/MLP vs transformers'), (3) greedy decoding
agrees, (4) the probe check passes, and fails once a query group is swapped.
"""

from __future__ import annotations

import pytest
import torch

from tests.dist import run_distributed
from tests.weights.common import PROMPTS, TINY, layout_name, preimport, use_layout

preimport()
pytestmark = pytest.mark.dist

BUCKET_BYTES = 64 * 1024  # ~ a dozen buckets for the tiny model


def reference_state_dict():
    """The reference HF weights: identical in every process (fixed seed)."""
    from tests.weights.common import random_hf_llama

    return random_hf_llama(TINY, seed=0).state_dict()


def _load_reference(chunks, ref):
    from megatron.core import parallel_state as ps

    from sweet_megatron.weights.llama_mapping import dict_reader, hf_to_mcore_shard
    from sweet_megatron.weights.resharding import local_weights

    tp_rank, tp = ps.get_tensor_model_parallel_rank(), ps.get_tensor_model_parallel_world_size()
    with torch.no_grad():
        for spec, param in local_weights(chunks).values():
            param.copy_(hf_to_mcore_shard(spec, dict_reader(ref), TINY, tp_rank, tp))


def _check_layouts(rank, world_size, layouts):
    from sweet_megatron.model import build_model
    from sweet_megatron.rollout.base import SamplingParams
    from sweet_megatron.rollout.local import LocalEngine
    from sweet_megatron.rollout.probe import (
        Probe,
        WeightSyncError,
        check_weight_sync,
        megatron_greedy,
        megatron_logits,
        megatron_score,
    )
    from sweet_megatron.weights.resharding import sync_weights

    results = {}
    ref_sd = reference_state_dict()
    for layout in layouts:
        pc, platform = use_layout(layout)
        chunks = build_model(TINY, pc, platform)
        for c in chunks:
            c.eval()
        _load_reference(chunks, ref_sd)
        engine = LocalEngine(TINY, seed=0)
        sync_weights(engine, chunks, TINY, bucket_bytes=BUCKET_BYTES)
        weights_equal = all(torch.equal(p, ref_sd[n]) for n, p in engine.model.state_dict().items())

        tokens = torch.tensor([p[:5] + [11, 12, 13] for p in PROMPTS])
        ref = megatron_logits(chunks, tokens, TINY)
        with torch.no_grad():
            got = engine.model(input_ids=tokens).logits.float()
        greedy_ref = megatron_greedy(chunks, PROMPTS, 6, TINY)
        greedy = [g[0].token_ids for g in engine.generate(PROMPTS, SamplingParams(temperature=0, max_tokens=6))]

        def trainer_fn(p, c, chunks=chunks):
            return megatron_score(chunks, p, c, TINY)

        probe = Probe.random(TINY.vocab_size, num=3)
        gap = check_weight_sync(engine, trainer_fn, probe, threshold=1e-4)
        # A wrong layout must be caught: split QKV as [all q; all k; all v] instead of per group.
        with torch.no_grad():
            q = engine.model.model.layers[1].self_attn.q_proj.weight
            q.copy_(q.view(2, 2, -1)[[1, 0]].reshape(q.shape))  # swap the two query groups
        try:
            check_weight_sync(engine, trainer_fn, probe, threshold=1e-4)
            caught = False
        except WeightSyncError:
            caught = True
        results[layout_name(layout)] = {
            "weights_equal": weights_equal,
            "logit_diff": (got - ref).abs().max().item(),
            "greedy_equal": greedy == greedy_ref,
            "greedy": greedy,
            "probe_gap": gap,
            "bad_sync_caught": caught,
        }
    return results


def _assert_ok(results):
    for rank_res in results:
        for name, r in rank_res.items():
            assert r["weights_equal"], f"{name}: streamed tensors differ from the reference"
            assert r["logit_diff"] < 1e-4, f"{name}: engine logits differ from megatron's by {r['logit_diff']}"
            assert r["greedy_equal"], f"{name}: greedy generations differ"
            assert r["probe_gap"] < 1e-4, f"{name}: probe gap {r['probe_gap']}"
            assert r["bad_sync_caught"], f"{name}: a corrupted engine passed the probe check"
    # every rank and every layout generated the same tokens (same weights everywhere)
    greedy = {str(r["greedy"]) for rank_res in results for r in rank_res.values()}
    assert len(greedy) == 1, greedy


def test_two_rank_layouts():
    """TP1 (DP2), TP2, PP2 and PP2 with two virtual stages, on 2 processes."""
    layouts = [{}, {"tensor_parallel": 2}, {"pipeline_parallel": 2},
               {"pipeline_parallel": 2, "virtual_pipeline": 2}]
    results = run_distributed(_check_layouts, 2, args=(layouts,))
    _assert_ok(results)
    print({k: v["logit_diff"] for k, v in results[0].items()})


def test_four_rank_layouts():
    """TP2 x PP2, and TP2 x PP2 with two virtual stages, on 4 processes."""
    layouts = [{"tensor_parallel": 2, "pipeline_parallel": 2},
               {"tensor_parallel": 2, "pipeline_parallel": 2, "virtual_pipeline": 2}]
    results = run_distributed(_check_layouts, 4, args=(layouts,))
    _assert_ok(results)
    print({k: v["logit_diff"] for k, v in results[0].items()})
