"""The vLLM rollout engine, co-located with training (GPU only).

Every trainer process (launched by torchrun / srun) also hosts one vLLM worker, in vLLM's
"external launcher" mode, as verl and NeMo-RL run it: `LLM(distributed_executor_backend=
"external_launcher")` reuses the already-initialised torch.distributed world, runs in-process
(VLLM_ENABLE_V1_MULTIPROCESSING=0), and groups consecutive ranks into vLLM tensor-parallel groups of
`tensor_parallel_size`, independent of the trainer's TP/PP. Each vLLM TP group generates for the
prompts its ranks pass in (all ranks of one group must pass the same prompts and seeds, since
scheduling is deterministic).

Memory is time-shared with training through vLLM's sleep mode (`enable_sleep_mode=True`):
`sleep()` frees the KV cache and the weights (level 2 by default: the weights are re-synced anyway),
`update_weights()` wakes only the weights, loads the stream into the model in place
(`model.load_weights(iterable)`: HF names; vLLM fuses q/k/v and gate/up itself and shards for its
own TP), and `wake()` brings back the KV cache. No weights touch the disk: vLLM starts from a
config-only directory with `load_format="dummy"`. The sequencing is the pure `SleepSequencer`
below, tested on CPU; vLLM only executes the actions it returns.

The import of vllm is confined to `_import_vllm()` (one check, one clear message). Pinned range:
`vllm>=0.10,<0.34` (read against the 0.32.0 source: `LLM.sleep(level)`, `LLM.wake_up(tags)`,
`LLM.reset_prefix_cache()`, `logprobs_mode="raw_logprobs"` (0.10+), `TokensPrompt`).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

import torch

from sweet_megatron.model import ModelConfig
from sweet_megatron.rollout.base import Generation, RolloutEngine, SamplingParams
from sweet_megatron.rollout.local import row_seed
from sweet_megatron.rollout.sleep import Action, SleepSequencer
from sweet_megatron.weights.llama_mapping import hf_config_from_model_config, hf_shapes

log = logging.getLogger(__name__)


def _import_vllm():
    """The one place that imports vllm."""
    try:
        import vllm
    except ImportError as exc:
        raise ImportError(
            "rollout.engine=vllm needs vLLM on a CUDA machine: `pip install 'sweet-megatron[gpu]'` "
            f"(vllm>=0.10,<0.34). On CPU use rollout.engine=local. ({exc})"
        ) from exc
    return vllm


# ---------------------------------------------------------------------------------------------
# pure conversions


class CheckedStream:
    """Wraps a weight stream: names must be HF Llama names of this model, each exactly once, all present.

    Iterate it (vLLM does), then call `finish()`: raises with the missing names.
    """

    def __init__(self, named_tensors: Iterable[tuple[str, torch.Tensor]], cfg: ModelConfig,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        self._src = named_tensors
        self._shapes = hf_shapes(cfg)
        self._device, self._dtype = device, dtype
        self.seen: set[str] = set()

    def __iter__(self) -> Iterator[tuple[str, torch.Tensor]]:
        for name, t in self._src:
            shape = self._shapes.get(name)
            if shape is None:
                raise KeyError(f"update_weights: unknown weight {name!r} (expected Hugging Face Llama names)")
            if tuple(t.shape) != shape:
                raise ValueError(f"update_weights: {name} has shape {tuple(t.shape)}, expected {shape}")
            if name in self.seen:
                raise ValueError(f"update_weights: {name} appears twice in the stream")
            self.seen.add(name)
            yield name, t.to(device=self._device or t.device, dtype=self._dtype or t.dtype)

    def finish(self) -> None:
        missing = sorted(set(self._shapes) - self.seen)
        if missing:
            raise ValueError(f"update_weights: the stream lacked {len(missing)} weights, e.g. {missing[:3]}")


def vllm_sampling_kwargs(params: SamplingParams, seed: int) -> dict[str, Any]:
    """Keyword arguments of `vllm.SamplingParams` for our SamplingParams and one request's seed.

    logprobs=0: only the sampled token's log-prob, of the raw logits (logprobs_mode=raw_logprobs).
    ignore_eos: generation stops only at our stop_token_ids (the stop token is kept in the output).
    """
    return dict(
        n=params.n,
        temperature=params.temperature,
        top_p=params.top_p,
        max_tokens=params.max_tokens,
        stop_token_ids=list(params.stop_token_ids),
        ignore_eos=True,
        seed=seed,
        logprobs=0,
        detokenize=False,
    )


def generation_from_vllm(completion: Any) -> Generation:
    """A Generation from a vLLM CompletionOutput (token_ids, logprobs: [{token_id: Logprob}], finish_reason)."""
    ids = list(completion.token_ids)
    logps = [float(step[tok].logprob) for tok, step in zip(ids, completion.logprobs or [])]
    if len(logps) != len(ids):
        raise RuntimeError(f"vLLM returned {len(logps)} log-probs for {len(ids)} tokens (is logprobs=0 set?)")
    reason = "stop" if completion.finish_reason == "stop" else "length"
    return Generation(ids, logps, reason)


def continuation_logprobs(prompt_logprobs: list, prompt_len: int, continuation: list[int]) -> list[float]:
    """The continuation's log-probs from vLLM's prompt_logprobs of prompt+continuation.

    prompt_logprobs[i] is None for i = 0, else {token_id: Logprob} holding token i's log-prob.
    """
    return [float(prompt_logprobs[prompt_len + k][tok].logprob) for k, tok in enumerate(continuation)]


# ---------------------------------------------------------------------------------------------
# the engine


class VLLMEngine(RolloutEngine):
    """vLLM co-located in the training processes (see the module docstring). GPU only.

    tensor_parallel_size: vLLM TP degree (divides the world size; independent of the trainer's).
    gpu_memory_utilization: fraction of the GPU vLLM may take while awake (weights + KV cache).
    sleep_level: 2 frees the weights on sleep (re-synced before each rollout); 1 keeps a host copy.
    engine_kwargs: extra `vllm.LLM(...)` arguments (e.g. enforce_eager, max_num_seqs).
    """

    def __init__(self, cfg: ModelConfig, *, tensor_parallel_size: int = 1, dtype: str = "bfloat16", seed: int = 0,
                 gpu_memory_utilization: float = 0.5, sleep_level: int = 2, max_model_len: int | None = None,
                 engine_kwargs: dict[str, Any] | None = None):
        vllm = _import_vllm()
        if not torch.cuda.is_available():
            raise RuntimeError("rollout.engine=vllm needs a CUDA GPU; on CPU use rollout.engine=local")
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if tensor_parallel_size < 1:
            raise ValueError(f"rollout.vllm_tensor_parallel={tensor_parallel_size}: 0 (auto) is resolved by "
                             "sweet-train's memory plan (training/memory.py choose_engine_tp); pass a TP >= 1 here")
        if world % tensor_parallel_size:
            raise ValueError(
                f"rollout.vllm.tensor_parallel_size={tensor_parallel_size} does not divide the world size {world}"
            )
        self.cfg = cfg
        self.group_size = tensor_parallel_size  # ranks of one vLLM TP group pass identical prompts
        self._vllm = vllm
        self._seed = seed
        self._rng = torch.Generator().manual_seed(seed)
        self.seq = SleepSequencer(level=sleep_level)
        # A config-only model directory: vLLM reads the architecture from it, weights come from the stream.
        self._config_dir = tempfile.mkdtemp(prefix="sweet-vllm-config-")
        with open(os.path.join(self._config_dir, "config.json"), "w") as f:
            json.dump(hf_config_from_model_config(cfg, dtype=getattr(torch, dtype)).to_dict(), f, default=str)
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # external launcher runs in-process
        kwargs = dict(
            model=self._config_dir,
            skip_tokenizer_init=True,
            load_format="dummy",
            dtype=dtype,
            tensor_parallel_size=tensor_parallel_size,
            distributed_executor_backend="external_launcher",
            enable_sleep_mode=True,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len or cfg.seq_length,
            seed=seed,
            logprobs_mode="raw_logprobs",
        )
        kwargs.update(engine_kwargs or {})
        self.llm = vllm.LLM(**kwargs)
        self._device = torch.device("cuda", torch.cuda.current_device())

    # -- actions -----------------------------------------------------------------------------

    def _run(self, actions: list[Action], stream: CheckedStream | None = None) -> None:
        for a in actions:
            if a.op == "sleep":
                self.llm.sleep(level=a.arg)
            elif a.op == "wake_up":
                # the trainer's cached blocks must go back to the driver first: vLLM's sleep-mode pool
                # maps physical memory again on wake_up (vllm/device_allocator/cumem.py)
                torch.cuda.empty_cache()
                self.llm.wake_up(tags=list(a.arg))
            elif a.op == "reset_prefix_cache":
                self.llm.reset_prefix_cache()
            elif a.op == "load":
                assert stream is not None
                self._model().load_weights(iter(stream))
                stream.finish()
            else:  # pragma: no cover - the sequencer emits only the ops above
                raise AssertionError(a)

    def _model(self) -> torch.nn.Module:
        """The in-process vLLM model (external launcher: one local worker)."""
        executor = self.llm.llm_engine.model_executor
        worker = executor.driver_worker
        worker = getattr(worker, "worker", worker)  # WorkerWrapperBase -> Worker
        return worker.model_runner.model

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        stream = CheckedStream(named_tensors, self.cfg, device=self._device, dtype=self.llm.llm_engine.model_config.dtype)
        self._run(self.seq.update(), stream)

    def sleep(self) -> None:
        self._run(self.seq.sleep())

    def wake(self) -> None:
        self._run(self.seq.wake())

    # -- generation --------------------------------------------------------------------------

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[list[Generation]]:
        self.seq.serve()
        seed = params.seed if params.seed is not None else int(torch.randint(0, 2**62, (1,), generator=self._rng))
        sps = [self._vllm.SamplingParams(**vllm_sampling_kwargs(params, row_seed(seed, i, 0) % 2**31))
               for i in range(len(prompts))]
        outs = self.llm.generate([{"prompt_token_ids": list(p)} for p in prompts], sps, use_tqdm=False)
        return [[generation_from_vllm(c) for c in o.outputs] for o in outs]

    def score(self, prompts: list[list[int]], continuations: list[list[int]]) -> list[list[float]]:
        self.seq.serve()
        sp = self._vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False)
        inputs = [{"prompt_token_ids": list(p) + list(c)} for p, c in zip(prompts, continuations, strict=True)]
        outs = self.llm.generate(inputs, sp, use_tqdm=False)
        return [continuation_logprobs(o.prompt_logprobs, len(p), list(c))
                for o, p, c in zip(outs, prompts, continuations)]
