"""Simulated people: the rule-based one on real and synthetic tasks, the LLM-backed one through a
local HTTP server (and a dead endpoint) and through a RolloutEngine."""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sweet_megatron.data.chat import Message
from sweet_megatron.env.bytetok import ByteTokenizer
from sweet_megatron.env.colbench_backend.simulator import UNKNOWN_REPLY, CodeReplySimulator, code_reply
from sweet_megatron.env.colbench_backend.tasks import Task
from sweet_megatron.env.simulators import (
    EngineChatBackend,
    LLMSimulator,
    OpenAIChatBackend,
    SimulatorError,
)
from sweet_megatron.env.synthetic.family import generate_tasks
from sweet_megatron.env.synthetic.simulator import SyntheticSimulator
from sweet_megatron.rollout.base import Generation, RolloutEngine
from tests.env.tiny_simulator import Recording, engine_config, save_tiny_simulator

REFERENCE = (
    "def get_testimony(entity, has_criminal_charges, deadline_met=False):\n"
    "    if entity == 'USADA' and has_criminal_charges and deadline_met:\n"
    "        return True\n"
    "    elif entity == 'truth and reconciliation commission' and deadline_met:\n"
    "        return True\n"
    "    elif entity == 'Oprah Winfrey':\n"
    "        return False\n"
    "    else:\n"
    "        return False"
)
TASK = Task("Testimony. The signature of the function is: def get_testimony(entity, has_criminal_charges, deadline_met=False)",
            REFERENCE, REFERENCE, {"test1": "get_testimony('USADA', True, True)"})


def ask(question: str) -> list[Message]:
    return [Message("system", "sys"), Message("assistant", question)]


def test_code_reply_by_hand():
    assert code_reply(REFERENCE, "What should happen for Oprah Winfrey?") == (
        "I want it to work like this: elif entity == 'Oprah Winfrey': return False")
    assert code_reply(REFERENCE, "What about the USADA?").startswith(
        "I want it to work like this: if entity == 'USADA' and has_criminal_charges and deadline_met:")
    assert code_reply(REFERENCE, "Hello, how are you?") == UNKNOWN_REPLY
    comment = "def f(xs):\n    # Remove pink wavelengths (620-750 nm)\n    keep = [x for x in xs if not 620 <= x <= 750]\n    return keep"
    # a three-line body: at most one line (a third) may be quoted
    assert code_reply(comment, "Which wavelengths are removed?") == "Remove pink wavelengths (620-750 nm)."


def test_rule_based_on_real_records(real_tasks):
    sim = CodeReplySimulator()
    questions = ["What should the function return?", "What are the inputs and their types?",
                 "Are there any special cases?", "What value do you use for the threshold?"]
    for task in real_tasks:
        body = [ln.strip() for ln in task.ground_truth.splitlines() if ln.strip()][1:]
        for q in questions:
            reply = sim.respond([task], [ask(q)])[0]
            assert reply == sim.respond([task], [ask(q)])[0]  # deterministic
            assert 0 < len(reply) <= 400
            assert reply.count("I want it to work like this:") <= 1  # code lines: one sentence, at most two lines
            if len(body) >= 3:
                assert not all(line in reply for line in body), (task.task_id, reply)  # never the whole code


def test_rule_based_on_synthetic():
    task = generate_tasks(1, seed=2)[0]
    reply = SyntheticSimulator().respond([task], [ask("What is the maximum?")])[0]
    cap, noun = task.synthetic["params"]["cap"], task.ground_truth.split("\n")[1].split()[0]
    assert reply == f"The maximum is {cap} ({noun} = min({noun}, {cap}))."


