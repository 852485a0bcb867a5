"""The ColBench episode loop: an agent and a simulated person take turns until the agent writes
"I WANT TO ANSWER:" (the answer is the text after it, up to a repeated marker) or has taken
`max_turns` turns. As the reference scores it (sweet_rl/environments/human_interaction_env.py,
`step`), the last allowed turn ends the episode and, without the marker, its whole text is the
answer.

The opening of a dialogue follows the task's protocol (`episode_opening`): a real ColBench task
gets ColBench's agent instructions as the system message and the problem as the person's first
message, as the reference's agent sees it; a synthetic task keeps the embedded demo's prompt (the
problem inside the system message), on which the shipped checkpoints were trained.

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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from sweet_megatron.data.chat import Message, header_ids, message_ids, render_prompt
from sweet_megatron.data.tokenizer import Tokenizer
from sweet_megatron.env.evaluator import Score, default_evaluator
from sweet_megatron.env.simulators import RuleBasedSimulator, Simulator
from sweet_megatron.env.synthetic import ANSWER_MARK
from sweet_megatron.env.tasks import Task

SYSTEM_PROMPT = (
    "You are a coding agent. A person asks you to write a Python function. Ask one short question "
    "per turn about details you need. When you are ready, write I WANT TO ANSWER: and then the function.\n\n"
    "{problem_description}"
)
MAX_TURNS = 10

COLBENCH_SYSTEM_PROMPT = (
    "You are an assistant helping a person with a Python programming problem.\n"
    "1) The problem is personal: what the person wants depends on details and constraints they have not "
    "told you, so find them out by asking the person clarifying questions. Asking questions is expected.\n"
    "2) Keep each question simple: the person answers only briefly, in about two sentences.\n"
    "3) Once you have gathered enough information, begin your message with \"I WANT TO ANSWER:\" and give "
    "your final answer.\n"
    "4) You have at most {max_turns} rounds of conversation with the person, and you must give your final "
    "answer within them.\n"
    "5) Be as concise as you can with the person.\n\n"
    "When you answer, write the final answer directly after \"I WANT TO ANSWER:\" as raw Python code."
)
"""ColBench's backend agent instructions (prompts/llm_agent_code_prompt.txt of the reference) in
this project's words, same rules: clarifying questions, brief answers expected, the answer marker,
the round limit, concision, the answer as raw Python code after the marker."""


def episode_opening(task: Task, max_turns: int = MAX_TURNS) -> tuple[str, str | None]:
    """(system message, the person's first message or None) that open the task's dialogue: ColBench's
    protocol for real tasks (instructions; the problem as the first user message), the demo's single
    system message for synthetic ones."""
    if task.synthetic is not None:
        return SYSTEM_PROMPT.format(problem_description=task.problem_description), None
    return COLBENCH_SYSTEM_PROMPT.format(max_turns=max_turns), task.problem_description

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
    """The system message: the agent's instructions (and, for synthetic tasks, the problem)."""
    turns: list[Turn] = field(default_factory=list)
    answer: str | None = None
    """The text after "I WANT TO ANSWER:", or None if the agent never answered."""
    reward: float = 0.0
    """Fraction of the tests the answer passed, in [0, 1]."""
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


def extract_answer(action_text: str) -> str | None:
    """The text between the first "I WANT TO ANSWER:" and a second one (or the end), stripped, as
    the reference takes `response.split(marker)[1]`; None when the marker is absent. (Stripped: the
    reference passes the text on unstripped, where a leading space would fail its exec.)"""
    if ANSWER_MARK not in action_text:
        return None
    return action_text.split(ANSWER_MARK)[1].strip()


def final_answer(action_text: str, last_turn: bool) -> str | None:
    """The answer an action gives: the marked answer, or, on the last allowed turn, the whole text
    (the reference: `self.answer = response` when `steps >= max_steps` without the marker)."""
    answer = extract_answer(action_text)
    if answer is None and last_turn:
        return action_text.strip()
    return answer


def _next_prompt(tok: Tokenizer, turn: Turn) -> list[int]:
    ids = [*turn.prompt_ids, *turn.action_ids]
    if not turn.action_ids or turn.action_ids[-1] != tok.eot_id:
        ids.append(tok.eot_id)
    ids += message_ids(tok, Message("user", turn.simulator_reply or ""))
    ids += header_ids(tok, "assistant")
    return ids


ScoreFn = Callable[[list[Task], list[str | None]], list[Score]]


def run_episodes(
    agent: Agent,
    tasks: list[Task],
    simulator: Simulator | None = None,
    evaluator: ScoreFn | None = None,
    max_turns: int = MAX_TURNS,
    tokenizer: Tokenizer | None = None,
    system_prompt: str | None = None,
    score: bool = True,
) -> list[Episode]:
    """Play one episode per task, all in lockstep; returns them in task order.

    `system_prompt` None opens each dialogue by its task's protocol (episode_opening); a string
    (with a {problem_description} field) puts the problem into that system message for all tasks.

    `simulator` defaults to the rule-based one. `evaluator` is anything called as
    evaluator(tasks, answers) -> list[Score] (a BackendEvaluator works); None uses the process-wide
    default sandboxed evaluator. `tokenizer` defaults to
    `agent.tokenizer`. With score=False, answers are left unscored (reward 0).
    """
    if max_turns < 1:
        raise ValueError(f"run_episodes: max_turns={max_turns}; use at least 1")
    tok = tokenizer if tokenizer is not None else getattr(agent, "tokenizer", None)
    if tok is None:
        raise ValueError("run_episodes: pass tokenizer= (the agent has no .tokenizer attribute)")
    simulator = simulator if simulator is not None else RuleBasedSimulator()
    episodes = []
    for t in tasks:
        if system_prompt is None:
            system, problem = episode_opening(t, max_turns)
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
            answer = final_answer(text, last_turn=turn_number == max_turns)
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
        score_fn = evaluator if evaluator is not None else default_evaluator()
        scores = score_fn(tasks, [ep.answer for ep in episodes])
        for ep, sc in zip(episodes, scores, strict=True):
            ep.score, ep.reward, ep.success = sc, sc.reward, sc.success
    return episodes
