"""A synthetic offline task family ("tariff-v1") in the ColBench backend schema, small enough for a
tiny model (a few million parameters, a 2048-piece vocabulary) to learn on CPU.

Every task is a tariff function over a closed vocabulary, one line per slot:

    def shipping_cost(weight, distance):
        cost = weight * 4                 # rate
        if weight > 28:                   # threshold (absent when the rule is "none")
            cost = cost + 15              # rule (fee: +, discount: -) and amount
        cost = min(cost, 500)             # cap ("maximum")
        return round(cost, 2)             # digits ("rounding")

The six *slots* are rate, threshold, rule, amount, cap and digits (threshold and amount do not
exist when the rule is "none"). The description states some slots as facts, each with the line of
code that holds it ("The rate is 4 (cost = weight * 4)."), and
lists the others, the *hidden details*, mixed with *distractors* (things that do not matter, such
as the second argument or "the day"), in an "Ask me about ..." sentence. Difficulty = number of
hidden details (1 to 4). Relevance can depend on earlier answers: when the rule is hidden, the
agent must learn whether there is a fee, a discount or neither before the matching amount
question is useful; asking about the other one, or about a threshold that does not exist, wastes
a turn. The family has 15 askable topics (6 slot topics + fee/discount variants + 7 distractor
words), more than the 9 questions a 10-turn episode allows.

Questions have canonical forms (`QUESTIONS`) and canonical replies, which are also the sentences
the description states facts with, so the same `parse_facts` reads both. Quoting the code line is
what a person with the code in front of them does, and it is what makes the family learnable by a
model trained from scratch in minutes: a value then reaches the answer by copying a token after
the same operator ("* 4"), which small transformers learn quickly (induction), instead of by
binding a number to the words around it, which our 3.5M-parameter model did not learn in 1200
warm-start steps. Asking the right questions, in the right order, is still the whole game.

The rule-based simulator (`synthetic_reply`) also recognises free-form questions by keywords and
answers at most two topics, from the hidden details only.

The 10 tests are drawn so that a wrong guess of any single hidden detail (every other candidate
value, with the other slots right) fails at least one test (`wrong_guess_survivors` checks it).
Train and held-out splits are disjoint by construction: the split of a task is a hash of its
reference code, so no function appears in both (`split_of`).

The oracle that values agent actions against the hidden details (credit checks) is oracle.py;
the scripted demonstrations, the base-model corpus and the `Environment` are beside it.
"""

from __future__ import annotations

import ast
import hashlib
import random
import re
from dataclasses import asdict, dataclass, field

from sweet_megatron.env.base import ANSWER_MARK
from sweet_megatron.env.colbench_backend.tasks import Task, TaskFormatError, extract_code, ordered_tests

FAMILY = "tariff-v1"

# Candidate values. The slots' ranges are disjoint (digits 0-2, rates 3-9, thresholds multiples of
# 4 that are not multiples of 5, amounts multiples of 5 from 10, caps from 500), so a number in the
# code names its slot by its value alone: a small model can learn to copy "the rate-like number said
# so far" long before it learns to bind a number to the words around it. Every cap is above every
# value a test below 50 can reach (49.999 * 9 + 35 < 500), so the cap never hides a threshold or
# amount test; the "huge" tests (a >= 400) always hit it.
RATES = (3, 4, 5, 6, 7, 8, 9)
THRESHOLDS = (12, 16, 24, 28, 32, 36, 44)
RULES = ("fee", "discount", "none")
AMOUNTS = (10, 15, 20, 25, 30, 35)
CAPS = (500, 550, 600, 650, 700, 750)
DIGITS = (0, 1, 2)  # inputs have 3 decimals, so 2 decimals and "no rounding" differ
CANDIDATES = {"rate": RATES, "threshold": THRESHOLDS, "rule": RULES, "amount": AMOUNTS,
              "cap": CAPS, "digits": DIGITS}
DEFAULTS = {"rate": 6, "threshold": 28, "rule": "none", "amount": 20, "cap": None, "digits": None}
"""What an agent that does not know a detail writes (the scripted agent's guesses): a middle
value for a number, and no rule, no maximum and no rounding when it was not told of one."""
SLOTS = ("rate", "threshold", "rule", "amount", "cap", "digits")
DISTRACTOR_WORDS = ("weekday", "color", "season", "city", "weather", "brand")
NUM_TESTS = 10


