"""The local KV-cache engine against transformers' own (unbatched) forward and generate."""

from __future__ import annotations

import pytest
import torch

from sweet_megatron.rollout.base import SamplingParams
from sweet_megatron.rollout.local import LocalEngine
from tests.weights.common import PROMPTS, TINY, random_hf_llama


@pytest.fixture(scope="module")
def engine():
    eng = LocalEngine(TINY, seed=0, max_batch_size=64)
    eng.update_weights(random_hf_llama(TINY, seed=2).state_dict().items())
    return eng


def test_greedy_batched_left_padded_equals_unbatched_generate(engine):
    out = engine.generate(PROMPTS, SamplingParams(temperature=0, max_tokens=12))
    for prompt, (gen,) in zip(PROMPTS, out):
        ids = torch.tensor([prompt])
        ref = engine.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False,
                                    pad_token_id=0)[0, len(prompt):].tolist()
        assert gen.token_ids == ref and gen.finish_reason == "length"


def test_logprobs_are_temperature_one_and_match_score(engine):
    params = SamplingParams(temperature=0.7, top_p=0.9, max_tokens=10, n=2, seed=5)
    out = engine.generate(PROMPTS, params)
    conts = [g.token_ids for gens in out for g in gens]
    prompts = [p for p in PROMPTS for _ in range(2)]
    scored = engine.score(prompts, conts)
    got = [g.logprobs for gens in out for g in gens]
    assert max(abs(a - b) for x, y in zip(got, scored) for a, b in zip(x, y)) < 1e-5
    # and score() equals a plain full forward's log_softmax
    seq = torch.tensor([prompts[0] + conts[0]])
    with torch.no_grad():
        logp = torch.log_softmax(engine.model(input_ids=seq).logits[0].float(), -1)
    ref = [logp[len(prompts[0]) - 1 + i, t].item() for i, t in enumerate(conts[0])]
    assert max(abs(a - b) for a, b in zip(ref, scored[0])) < 1e-5


def test_seeded_sampling_is_reproducible_and_independent_of_batching(engine):
    params = SamplingParams(temperature=1.0, max_tokens=8, n=3, seed=11)
    a = engine.generate(PROMPTS, params)
    small = LocalEngine(TINY, max_batch_size=2)
    small.update_weights(engine.model.state_dict().items())
    b = small.generate(PROMPTS, params)
    assert [[g.token_ids for g in gens] for gens in a] == [[g.token_ids for g in gens] for gens in b]
    c = engine.generate(PROMPTS, SamplingParams(temperature=1.0, max_tokens=8, n=3, seed=12))
    assert [[g.token_ids for g in gens] for gens in a] != [[g.token_ids for g in gens] for gens in c]
    assert len({tuple(g.token_ids) for g in a[0]}) > 1  # the n samples differ


def test_tiny_top_p_is_greedy_and_stop_tokens_end_rows(engine):
    greedy = engine.generate(PROMPTS, SamplingParams(temperature=0, max_tokens=8))
    nucleus = engine.generate(PROMPTS, SamplingParams(temperature=1.0, top_p=1e-6, max_tokens=8, seed=3))
    assert [g[0].token_ids for g in greedy] == [g[0].token_ids for g in nucleus]
    stop = greedy[0][0].token_ids[3]
    out = engine.generate(PROMPTS, SamplingParams(temperature=0, max_tokens=8, stop_token_ids=(stop,)))
    first = out[0][0]
    assert first.finish_reason == "stop" and first.token_ids[-1] == stop and len(first.token_ids) <= 4
    for g, ref in zip(out, greedy):  # rows that stopped early do not change the others
        n = len(g[0].token_ids)
        assert g[0].token_ids == ref[0].token_ids[:n]


def test_weight_stream_is_checked():
    eng = LocalEngine(TINY)
    sd = random_hf_llama(TINY).state_dict()
    with pytest.raises(KeyError, match="unknown weight"):
        eng.update_weights([("model.layers.0.self_attn.qkv_proj.weight", torch.zeros(1))])
    with pytest.raises(ValueError, match="shape"):
        eng.update_weights([("lm_head.weight", torch.zeros(1000, 64))])
    with pytest.raises(ValueError, match="lacked"):
        eng.update_weights([(n, t) for n, t in sd.items() if n != "model.norm.weight"])
    eng.update_weights((n, t.to(torch.bfloat16)) for n, t in sd.items())  # any dtype, any order, a generator
    assert eng.weights_loaded


def test_sleep_blocks_generation_until_update_then_wake(engine):
    """The local engine keeps vLLM's level-2 contract (rollout/sleep.py): after a sleep the weights
    are re-synced, then the engine is woken; waking first is refused as vLLM would."""
    engine.sleep()
    with pytest.raises(RuntimeError, match="asleep"):
        engine.generate(PROMPTS, SamplingParams(max_tokens=2))
    with pytest.raises(RuntimeError, match="call update_weights"):
        engine.wake()
    engine.update_weights(list(engine.model.state_dict().items()))
    with pytest.raises(RuntimeError, match="weights_only: call wake"):
        engine.generate(PROMPTS, SamplingParams(max_tokens=2))
    engine.wake()
    assert len(engine.generate(PROMPTS, SamplingParams(max_tokens=2))) == len(PROMPTS)
