"""A synthetic frontend family ("page-v1"): Tailwind 2.2.19 pages generated offline, deterministic
from a seed, in the released record schema, with an oracle.

Every page has the shape of the real records' ground truth (a `<link>` to the Tailwind stylesheet,
a `<body>` with a background class, a header with the site name and a nav, a banner with a heading
and a button, content sections, a footer). Seven *details* decide it (`DETAILS`):

    theme       the main colour (header, buttons, headings, footer):  blue, green, red, ...
    background  the page background class:                            white, gray-100, ...
    order       the order of the content sections:                     e.g. gallery, features, contact
    columns     columns of the card grids (features, gallery):         2, 3 or 4
    title       the site's name (header, footer):                      e.g. "Maple Bakery"
    headline    the banner's heading:                                  e.g. "Fresh every morning"
    size        the banner's size (padding and heading size):          small, medium or large

The description names the kind of site and its sections (in alphabetical order, never the page's
order) and states some details as facts, each in its canonical sentence ("The main colour is
green."); the others, the *hidden details* (difficulty = how many), are only listed by name in an
"Ask me about ..." sentence, so their values never appear in it. Everything else on the page (the
cards' and sections' texts) follows from the kind of site and the section names by fixed tables,
which an agent can learn. Questions and replies have canonical forms (`QUESTIONS`, `fact_sentence`);
`parse_question` also reads free-form questions by keywords.

The oracle (`oracle_action`) knows the hidden details (training-time information) and, given the
dialogue so far, returns the best next agent action: the canonical question about the most
important unresolved detail (`IMPORTANCE`: how much one wrong detail costs the page's similarity,
measured with `similarity.page_similarity` on rendered pages, see the README), or, once every
detail is resolved, `ANSWER_MARK` and the page, which is then the reference itself. A detail is
resolved when the description states it or an earlier agent message asked about it.
`synthetic_reply(spec, question)` is the rule-based person for these tasks (the canonical
sentences of the details asked about, from the hidden details only).
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import asdict, dataclass

from sweet_megatron.env.colbench_frontend.records import FrontendTask

FAMILY = "page-v1"
FAMILY_MINI = "page-mini-v1"
"""The compact variant: the same seven details and questions, a page of about 800 characters (a few
hundred tokens) that a model of a few million parameters can write whole (mini_page_html)."""
FAMILIES = (FAMILY, FAMILY_MINI)
ANSWER_MARK = "I WANT TO ANSWER:"
TAILWIND_LINK = '<link href="https://cdn.jsdelivr.net/npm/tailwindcss@2.2.19/dist/tailwind.min.css" rel="stylesheet">'

# Tailwind 2's default palette has exactly these colours (gray aside), so every class below exists
# in the stylesheet the pages link.
THEMES = ("blue", "green", "red", "indigo", "purple", "pink", "yellow")
BACKGROUNDS = ("white", "gray-100", "gray-200", "yellow-50", "blue-50", "green-50")
COLUMNS = (2, 3, 4)
SIZES = ("small", "medium", "large")
SIZE_CLASSES = {"small": ("py-8", "text-3xl"), "medium": ("py-16", "text-4xl"), "large": ("py-28", "text-5xl")}
SECTIONS = ("about", "contact", "features", "gallery", "pricing", "testimonials")
"""Section kinds; every page has 'features' (a card grid, so `columns` always shows) and 2 or 3 more."""
NAMES = ("Maple", "Sunrise", "Northstar", "Willow", "Cedar", "Harbor", "Juniper", "Copper Kettle",
         "Silver Oak", "Bluebird", "Lantern", "Evergreen")
HEADLINES = ("Made with care since 1998", "Your neighbourhood favourite", "Quality you can trust",
             "Open seven days a week", "Crafted for the way you live", "Where every visit counts",
             "Simple, honest and local", "Book your first visit today", "Small team, big ideas",
             "Good things take time")


@dataclass(frozen=True)
class Site:
    """The kind of site: the words its fixed texts are made of."""

    kind: str
    """As the description names it ('Bakery')."""
    things: tuple[str, str, str, str, str, str]
    """Six things it offers: the feature cards' titles and the gallery's captions."""
    action: str
    """The banner button's label."""


