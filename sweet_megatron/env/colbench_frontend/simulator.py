"""The rule-based simulated person of the frontend task: answers from the reference page's markup.

`page_outline(html)` reads a page (stdlib html.parser) into its top-level parts in order (the
children of <body>: header, nav, main, section, footer, div...), each with its Tailwind background
and text colour classes and its headings. `FrontendRuleSimulator.respond(tasks, dialogues)` (the
same batched interface as env/simulators.py) answers the agent's last message:

- when it holds a page (extract_html), the biggest differences between that draft and the
  reference: parts missing or extra, parts out of order, a part's background colour, headings
  (at most three differences, the order of this list);
- otherwise by keywords: colours ("colour", "color", "background", "theme") -> the parts'
  background colours; parts ("section", "layout", "order", "structure") -> the parts in order;
  texts ("title", "heading", "text", "name", "say") -> the headings; a part named in the question
  narrows the answer to it. Nothing matched: "I don't know".

Synthetic pages (synthetic.py) answer questions from their hidden details instead
(synthetic.synthetic_reply: the canonical sentence of each detail asked about).

Replies are cut at 400 characters, as the backend simulator's.

The LLM-backed person: `FRONTEND_HUMAN_PROMPT` (the reference page's HTML and the dialogue; reply
briefly, as a person with that design in mind, never handing over markup) through the backend's
`LLMSimulator` and any ChatBackend; `build_frontend_simulator(SimulatorConfig)` makes the configured
one: simulator=rule (FrontendRuleSimulator), simulator=http (an OpenAI-compatible endpoint) or
simulator=engine (a second model on a local or vLLM engine, env/simulators.load_simulator_engine).
The model reads the reference as HTML text: this is a text LLM, not a VLM. A VLM would be given the
rendered reference (render.BrowserPool's screenshot) instead; that path is not built.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

from sweet_megatron.env.colbench_frontend.records import FrontendTask, extract_html

REPLY_LIMIT = 400
UNKNOWN = "I don't know; I have not decided that."
_BG = re.compile(r"^bg-([a-z]+(?:-\d{2,3})?)$")
_FG = re.compile(r"^text-((?:white|black)|[a-z]+-\d{2,3})$")
_HEADINGS = {"h1", "h2", "h3"}


@dataclass
class Part:
    """One top-level part of a page."""

    tag: str
    background: str | None = None
    """Its Tailwind background colour class without 'bg-' (e.g. 'green-500'), None when it has none."""
    text_colour: str | None = None
    headings: list[str] = field(default_factory=list)


class _Outline(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[Part] = []
        self.depth = 0  # depth below <body>
        self.in_body = False
        self.heading: list[str] | None = None
        self.body_bg: str | None = None

    def handle_starttag(self, tag, attrs):
        classes = (dict(attrs).get("class") or "").split()
        if tag == "body":
            self.in_body = True
            self.body_bg = next((m.group(1) for c in classes if (m := _BG.match(c))), None)
            return
        if not self.in_body or tag in ("br", "img", "input", "hr", "meta", "link"):
            return
        self.depth += 1
        if self.depth == 1:
            self.parts.append(Part(tag, next((m.group(1) for c in classes if (m := _BG.match(c))), None),
                                   next((m.group(1) for c in classes if (m := _FG.match(c))), None)))
        if tag in _HEADINGS and self.parts:
            self.heading = []

    def handle_endtag(self, tag):
        if tag == "body":
            self.in_body = False
            return
        if not self.in_body or tag in ("br", "img", "input", "hr", "meta", "link"):
            return
        if tag in _HEADINGS and self.heading is not None:
            text = " ".join("".join(self.heading).split())
            if text:
                self.parts[-1].headings.append(text)
            self.heading = None
        self.depth = max(0, self.depth - 1)

    def handle_data(self, data):
        if self.heading is not None:
            self.heading.append(data)


def page_outline(html: str) -> tuple[str | None, list[Part]]:
    """(body background colour class or None, top-level parts in order) of a page."""
    parser = _Outline()
    parser.feed(html)
    parser.close()
    return parser.body_bg, parser.parts


def _name(part: Part) -> str:
    return f"the {part.tag}" + (f" '{part.headings[0]}'" if part.headings else "")


def _colour(name: str | None) -> str:
    return name.replace("-", " ") if name else "no colour of its own"


def differences(draft: str, reference: str, limit: int = 3) -> list[str]:
    """The biggest differences of a draft page from the reference, most important first."""
    dbg, dparts = page_outline(draft)
    rbg, rparts = page_outline(reference)
    out: list[str] = []
    dtags, rtags = [p.tag for p in dparts], [p.tag for p in rparts]
    for tag in dict.fromkeys(rtags):
        if rtags.count(tag) > dtags.count(tag):
            out.append(f"I want {rtags.count(tag)} {tag} part(s); yours has {dtags.count(tag)}.")
    for tag in dict.fromkeys(dtags):
        if dtags.count(tag) > rtags.count(tag):
            out.append(f"Your page has {dtags.count(tag)} {tag} part(s); I want {rtags.count(tag)}.")
    common = [t for t in dtags if t in rtags]
    if not out and common != [t for t in rtags if t in dtags]:
        out.append("The parts should come in this order: " + ", ".join(rtags) + ".")
    if dbg != rbg:
        out.append(f"The page background should be {_colour(rbg)}, not {_colour(dbg)}.")
    for d, r in zip(dparts, rparts):
        if d.tag == r.tag and d.background != r.background:
            out.append(f"The {r.tag} background should be {_colour(r.background)}, not {_colour(d.background)}.")
        if d.tag == r.tag and r.headings and d.headings[:1] != r.headings[:1]:
            out.append(f"The {r.tag} heading should read '{r.headings[0]}'.")
    return out[:limit]


def keyword_reply(reference: str, question: str) -> str:
    """Answer a question about the reference page from its outline."""
    q = question.lower()
    body_bg, parts = page_outline(reference)
    named = [p for p in parts if re.search(rf"\b{p.tag}\b", q)] or parts
    if re.search(r"colou?r|background|theme", q):
        said = [f"{_name(p)} is {_colour(p.background)}" for p in named if p.background]
        if body_bg and named is parts:
            said.insert(0, f"the page background is {_colour(body_bg)}")
        text = "; ".join(said) + "."
        return text[:1].upper() + text[1:] if said else UNKNOWN
    if re.search(r"section|layout|order|structure|parts?\b", q):
        return "From top to bottom: " + ", ".join(_name(p) for p in parts) + "."
    if re.search(r"title|heading|text|name|say|called", q):
        said = [f"{p.tag}: '{h}'" for p in named for h in p.headings[:2]]
        return ("The headings are " + "; ".join(said) + ".") if said else UNKNOWN
    return UNKNOWN


class FrontendRuleSimulator:
    """The embedded, deterministic simulated person for frontend tasks (real and synthetic)."""

    def respond(self, tasks: list[FrontendTask], dialogues: list[list]) -> list[str]:
        replies = []
        for task, dialogue in zip(tasks, dialogues, strict=True):
            last = next((m.content for m in reversed(dialogue) if m.role == "assistant"), "")
            draft = extract_html(last)
            if draft is not None:
                diffs = differences(draft, task.ground_truth)
                reply = " ".join(diffs) if diffs else "That looks like what I want."
            elif task.synthetic is not None:
                from sweet_megatron.env.colbench_frontend.synthetic import spec_of, synthetic_reply

                reply = synthetic_reply(spec_of(task), last)
            else:
                reply = keyword_reply(task.ground_truth, last)
            replies.append(reply[:REPLY_LIMIT])
        return replies


# ---------------------------------------------------------------- LLM-backed

FRONTEND_HUMAN_PROMPT = """You are playing a person who is talking with an AI assistant that is building a web page for you. You want this page:
{problem_description}

