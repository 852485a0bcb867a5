"""The batched episode loop with the scripted agent (sentencepiece and byte tokenizers) and with an
engine-backed agent; exact token bookkeeping; the turn cap."""

import pytest

from sweet_megatron.data.chat import Message, action_ids, render_dialogue, render_prompt
from sweet_megatron.data.tokenizer import train_sentencepiece
from sweet_megatron.env.agents import EngineAgent
from sweet_megatron.env.bytetok import ByteTokenizer
from sweet_megatron.env.colbench_backend.environment import PROTOCOL as BACKEND
from sweet_megatron.env.colbench_backend.environment import SYSTEM_PROMPT as COLBENCH_SYSTEM_PROMPT
from sweet_megatron.env.colbench_backend.evaluator import BackendEvaluator
from sweet_megatron.env.colbench_backend.simulator import CodeReplySimulator
from sweet_megatron.env.episode import run_episodes
from sweet_megatron.env.synthetic.demos import ScriptedAgent
from sweet_megatron.env.synthetic.family import (
    QUESTIONS,
    ScriptPolicy,
    generate_tasks,
    scripted_action,
    spec_of,
    tariff_code,
)
from sweet_megatron.env.synthetic.protocol import PROTOCOL, SYSTEM_PROMPT
from sweet_megatron.env.synthetic.simulator import SyntheticSimulator
from sweet_megatron.rollout.base import Generation, RolloutEngine, SamplingParams


@pytest.fixture(scope="module")
def tasks():
    return generate_tasks(12, seed=5)  # three of each difficulty


@pytest.fixture(scope="module")
def sp_tok(tmp_path_factory):
    corpus = generate_tasks(300, seed=99)
    texts = [SYSTEM_PROMPT, *QUESTIONS.values()]
    for t in corpus:
        texts += [t.problem_description, t.ground_truth]
    return train_sentencepiece(texts, tmp_path_factory.mktemp("tok") / "sp.model", vocab_size=1024)


class Counting:
    """Wraps an agent and records the batch size of every act call."""

    def __init__(self, agent):
        self.agent, self.batches = agent, []
        self.tokenizer = agent.tokenizer
        self.uses_tasks = getattr(agent, "uses_tasks", False)

    def act(self, prompts, dialogues, **kw):
        self.batches.append(len(prompts))
        return self.agent.act(prompts, dialogues, **kw)


@pytest.mark.parametrize("tokenizer", ["sentencepiece", "bytes"])
def test_scripted_episodes_lockstep_and_exact_ids(tasks, sp_tok, tokenizer):
    tok = sp_tok if tokenizer == "sentencepiece" else ByteTokenizer()
    agent = Counting(ScriptedAgent(tok))
    episodes = run_episodes(agent, tasks, SyntheticSimulator(), protocol=PROTOCOL)
    difficulties = [spec_of(t).difficulty for t in tasks]
    assert [len(ep.turns) for ep in episodes] == [d + 1 for d in difficulties]
    # one agent call per turn; an episode leaves the batch once it answers
    assert agent.batches == [sum(d + 1 > k for d in difficulties) for k in range(max(difficulties) + 1)]
    assert all(ep.success and ep.reward == 1.0 for ep in episodes)
    for ep, task in zip(episodes, tasks):
        msgs = ep.messages()
        assert msgs[0] == Message("system", SYSTEM_PROMPT.format(problem_description=task.problem_description))
        assert [m.role for m in msgs[1:]] == ["assistant", "user"] * (len(ep.turns) - 1) + ["assistant"]
        assert ep.answer == PROTOCOL.extract_answer(ep.turns[-1].action_text) == task.ground_truth
        assert ep.turns[-1].simulator_reply is None
        for k, turn in enumerate(ep.turns):
            assert turn.prompt_ids == render_prompt(tok, msgs[: 1 + 2 * k])
            assert turn.action_ids[-1] == tok.eot_id and turn.action_logprobs == [0.0] * len(turn.action_ids)
        assert ep.token_ids(tok) == render_dialogue(tok, msgs)