SITES = (
    Site("Bakery", ("Sourdough", "Croissants", "Cakes", "Cookies", "Coffee", "Catering"), "Order Now"),
    Site("Law Firm", ("Family Law", "Contracts", "Property", "Employment", "Tax", "Mediation"), "Book a Consultation"),
    Site("Yoga Studio", ("Beginners", "Vinyasa", "Yin", "Prenatal", "Meditation", "Workshops"), "Join a Class"),
    Site("Bookshop", ("Fiction", "History", "Poetry", "Children", "Travel", "Rare Books"), "Visit Us"),
    Site("Dental Clinic", ("Checkups", "Cleaning", "Braces", "Implants", "Whitening", "Emergencies"), "Make an Appointment"),
    Site("Travel Agency", ("Beaches", "Mountains", "Cities", "Cruises", "Safaris", "Rail Trips"), "Plan a Trip"),
    Site("Plant Nursery", ("Houseplants", "Trees", "Herbs", "Succulents", "Seeds", "Tools"), "Shop Plants"),
    Site("Music School", ("Piano", "Guitar", "Violin", "Drums", "Singing", "Theory"), "Start Lessons"),
    Site("Fitness Gym", ("Weights", "Cardio", "Boxing", "Spinning", "Pilates", "Personal Training"), "Get a Pass"),
    Site("Photography Studio", ("Portraits", "Weddings", "Products", "Events", "Prints", "Courses"), "See Prices"),
)
SITE_BY_KIND = {s.kind: s for s in SITES}

DETAILS = ("theme", "background", "order", "columns", "title", "headline", "size")
IMPORTANCE = ("columns", "size", "order", "title", "theme", "background", "headline")
"""Details from the most to the least important: the oracle asks in this order. Measured as the mean
drop of page_similarity when one detail takes another value, on 6 rendered pages (seed 21): columns
0.556, size 0.501, order 0.474, title 0.101, theme 0.099, background 0.079, headline 0.016. Layout
details move every later section, which the position-sensitive visual and layout parts punish."""
DEFAULTS = {"theme": "blue", "background": "white", "columns": 3, "size": "medium"}
"""What an agent that does not know a detail writes; order defaults to the description's
(alphabetical) order, title to the kind of site, headline to 'Welcome'."""
TOPIC_NAMES = {"theme": "the main colour", "background": "the page background", "order": "the order of the sections",
               "columns": "the number of columns", "title": "the name of the site",
               "headline": "the banner heading", "size": "the size of the banner"}
QUESTIONS = {
    "theme": "What is the main colour?",
    "background": "What is the page background?",
    "order": "In what order do the sections come?",
    "columns": "How many columns do the cards have?",
    "title": "What is the site called?",
    "headline": "What does the banner heading say?",
    "size": "How big is the banner?",
}
UNKNOWN = "I don't know; that does not matter to me."


@dataclass(frozen=True)
class PageSpec:
    """The structured hidden side of a synthetic page (stored in the record's `synthetic` field)."""

    family: str
    kind: str
    """Site kind (SITE_BY_KIND key), stated in the description."""
    details: dict
    """Values of DETAILS: theme, background, order (list of section kinds), columns, title, headline, size."""
    hidden: tuple[str, ...]
    """Details the description does not state; difficulty = len(hidden)."""
    split: str = "train"
    seed: int = 0

    @property
    def site(self) -> Site:
        return SITE_BY_KIND[self.kind]

    @property
    def sections(self) -> list[str]:
        """The page's section kinds in the description's (alphabetical) order."""
        return sorted(self.details["order"])

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        d["details"] = {**self.details, "order": list(self.details["order"])}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PageSpec:
        if not isinstance(d, dict):
            raise TypeError(f"expected an object, got {type(d).__name__}")
        unknown = set(d) - {"family", "kind", "details", "hidden", "split", "seed"}
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}")
        if d.get("family") not in FAMILIES:
            raise ValueError(f"family {d.get('family')!r} is not one of {list(FAMILIES)}")
        if d.get("kind") not in SITE_BY_KIND:
            raise ValueError(f"kind {d.get('kind')!r} is not one of {sorted(SITE_BY_KIND)}")
        det = d.get("details")
        if not isinstance(det, dict) or set(det) != set(DETAILS):
            raise ValueError(f"details must have exactly the keys {list(DETAILS)}")
        for key, allowed in (("theme", THEMES), ("background", BACKGROUNDS), ("columns", COLUMNS), ("size", SIZES)):
            if det[key] not in allowed:
                raise ValueError(f"details.{key}={det[key]!r} is not one of {list(allowed)}")
        order = det["order"]
        if (not isinstance(order, list) or "features" not in order or len(set(order)) != len(order)
                or not set(order) <= set(SECTIONS)):
            raise ValueError(f"details.order={order!r}: a list of distinct section kinds of {list(SECTIONS)} "
                             "holding 'features'")
        for key in ("title", "headline"):
            if not isinstance(det[key], str) or not det[key].strip():
                raise ValueError(f"details.{key} must be a non-empty string")
        hidden = tuple(d.get("hidden", ()))
        bad = [h for h in hidden if h not in DETAILS]
        if bad:
            raise ValueError(f"hidden {bad} are not details ({list(DETAILS)})")
        return cls(d["family"], d["kind"], {**det, "order": list(order)}, hidden, str(d.get("split", "train")),
                   int(d.get("seed", 0)))