@dataclass(frozen=True)
class Skin:
    """Names that dress the same function up as different everyday tariffs."""

    function: str
    amount_arg: str
    other_arg: str
    noun: str
    thing: str


SKINS = (
    Skin("shipping_cost", "weight", "distance", "cost", "parcel"),
    Skin("parking_price", "hours", "floor", "price", "car"),
    Skin("energy_bill", "usage", "month", "bill", "home"),
    Skin("rental_charge", "days", "model", "charge", "bike"),
    Skin("water_bill", "liters", "street", "bill", "house"),
    Skin("tutor_pay", "hours", "subject", "pay", "lesson"),
    Skin("delivery_cost", "items", "zone", "cost", "order"),
    Skin("gym_price", "visits", "locker", "price", "member"),
)
SKIN_BY_FUNCTION = {s.function: s for s in SKINS}

# Canonical question per topic. "fee"/"discount" are the amount questions for that rule.
QUESTIONS = {
    "rate": "What is the rate?",
    "threshold": "What is the threshold?",
    "rule": "Is there a fee or a discount?",
    "fee": "What is the fee?",
    "discount": "What is the discount?",
    "cap": "What is the maximum?",
    "digits": "How should I round?",
}


def distractor_question(word: str) -> str:
    return f"Does the {word} matter?"


def slots_for_rule(rule: str) -> tuple[str, ...]:
    """Slots that exist in the code of a function with this rule (no threshold or amount without one)."""
    return ("rate", "rule", "cap", "digits") if rule == "none" else SLOTS


@dataclass(frozen=True)
class SyntheticSpec:
    """The structured hidden side of a synthetic task (stored in the record's `synthetic` field)."""

    family: str
    function: str
    """Skin key (the function name)."""
    params: dict
    """Slot values: rate, threshold, rule, amount, cap, digits (threshold/amount None when rule is none)."""
    hidden: tuple[str, ...]
    """Relevant slots the description does not state; difficulty = len(hidden)."""
    distractors: tuple[str, ...]
    """Words the description lists as askable that do not matter (may include 'threshold' when
    the rule is 'none')."""
    split: str = "train"
    seed: int = 0

    @property
    def skin(self) -> Skin:
        return SKIN_BY_FUNCTION[self.function]

    @property
    def difficulty(self) -> int:
        return len(self.hidden)

    @property
    def slots(self) -> tuple[str, ...]:
        """Slots that exist in the code."""
        return slots_for_rule(self.params["rule"])

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"], d["distractors"] = list(self.hidden), list(self.distractors)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SyntheticSpec:
        if not isinstance(d, dict):
            raise TypeError(f"expected an object, got {type(d).__name__}")
        unknown = set(d) - {"family", "function", "params", "hidden", "distractors", "split", "seed"}
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}")
        if d.get("family") != FAMILY:
            raise ValueError(f"family {d.get('family')!r} is not {FAMILY!r}")
        if d.get("function") not in SKIN_BY_FUNCTION:
            raise ValueError(f"function {d.get('function')!r} is not one of {sorted(SKIN_BY_FUNCTION)}")
        params = d["params"]
        if not isinstance(params, dict) or set(params) != set(SLOTS):
            raise ValueError(f"params must have exactly the keys {list(SLOTS)}")
        if params["rule"] not in RULES:
            raise ValueError(f"params.rule {params['rule']!r} is not one of {RULES}")
        spec = cls(FAMILY, d["function"], dict(params), tuple(d["hidden"]), tuple(d["distractors"]),
                   str(d.get("split", "train")), int(d.get("seed", 0)))
        bad = [h for h in spec.hidden if h not in spec.slots]
        if bad:
            raise ValueError(f"hidden {bad} are not slots of this task ({list(spec.slots)})")
        return spec


def check_record(task: Task, where: str) -> None:
    """TaskFormatError (naming `where`, 'file:line') when a loaded task's `synthetic` field is not a
    valid spec of this family: pass as `load_tasks(path, check=check_record)`."""
    if task.synthetic is None:
        return
    try:
        SyntheticSpec.from_dict(task.synthetic)
    except (TypeError, ValueError, KeyError) as e:
        raise TaskFormatError(f"{where}: field 'synthetic': {e}; regenerate the task with "
                              "`sweet-colbench generate`") from None


