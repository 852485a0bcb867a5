"""The rollout engine interface: every engine (local transformers, vLLM) implements it.

Prompts and continuations are token-id lists; the engine never sees text. Per-token log-probs are
natural-log probabilities under the engine's current weights at temperature 1 (the sampling
distribution's own log-probs are not what the trainer wants: the trainer compares against its own
log-softmax of the raw logits).
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch


@dataclass
class SamplingParams:
    """How to sample continuations."""

    temperature: float = 1.0
    """Softmax temperature; 0 means greedy (argmax)."""
    top_p: float = 1.0
    """Nucleus sampling mass in (0, 1]."""
    max_tokens: int = 128
    """Most new tokens per continuation."""
    stop_token_ids: tuple[int, ...] = ()
    """Generation stops after emitting any of these (the token is kept in the output)."""
    n: int = 1
    """Continuations per prompt."""
    seed: int | None = None
    """Seed for reproducible sampling; None draws from the engine's own generator."""

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"SamplingParams.temperature={self.temperature}: set it to 0 (greedy) or more")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"SamplingParams.top_p={self.top_p}: set it in (0, 1]")
        if self.max_tokens < 1 or self.n < 1:
            raise ValueError("SamplingParams.max_tokens and n must be at least 1")


@dataclass
class Generation:
    """One sampled continuation."""

    token_ids: list[int]
    logprobs: list[float] = field(default_factory=list)
    """log p(token | prefix) at temperature 1, one per token of token_ids."""
    finish_reason: str = "length"
    """'stop' when a stop token ended it, 'length' when max_tokens did."""


class RolloutEngine(abc.ABC):
    """Batched generation and scoring over token ids, with a weight stream and sleep/wake."""

    group_size: int = 1
    """Consecutive ranks that drive one engine together and must pass it identical prompts and
    seeds (vLLM's tensor-parallel degree; rollout/groups.py). 1: every rank has its own engine."""

    @abc.abstractmethod
    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[list[Generation]]:
        """Sample `params.n` continuations for each prompt. Returns [num_prompts][n]."""

    @abc.abstractmethod
    def score(self, prompts: list[list[int]], continuations: list[list[int]]) -> list[list[float]]:
        """Per-token log-probs of each continuation given its prompt: [num_prompts][len(continuation)]."""

    @abc.abstractmethod
    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Load Hugging Face Llama-named tensors (full, unsharded) from a stream, in any order."""

    def sleep(self) -> None:  # noqa: B027 - engines without device memory to free keep the default
        """Free device memory (weights and KV cache) between rollout phases."""

    def wake(self) -> None:  # noqa: B027
        """Restore what sleep() freed; weights must be re-synced afterwards if they changed."""