class FakeOpenAI(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint: fails the first `fail_first` requests with `fail_code`."""

    requests: list = []
    fail_first = 0
    fail_code = 500
    reply = "x"

    def do_POST(self):  # noqa: N802 - the http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cls = type(self)
        cls.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        if len(cls.requests) <= cls.fail_first:
            self.send_response(cls.fail_code)
            self.end_headers()
            self.wfile.write(b'{"error": "busy"}')
            return
        payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": cls.reply}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    handler = type("Handler", (FakeOpenAI,), {"requests": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def test_http_simulator_prompt_and_cut(server):
    handler, url = server
    handler.reply = "It returns False for Oprah Winfrey. " + "y" * 600
    sim = LLMSimulator(OpenAIChatBackend(url, model="sim-model", api_key="k", backoff_s=0.01))
    dialogue = [Message("system", "sys"), Message("assistant", "What about Oprah?")]
    replies = sim.respond([TASK, TASK], [dialogue, dialogue])
    assert replies == [handler.reply[:400]] * 2
    req = handler.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer k"
    assert req["body"]["model"] == "sim-model" and req["body"]["temperature"] == 0.0
    prompt = req["body"]["messages"][1]["content"]
    assert REFERENCE in prompt and "agent: What about Oprah?" in prompt
    assert f"user: {TASK.problem_description}" in prompt and "two sentences" in prompt and "never show or dictate the code" in prompt


def test_http_retries_then_succeeds(server):
    handler, url = server
    handler.fail_first, handler.reply = 2, "Yes."
    backend = OpenAIChatBackend(url, model="m", max_attempts=3, backoff_s=0.01)
    assert LLMSimulator(backend).respond([TASK], [ask("q?")]) == ["Yes."]
    assert len(handler.requests) == 3


def test_http_client_error_is_not_retried(server):
    handler, url = server
    handler.fail_first, handler.fail_code = 5, 401
    with pytest.raises(SimulatorError, match=r"refused the request \(HTTP 401"):
        OpenAIChatBackend(url, model="m", backoff_s=0.01).complete([[{"role": "user", "content": "q"}]])
    assert len(handler.requests) == 1


def test_dead_endpoint_fails_fast_with_clear_message():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    backend = OpenAIChatBackend(f"http://127.0.0.1:{port}/v1", model="m", max_attempts=2, backoff_s=0.01, timeout_s=1)
    start = time.perf_counter()
    with pytest.raises(SimulatorError, match=rf"127.0.0.1:{port}/v1/chat/completions failed after 2 attempts.*refused"):
        LLMSimulator(backend).respond([TASK], [ask("q?")])
    assert time.perf_counter() - start < 5


def test_silent_endpoint_times_out_instead_of_hanging():
    with socket.socket() as s:  # accepts connections (backlog) but never answers
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
        backend = OpenAIChatBackend(url, model="m", max_attempts=2, backoff_s=0.01, timeout_s=0.3)
        start = time.perf_counter()
        with pytest.raises(SimulatorError, match="failed after 2 attempts.*timed out"):
            backend.complete([[{"role": "user", "content": "q"}]])
        assert time.perf_counter() - start < 3


class ScriptEngine(RolloutEngine):
    """A tiny honest test double: 'generates' a fixed text per call, records the prompts."""

    def __init__(self, tok, text):
        self.tok, self.text, self.calls = tok, text, []

    def generate(self, prompts, params):
        self.calls.append((prompts, params))
        ids = [*self.tok.encode(self.text), self.tok.eot_id]
        return [[Generation(ids, [-0.1] * len(ids), "stop")] for _ in prompts]

    def score(self, prompts, continuations):
        raise NotImplementedError

    def update_weights(self, named_tensors):
        raise NotImplementedError


def test_engine_backend_one_generate_call_per_batch():
    tok = ByteTokenizer()
    engine = ScriptEngine(tok, "It is 3. " * 60)
    sim = LLMSimulator(EngineChatBackend(engine, tok))
    replies = sim.respond([TASK] * 3, [ask("q1?"), ask("q2?"), ask("q3?")])
    assert len(engine.calls) == 1 and len(engine.calls[0][0]) == 3
    assert replies == [("It is 3. " * 60).strip()[:400]] * 3
    prompt_text = tok.decode(engine.calls[0][0][1])
    assert "agent: q2?" in prompt_text and REFERENCE in prompt_text
    assert engine.calls[0][1].temperature == 0.0 and engine.calls[0][1].stop_token_ids == (tok.eot_id,)


# ---------------------------------------------------------------- simulator=engine, a real tiny model


@pytest.fixture(scope="module")
def tiny_simulator_dir(tmp_path_factory):
    from sweet_megatron.env.simulators import HUMAN_PROMPT

    texts = [HUMAN_PROMPT, TASK.problem_description, TASK.hidden_information, "Yes. No. I don't know."] * 5
    return save_tiny_simulator(tmp_path_factory.mktemp("simulator"), texts, vocab_size=384, max_positions=4096)


def test_engine_simulator_feeds_the_prompt_and_returns_its_generation(tiny_simulator_dir):
    from sweet_megatron.data.chat import render_prompt
    from sweet_megatron.env.simulators import build_llm_simulator

    sim = build_llm_simulator(engine_config(tiny_simulator_dir, max_tokens=7), seed=0)
    backend = sim.backend
    tok = backend.tokenizer
    assert (backend.params.temperature, backend.params.max_tokens) == (0.0, 7)
    backend.engine = rec = Recording(backend.engine)
    dialogues = [ask("Should Oprah count?"), ask("What about other hosts?")]
    replies = sim.respond([TASK, TASK], dialogues)
    assert len(rec.prompts) == 1 and len(rec.prompts[0]) == 2  # one generate call for the batch
    for prompt, dialogue, output, reply in zip(rec.prompts[0], dialogues, rec.outputs[0], replies):
        conv = sim.conversation(TASK, dialogue)
        assert prompt == render_prompt(tok, [Message(m["role"], m["content"]) for m in conv])
        fed = tok.decode(prompt)
        assert REFERENCE in fed and TASK.problem_description in fed and dialogue[-1].content in fed
        assert 1 <= len(output) <= 7  # the token cap
        assert reply == (tok.decode(output).strip()[:400] or "I don't know.")
    # greedy and deterministic: a second simulator from the same files says the same
    assert build_llm_simulator(engine_config(tiny_simulator_dir, max_tokens=7), seed=1).respond(
        [TASK, TASK], dialogues) == replies


def test_engine_simulator_replies_enter_the_dialogue(tiny_simulator_dir):
    from sweet_megatron.env.episode import run_episodes
    from sweet_megatron.env.simulators import build_llm_simulator
    from sweet_megatron.env.synthetic.demos import ScriptedAgent
    from sweet_megatron.env.synthetic.protocol import PROTOCOL

    sim = build_llm_simulator(engine_config(tiny_simulator_dir, max_tokens=5))
    sim.backend.engine = rec = Recording(sim.backend.engine)
    sim.max_chars = 12
    tasks = generate_tasks(2, seed=1)
    agent_tok = ByteTokenizer()
    episodes = run_episodes(ScriptedAgent(agent_tok, tasks=tasks), tasks, sim, score=False, protocol=PROTOCOL)
    asked = [t for ep in episodes for t in ep.turns if t.simulator_reply is not None]
    assert asked and len(rec.prompts) == max(len(ep.turns) for ep in episodes) - 1
    outputs = [o for call in rec.outputs for o in call]
    assert sorted(t.simulator_reply for t in asked) == sorted(
        sim.backend.tokenizer.decode(o).strip()[:12] or "I don't know." for o in outputs)
    for ep in episodes:
        for prev, nxt in zip(ep.turns, ep.turns[1:]):  # the agent's next prompt carries the reply
            assert agent_tok.decode(nxt.prompt_ids[len(prev.prompt_ids):]).endswith(
                "user" + prev.simulator_reply + "assistant")
            assert len(prev.simulator_reply) <= 12


def test_engine_simulator_config_errors(tiny_simulator_dir, tmp_path):
    from sweet_megatron.config import ConfigError, SimulatorConfig
    from sweet_megatron.env.simulators import build_llm_simulator

    with pytest.raises(ConfigError, match="simulator.checkpoint"):
        SimulatorConfig(kind="engine")
    with pytest.raises(ConfigError, match="simulator.engine"):
        SimulatorConfig(kind="engine", checkpoint="x", engine="tpu")
    with pytest.raises(ValueError, match=f"simulator.checkpoint={tmp_path}"):
        build_llm_simulator(SimulatorConfig(kind="engine", checkpoint=str(tmp_path)))
    from sweet_megatron.data.tokenizer import train_sentencepiece
    from sweet_megatron.env.simulators import HUMAN_PROMPT

    texts = [HUMAN_PROMPT, TASK.problem_description, TASK.hidden_information, "Yes. No. I don't know."] * 5
    train_sentencepiece(texts, tmp_path / "big.model", vocab_size=420)  # more tokens than the model's 384
    big = SimulatorConfig(kind="engine", checkpoint=str(tiny_simulator_dir / "hf"), tokenizer_kind="sentencepiece",
                          tokenizer_path=str(tmp_path / "big.model"))
    with pytest.raises(ValueError, match="simulator.tokenizer_path"):
        build_llm_simulator(big)


def test_history_shows_the_problem_once_in_either_protocol():
    from sweet_megatron.env.simulators import format_history

    demo = [Message("system", "instructions and problem"), Message("assistant", "q?"), Message("user", "a.")]
    colbench = [Message("system", "instructions"), Message("user", TASK.problem_description), *demo[1:]]
    want = f"user: {TASK.problem_description}\n\nagent: q?\n\nuser: a."
    assert format_history(TASK, demo) == format_history(TASK, colbench) == want
