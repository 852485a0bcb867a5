"""The agent every environment shares: a model behind a RolloutEngine. (An environment's scripted
agent lives in its folder: synthetic/demos.py.)

An agent is anything with `act(prompts_ids, dialogues) -> [(action_ids, logprobs, text)]`
(episode.Agent).
"""

from __future__ import annotations

from sweet_megatron.data.chat import Message
from sweet_megatron.data.tokenizer import Tokenizer
from sweet_megatron.env.episode import Action
from sweet_megatron.rollout.base import RolloutEngine, SamplingParams


class EngineAgent:
    """A model acting through a RolloutEngine: one generate call per turn for the whole batch."""

    def __init__(self, engine: RolloutEngine, tokenizer: Tokenizer, params: SamplingParams | None = None):
        self.engine = engine
        self.tokenizer = tokenizer
        self.params = params or SamplingParams(temperature=1.0, max_tokens=256, stop_token_ids=(tokenizer.eot_id,))
        if self.params.n != 1:
            raise ValueError(f"EngineAgent: SamplingParams.n={self.params.n}; an episode takes one action a turn, use 1")
        if tokenizer.eot_id not in self.params.stop_token_ids:
            raise ValueError("EngineAgent: SamplingParams.stop_token_ids must contain tokenizer.eot_id "
                             f"({tokenizer.eot_id}) so that an action ends with the end of its turn")

    def act(self, prompts_ids: list[list[int]], dialogues: list[list[Message]]) -> list[Action]:
        generations = self.engine.generate(prompts_ids, self.params)
        actions = []
        for gen in generations:
            g = gen[0]
            actions.append((list(g.token_ids), list(g.logprobs), self.tokenizer.decode(g.token_ids)))
        return actions