def test_last_turn_without_marker_is_the_answer(tasks):
    """As the reference scores it: the last allowed turn ends the episode and its text is the answer."""
    tok = ByteTokenizer()
    agent = ScriptedAgent(tok, ScriptPolicy(distractor_prob=1.0))
    hard = [t for t in tasks if spec_of(t).difficulty == 4]
    episodes = run_episodes(agent, hard, SyntheticSimulator(), max_turns=2, protocol=PROTOCOL)
    for ep in episodes:
        assert len(ep.turns) == 2 and ep.answer == ep.turns[1].action_text and ep.reward == 0.0 and not ep.success
        assert ep.turns[0].simulator_reply is not None and ep.turns[1].simulator_reply is None
        assert "no_answer" not in ep.score.details["statuses"]  # a question was run as the answer, and failed

    # an unmarked reference function on the last turn scores as the answer; one turn earlier it does not
    task = tasks[0]
    spec = spec_of(task)
    code = tariff_code(spec.skin, spec.params)
    params = SamplingParams(temperature=0.0, max_tokens=16, stop_token_ids=(tok.eot_id,))
    ep, = run_episodes(EngineAgent(TurnEngine(tok, ["What is the rate?", code]), tok, params), [task],
                       SyntheticSimulator(), max_turns=2, evaluator=BackendEvaluator(), protocol=PROTOCOL)
    assert ep.answer == code.strip() and ep.success and ep.reward == 1.0
    ep, = run_episodes(EngineAgent(TurnEngine(tok, ["What is the rate?", code, "Anything else?"]), tok, params),
                       [task], SyntheticSimulator(), max_turns=3, evaluator=BackendEvaluator(), protocol=PROTOCOL)
    assert ep.turns[1].simulator_reply is not None and ep.answer == "Anything else?" and ep.reward == 0.0


def test_real_tasks_open_with_colbench_protocol(real_tasks):
    """The agent's system message is ColBench's instructions; the problem is the person's first message."""
    tok = ByteTokenizer()
    engine = TurnEngine(tok, ["Which units?", "I WANT TO ANSWER:\ndef f(): pass"])
    agent = EngineAgent(engine, tok, SamplingParams(temperature=0.0, max_tokens=16, stop_token_ids=(tok.eot_id,)))
    episodes = run_episodes(agent, real_tasks[:2], CodeReplySimulator(), score=False, protocol=BACKEND)
    for ep, task in zip(episodes, real_tasks[:2]):
        msgs = ep.messages()
        assert msgs[0] == Message("system", COLBENCH_SYSTEM_PROMPT.format(max_turns=10))
        assert msgs[1] == Message("user", task.problem_description)
        assert [m.role for m in msgs[2:]] == ["assistant", "user", "assistant"]
        assert ep.turns[0].prompt_ids == render_prompt(tok, msgs[:2])
        assert ep.token_ids(tok) == render_dialogue(tok, msgs)
        assert ep.answer == "def f(): pass"
    rules = COLBENCH_SYSTEM_PROMPT.format(max_turns=10)
    assert "I WANT TO ANSWER:" in rules and "10 rounds" in rules and "raw Python code" in rules
    assert "{" not in rules and task.problem_description not in rules


def test_scripted_agent_on_real_task_is_a_clear_error(real_tasks):
    with pytest.raises(ValueError, match="is not a synthetic tariff-v1 task"):
        run_episodes(ScriptedAgent(ByteTokenizer()), real_tasks[:1], CodeReplySimulator(), score=False)


def test_scripted_agent_finds_tasks_by_description(tasks):
    tok = ByteTokenizer()
    agent = ScriptedAgent(tok, tasks=tasks)
    dialogue = [Message("system", SYSTEM_PROMPT.format(problem_description=tasks[3].problem_description))]
    (ids, logprobs, text), = agent.act([render_prompt(tok, dialogue)], [dialogue])
    assert text == scripted_action(tasks[3], [], ScriptPolicy()) and text in QUESTIONS.values()
    assert ids == action_ids(tok, text)
    with pytest.raises(ValueError, match="no task for this dialogue"):
        ScriptedAgent(tok).act([[1]], [[Message("system", "unknown")]])