def spec_of(task: Task) -> SyntheticSpec:
    """The synthetic spec of a task; a clear error for a real (non-synthetic) task."""
    if task.synthetic is None:
        raise ValueError(f"task {task.task_id or task.index} is not a synthetic {FAMILY} task "
                         "(it has no 'synthetic' field)")
    return SyntheticSpec.from_dict(task.synthetic)


# ---------------------------------------------------------------- the function and its code


def tariff_value(params: dict, a: float) -> float:
    """The reference function's value, computed here (same operations in the same order)."""
    x = a * params["rate"]
    if params["rule"] != "none" and a > params["threshold"]:
        x = x + params["amount"] if params["rule"] == "fee" else x - params["amount"]
    if params["cap"] is not None:
        x = min(x, params["cap"])
    return x if params["digits"] is None else round(x, params["digits"])


def code_line(skin: Skin, params: dict, slot: str) -> str | None:
    """The one line of the reference code that holds a slot's value (unindented), or None when the
    slot has no line of its own (the rule, which only picks the amount line's sign; a slot that
    does not exist in this function)."""
    a, v, p = skin.amount_arg, skin.noun, params
    if slot == "rate":
        return f"{v} = {a} * {p['rate']}"
    if slot == "threshold" and p["rule"] != "none":
        return f"if {a} > {p['threshold']}:"
    if slot == "amount" and p["rule"] != "none":
        return f"{v} = {v} {'+' if p['rule'] == 'fee' else '-'} {p['amount']}"
    if slot == "cap" and p["cap"] is not None:
        return f"{v} = min({v}, {p['cap']})"
    if slot == "digits":
        return f"return {v}" if p["digits"] is None else f"return round({v}, {p['digits']})"
    return None


def tariff_code(skin: Skin, params: dict) -> str:
    """The reference code for these slot values: one line per slot (see the module docstring)."""
    lines = [f"def {skin.function}({skin.amount_arg}, {skin.other_arg}):", "    " + code_line(skin, params, "rate")]
    if params["rule"] != "none":
        lines += ["    " + code_line(skin, params, "threshold"), "        " + code_line(skin, params, "amount")]
    if params["cap"] is not None:
        lines.append("    " + code_line(skin, params, "cap"))
    lines.append("    " + code_line(skin, params, "digits"))
    return "\n".join(lines)


# ---------------------------------------------------------------- sentences: facts and replies


def fact_sentence(slot: str, params: dict, skin: Skin, rule_known: bool = True) -> str:
    """The canonical sentence stating one slot (used in descriptions and simulator replies): the
    value in words, then the line of code that holds it, as a person who has the code in front of
    them would quote it ("The rate is 8 (cost = weight * 8).")."""
    p = params
    if slot == "rate":
        text = f"The rate is {p['rate']}"
    elif slot == "threshold":
        text = "There is no threshold" if p["rule"] == "none" else f"The threshold is {p['threshold']}"
    elif slot == "rule":
        return "There is no fee or discount." if p["rule"] == "none" else f"Above the threshold there is a {p['rule']}."
    elif slot == "amount":
        if not rule_known:  # quoting the line would give the sign away
            return f"The amount is {p['amount']}."
        text = f"The {p['rule']} is {p['amount']}"
    elif slot == "cap":
        text = f"The maximum is {p['cap']}"
    elif slot == "digits":
        text = f"Round to {p['digits']} decimals"
    else:
        raise KeyError(slot)
    line = code_line(skin, p, slot)
    return f"{text} ({line.removesuffix(':')})." if line else f"{text}."


def topic_reply(spec: SyntheticSpec, topic: str) -> str:
    """The simulated person's sentence about one topic, from the hidden details only."""
    p = spec.params
    if topic in ("fee", "discount"):
        return fact_sentence("amount", p, spec.skin) if p["rule"] == topic else f"There is no {topic}."
    if topic in SLOTS:
        return fact_sentence(topic, p, spec.skin)
    word = topic.removeprefix("distractor:")
    return f"The {word} does not matter."


