"""The sleep / wake / weight-update contract of a co-located rollout engine (pure; no vLLM here).

vLLM's sleep mode (`LLM.sleep(level)`, `LLM.wake_up(tags)`; vllm/entrypoints/llm.py) frees the KV
cache and, at level 2, discards the weights: after such a sleep the weights must be loaded before
the engine is woken and used. `SleepSequencer` turns engine calls into the vLLM calls they need and
refuses an order vLLM cannot serve. The vLLM engine executes its actions; the local (CPU) engine
follows the same contract, so CPU runs check the trainer's order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

# ---------------------------------------------------------------------------------------------
# sleep / wake / weight-update sequencing (pure)


class EngineState(Enum):
    AWAKE = "awake"
    """Weights and KV cache resident: can generate."""
    WEIGHTS_ONLY = "weights_only"
    """Weights resident (e.g. being loaded), KV cache freed."""
    ASLEEP = "asleep"
    """Weights and KV cache freed (level 2) or weights offloaded to host (level 1)."""


@dataclass(frozen=True)
class Action:
    """One call on the vLLM `LLM`: 'sleep' (arg: level), 'wake_up' (arg: tags), 'load', 'reset_prefix_cache'."""

    op: str
    arg: Any = None


@dataclass
class SleepSequencer:
    """Which vLLM calls each engine method needs, given the memory state. No vLLM here.

    sleep()  -> [sleep(level)]; level 2 discards the weights, so they must be re-synced. (From
                WEIGHTS_ONLY the KV cache is woken first: vLLM ignores sleep() while any tag sleeps.)
    update() -> from ASLEEP: [wake_up(["weights"]), load]; else [load]. The KV cache stays asleep:
                loading needs only the weights' memory.
    wake()   -> [wake_up(["kv_cache"])] (plus "weights" when they are still asleep) and, if new
                weights were loaded, reset_prefix_cache (cached prefixes are of the old weights).
    serve()  -> [] when awake with valid weights, else an error that says what to call.
    vLLM's `wake_up(tags)` ignores the whole call if one tag is not asleep, so only asleep tags
    are ever named.
    """

    level: int = 2
    state: EngineState = EngineState.AWAKE
    weights_valid: bool = False
    """False until the first load (vLLM starts from dummy weights) and after a level-2 sleep."""
    prefix_cache_stale: bool = False
    log: list[Action] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.level not in (1, 2):
            raise ValueError(f"rollout.vllm.sleep_level={self.level}: use 1 (offload weights to host) or 2 (discard)")

    def _emit(self, actions: list[Action]) -> list[Action]:
        self.log.extend(actions)
        return actions

    def sleep(self) -> list[Action]:
        if self.state is EngineState.ASLEEP:
            return []
        actions = []
        if self.state is EngineState.WEIGHTS_ONLY:
            # vLLM ignores sleep() while any tag is asleep: bring the KV cache back first.
            actions.append(Action("wake_up", ("kv_cache",)))
        actions.append(Action("sleep", self.level))
        self.state = EngineState.ASLEEP
        if self.level == 2:
            self.weights_valid = False
        return self._emit(actions)

    def update(self) -> list[Action]:
        actions = []
        if self.state is EngineState.ASLEEP:
            actions.append(Action("wake_up", ("weights",)))
            self.state = EngineState.WEIGHTS_ONLY
        actions.append(Action("load"))
        self.weights_valid = True
        self.prefix_cache_stale = True
        if self.state is EngineState.AWAKE:
            actions.append(Action("reset_prefix_cache"))
            self.prefix_cache_stale = False
        return self._emit(actions)

    def wake(self) -> list[Action]:
        actions = []
        if self.state is EngineState.ASLEEP:
            if not self.weights_valid:
                raise RuntimeError(
                    "wake(): sleep(level=2) discarded the weights; call update_weights(...) before wake() "
                    "(or use rollout.vllm.sleep_level=1 to keep a host copy)"
                )
            actions.append(Action("wake_up", ("weights", "kv_cache")))
        elif self.state is EngineState.WEIGHTS_ONLY:
            actions.append(Action("wake_up", ("kv_cache",)))
        self.state = EngineState.AWAKE
        if self.prefix_cache_stale:
            actions.append(Action("reset_prefix_cache"))
            self.prefix_cache_stale = False
        return self._emit(actions)

    def serve(self) -> list[Action]:
        if self.state is not EngineState.AWAKE:
            raise RuntimeError(f"the vLLM engine is {self.state.value}: call wake() before generate()/score()")
        if not self.weights_valid:
            raise RuntimeError("the vLLM engine holds no trained weights yet: call update_weights(...) first")
        return []