def spec_of(task: FrontendTask) -> PageSpec:
    """The synthetic spec of a task; a clear error for a real (non-synthetic) one."""
    if task.synthetic is None:
        raise ValueError(f"task {task.task_id or task.index} is not a synthetic {'/'.join(FAMILIES)} page "
                         "(it has no 'synthetic' field)")
    try:
        return PageSpec.from_dict(task.synthetic)
    except (TypeError, ValueError) as e:
        raise ValueError(f"task {task.task_id or task.index}: field 'synthetic': {e}") from None


# ---------------------------------------------------------------- the page


def default_details(kind: str, sections: list[str]) -> dict:
    """The details an agent writes when it knows none: DEFAULTS, the listed order, the kind as title."""
    return {**DEFAULTS, "order": sorted(sections), "title": kind, "headline": "Welcome"}


def _section(kind: str, site: Site, d: dict) -> str:
    t, cols = d["theme"], d["columns"]
    head = f'    <h2 class="text-3xl font-bold text-{t}-700 mb-6">'
    if kind == "features":
        cards = "\n".join(
            f'      <div class="bg-white rounded shadow p-6">\n        <h3 class="text-xl font-bold mb-2">{x}</h3>\n'
            f'        <p class="text-gray-600">Ask us about {x.lower()} at {d["title"]}.</p>\n      </div>'
            for x in site.things)
        return (f'  <section class="px-8 py-12">\n{head}What We Offer</h2>\n'
                f'    <div class="grid grid-cols-{cols} gap-6">\n{cards}\n    </div>\n  </section>')
    if kind == "gallery":
        images = "\n".join(
            f'      <figure>\n        <img src="https://picsum.photos/id/48/400/300" alt="{x}" class="w-full rounded">\n'
            f'        <figcaption class="text-sm text-gray-600 mt-2">{x}</figcaption>\n      </figure>'
            for x in site.things)
        return (f'  <section class="px-8 py-12">\n{head}Gallery</h2>\n'
                f'    <div class="grid grid-cols-{cols} gap-4">\n{images}\n    </div>\n  </section>')
    if kind == "about":
        return (f'  <section class="px-8 py-12 flex space-x-8 items-center">\n'
                f'    <img src="https://picsum.photos/id/48/500/350" alt="About us" class="w-1/2 rounded">\n'
                f'    <div class="w-1/2">\n  {head}About Us</h2>\n'
                f'      <p class="text-gray-700">{d["title"]} is a {site.kind.lower()} run by people who love what '
                f'they do. We have been part of this town for many years.</p>\n    </div>\n  </section>')
    if kind == "pricing":
        plans = "\n".join(
            f'      <div class="bg-white rounded shadow p-6 text-center">\n        <h3 class="text-xl font-bold">{name}</h3>\n'
            f'        <p class="text-4xl font-bold text-{t}-600 my-4">${price}</p>\n'
            f'        <button class="bg-{t}-600 text-white px-4 py-2 rounded">Choose</button>\n      </div>'
            for name, price in (("Basic", 19), ("Standard", 49), ("Premium", 99)))
        return (f'  <section class="px-8 py-12">\n{head}Pricing</h2>\n'
                f'    <div class="grid grid-cols-3 gap-6">\n{plans}\n    </div>\n  </section>')
    if kind == "testimonials":
        quotes = "\n".join(
            f'    <blockquote class="bg-white rounded shadow p-6 mb-4">\n      <p class="italic text-gray-700">"{q}"</p>\n'
            f'      <p class="mt-2 font-bold text-{t}-700">{who}</p>\n    </blockquote>'
            for q, who in ((f"The best {site.kind.lower()} I know.", "Anna K."),
                           (f"Friendly people and great {site.things[0].lower()}.", "Tom R.")))
        return f'  <section class="px-8 py-12">\n{head}What People Say</h2>\n{quotes}\n  </section>'
    if kind == "contact":
        return (f'  <section class="px-8 py-12">\n{head}Contact Us</h2>\n'
                f'    <form class="max-w-lg space-y-4">\n'
                f'      <input type="text" placeholder="Your name" class="w-full border rounded p-2">\n'
                f'      <input type="email" placeholder="Your email" class="w-full border rounded p-2">\n'
                f'      <textarea placeholder="Your message" class="w-full border rounded p-2 h-32"></textarea>\n'
                f'      <button class="bg-{t}-600 text-white px-6 py-2 rounded">Send</button>\n'
                f'    </form>\n  </section>')
    raise ValueError(f"unknown section kind {kind!r}; use one of {list(SECTIONS)}")