class TurnEngine(RolloutEngine):
    """A tiny honest test double: turn k of every prompt yields `texts[k]` (with given log-probs);
    records each generate call."""

    def __init__(self, tok, texts, stop=(True, True, True)):
        self.tok, self.texts, self.stop, self.calls = tok, texts, stop, []

    def generate(self, prompts, params):
        self.calls.append([list(p) for p in prompts])
        k = len(self.calls) - 1
        ids = self.tok.encode(self.texts[k]) + ([self.tok.eot_id] if self.stop[k] else [])
        return [[Generation(ids, [-0.25] * len(ids), "stop" if self.stop[k] else "length")] for _ in prompts]

    def score(self, prompts, continuations):
        raise NotImplementedError

    def update_weights(self, named_tensors):
        raise NotImplementedError


def test_engine_agent_records_logprobs_and_extends_prompts(tasks):
    tok = ByteTokenizer()
    task = tasks[0]
    spec = spec_of(task)  # the engine's answer is the reference itself, so it passes whatever was asked
    answer = "I WANT TO ANSWER:\n```python\n" + tariff_code(spec.skin, spec.params) + "\n```"
    engine = TurnEngine(tok, ["What is the rate?", "What is the maxi", answer], stop=(True, False, True))
    agent = EngineAgent(engine, tok, SamplingParams(temperature=0.0, max_tokens=16, stop_token_ids=(tok.eot_id,)))
    episodes = run_episodes(agent, [task, task], SyntheticSimulator(), evaluator=BackendEvaluator(), protocol=PROTOCOL)
    assert [len(c) for c in engine.calls] == [2, 2, 2]  # one generate call per turn for the batch
    ep = episodes[0]
    assert ep.success and ep.reward == 1.0
    t0, t1, t2 = ep.turns
    assert t0.action_logprobs == [-0.25] * len(t0.action_ids) and t0.simulator_reply.startswith("The rate is")
    assert t1.action_ids[-1] != tok.eot_id  # cut by the length cap: the next prompt closes the turn
    assert t2.prompt_ids[: len(t1.prompt_ids) + len(t1.action_ids) + 1] == [*t1.prompt_ids, *t1.action_ids, tok.eot_id]
    ids, owner = ep.token_ids(tok)
    assert ids[: len(t2.prompt_ids)] == t2.prompt_ids and ids[-1] == tok.eot_id
    assert [owner.count(k) for k in range(3)] == [len(t.action_ids) for t in ep.turns]
    assert engine.calls[1][0] == t1.prompt_ids


def test_engine_agent_validates_params():
    tok = ByteTokenizer()
    with pytest.raises(ValueError, match="stop_token_ids must contain tokenizer.eot_id"):
        EngineAgent(TurnEngine(tok, []), tok, SamplingParams(stop_token_ids=()))
    with pytest.raises(ValueError, match="n=2"):
        EngineAgent(TurnEngine(tok, []), tok, SamplingParams(n=2, stop_token_ids=(tok.eot_id,)))


def test_extract_answer():
    extract_answer, final_answer = PROTOCOL.extract_answer, PROTOCOL.final_answer
    assert extract_answer("ok I WANT TO ANSWER:  def f(): pass ") == "def f(): pass"
    assert extract_answer("What is the rate?") is None
    # the reference takes split(marker)[1]: a repeated marker ends the answer
    assert extract_answer("I WANT TO ANSWER: def f(): pass\nI WANT TO ANSWER: def g(): pass") == "def f(): pass"
    assert final_answer("What is the rate?", last_turn=False) is None
    assert final_answer(" def f(): pass ", last_turn=True) == "def f(): pass"
    assert final_answer("x I WANT TO ANSWER: y", last_turn=True) == "y"
    assert BACKEND.final_answer(" def f(): pass ", last_turn=True) == "def f(): pass"  # the same rule in both


def test_default_protocol_is_the_backend_one(real_tasks):
    """Without a protocol (and simulator) the loop plays the ColBench backend's, as documented."""
    tok = ByteTokenizer()
    engine = TurnEngine(tok, ["Which units?", "I WANT TO ANSWER:\ndef f(): pass"])
    agent = EngineAgent(engine, tok, SamplingParams(temperature=0.0, max_tokens=16, stop_token_ids=(tok.eot_id,)))
    default = run_episodes(agent, real_tasks[:1], score=False)[0]
    engine.calls.clear()
    explicit = run_episodes(agent, real_tasks[:1], CodeReplySimulator(), score=False, protocol=BACKEND)[0]
    assert default.messages() == explicit.messages()
