"""The local rollout engine: Hugging Face transformers' `LlamaForCausalLM` with a KV cache (CPU default).

Built from a `ModelConfig` (random weights until the first `update_weights`), it is fed by the same
full HF-named weight stream the vLLM engine gets (`weights.resharding.stream_hf_weights`).

Generation is one batched loop over the HF model per chunk of at most `max_batch_size` rows (a row
is one prompt x one sample): prompts are left-padded with an attention mask and explicit position
ids, the prompt is prefilled once, then one token per step is decoded against the `DynamicCache`;
rows that finish are dropped from the batch and the cache.

Sampling: logits (fp32) / temperature, top-p filtering, then the exponential-race trick
(argmax p / E, E ~ Exp(1)) with one `torch.Generator` per row seeded from (seed, prompt index,
sample index). Results are reproducible for a seed and do not depend on how rows are batched.
Temperature 0 is greedy. Reported log-probs are log_softmax of the raw logits (temperature 1).

Simplifications on purpose: no cache reuse across calls (each multi-turn call prefills the whole
history), no speculative decoding, no paged attention. Fine for the tiny CPU models this serves.

Shape legend: B rows, P padded prompt length, V vocabulary.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch

from sweet_megatron.model import ModelConfig
from sweet_megatron.rollout.base import Generation, RolloutEngine, SamplingParams
from sweet_megatron.rollout.sleep import EngineState, SleepSequencer
from sweet_megatron.weights.llama_mapping import hf_config_from_model_config, hf_shapes

log = logging.getLogger(__name__)


def row_seed(seed: int, prompt_index: int, sample_index: int) -> int:
    """A 63-bit seed for one (prompt, sample) row (splitmix64-style mixing)."""
    x = (seed * 0x9E3779B97F4A7C15 + prompt_index * 0xBF58476D1CE4E5B9 + sample_index * 0x94D049BB133111EB) & (2**64 - 1)
    x ^= x >> 31
    x = (x * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    x ^= x >> 29
    return x & (2**63 - 1)


def sample_next(logits_BV: torch.Tensor, temperature: float, top_p: float,
                generators: list[torch.Generator]) -> torch.Tensor:
    """Next token per row [B] from fp32 logits [B, V]; greedy when temperature == 0."""
    if temperature == 0:
        return logits_BV.argmax(dim=-1)
    probs = torch.softmax(logits_BV / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        cum = sorted_p.cumsum(dim=-1)
        drop = cum - sorted_p > top_p  # keeps the smallest prefix with mass >= top_p (at least one token)
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_p)
    noise = torch.empty_like(probs)
    for row, g in enumerate(generators):
        noise[row].exponential_(generator=g)
    return (probs / noise).argmax(dim=-1)


class LocalEngine(RolloutEngine):
    """Batched KV-cache generation with transformers' Llama; see the module docstring."""

    def __init__(self, cfg: ModelConfig, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                 seed: int = 0, max_batch_size: int = 64):
        from transformers import LlamaForCausalLM

        self.cfg = cfg
        self.device = torch.device(device)
        self.dtype = dtype
        self.max_batch_size = max_batch_size
        self._rng = torch.Generator().manual_seed(seed)
        hf_cfg = hf_config_from_model_config(cfg)
        hf_cfg._attn_implementation = "sdpa"
        with torch.device(self.device):
            self.model = LlamaForCausalLM(hf_cfg).to(dtype).eval()
        self._params = dict(self.model.named_parameters())
        expected = hf_shapes(cfg)
        if set(self._params) != set(expected):
            raise RuntimeError(f"transformers' Llama has unexpected parameters: {sorted(set(self._params) ^ set(expected))}")
        self.weights_loaded = False
        # The same sleep/update/wake contract as vLLM (vllm_engine.SleepSequencer, level 2), so CPU
        # runs catch a trainer that wakes before it re-syncs or generates while asleep.
        self.seq = SleepSequencer(level=2)

    # -- weights ---------------------------------------------------------------------------

    @torch.no_grad()
    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Copy a full set of HF-named tensors (any order, any dtype) into the model."""
        self.seq.update()
        seen: set[str] = set()
        for name, tensor in named_tensors:
            param = self._params.get(name)
            if param is None:
                raise KeyError(f"update_weights: unknown weight {name!r} (expected Hugging Face Llama names)")
            if tuple(tensor.shape) != tuple(param.shape):
                raise ValueError(f"update_weights: {name} has shape {tuple(tensor.shape)}, expected {tuple(param.shape)}")
            param.copy_(tensor)
            seen.add(name)
        missing = sorted(set(self._params) - seen)
        if missing:
            raise ValueError(f"update_weights: the stream lacked {len(missing)} weights, e.g. {missing[:3]}")
        self.weights_loaded = True

    @property
    def asleep(self) -> bool:
        return self.seq.state is not EngineState.AWAKE

    def sleep(self) -> None:
        """Nothing to free on CPU (the KV cache lives only inside a call); marks the engine unusable
        and, like a level-2 vLLM sleep, its weights stale until the next update_weights."""
        self.seq.sleep()

    def wake(self) -> None:
        """Raises, as vLLM would, when woken after a sleep without update_weights."""
        self.seq.wake()

    def _check_ready(self) -> None:
        if self.asleep:
            raise RuntimeError(f"the rollout engine is {self.seq.state.value}: call wake() first")
        if not self.weights_loaded:
            log.warning("LocalEngine used before update_weights: its weights are random")

    # -- generation --------------------------------------------------------------------------

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[list[Generation]]:
        self._check_ready()
        if any(len(p) == 0 for p in prompts):
            raise ValueError("generate: empty prompt")
        seed = params.seed if params.seed is not None else int(torch.randint(0, 2**62, (1,), generator=self._rng))
        rows = [(i, j) for i in range(len(prompts)) for j in range(params.n)]
        out: list[list[Generation | None]] = [[None] * params.n for _ in prompts]
        # Longest prompts together: less padding per chunk.
        rows.sort(key=lambda r: -len(prompts[r[0]]))
        for start in range(0, len(rows), self.max_batch_size):
            chunk = rows[start : start + self.max_batch_size]
            gens = self._generate_rows([prompts[i] for i, _ in chunk], params,
                                       [torch.Generator().manual_seed(row_seed(seed, i, j)) for i, j in chunk])
            for (i, j), g in zip(chunk, gens):
                out[i][j] = g
        return out  # type: ignore[return-value]

    def _generate_rows(self, prompts: list[list[int]], params: SamplingParams,
                       generators: list[torch.Generator]) -> list[Generation]:
        from transformers import DynamicCache

        B, P = len(prompts), max(len(p) for p in prompts)
        ids_BP = torch.zeros(B, P, dtype=torch.long)
        mask_BP = torch.zeros(B, P, dtype=torch.long)
        for b, p in enumerate(prompts):
            ids_BP[b, P - len(p) :] = torch.tensor(p)
            mask_BP[b, P - len(p) :] = 1
        ids_BP, mask = ids_BP.to(self.device), mask_BP.to(self.device)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        logits = self.model(input_ids=ids_BP, attention_mask=mask, position_ids=pos, past_key_values=cache,
                            use_cache=True, logits_to_keep=1).logits[:, -1].float()
        next_pos = pos[:, -1:] + 1
        tokens: list[list[int]] = [[] for _ in range(B)]
        logps: list[list[float]] = [[] for _ in range(B)]
        finish = ["length"] * B
        active = list(range(B))  # original row of each batch row still decoding
        stop = set(params.stop_token_ids)
        for step in range(params.max_tokens):
            tok = sample_next(logits, params.temperature, params.top_p, [generators[r] for r in active])
            logp = torch.log_softmax(logits, dim=-1).gather(-1, tok[:, None])[:, 0]
            keep = []
            for b, r in enumerate(active):
                t = int(tok[b])
                tokens[r].append(t)
                logps[r].append(float(logp[b]))
                if t in stop:
                    finish[r] = "stop"
                else:
                    keep.append(b)
            if not keep or step == params.max_tokens - 1:
                break
            if len(keep) < len(active):
                idx = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(idx)
                tok, mask, next_pos = tok[idx], mask[idx], next_pos[idx]
                active = [active[b] for b in keep]
            mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=1)
            logits = self.model(input_ids=tok[:, None], attention_mask=mask, position_ids=next_pos,
                                past_key_values=cache, use_cache=True).logits[:, -1].float()
            next_pos = next_pos + 1
        return [Generation(tokens[b], logps[b], finish[b]) for b in range(B)]

    # -- scoring ------------------------------------------------------------------------------

    @torch.no_grad()
    def score(self, prompts: list[list[int]], continuations: list[list[int]]) -> list[list[float]]:
        """Per-token log-probs of each continuation; lm_head runs only at continuation positions."""
        self._check_ready()
        if len(prompts) != len(continuations):
            raise ValueError("score: prompts and continuations differ in number")
        out: list[list[float]] = []
        for start in range(0, len(prompts), self.max_batch_size):
            ps, cs = prompts[start : start + self.max_batch_size], continuations[start : start + self.max_batch_size]
            seqs = [list(p) + list(c) for p, c in zip(ps, cs)]
            S = max(len(s) for s in seqs)
            ids = torch.tensor([s + [0] * (S - len(s)) for s in seqs], device=self.device)  # right padding: causal
            hidden = self.model.model(input_ids=ids).last_hidden_state
            for b, (p, c) in enumerate(zip(ps, cs)):
                if not c:
                    out.append([])
                    continue
                if not p:
                    raise ValueError("score: empty prompt (the first token has no log-prob)")
                h = hidden[b, len(p) - 1 : len(p) - 1 + len(c)]
                logp = torch.log_softmax(self.model.lm_head(h).float(), dim=-1)
                out.append(logp.gather(-1, torch.tensor(c, device=self.device)[:, None])[:, 0].tolist())
        return out