def page_html(kind: str, details: dict, family: str = FAMILY) -> str:
    """The page of a site kind with these details (the reference when they are the hidden ones), in
    the layout of `family` (page-v1, or the compact page-mini-v1: mini_page_html)."""
    if family == FAMILY_MINI:
        return mini_page_html(kind, details)
    if family != FAMILY:
        raise ValueError(f"family={family!r}: use one of {list(FAMILIES)}")
    site, d = SITE_BY_KIND[kind], details
    t = d["theme"]
    pad, text_size = SIZE_CLASSES[d["size"]]
    links = "\n".join(f'        <li><a href="#" class="hover:text-{t}-200">{s.capitalize()}</a></li>' for s in d["order"])
    sections = "\n\n".join(_section(s, site, d) for s in d["order"])
    return f"""<html>
{TAILWIND_LINK}
<body class="bg-{d['background']}">
  <header class="bg-{t}-600 text-white p-4 flex items-center justify-between">
    <h1 class="text-2xl font-bold">{d['title']}</h1>
    <nav>
      <ul class="flex space-x-4">
{links}
      </ul>
    </nav>
  </header>

  <section class="bg-{t}-100 {pad} px-8 text-center">
    <h2 class="{text_size} font-bold text-{t}-800">{d['headline']}</h2>
    <p class="mt-4 text-lg text-gray-700">The {site.kind.lower()} for {site.things[0].lower()} and {site.things[1].lower()}.</p>
    <button class="mt-6 bg-{t}-600 text-white px-6 py-3 rounded">{site.action}</button>
  </section>

{sections}

  <footer class="bg-{t}-800 text-white p-4 text-center">
    <p>&copy; 2024 {d['title']}. All rights reserved.</p>
  </footer>
</body>
</html>"""


MINI_SIZE_CLASSES = {"small": ("py-6", "text-2xl"), "medium": ("py-12", "text-4xl"), "large": ("py-24", "text-6xl")}
MINI_TITLES = {"about": "About Us", "contact": "Contact", "features": "What We Offer", "gallery": "Gallery",
               "pricing": "Pricing", "testimonials": "What People Say"}


def _mini_section(kind: str, site: Site, d: dict) -> str:
    t, cols = d["theme"], d["columns"]
    head = f'<section class="p-8"><h2 class="text-2xl text-{t}-700">{MINI_TITLES[kind]}</h2>'
    if kind == "features":
        cards = "".join(f'<div class="bg-white p-4">{x}</div>' for x in site.things[:4])
        return f'{head}<div class="grid grid-cols-{cols} gap-4">{cards}</div></section>'
    if kind == "gallery":
        images = '<img src="https://picsum.photos/id/48/300/200">' * 4
        return f'{head}<div class="grid grid-cols-{cols} gap-4">{images}</div></section>'
    if kind == "about":
        return f'{head}<p>{d["title"]} is a {site.kind.lower()} run by friendly people.</p></section>'
    if kind == "pricing":
        return f'{head}<p class="text-3xl text-{t}-600">From $19 a month</p></section>'
    if kind == "testimonials":
        return f'{head}<p class="italic">"The best {site.kind.lower()} in town."</p></section>'
    if kind == "contact":
        return f'{head}<button class="bg-{t}-600 text-white px-4 py-2">Send a message</button></section>'
    raise ValueError(f"unknown section kind {kind!r}; use one of {list(SECTIONS)}")