def reveals(spec: SyntheticSpec, topic: str) -> set[str]:
    """Relevant slots that the reply to `topic` makes known."""
    rule = spec.params["rule"]
    if topic in ("fee", "discount"):
        return {"rule", "amount"} if rule == topic else set()
    if topic == "threshold":
        return set() if rule == "none" else {"threshold"}
    if topic in ("rate", "rule", "cap", "digits"):
        return {topic}
    return set()


_FACT_PATTERNS = (
    (re.compile(r"The rate is (\d+)"), lambda m: {"rate": int(m[1])}),
    (re.compile(r"The threshold is (\d+)"), lambda m: {"threshold": int(m[1])}),
    (re.compile(r"There is no fee or discount"), lambda m: {"rule": "none"}),
    (re.compile(r"Above the threshold there is a (fee|discount)"), lambda m: {"rule": m[1]}),
    (re.compile(r"The (fee|discount) is (\d+)"), lambda m: {"rule": m[1], "amount": int(m[2])}),
    (re.compile(r"The amount is (\d+)"), lambda m: {"amount": int(m[1])}),
    (re.compile(r"The maximum is (\d+)"), lambda m: {"cap": int(m[1])}),
    (re.compile(r"Round to (\d+) decimals"), lambda m: {"digits": int(m[1])}),
)


def parse_facts(text: str) -> dict:
    """Slot values stated in canonical sentences anywhere in `text` (later sentences win)."""
    found: list[tuple[int, dict]] = []
    for pattern, read in _FACT_PATTERNS:
        found += [(m.start(), read(m)) for m in pattern.finditer(text)]
    facts: dict = {}
    for _, part in sorted(found, key=lambda x: x[0]):
        facts.update(part)
    return facts


_TOPIC_PATTERNS = (
    ("rule", r"\bfee\s+or\s+(?:\w+\s+){0,3}discount|\bdiscount\s+or\s+(?:\w+\s+){0,3}fee|\brule\b"),
    ("rate", r"\brates?\b|\bper\s+(?:unit|hour|kg|item|day|liter|visit)\b|\bmultipl"),
    ("threshold", r"\bthreshold|\bcut-?off\b|\bbreak-?point\b"),
    ("fee", r"\bfees?\b|\bsurcharge|\bextra\s+charge"),
    ("discount", r"\bdiscounts?\b|\breduction\b|\brebate\b"),
    ("cap", r"\bmax(?:imum)?\b|\bcap(?:ped)?\b|\bceiling\b|\bupper\s+limit\b|\bat\s+most\b"),
    ("digits", r"\bround|\bdecimals?\b|\bprecision\b|\bdigits?\b"),
)


def parse_question(text: str, spec: SyntheticSpec | None = None, max_topics: int = 2) -> list[str]:
    """Topics a question asks about, in order of mention (at most `max_topics`).

    Topics: rate, threshold, rule, fee, discount, cap, digits, and 'distractor:<word>' for the
    distractor words and the task's second argument.
    """
    low = text.lower()
    hits: list[tuple[int, str]] = []
    rule_spans = []
    for topic, pattern in _TOPIC_PATTERNS:
        for m in re.finditer(pattern, low):
            if topic in ("fee", "discount") and any(s <= m.start() < e for s, e in rule_spans):
                continue  # part of "fee or discount"
            if topic == "rule":
                rule_spans.append(m.span())
            hits.append((m.start(), topic))
    words = list(DISTRACTOR_WORDS)
    if spec is not None:
        words.append(spec.skin.other_arg)
    for word in words:
        for m in re.finditer(rf"\b{re.escape(word)}s?\b", low):
            hits.append((m.start(), f"distractor:{word}"))
    topics: list[str] = []
    for _, topic in sorted(hits):
        if topic not in topics:
            topics.append(topic)
    return topics[:max_topics]


FALLBACK_REPLY = "I am not sure what you mean. Please ask me about one of the details."


def synthetic_reply(spec: SyntheticSpec, question: str) -> str:
    """The rule-based simulated person's reply (at most two sentences)."""
    topics = parse_question(question, spec)
    if not topics:
        return FALLBACK_REPLY
    return " ".join(topic_reply(spec, t) for t in topics)


# ---------------------------------------------------------------- description and hints


