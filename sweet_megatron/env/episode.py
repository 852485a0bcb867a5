"""The episode loop every environment shares: an agent and a simulated person take turns until the
agent writes the environment's answer marker (ColBench's "I WANT TO ANSWER:"; the answer is the
text after it, up to a repeated marker) or has taken `max_turns` turns. As the reference scores
it (sweet_rl/environments/human_interaction_env.py, `step`), the last allowed turn ends the
episode and, without the marker, its whole text is the answer.

The opening of a dialogue, the marker and the last-turn rule are the environment's
(`env.base.AnswerProtocol`, `Environment.protocol`): the ColBench backend gives ColBench's agent
instructions as the system message and the problem as the person's first message; the synthetic
family keeps the embedded demo's prompt (the problem inside the system message), on which the
shipped checkpoints were trained. Without a protocol the loop plays the ColBench backend's.

Batched: all live episodes advance in lockstep, with one agent call (one generate call for an
EngineAgent) and one simulator call per turn for the whole batch; finished episodes drop out.
Answers are scored together at the end (parallel sandboxes).

Token bookkeeping: each Turn keeps the exact prompt ids the agent continued from, the action ids
it produced and their log-probs. The next prompt is built by appending to the previous one (the
action, an end-of-turn token if the action lacks one, the person's message, the assistant header),
never by re-tokenizing text, so `prompt_ids` of turn k+1 starts with `prompt_ids + action_ids` of
turn k. It equals `render_prompt(tok, history)` whenever the actions tokenize canonically (always
for scripted agents).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from sweet_megatron.data.chat import Message, header_ids, message_ids, render_prompt
from sweet_megatron.data.tokenizer import Tokenizer
from sweet_megatron.env.base import AnswerProtocol, Score, ScoreFn, Simulator

MAX_TURNS = 10

Action = tuple[list[int], list[float], str]
"""(action token ids, their log-probs, action text)."""


class Agent(Protocol):
    def act(self, prompts_ids: list[list[int]], dialogues: list[list[Message]]) -> list[Action]:
        """One action per live episode. An agent whose class sets `uses_tasks = True` also gets
        `tasks=` (the episodes' tasks) as a keyword argument."""


@dataclass
class Turn:
    """One agent turn and the simulated person's reply to it."""

    prompt_ids: list[int]
    """The ids the agent continued from (the whole history so far, ending with the assistant header)."""
    action_ids: list[int]
    """What the agent produced (ends with the end-of-turn id unless generation hit its length cap)."""
    action_logprobs: list[float]
    """Per action token (0.0 for scripted agents, whose actions are not sampled)."""
    action_text: str
    simulator_reply: str | None = None
    """None for the final turn (an answer, or the cap)."""


@dataclass
class Episode:
    """One task played to the end."""

    task_index: int
    task_id: str
    system_prompt: str
    """The system message: the agent's instructions (and, in some environments, the problem)."""
    turns: list[Turn] = field(default_factory=list)
    answer: str | None = None
    """The text after the answer marker, or None if the agent never answered."""
    reward: float = 0.0
    """The evaluator's reward, in [0, 1] (backend: the fraction of the tests the answer passed)."""
    success: bool = False
    score: Score | None = None
    """The evaluator's full result (per-test statuses), when scored."""
    done: bool = False
    problem_message: str | None = None
    """The person's opening message (ColBench's protocol: the problem description), or None when
    the problem is part of the system message."""

    def messages(self) -> list[Message]:
        """The dialogue: system prompt, the person's opening message if any, then alternating
        assistant/user messages (the final action included), ready for data.chat.render_dialogue."""
        msgs = [Message("system", self.system_prompt)]
        if self.problem_message is not None:
            msgs.append(Message("user", self.problem_message))
        for turn in self.turns:
            msgs.append(Message("assistant", turn.action_text))
            if turn.simulator_reply is not None:
                msgs.append(Message("user", turn.simulator_reply))
        return msgs

    def token_ids(self, tokenizer: Tokenizer) -> tuple[list[int], list[int]]:
        """The whole episode as the exact ids the agent saw and produced, with the index of the
        agent turn each id belongs to (-1 for prompt ids), like data.chat.render_dialogue. An
        end-of-turn id appended after a length-capped action is not part of the turn."""
        if not self.turns:
            return [], []
        last = self.turns[-1]
        ids = [*last.prompt_ids, *last.action_ids]
        owner = [-1] * len(ids)
        for k, turn in enumerate(self.turns):
            start = len(turn.prompt_ids)
            assert ids[start:start + len(turn.action_ids)] == turn.action_ids, "prompts must extend"
            owner[start:start + len(turn.action_ids)] = [k] * len(turn.action_ids)
        if ids[-1] != tokenizer.eot_id:
            ids.append(tokenizer.eot_id)
            owner.append(-1)
        return ids, owner


def _next_prompt(tok: Tokenizer, turn: Turn) -> list[int]:
    ids = [*turn.prompt_ids, *turn.action_ids]
    if not turn.action_ids or turn.action_ids[-1] != tok.eot_id:
        ids.append(tok.eot_id)
    ids += message_ids(tok, Message("user", turn.simulator_reply or ""))
    ids += header_ids(tok, "assistant")
    return ids


def run_episodes(
    agent: Agent,
    tasks: list,
    simulator: Simulator | None = None,
    evaluator: ScoreFn | None = None,
    max_turns: int = MAX_TURNS,
    tokenizer: Tokenizer | None = None,
    system_prompt: str | None = None,
    score: bool = True,
    protocol: AnswerProtocol | None = None,
) -> list[Episode]:
    """Play one episode per task, all in lockstep; returns them in task order.

    `protocol` (the environment's: opening, answer marker, last-turn rule) defaults to the ColBench
    backend's. `system_prompt` None opens each dialogue by the protocol; a string (with a
    {problem_description} field) puts the problem into that system message for all tasks.

    `simulator` defaults to the ColBench backend's rule-based person. `evaluator` is anything
    called as evaluator(tasks, answers) -> list[Score] (a BackendEvaluator works); None uses the
    process-wide default sandboxed backend evaluator. `tokenizer` defaults to `agent.tokenizer`.
    With score=False, answers are left unscored (reward 0).
    """
    if max_turns < 1:
        raise ValueError(f"run_episodes: max_turns={max_turns}; use at least 1")
    tok = tokenizer if tokenizer is not None else getattr(agent, "tokenizer", None)
    if tok is None:
        raise ValueError("run_episodes: pass tokenizer= (the agent has no .tokenizer attribute)")
    if protocol is None or simulator is None:
        from sweet_megatron.env.colbench_backend.environment import PROTOCOL
        from sweet_megatron.env.colbench_backend.simulator import CodeReplySimulator

        protocol = protocol if protocol is not None else PROTOCOL
        simulator = simulator if simulator is not None else CodeReplySimulator()
    episodes = []
    for t in tasks:
        if system_prompt is None:
            system, problem = protocol.opening(t, max_turns)
        else:
            system, problem = system_prompt.format(problem_description=t.problem_description), None
        episodes.append(Episode(t.index, t.task_id, system, problem_message=problem))
    prompts = [render_prompt(tok, ep.messages()) for ep in episodes]
    live = list(range(len(tasks)))
    for turn_number in range(1, max_turns + 1):
        if not live:
            break
        dialogues = [episodes[i].messages() for i in live]
        kwargs = {"tasks": [tasks[i] for i in live]} if getattr(agent, "uses_tasks", False) else {}
        actions = agent.act([prompts[i] for i in live], dialogues, **kwargs)
        if len(actions) != len(live):
            raise RuntimeError(f"agent returned {len(actions)} actions for {len(live)} episodes")
        asking = []
        for i, (ids, logprobs, text) in zip(live, actions):
            ep = episodes[i]
            ep.turns.append(Turn(prompts[i], list(ids), list(logprobs), text))
            answer = protocol.final_answer(text, last_turn=turn_number == max_turns)
            if answer is not None:
                ep.answer, ep.done = answer, True
            else:
                asking.append(i)
        if asking:
            replies = simulator.respond([tasks[i] for i in asking], [episodes[i].messages() for i in asking])
            for i, reply in zip(asking, replies, strict=True):
                episodes[i].turns[-1].simulator_reply = reply
                prompts[i] = _next_prompt(tok, episodes[i].turns[-1])
        live = asking
    if score:
        if evaluator is None:
            from sweet_megatron.env.colbench_backend.evaluator import default_evaluator

            evaluator = default_evaluator()
        score_fn = evaluator
        scores = score_fn(tasks, [ep.answer for ep in episodes])
        for ep, sc in zip(episodes, scores, strict=True):
            ep.score, ep.reward, ep.success = sc, sc.reward, sc.success
    return episodes