def mini_page_html(kind: str, details: dict) -> str:
    """The compact page (family page-mini-v1): header with the name, a banner with the headline, the
    sections in order (card grids of 4, in `columns` columns), a footer; the same seven details
    decide it as page_html's, one element a line."""
    site, d = SITE_BY_KIND[kind], details
    t = d["theme"]
    pad, text_size = MINI_SIZE_CLASSES[d["size"]]
    sections = "\n".join(_mini_section(s, site, d) for s in d["order"])
    return (f'<html>\n{TAILWIND_LINK}\n<body class="bg-{d["background"]}">\n'
            f'<header class="bg-{t}-600 text-white p-4"><h1 class="text-2xl font-bold">{d["title"]}</h1></header>\n'
            f'<section class="bg-{t}-100 {pad} text-center"><h2 class="{text_size} font-bold">{d["headline"]}</h2>'
            f'</section>\n{sections}\n<footer class="bg-{t}-800 text-white p-4">{d["title"]}</footer>\n</body>\n</html>')


# ---------------------------------------------------------------- questions, replies, description


def _value_text(detail: str, value) -> str:
    if detail == "order":
        return ", ".join(value)
    return str(value)


def fact_sentence(detail: str, value) -> str:
    """The canonical sentence stating a detail (the description's facts and the person's replies)."""
    v = _value_text(detail, value)
    return {
        "theme": f"The main colour is {v}.",
        "background": f"The page background is {v}.",
        "order": f"The sections come in this order: {v}.",
        "columns": f"The cards are in {v} columns.",
        "title": f'The site is called "{v}".',
        "headline": f'The banner heading says "{v}".',
        "size": f"The banner is {v}.",
    }[detail]


_KEYWORDS = (  # checked in this order; 'background' before the colour words
    ("background", r"\bbackground\b|\bbg\b"),
    ("theme", r"\bcolou?rs?\b|\btheme\b|\bpalette\b"),
    ("order", r"\border\b|\bsequence\b|\barrange|\bfirst\b"),
    ("columns", r"\bcolumns?\b|\bgrid\b|\bper row\b"),
    ("title", r"\bcalled\b|\bname\b|\btitle\b|\bbrand\b"),
    ("headline", r"\bheadline\b|\bheading\b|\bslogan\b|\btagline\b"),
    ("size", r"\bbig\b|\bsize\b|\blarge\b|\bsmall\b|\btall\b|\bheight\b"),
)


def parse_question(text: str, max_topics: int = 2) -> list[str]:
    """The details a question asks about (canonical forms exactly, else by keywords), at most
    `max_topics`, in the order of _KEYWORDS. A page (a draft) or an answer asks nothing."""
    if ANSWER_MARK in text or "<html" in text.lower() or "<body" in text.lower():
        return []
    for detail, q in QUESTIONS.items():
        if text.strip() == q:
            return [detail]
    low = text.lower()
    return [d for d, pattern in _KEYWORDS if re.search(pattern, low)][:max_topics]


def synthetic_reply(spec: PageSpec, question: str) -> str:
    """The person's reply: the canonical sentences of the details asked about, else UNKNOWN."""
    topics = parse_question(question)
    return " ".join(fact_sentence(t, spec.details[t]) for t in topics) if topics else UNKNOWN


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def describe(spec: PageSpec) -> str:
    """The problem description: site kind and sections, the stated details' sentences, and the hidden
    ones by name only."""
    sections = [s.replace("testimonials", "customer testimonials").replace("about", "about us") for s in spec.sections]
    if spec.family == FAMILY_MINI:
        text = f"{spec.kind} Website: a header with the site name, a banner, sections for {_join(sections)}, a footer."
    else:
        text = (f"{spec.kind} Website: a page with a header holding the site name and a navigation bar, a banner "
                f"with a heading and a call-to-action button, sections for {_join(sections)}, and a footer.")
    stated = [fact_sentence(d, spec.details[d]) for d in DETAILS if d not in spec.hidden]
    if stated:
        text += " " + " ".join(stated)
    if spec.hidden:
        text += " Ask me about " + _join([TOPIC_NAMES[d] for d in DETAILS if d in spec.hidden]) + "."
    return text


# ---------------------------------------------------------------- generation

SPLITS = ("train", "heldout")
HELDOUT_BUCKETS = 5
"""One page in five (by a hash of its HTML) belongs to the held-out split."""


def split_of(ground_truth: str) -> str:
    """The split a reference page belongs to (a hash: the splits never share a page)."""
    h = int(hashlib.sha256(ground_truth.encode()).hexdigest()[:8], 16)
    return "heldout" if h % HELDOUT_BUCKETS == 0 else "train"


