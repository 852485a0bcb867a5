"""Rollout engines (local transformers, co-located vLLM) behind one interface. The weight sync from
megatron's layout into them is `weights/resharding.py`.

    engine = build_engine(cfg.rollout, model_cfg, seed=0)      # rollout.engine: local, or vllm on a GPU node
    sync_weights(engine, model_chunks, model_cfg)               # every rank, after each update
    check_weight_sync(engine, trainer_fn, probe, threshold)     # the weights arrived?
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sweet_megatron.model import ModelConfig
from sweet_megatron.rollout.base import Generation, RolloutEngine, SamplingParams
from sweet_megatron.rollout.local import LocalEngine
from sweet_megatron.rollout.vllm_engine import VLLMEngine

if TYPE_CHECKING:  # for the annotation only: sweet_megatron.config imports omegaconf (0.13 s)
    from sweet_megatron.config import RolloutConfig

__all__ = ["Generation", "RolloutEngine", "SamplingParams", "build_engine"]


def build_engine(cfg: RolloutConfig, model_cfg: ModelConfig, seed: int) -> RolloutEngine:
    """The rollout engine named by rollout.engine."""
    if cfg.engine == "vllm":
        return VLLMEngine(model_cfg, tensor_parallel_size=cfg.vllm_tensor_parallel,
                          gpu_memory_utilization=cfg.gpu_memory_utilization, seed=seed)
    return LocalEngine(model_cfg, seed=seed)
