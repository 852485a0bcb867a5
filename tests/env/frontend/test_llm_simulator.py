"""The LLM-backed frontend person (simulator=engine) with the real LocalEngine on a tiny random Llama:
the frontend prompt (the reference page's HTML and the dialogue) is what the model is fed, and its
generation is the reply; rule and http kinds build the right simulators."""

import pytest

from sweet_megatron.data.chat import Message
from sweet_megatron.env.colbench_frontend.simulator import (
    FRONTEND_HUMAN_PROMPT,
    REPLY_LIMIT,
    FrontendRuleSimulator,
    build_frontend_simulator,
)
from sweet_megatron.env.colbench_frontend.synthetic import generate_frontend_tasks
from tests.env.tiny_simulator import Recording, engine_config, save_tiny_simulator

TASK = generate_frontend_tasks(3, seed=0)[2]


@pytest.fixture(scope="module")
def tiny_simulator_dir(tmp_path_factory):
    texts = [FRONTEND_HUMAN_PROMPT, TASK.problem_description, TASK.ground_truth, "Yes. No. I don't know."] * 5
    return save_tiny_simulator(tmp_path_factory.mktemp("frontend_simulator"), texts, vocab_size=512,
                               max_positions=8192)


def ask(question: str) -> list[Message]:
    return [Message("system", TASK.problem_description), Message("assistant", question)]


def test_engine_simulator_feeds_the_page_and_returns_its_generation(tiny_simulator_dir):
    from sweet_megatron.data.chat import render_prompt

    sim = build_frontend_simulator(engine_config(tiny_simulator_dir, max_tokens=7), seed=0)
    backend = sim.backend
    tok = backend.tokenizer
    assert sim.prompt_template == FRONTEND_HUMAN_PROMPT and sim.max_chars == REPLY_LIMIT
    backend.engine = rec = Recording(backend.engine)
    draft = TASK.ground_truth.replace("bg-", "bg-x", 1)
    dialogues = [ask("What is the main colour?"), ask(f"Here is a draft:\n{draft}")]
    replies = sim.respond([TASK, TASK], dialogues)
    assert len(rec.prompts) == 1 and len(rec.prompts[0]) == 2  # one generate call for the batch
    for prompt, dialogue, output, reply in zip(rec.prompts[0], dialogues, rec.outputs[0], replies):
        conv = sim.conversation(TASK, dialogue)
        assert prompt == render_prompt(tok, [Message(m["role"], m["content"]) for m in conv])
        fed = tok.decode(prompt)
        assert TASK.ground_truth in fed and TASK.problem_description in fed and dialogue[-1].content in fed
        assert "The page you have in mind" in fed
        assert 1 <= len(output) <= 7  # the token cap
        assert reply == (tok.decode(output).strip()[:REPLY_LIMIT] or "I don't know.")
    # greedy and deterministic: a second simulator from the same files says the same
    assert build_frontend_simulator(engine_config(tiny_simulator_dir, max_tokens=7), seed=1).respond(
        [TASK, TASK], dialogues) == replies


def test_other_kinds():
    from sweet_megatron.config import SimulatorConfig
    from sweet_megatron.env.simulators import LLMSimulator, OpenAIChatBackend

    assert isinstance(build_frontend_simulator(SimulatorConfig(kind="rule")), FrontendRuleSimulator)
    http = build_frontend_simulator(SimulatorConfig(kind="http", url="http://127.0.0.1:9/v1", model="m"))
    assert isinstance(http, LLMSimulator) and isinstance(http.backend, OpenAIChatBackend)
    assert http.prompt_template == FRONTEND_HUMAN_PROMPT
    conv = http.conversation(TASK, ask("What is the page background?"))
    assert TASK.ground_truth in conv[1]["content"] and "agent: What is the page background?" in conv[1]["content"]