def _draw_spec(rng: random.Random, difficulty: int, split: str, seed: int, family: str = FAMILY) -> PageSpec:
    site = rng.choice(SITES)
    lo, hi = (1, 2) if family == FAMILY_MINI else (2, 3)  # sections besides 'features'
    others = rng.sample([s for s in SECTIONS if s != "features"], rng.randint(lo, hi))
    order = [*others, "features"]
    rng.shuffle(order)
    details = {
        "theme": rng.choice(THEMES),
        "background": rng.choice(BACKGROUNDS),
        "order": order,
        "columns": rng.choice(COLUMNS),
        "title": f"{rng.choice(NAMES)} {site.kind}",
        "headline": rng.choice(HEADLINES),
        "size": rng.choice(SIZES),
    }
    chosen = set(rng.sample(DETAILS, difficulty))
    hidden = tuple(d for d in DETAILS if d in chosen)
    return PageSpec(family, site.kind, details, hidden, split, seed)


def generate_frontend_tasks(n: int, seed: int = 0, split: str = "train",
                            difficulty: tuple[int, int] = (1, len(DETAILS)), family: str = FAMILY) -> list[FrontendTask]:
    """`n` synthetic pages of `split` ('train' or 'heldout'), difficulties cycling over the inclusive
    range `difficulty`, deterministic in (n, seed, split, difficulty, family). Ids:
    fe-syn-<split>-s<seed>-<i> (page-v1), fe-mini-<split>-s<seed>-<i> (page-mini-v1: 2 or 3 sections)."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: use one of {SPLITS}")
    if family not in FAMILIES:
        raise ValueError(f"family={family!r}: use one of {list(FAMILIES)}")
    lo, hi = difficulty
    if not 1 <= lo <= hi <= len(DETAILS):
        raise ValueError(f"difficulty={difficulty}: use an inclusive range within (1, {len(DETAILS)})")
    rng = random.Random(f"{family}/{split}/{seed}")
    prefix = "fe-syn" if family == FAMILY else "fe-mini"
    tasks: list[FrontendTask] = []
    seen: set[str] = set()
    while len(tasks) < n:
        spec = _draw_spec(rng, lo + len(tasks) % (hi - lo + 1), split, seed, family)
        html = page_html(spec.kind, spec.details, family)
        description = describe(spec)
        if split_of(html) != split or (html + description) in seen:
            continue
        seen.add(html + description)
        tasks.append(FrontendTask(description, html, f"{prefix}-{split}-s{seed}-{len(tasks):05d}", len(tasks),
                                  spec.to_dict()))
    return tasks


# ---------------------------------------------------------------- the oracle


def _role_content(dialogue: list) -> list[tuple[str, str]]:
    """(role, content) pairs of chat Messages or of such pairs."""
    return [(m.role, m.content) if hasattr(m, "role") else tuple(m) for m in dialogue]


def resolved_details(spec: PageSpec, dialogue: list) -> set[str]:
    """Details known after a dialogue: those the description states and those an earlier agent
    message asked about."""
    known = {d for d in DETAILS if d not in spec.hidden}
    for role, content in _role_content(dialogue):
        if role == "assistant":
            known.update(parse_question(content))
    return known


def answer_page(spec: PageSpec, known: set[str]) -> str:
    """The page an agent writes knowing exactly the details `known` (defaults for the others)."""
    details = default_details(spec.kind, spec.details["order"])
    details.update({d: spec.details[d] for d in known})
    return page_html(spec.kind, details, spec.family)


def oracle_action(task: FrontendTask | PageSpec, dialogue: list, max_questions: int | None = None) -> str:
    """The best next agent action given the dialogue so far (chat Messages or (role, content) pairs:
    the system prompt and the turns before this action), from the hidden details: the canonical
    question about the most important unresolved detail (IMPORTANCE order), or, when every detail
    is resolved (or `max_questions` agent turns have been spent), ANSWER_MARK and the page written
    from the resolved details (defaults for the rest): the reference once all are resolved."""
    spec = task if isinstance(task, PageSpec) else spec_of(task)
    known = resolved_details(spec, dialogue)
    asked = sum(1 for role, _ in _role_content(dialogue) if role == "assistant")
    missing = [d for d in IMPORTANCE if d not in known]
    if missing and (max_questions is None or asked < max_questions):
        return QUESTIONS[missing[0]]
    return f"{ANSWER_MARK}\n{answer_page(spec, known)}"
