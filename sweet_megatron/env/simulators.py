"""The simulated people every environment shares, behind one batched interface (env.base.Simulator):

    simulator.respond(tasks, dialogues) -> replies

`dialogues[i]` is the episode's chat so far (system prompt, then alternating assistant/user
messages) ending with the agent's latest question. One call per turn for the whole batch, so an
LLM-backed simulator makes one generate call (or one burst of HTTP requests) a turn.

Each environment has its own deterministic rule-based person (simulator=rule; e.g.
colbench_backend/simulator.py, synthetic/simulator.py). Here, shared by all of them:

- LLMSimulator: the ColBench human-simulator prompt (answer only from the hidden information, in
  two sentences; replies cut at 400 characters) through a ChatBackend: any RolloutEngine with a
  tokenizer (EngineChatBackend), or an OpenAI-compatible HTTP endpoint (OpenAIChatBackend: stdlib
  urllib, timeouts, bounded retries; a dead endpoint raises SimulatorError naming the URL).

`build_llm_simulator(SimulatorConfig)` makes the configured one: simulator=http, or
simulator=engine (a second model, its own HF checkpoint and tokenizer, on a local or vLLM engine
loaded here; it never shares weights with the agent). The trainer takes the environment's
rule-based person for simulator=rule (training/episodes.build_simulator) and this otherwise.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from sweet_megatron.data.chat import Message, render_prompt
from sweet_megatron.data.tokenizer import Tokenizer
from sweet_megatron.env.base import HUMAN_RESPONSE_CHARACTER_LIMIT, Simulator
from sweet_megatron.rollout.base import RolloutEngine, SamplingParams


class SimulatorError(RuntimeError):
    """The simulator could not produce replies (e.g. its LLM endpoint is unreachable)."""


# ---------------------------------------------------------------- LLM-backed

HUMAN_PROMPT = """You are playing a person who is talking with an AI assistant. You want the assistant's help with this problem:
{problem_description}

Help the conversation reach the answer you personally need. What you need is described by the hidden information below: answer the assistant's questions only with what it says, and say that you don't know when it does not contain the answer. Act like a person who needs help, and never show or dictate the code itself.

Hidden information (the assistant cannot see it):
{hidden_information}

The conversation so far:
{dialogue_history}

Now reply to the assistant's last message in at most two sentences, and write nothing else."""
"""ColBench's human-simulator prompt, in this project's words with the same rules: the problem,
the hidden information as the only source of answers, "don't know" otherwise, a person's voice,
two sentences; and, stated outright, no code handed over."""


def format_history(task, dialogue: list[Message]) -> str:
    """The dialogue as the simulator prompt shows it: the problem as the user's first message,
    then 'agent:'/'user:' turns. A dialogue that already opens with the problem as the person's
    message (ColBench's protocol) shows it once."""
    parts = [f"user: {task.problem_description}"]
    body = [m for m in dialogue if m.role != "system"]
    if body and body[0] == Message("user", task.problem_description):
        body = body[1:]
    for msg in body:
        if msg.role == "assistant":
            parts.append(f"agent: {msg.content}")
        elif msg.role == "user":
            parts.append(f"user: {msg.content}")
    return "\n\n".join(parts)


class ChatBackend(Protocol):
    def complete(self, conversations: list[list[dict]]) -> list[str]:
        """One completion per conversation ([{'role': ..., 'content': ...}, ...])."""


class EngineChatBackend:
    """Chat completions from a RolloutEngine: one generate call for the whole batch."""

    def __init__(self, engine: RolloutEngine, tokenizer: Tokenizer, params: SamplingParams | None = None):
        self.engine = engine
        self.tokenizer = tokenizer
        self.params = params or SamplingParams(temperature=0.0, max_tokens=128,
                                               stop_token_ids=(tokenizer.eot_id,))
        if self.params.n != 1:
            raise ValueError(f"EngineChatBackend: SamplingParams.n={self.params.n}; use 1")

    def complete(self, conversations: list[list[dict]]) -> list[str]:
        prompts = [render_prompt(self.tokenizer, [Message(m["role"], m["content"]) for m in conv])
                   for conv in conversations]
        generations = self.engine.generate(prompts, self.params)
        return [self.tokenizer.decode(g[0].token_ids) for g in generations]