You have the finished design in mind: it is exactly the page whose HTML (Tailwind CSS classes) is below. Answer the assistant's questions about colours, layout, the order of the sections, texts and sizes only from this page, in plain words, and say that you don't know when the page does not show it. When the assistant shows you a draft page, say briefly how it differs from the page you have in mind. Never show or dictate HTML or class names.

The page you have in mind (the assistant cannot see it):
{hidden_information}

The conversation so far:
{dialogue_history}

Now reply to the assistant's last message in at most two short sentences, as that person, and write nothing else."""
"""The frontend counterpart of env/simulators.HUMAN_PROMPT: the reference page's HTML as the hidden
information, the same rules (answer only from it, "don't know" otherwise, brief, a person's voice,
no markup handed over)."""


def build_frontend_simulator(cfg, seed: int = 0):
    """The frontend simulated person that `cfg` (config.SimulatorConfig) names: rule, http or engine."""
    from sweet_megatron.env.simulators import (
        EngineChatBackend,
        LLMSimulator,
        OpenAIChatBackend,
        load_simulator_engine,
    )
    from sweet_megatron.rollout.base import SamplingParams

    if cfg.kind == "rule":
        return FrontendRuleSimulator()
    if cfg.kind == "http":
        return LLMSimulator(OpenAIChatBackend(base_url=cfg.url, model=cfg.model, timeout_s=cfg.timeout_s,
                                              max_attempts=cfg.retries), prompt_template=FRONTEND_HUMAN_PROMPT)
    if cfg.kind == "engine":
        engine, tokenizer = load_simulator_engine(cfg, seed)
        params = SamplingParams(temperature=cfg.temperature, max_tokens=cfg.max_tokens,
                                stop_token_ids=(tokenizer.eot_id, tokenizer.eos_id), seed=seed)
        return LLMSimulator(EngineChatBackend(engine, tokenizer, params), prompt_template=FRONTEND_HUMAN_PROMPT,
                            max_chars=REPLY_LIMIT)
    raise ValueError(f"simulator.kind={cfg.kind!r}: use rule, http or engine")