def hint_phrases(spec: SyntheticSpec) -> list[str]:
    """The 'ask me about' items for hidden details and distractors, in the description's order."""
    hidden = set(spec.hidden)
    p = spec.params
    items = []
    for slot in spec.hidden:
        if slot == "rate":
            items.append("the rate")
        elif slot == "threshold":
            items.append("the threshold")
        elif slot == "rule":
            items.append("the fee or discount")
        elif slot == "amount" and "rule" not in hidden:
            items.append(f"the {p['rule']}")
        elif slot == "cap":
            items.append("the maximum")
        elif slot == "digits":
            items.append("the rounding")
    items += [f"the {w}" for w in spec.distractors]
    return items


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def describe(spec: SyntheticSpec, hint_order: list[str]) -> str:
    skin, p = spec.skin, spec.params
    facts = []
    for slot in spec.slots:
        if slot not in spec.hidden:
            facts.append(fact_sentence(slot, p, skin, rule_known="rule" not in spec.hidden))
    article = "an" if skin.thing[0] in "aeiou" else "a"
    parts = [f"Write a function that returns the {skin.noun} of {article} {skin.thing} "
             f"from its {skin.amount_arg} and {skin.other_arg}.", *facts,
             f"Ask me about {_join(hint_order)}.",
             f"The signature of the function is: def {skin.function}({skin.amount_arg}, {skin.other_arg})"]
    return " ".join(parts)


# ---------------------------------------------------------------- tests


def _draw_inputs(rng: random.Random, params: dict) -> list[float]:
    def frac() -> float:
        return rng.randint(1, 999) / 1000

    if params["rule"] == "none":
        base = [rng.randint(1, 9), rng.randint(10, 30), rng.randint(41, 49), rng.randint(400, 480),
                rng.randint(1, 49), rng.randint(1, 49), rng.randint(1, 49), rng.randint(1, 49),
                rng.randint(1, 49), rng.randint(1, 49)]
    else:
        t = params["threshold"]
        base = [t - rng.randint(1, 4), t + rng.randint(0, 4), rng.randint(1, max(1, t - 5)),
                rng.randint(41, 48), rng.randint(400, 480), rng.randint(t + 1, 48),
                rng.randint(1, 48), rng.randint(1, 48), rng.randint(1, 48), rng.randint(1, 48)]
    return [round(b + frac(), 3) for b in base]


def wrong_guess_survivors(params: dict, hidden: tuple[str, ...], inputs: list[float]) -> list[tuple[str, object]]:
    """(slot, wrong value) pairs whose function agrees with the reference on every input.

    A wrong rule is tried with every candidate threshold and amount when the true rule has none;
    a wrong cap or rounding includes leaving it out.
    """
    truth = [tariff_value(params, a) for a in inputs]
    survivors = []
    for slot in hidden:
        omit = (None,) if slot in ("cap", "digits") else ()  # also "no maximum" / "no rounding"
        for value in (*CANDIDATES[slot], *omit):
            if value == params[slot]:
                continue
            variants = [{**params, slot: value}]
            if slot == "rule" and value != "none" and params["rule"] == "none":
                variants = [{**params, "rule": value, "threshold": t, "amount": m}
                            for t in THRESHOLDS for m in AMOUNTS]
            for variant in variants:
                if [tariff_value(variant, a) for a in inputs] == truth:
                    survivors.append((slot, value))
                    break
    return survivors


# ---------------------------------------------------------------- generation and splits


SPLITS = ("train", "heldout")
HELDOUT_FRACTION_BUCKETS = 5  # one bucket in five of all functions is held out


def split_of(ground_truth: str) -> str:
    """The split a reference function belongs to (a hash, so the splits never share a function)."""
    h = int(hashlib.sha256(ground_truth.encode()).hexdigest()[:8], 16)
    return "heldout" if h % HELDOUT_FRACTION_BUCKETS == 0 else "train"


