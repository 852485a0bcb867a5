"""The vLLM engine's CPU-checkable logic (sleep/wake sequencing, the checked weight stream, the
sampling and output conversions); the engine itself runs only on a CUDA GPU with vLLM."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import pytest
import torch

from sweet_megatron.rollout.base import SamplingParams
from sweet_megatron.rollout.sleep import Action, EngineState, SleepSequencer
from sweet_megatron.rollout.vllm_engine import (
    CheckedStream,
    _import_vllm,
    continuation_logprobs,
    generation_from_vllm,
    vllm_sampling_kwargs,
)
from tests.weights.common import TINY, random_hf_llama

HAVE_VLLM = importlib.util.find_spec("vllm") is not None


def test_rl_cycle_level_2():
    s = SleepSequencer(level=2)
    with pytest.raises(RuntimeError, match="update_weights"):
        s.serve()  # vLLM starts from dummy weights
    assert s.update() == [Action("load"), Action("reset_prefix_cache")]
    s.serve()
    for _ in range(2):  # train -> sync -> rollout, twice
        assert s.sleep() == [Action("sleep", 2)]
        assert s.sleep() == []  # idempotent
        with pytest.raises(RuntimeError, match="discarded the weights"):
            s.wake()
        assert s.update() == [Action("wake_up", ("weights",)), Action("load")]
        assert s.state is EngineState.WEIGHTS_ONLY
        with pytest.raises(RuntimeError, match="wake"):
            s.serve()  # the KV cache is still asleep
        assert s.update() == [Action("load")]  # a second sync before waking: no extra wake-up
        assert s.wake() == [Action("wake_up", ("kv_cache",)), Action("reset_prefix_cache")]
        s.serve()
    assert s.wake() == []


def test_level_1_keeps_weights_and_sleep_from_weights_only():
    s = SleepSequencer(level=1)
    s.update()
    s.sleep()
    assert s.wake() == [Action("wake_up", ("weights", "kv_cache"))]  # no new weights: no cache reset
    s.sleep()
    s.update()
    # vLLM ignores sleep() while a tag sleeps: the KV cache comes back first
    assert s.sleep() == [Action("wake_up", ("kv_cache",)), Action("sleep", 1)]
    with pytest.raises(ValueError, match="sleep_level"):
        SleepSequencer(level=3)


def test_checked_stream():
    sd = random_hf_llama(TINY).state_dict()
    stream = CheckedStream(iter(sd.items()), TINY, dtype=torch.bfloat16)
    got = dict(stream)
    stream.finish()
    assert set(got) == set(sd) and all(t.dtype == torch.bfloat16 for t in got.values())
    for bad, match in [([("model.layers.0.self_attn.qkv_proj.weight", torch.zeros(1))], "unknown"),
                       ([("lm_head.weight", torch.zeros(3, 3))], "shape"),
                       ([("model.norm.weight", sd["model.norm.weight"])] * 2, "twice")]:
        with pytest.raises((KeyError, ValueError), match=match):
            list(CheckedStream(bad, TINY))
    partial = CheckedStream([("model.norm.weight", sd["model.norm.weight"])], TINY)
    list(partial)
    with pytest.raises(ValueError, match="lacked"):
        partial.finish()


def test_sampling_and_output_conversions():
    kw = vllm_sampling_kwargs(SamplingParams(temperature=0.5, top_p=0.9, max_tokens=7, stop_token_ids=(3, 4), n=2), 9)
    assert kw == dict(n=2, temperature=0.5, top_p=0.9, max_tokens=7, stop_token_ids=[3, 4], ignore_eos=True, seed=9,
                      logprobs=0, detokenize=False)

    def lp(x):
        return SimpleNamespace(logprob=x)

    completion = SimpleNamespace(token_ids=[5, 3], logprobs=[{5: lp(-0.5), 8: lp(-2.0)}, {3: lp(-0.25)}],
                                 finish_reason="stop")
    gen = generation_from_vllm(completion)
    assert (gen.token_ids, gen.logprobs, gen.finish_reason) == ([5, 3], [-0.5, -0.25], "stop")
    with pytest.raises(RuntimeError, match="logprobs"):
        generation_from_vllm(SimpleNamespace(token_ids=[5], logprobs=None, finish_reason="length"))
    prompt_lp = [None, {2: lp(-1.0)}, {7: lp(-3.0)}, {9: lp(-4.0)}]  # prompt [1, 2] + continuation [7, 9]
    assert continuation_logprobs(prompt_lp, 2, [7, 9]) == [-3.0, -4.0]


@pytest.mark.skipif(HAVE_VLLM, reason="vLLM is installed here")
def test_missing_vllm_is_one_clear_error():
    with pytest.raises(ImportError, match="rollout.engine=local"):
        _import_vllm()


@pytest.mark.gpu
@pytest.mark.skipif(not (torch.cuda.is_available() and HAVE_VLLM), reason="needs a CUDA GPU and vLLM")
def test_vllm_engine_on_gpu():  # pragma: no cover - GPU only
    """Co-located vLLM (external launcher, world of 1): sync, score against transformers, sleep/wake twice."""
    import os

    from sweet_megatron.rollout.local import LocalEngine
    from sweet_megatron.rollout.vllm_engine import VLLMEngine
    from tests.weights.common import PROMPTS

    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="29571")
    sd = random_hf_llama(TINY, seed=3).state_dict()
    eng = VLLMEngine(TINY, dtype="bfloat16", gpu_memory_utilization=0.2, engine_kwargs={"enforce_eager": True})
    ref = LocalEngine(TINY, device="cuda")  # fp32 transformers: the reference
    ref.update_weights(sd.items())
    with pytest.raises(RuntimeError, match="update_weights"):
        eng.generate(PROMPTS, SamplingParams(max_tokens=2))
    for _ in range(2):  # rollout, sleep (training), sync, wake
        eng.update_weights(sd.items())
        eng.wake()
        gens = eng.generate(PROMPTS, SamplingParams(temperature=1.0, max_tokens=6, n=2, seed=4))
        conts = [g.token_ids for gens_ in gens for g in gens_]
        prompts = [p for p in PROMPTS for _ in range(2)]
        got, want = eng.score(prompts, conts), ref.score(prompts, conts)
        assert max(abs(a - b) for x, y in zip(got, want) for a, b in zip(x, y)) < 0.1  # bf16 vs fp32
        sampled = [g.logprobs for gens_ in gens for g in gens_]
        assert max(abs(a - b) for x, y in zip(sampled, got) for a, b in zip(x, y)) < 0.05  # raw logprobs
        eng.sleep()
