"""Shared pieces of the weight tests: a tiny GQA Llama with a vocabulary that needs padding, layout
switching inside one worker process, and a tiny Hugging Face checkpoint directory on disk."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from sweet_megatron.model import ModelConfig
from sweet_megatron.parallel import ParallelConfig

# GQA (4 heads, 2 KV groups), vocab 1001 (not a multiple of 8: padded rows exist at every TP), and
# a large init std so that logits are peaked and greedy decoding has no near-ties.
TINY = ModelConfig(num_layers=4, hidden_size=64, ffn_hidden_size=160, num_attention_heads=4, num_query_groups=2,
                   vocab_size=1001, seq_length=64, init_method_std=0.2)

PROMPTS = [[5, 17, 300, 999, 42, 7, 1000], [3, 1, 4, 1, 5], [900, 800, 700, 600, 500, 400, 300, 200, 100]]


def preimport() -> None:
    """Import megatron-core and transformers' Llama in the test process, before workers fork: each
    forked worker would otherwise spend ~10 s importing them again."""
    import megatron.core.dist_checkpointing  # noqa: F401
    import megatron.core.models.gpt  # noqa: F401
    import megatron.core.pipeline_parallel  # noqa: F401
    import transformers.models.llama.modeling_llama  # noqa: F401


def use_layout(layout: dict, seed: int = 0):
    """(Re)initialise megatron's groups for `layout` in a worker; returns (ParallelConfig, Platform)."""
    from megatron.core import parallel_state

    from sweet_megatron.parallel import initialize

    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    pc = ParallelConfig(**layout)
    return pc, initialize(pc, seed=seed)


def layout_name(layout: dict) -> str:
    short = {"tensor_parallel": "TP", "pipeline_parallel": "PP", "virtual_pipeline": "VPP"}
    return "x".join(f"{short[k]}{v}" for k, v in layout.items()) or "TP1"


def random_hf_llama(cfg: ModelConfig = TINY, seed: int = 0, dtype: torch.dtype = torch.float32):
    """A random transformers LlamaForCausalLM for `cfg`, the same for the same seed in any process."""
    from transformers import LlamaForCausalLM

    from sweet_megatron.weights.llama_mapping import hf_config_from_model_config

    with torch.random.fork_rng():  # leave the caller's RNG alone
        torch.manual_seed(seed)
        model = LlamaForCausalLM(hf_config_from_model_config(cfg)).to(dtype).eval()
        with torch.no_grad():  # HF initialises norms to 1: randomise them so a norm mix-up shows
            for name, p in model.named_parameters():
                if "norm" in name:
                    p.uniform_(0.5, 1.5)
    return model


def write_hf_llama(out: Path, cfg: ModelConfig = TINY, seed: int = 0, max_shard_size: str | None = "60KB",
                   dtype: torch.dtype = torch.float32):
    """A random transformers LlamaForCausalLM saved to `out` (sharded safetensors + tokenizer); returns it."""
    model = random_hf_llama(cfg, seed, dtype)
    from sweet_megatron.weights.hf_io import write_placeholder_tokenizer

    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(str(out), **kwargs)
    write_placeholder_tokenizer(out)
    return model


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