def _draw_task(rng: random.Random, difficulty: int, split: str, seed: int) -> tuple[SyntheticSpec, list[str], list[float]]:
    skin = rng.choice(SKINS)
    rule = rng.choices(RULES, weights=(2, 2, 1))[0]
    rate, threshold = rng.choice(RATES), rng.choice(THRESHOLDS)
    # A discount never takes a value just above the threshold below zero.
    amounts = [m for m in AMOUNTS if rule != "discount" or m < rate * threshold]
    params = {
        "rate": rate,
        "threshold": None if rule == "none" else threshold,
        "rule": rule,
        "amount": None if rule == "none" else rng.choice(amounts),
        "cap": rng.choice(CAPS),
        "digits": rng.choice(DIGITS),
    }
    slots = slots_for_rule(rule)
    hidden = tuple(rng.sample(slots, difficulty))
    pool = [*DISTRACTOR_WORDS, skin.other_arg]
    distractors = rng.sample(pool, rng.randint(1, 4))
    if rule == "none" and "rule" in hidden and rng.random() < 0.5:
        distractors.append("threshold")  # listed, but there is none: relevant only if there were a rule
    spec = SyntheticSpec(FAMILY, skin.function, params, hidden, tuple(distractors), split, seed)
    hints = hint_phrases(spec)
    rng.shuffle(hints)
    for _ in range(100):
        inputs = _draw_inputs(rng, params)
        if not wrong_guess_survivors(params, hidden, inputs):
            return spec, hints, inputs
    raise RuntimeError(f"could not draw discriminating tests for {params} hidden={hidden}")