@dataclass
class OpenAIChatBackend:
    """An OpenAI-compatible /chat/completions endpoint over HTTP (stdlib urllib)."""

    base_url: str
    """E.g. 'http://127.0.0.1:8000/v1' (the request goes to base_url + '/chat/completions')."""
    model: str
    """The served model name."""
    api_key: str | None = None
    """Sent as 'Authorization: Bearer <key>' when set."""
    timeout_s: float = 30.0
    """Per-request socket timeout."""
    max_attempts: int = 3
    """Attempts per request (connection errors, timeouts, HTTP 429 and 5xx are retried)."""
    backoff_s: float = 0.5
    """Sleep before retry k is backoff_s * 2**(k-1)."""
    max_tokens: int = 256
    temperature: float = 0.0
    max_concurrency: int = 8
    """Requests in flight at once for one batch."""

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.max_attempts < 1 or self.max_concurrency < 1:
            raise ValueError("OpenAIChatBackend: timeout_s > 0, max_attempts >= 1 and max_concurrency >= 1 required")

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    def _post(self, messages: list[dict]) -> str:
        body = json.dumps({"model": self.model, "messages": messages, "max_tokens": self.max_tokens,
                           "temperature": self.temperature}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last = ""
        for attempt in range(1, self.max_attempts + 1):
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    payload = json.loads(response.read().decode("utf-8"))
                content = payload["choices"][0]["message"]["content"]
                return content if isinstance(content, str) else ""
            except urllib.error.HTTPError as e:
                detail = e.read(300).decode("utf-8", "replace")
                last = f"HTTP {e.code}: {detail}"
                if e.code != 429 and e.code < 500:
                    raise SimulatorError(f"LLM simulator endpoint {self.url} refused the request ({last}); "
                                         "check the model name and the API key") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
                last = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
            except (ValueError, KeyError, IndexError, TypeError) as e:
                raise SimulatorError(f"LLM simulator endpoint {self.url} returned an unexpected body "
                                     f"({type(e).__name__}: {e}); is it OpenAI-compatible?") from None
            if attempt < self.max_attempts:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
        raise SimulatorError(
            f"LLM simulator endpoint {self.url} failed after {self.max_attempts} attempts "
            f"(timeout {self.timeout_s}s each): {last}. Is the server running and reachable? "
            "Or use the rule-based simulator.")

    def complete(self, conversations: list[list[dict]]) -> list[str]:
        if len(conversations) <= 1:
            return [self._post(conv) for conv in conversations]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(conversations))) as pool:
            return list(pool.map(self._post, conversations))


class LLMSimulator:
    """A simulated person played by an LLM, with the ColBench human-simulator prompt."""

    def __init__(self, backend: ChatBackend, prompt_template: str = HUMAN_PROMPT,
                 max_chars: int = HUMAN_RESPONSE_CHARACTER_LIMIT):
        self.backend = backend
        self.prompt_template = prompt_template
        self.max_chars = max_chars

    def conversation(self, task, dialogue: list[Message]) -> list[dict]:
        prompt = self.prompt_template.format(problem_description=task.problem_description,
                                             hidden_information=task.hidden_information,
                                             dialogue_history=format_history(task, dialogue))
        return [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": prompt}]

    def respond(self, tasks: list, dialogues: list[list[Message]]) -> list[str]:
        conversations = [self.conversation(t, d) for t, d in zip(tasks, dialogues, strict=True)]
        replies = self.backend.complete(conversations) if conversations else []
        return [(r or "").strip()[: self.max_chars] or "I don't know." for r in replies]


# ---------------------------------------------------------------- from the config


def build_llm_simulator(cfg, seed: int = 0) -> Simulator:
    """The LLM-backed simulator that `cfg` (config.SimulatorConfig) names (simulator=http or
    simulator=engine; simulator=rule is the environment's own: Environment.rule_simulator)."""
    if cfg.kind == "http":
        return LLMSimulator(OpenAIChatBackend(base_url=cfg.url, model=cfg.model, timeout_s=cfg.timeout_s,
                                              max_attempts=cfg.retries))
    if cfg.kind == "engine":
        engine, tokenizer = load_simulator_engine(cfg, seed)
        params = SamplingParams(temperature=cfg.temperature, max_tokens=cfg.max_tokens,
                                stop_token_ids=(tokenizer.eot_id, tokenizer.eos_id), seed=seed)
        return LLMSimulator(EngineChatBackend(engine, tokenizer, params))
    raise ValueError(f"simulator.kind={cfg.kind!r}: build_llm_simulator takes http or engine; simulator=rule is the "
                     "environment's own person (Environment.rule_simulator)")


def load_simulator_engine(cfg, seed: int = 0) -> tuple[RolloutEngine, Tokenizer]:
    """The simulator's own model on its own engine, weights streamed from its HF directory
    (simulator.checkpoint), and its tokenizer (simulator.tokenizer_*; default: that directory)."""
    from sweet_megatron.data.tokenizer import load_tokenizer
    from sweet_megatron.weights.hf_io import ConversionError, HFCheckpoint

    try:
        hf = HFCheckpoint(cfg.checkpoint)
    except ConversionError as exc:
        raise ValueError(f"simulator.checkpoint={cfg.checkpoint}: {exc}") from None
    tokenizer = load_tokenizer(cfg.tokenizer_kind, cfg.tokenizer_path or cfg.checkpoint)
    if tokenizer.vocab_size > hf.cfg.vocab_size:
        raise ValueError(f"simulator tokenizer has {tokenizer.vocab_size} tokens but simulator.checkpoint's model "
                         f"only {hf.cfg.vocab_size}: set simulator.tokenizer_path to the model's own tokenizer")
    if cfg.engine == "vllm":
        from sweet_megatron.rollout.vllm_engine import VLLMEngine

        engine: RolloutEngine = VLLMEngine(hf.cfg, seed=seed, gpu_memory_utilization=cfg.gpu_memory_utilization)
    else:
        from sweet_megatron.rollout.local import LocalEngine

        engine = LocalEngine(hf.cfg, seed=seed)
    read = hf.reader()
    engine.update_weights((name, read(name)) for name in hf.index)
    return engine, tokenizer