def generate_tasks(n: int, seed: int = 0, split: str = "train", difficulty: tuple[int, int] = (1, 4)) -> list[Task]:
    """`n` synthetic tasks of `split` ('train' or 'heldout'), difficulties cycling over the inclusive
    range `difficulty`, deterministic in (n, seed, split, difficulty). Ids: syn-<split>-s<seed>-<i>."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: use one of {SPLITS}")
    lo, hi = difficulty
    if not 1 <= lo <= hi <= 4:
        raise ValueError(f"difficulty={difficulty}: use an inclusive range within (1, 4)")
    rng = random.Random(f"{FAMILY}/{split}/{seed}")
    tasks: list[Task] = []
    seen: set[tuple[str, str]] = set()
    while len(tasks) < n:
        k = lo + len(tasks) % (hi - lo + 1)
        spec, hints, inputs = _draw_task(rng, k, split, seed)
        code = tariff_code(spec.skin, spec.params)
        description = describe(spec, hints)
        if split_of(code) != split or (code, description) in seen:
            continue
        seen.add((code, description))
        other = [rng.randint(1, 9) for _ in inputs]
        tests = {f"test{i + 1}": f"{spec.function}({a!r}, {b!r})" for i, (a, b) in enumerate(zip(inputs, other))}
        tasks.append(Task(description, code, code, tests, f"syn-{split}-s{seed}-{len(tasks):05d}",
                          len(tasks), spec.to_dict()))
    return tasks


# ---------------------------------------------------------------- answers without running code


def build_answer(skin: Skin, facts: dict) -> str:
    """Code for the known facts, with DEFAULTS for what is unknown."""
    params = {**DEFAULTS, **facts}
    if params["rule"] == "none":
        params["threshold"] = params["amount"] = None
    return tariff_code(skin, params)


def miscopied(facts: dict) -> dict:
    """The facts with one number copied wrongly: the first known numeric slot that shows in the
    code (in SLOTS order; the rate when none does) moved to the next candidate value, so the code
    `build_answer` writes from them differs from the code it writes from `facts`."""
    shown = slots_for_rule(facts.get("rule", DEFAULTS["rule"]))
    known = [s for s in shown if s != "rule" and facts.get(s) is not None]
    slot = known[0] if known else "rate"
    values = CANDIDATES[slot]
    current = facts.get(slot, DEFAULTS[slot])
    return {**facts, slot: values[(values.index(current) + 1) % len(values)]}


class _Unsupported(Exception):
    pass


def _eval_node(node: ast.AST, env: dict) -> object:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in env:
            raise _Unsupported(f"unknown name {node.id}")
        return env[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_eval_node(node.operand, env)
    if isinstance(node, ast.BinOp):
        ops = {ast.Add: lambda x, y: x + y, ast.Sub: lambda x, y: x - y,
               ast.Mult: lambda x, y: x * y, ast.Div: lambda x, y: x / y}
        if type(node.op) not in ops:
            raise _Unsupported("operator")
        return ops[type(node.op)](_eval_node(node.left, env), _eval_node(node.right, env))
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        cmps = {ast.Gt: lambda x, y: x > y, ast.GtE: lambda x, y: x >= y,
                ast.Lt: lambda x, y: x < y, ast.LtE: lambda x, y: x <= y}
        if type(node.ops[0]) not in cmps:
            raise _Unsupported("comparison")
        return cmps[type(node.ops[0])](_eval_node(node.left, env), _eval_node(node.comparators[0], env))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        funcs = {"min": min, "max": max, "round": round, "abs": abs}
        if node.func.id not in funcs or not 1 <= len(node.args) <= 2:
            raise _Unsupported("call")
        return funcs[node.func.id](*[_eval_node(a, env) for a in node.args])
    if isinstance(node, ast.IfExp):
        return _eval_node(node.body if _eval_node(node.test, env) else node.orelse, env)
    raise _Unsupported(type(node).__name__)


def _exec_body(body: list[ast.stmt], env: dict) -> tuple[bool, object]:
    for stmt in body:
        if isinstance(stmt, ast.Return) and stmt.value is not None:
            return True, _eval_node(stmt.value, env)
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            env[stmt.targets[0].id] = _eval_node(stmt.value, env)
        elif isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name):
            env[stmt.target.id] = _eval_node(ast.BinOp(ast.Name(stmt.target.id), stmt.op, stmt.value), env)
        elif isinstance(stmt, ast.If):
            done, value = _exec_body(stmt.body if _eval_node(stmt.test, env) else stmt.orelse, env)
            if done:
                return True, value
        else:
            raise _Unsupported(type(stmt).__name__)
    return False, None


def template_test_results(task: Task, answer: str) -> list[bool] | None:
    """Per-test pass/fail of an answer on a synthetic task, decided without running it: a small
    interpreter for the arithmetic/if/min/max/round subset this family's functions use. Returns
    None when the answer leaves that subset (then only the sandbox can tell). Where it returns a
    list, the sandboxed evaluator returns the same (tests check this)."""
    spec = spec_of(task)
    tests = ordered_tests(task)
    try:
        tree = ast.parse(extract_code(answer))
    except (SyntaxError, ValueError):
        return [False] * len(tests)  # does not compile in the sandbox either
    for node in tree.body:  # other module-level code would run in the sandbox
        docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        if not (docstring or isinstance(node, ast.FunctionDef)):
            return None
    funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == spec.function]
    if not funcs:
        return [False] * len(tests)  # NameError on every call
    fn = funcs[-1]
    a = fn.args
    if fn.decorator_list or a.vararg or a.kwarg or a.kwonlyargs or a.posonlyargs or a.defaults or len(a.args) != 2:
        return None
    names = [arg.arg for arg in a.args]
    results = []
    for _, expr in tests:
        call = ast.parse(expr, mode="eval").body
        if not isinstance(call, ast.Call) or call.keywords or len(call.args) != 2:
            return None
        args = [ast.literal_eval(arg) for arg in call.args]
        try:
            done, value = _exec_body(fn.body, dict(zip(names, args)))
        except _Unsupported:
            return None
        except (ArithmeticError, TypeError):
            results.append(False)  # raises in the sandbox too
            continue
        results.append(bool(done and value == tariff_value(spec.params, args[0])))
    return results


def answer_is_correct(task: Task, answer: str) -> bool:
    """Whether an answer passes all tests of a synthetic task, decided without running it
    (template_test_results); an answer outside the interpretable subset counts as incorrect."""
    results = template_test_results(task, answer)
    return results is not None and all(results)


@dataclass
class ScriptPolicy:
    """How the scripted reference agent behaves on synthetic tasks (noise for demonstrations)."""

    ask_prob: float = 1.0
    """Probability to ask about each hidden detail (1.0: ask all; 0.0: ask nothing)."""
    distractor_prob: float = 0.0
    """Probability to ask about each listed distractor."""
    free_form_prob: float = 0.0
    """Probability to phrase a question in free form instead of the canonical form."""
    max_questions: int = 9
    """Questions before answering regardless (a 10-turn episode has room for 9)."""
    seed: int = 0
    """Plans are drawn from (seed, task id): the same task gets the same plan."""
    fenced: bool = False
    """Wrap the final code in a ```python fence."""

    def __post_init__(self) -> None:
        for name in ("ask_prob", "distractor_prob", "free_form_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"ScriptPolicy.{name}={getattr(self, name)}: set it in [0, 1]")
        if self.max_questions < 0:
            raise ValueError("ScriptPolicy.max_questions must be >= 0")


FREE_FORM = {
    "rate": ("How much is charged per unit?", "Could you tell me the rate you use?"),
    "threshold": ("From which value on does the special price start? I mean the threshold.",
                  "What threshold should I use?"),
    "rule": ("Do you add a fee or give a discount?", "Which rule applies: fee or discount?"),
    "fee": ("How big is the fee?", "What fee do you add?"),
    "discount": ("How big is the discount?", "What discount do you give?"),
    "cap": ("Is there a maximum value?", "What is the cap on the result?"),
    "digits": ("How many decimals should the result have?", "Should I round the result?"),
}


@dataclass
class _Plan:
    topics: list[str] = field(default_factory=list)
    free_form: list[bool] = field(default_factory=list)


def script_plan(spec: SyntheticSpec, task_id: str, policy: ScriptPolicy) -> _Plan:
    """The ordered topics the scripted agent will ask about ('amount' is resolved per turn)."""
    rng = random.Random(f"script/{policy.seed}/{task_id}")
    hidden = list(spec.hidden)
    rng.shuffle(hidden)
    topics = [s for s in hidden if rng.random() < policy.ask_prob]
    if "amount" in topics and "rule" in spec.hidden:
        topics.remove("amount")
        if "rule" not in topics:
            topics.append("amount")  # guesses which amount to ask about
        else:
            topics.insert(topics.index("rule") + 1, "amount")
    for word in spec.distractors:
        if rng.random() < policy.distractor_prob:
            topics.insert(rng.randint(0, len(topics)), f"distractor:{word}")
    topics = topics[: policy.max_questions]
    return _Plan(topics, [rng.random() < policy.free_form_prob for _ in topics])


def scripted_action(task: Task, dialogue_texts: list[tuple[str, str]], policy: ScriptPolicy) -> str:
    """The scripted agent's next action text for a synthetic task, given the dialogue so far."""
    spec = spec_of(task)
    plan = script_plan(spec, task.task_id or str(task.index), policy)
    turn = sum(1 for role, _ in dialogue_texts if role == "assistant")
    facts = parse_facts(task.problem_description)
    for role, content in dialogue_texts:
        if role == "user":
            facts.update(parse_facts(content))
    if turn < len(plan.topics):
        topic = plan.topics[turn]
        if topic == "amount":  # the amount question of the known rule, else a guess
            topic = facts["rule"] if facts.get("rule") in ("fee", "discount") else "fee"
        if topic.startswith("distractor:"):
            return distractor_question(topic.removeprefix("distractor:"))
        if plan.free_form[turn]:
            options = FREE_FORM[topic]
            return options[random.Random(f"{task.task_id}/{turn}").randrange(len(options))]
        return QUESTIONS[topic]
    code = build_answer(spec.skin, facts)
    if policy.fenced:
        code = f"```python\n{code}\n```"
    return f"{ANSWER_MARK}\n{code}"


# ---------------------------------------------------------------- base-model documents


def base_document(task: Task, rng: random.Random) -> tuple[str, str]:
    """One document of the family's base-model corpus: (text, code), the code written from the text.

    The text is the task's description followed by every hidden detail stated in its canonical
    sentence, one a line, in random order, with the person's distractor replies mixed in. It is
    what a code model pretrained on such functions has seen: specifications and the code that
    implements them. It holds no dialogue and no question, so a base model learns to write code
    from stated facts (copying values into code) but nothing about which questions to ask or when.
    """
    spec = spec_of(task)
    lines = [topic_reply(spec, "fee" if s == "amount" and spec.params["rule"] == "fee" else
                         "discount" if s == "amount" else s) for s in spec.hidden]
    lines += [topic_reply(spec, f"distractor:{w}") for w in spec.distractors if rng.random() < 0.5]
    rng.shuffle(lines)
    return "\n".join([task.problem_description, *lines]), task.ground_truth


def base_documents(n: int, seed: int, split: str = "train") -> list[tuple[Task, str, str]]:
    """`n` base-model documents (task, text, code) over tasks of difficulty 1 to 4 of `split`."""
    rng = random.Random(f"{FAMILY}/base/{split}/{seed}")
    return [(t, *base_document(t, rng)) for t in generate_tasks(n, seed=seed, split=split, difficulty=(1, 4))]
