"""Training on the synthetic pages (task.source=frontend_synthetic, family page-mini-v1): compact pages
that a tokenizer trained on the family turns into a few hundred tokens, the oracle's values on
hand-made dialogues, scripted demonstrations that end with the reference page (all asked) or the
baseline agent's page (none asked), the registered environment's capabilities; and on rendered
pages (slow): the reference scores 1 and the baseline agent's page less when a hidden detail differs
from its default, the win rate of an agent that asks everything against it, and the score cache."""

import os

import pytest

from sweet_megatron.config import TaskConfig
from sweet_megatron.data.chat import Message
from sweet_megatron.env import registry
from sweet_megatron.env.bytetok import ByteTokenizer
from sweet_megatron.env.colbench_frontend.environment import PROTOCOL
from sweet_megatron.env.colbench_frontend.records import extract_html
from sweet_megatron.env.colbench_frontend.simulator import FrontendRuleSimulator
from sweet_megatron.env.colbench_frontend.synthetic import (
    ANSWER_MARK,
    DEFAULTS,
    DETAILS,
    FAMILY_MINI,
    QUESTIONS,
    default_details,
    generate_frontend_tasks,
    page_html,
    spec_of,
)
from sweet_megatron.env.colbench_frontend.training import (
    FrontendOracle,
    FrontendScriptedAgent,
    baseline_page,
    plan,
)
from sweet_megatron.env.episode import run_episodes

ENV = registry.get("frontend_synthetic")


def mini(n=12, seed=0, split="train", difficulty=(1, 3)):
    return generate_frontend_tasks(n, seed, split, difficulty, family=FAMILY_MINI)


def test_mini_pages_are_compact_and_hide_their_details():
    tasks = mini(40)
    assert all(t.synthetic["family"] == FAMILY_MINI and t.task_id.startswith("fe-mini-train-") for t in tasks)
    assert max(len(t.ground_truth) for t in tasks) < 1300  # page-v1 pages are about 5400 characters
    for t in tasks:
        spec = spec_of(t)
        assert page_html(spec.kind, spec.details, FAMILY_MINI) == t.ground_truth
        assert f"grid-cols-{spec.details['columns']}" in t.ground_truth and spec.details["title"] in t.ground_truth
        for d in spec.hidden:  # a hidden title or headline never shows in the description
            if d in ("title", "headline"):
                assert spec.details[d] not in t.problem_description
    held = mini(20, split="heldout")
    assert not {t.ground_truth for t in tasks} & {t.ground_truth for t in held}


def test_markup_tokenizer_makes_a_page_a_few_hundred_tokens(tmp_path):
    from sweet_megatron.data.tokenizer import train_sentencepiece

    tasks = mini(200)
    texts = [t.problem_description for t in tasks] + [t.ground_truth for t in tasks]
    texts += ENV.demonstrations.tokenizer_texts(tasks)
    plain = train_sentencepiece(texts, tmp_path / "plain.model", vocab_size=1024)
    markup = train_sentencepiece(texts, tmp_path / "markup.model", vocab_size=1024, markup_pieces=True)
    held = mini(10, split="heldout")
    n_plain = max(len(plain.encode(t.ground_truth)) for t in held)
    n_markup = max(len(markup.encode(t.ground_truth)) for t in held)
    assert n_markup <= 300 < n_plain, (n_markup, n_plain)
    assert markup.decode(markup.encode(held[0].ground_truth)) == held[0].ground_truth


def _task_hiding(hidden: set[str]):
    """A task whose hidden details are exactly `hidden`, none of them at its default value."""
    def off_default(t):
        spec = spec_of(t)
        return all(spec.details[d] != default_details(spec.kind, spec.details["order"])[d] for d in spec.hidden)

    return next(t for t in mini(400) if set(spec_of(t).hidden) == hidden and off_default(t))


def test_oracle_values_on_hand_made_dialogues():
    oracle = FrontendOracle()
    task = _task_hiding({"theme", "columns"})
    system = Message("system", PROTOCOL.opening(task, 5)[0])
    assert oracle.covers(task) and not oracle.covers(registry.get("colbench_frontend").task_splits(
        TaskConfig(source="colbench_frontend", num_train=1, num_eval=1, num_demos=0))[0][0])
    start = [system]
    assert oracle.action_value(task, start, QUESTIONS["theme"]) == 1.0          # hidden, not asked
    assert oracle.action_value(task, start, "How many columns should the grid have?") == 1.0  # free form
    assert oracle.action_value(task, start, QUESTIONS["title"]) == -1.0         # stated in the description
    assert oracle.action_value(task, start, "Hello there.") == -1.0             # asks nothing
    assert oracle.action_value(task, start, f"{ANSWER_MARK}\n{task.ground_truth}") == 2.0
    spaced = task.ground_truth.replace("\n", "\n\n  ")
    assert oracle.action_value(task, start, f"{ANSWER_MARK} {spaced}") == 2.0   # whitespace aside
    assert oracle.action_value(task, start, f"{ANSWER_MARK}\n{baseline_page(task)}") == -1.0  # hidden ones wrong
    asked = [system, Message("assistant", QUESTIONS["theme"]), Message("user", "The main colour is x.")]
    assert oracle.action_value(task, asked, QUESTIONS["theme"]) == -1.0         # asked already
    assert oracle.action_value(task, asked, QUESTIONS["columns"]) == 1.0
    assert not oracle.depends_on_hidden_code(task, start, QUESTIONS["theme"])


def test_oracle_menu_values():
    tasks = [_task_hiding({"theme", "columns"})]
    menu = ENV.oracle.menu(tasks, FrontendRuleSimulator(), ByteTokenizer(), 5)
    assert len(menu) == 3  # two questions, then the answer
    values = [[ENV.oracle.action_value(t, state, a) for a in actions] for t, state, actions in menu]
    assert [sorted(v, reverse=True)[:2] for v in values] == [[1.0, 1.0], [1.0, -1.0], [2.0, -1.0]]
    assert values[-1][len(QUESTIONS)] == 2.0 and values[-1][len(QUESTIONS) + 1] == -1.0  # right page, recoloured


def test_scripted_agent_pages():
    tasks = mini(16)
    sim = FrontendRuleSimulator()
    ask_all = run_episodes(FrontendScriptedAgent(ByteTokenizer(), tasks, 1.0), tasks, sim, max_turns=5, score=False,
                           protocol=PROTOCOL)
    ask_none = run_episodes(FrontendScriptedAgent(ByteTokenizer(), tasks, 0.0), tasks, sim, max_turns=5, score=False,
                            protocol=PROTOCOL)
    for t, a, n in zip(tasks, ask_all, ask_none, strict=True):
        hidden = spec_of(t).hidden
        assert len(a.turns) == len(hidden) + 1 and extract_html(a.answer) == t.ground_truth
        assert len(n.turns) == 1 and extract_html(n.answer) == baseline_page(t)
    # the baseline page: the stated details, the defaults for the hidden ones
    t = _task_hiding({"title"})
    assert spec_of(t).kind in baseline_page(t) and spec_of(t).details["title"] not in baseline_page(t)
    assert default_details(spec_of(t).kind, ["features"])["title"] == spec_of(t).kind
    # a noisy plan asks a subset of the hidden details, fixed by (task, seed)
    t = _task_hiding({"theme", "columns", "size"})
    plans = {tuple(plan(t, 0.5, s)) for s in range(30)}
    assert len(plans) > 2 and all(set(p) <= {"theme", "columns", "size"} for p in plans)
    assert plan(t, 0.5, 3) == plan(t, 0.5, 3)


def test_demonstrations_mix_asking_and_not():
    cfg = TaskConfig(source="frontend_synthetic", num_train=64, num_eval=4, num_demos=40, demo_ask_prob=0.5)
    train, held = ENV.task_splits(cfg)
    assert len(train) == 64 and len(held) == 4 and all(t.task_id.startswith("fe-mini-heldout") for t in held)
    demos = ENV.demonstrations.episodes(cfg, train, FrontendRuleSimulator(), ByteTokenizer(), 5)
    assert len(demos) == 40
    by_id = {t.task_id: t for t in train}
    exact = [extract_html(e.answer) == by_id[e.task_id].ground_truth for e in demos]
    assert 0 < sum(exact) < len(exact)  # some ask everything (the reference), some do not
    assert all(extract_html(e.answer) is not None for e in demos)


def test_registered_with_training_capabilities():
    assert ENV.supports_training and ENV.demonstrations and ENV.oracle and ENV.base_corpus is None
    assert registry.get("colbench_frontend").supports_training
    from sweet_megatron.config import ConfigError

    with pytest.raises(ConfigError, match="task.source=frontend_synthetic generates its pages"):
        TaskConfig(source="frontend_synthetic", path="x.jsonl")


def test_a_machine_without_chromium_is_refused_before_training(monkeypatch, tmp_path):
    from sweet_megatron.config import ConfigError
    from sweet_megatron.training import episodes as ep

    monkeypatch.setenv("SWEET_CHROMIUM", str(tmp_path / "no-chromium"))
    with pytest.raises(ConfigError, match="task.source=frontend_synthetic: rewards are rendered pages, and no Chromium "
                                          "found: install Debian's package"):
        ep.check_ready(ENV, "all")
    ep.check_ready(ENV, "sft")  # the warm start renders nothing
    ep.check_ready(registry.get("synthetic"), "all")


# ---------------------------------------------------------------- rendered (slow)


@pytest.fixture()
def shared_on_pool(pool, monkeypatch):
    """The environment's shared evaluator on the session's browser pool (no second pool)."""
    from sweet_megatron.env.colbench_frontend import environment as fe

    ev = fe.FrontendEvaluator(pool=pool)
    monkeypatch.setitem(fe._SHARED, os.getpid(), ev)
    return ev


@pytest.mark.slow
def test_eval_metrics_win_rate_against_the_baseline_agent(shared_on_pool):
    tasks = [t for t in mini(40, split="heldout") if any(spec_of(t).details[d] != DEFAULTS[d]
                                                          for d in spec_of(t).hidden if d in DEFAULTS)][:6]
    sim = FrontendRuleSimulator()
    evaluator = ENV.evaluator()
    assert evaluator is shared_on_pool
    ask_all = run_episodes(FrontendScriptedAgent(ByteTokenizer(), tasks, 1.0), tasks, sim, evaluator=evaluator,
                           max_turns=5, protocol=PROTOCOL)
    assert [e.reward for e in ask_all] == pytest.approx([1.0] * len(tasks), abs=1e-9)
    m = ENV.eval_metrics(tasks, ask_all)
    assert m["mean_similarity"] == pytest.approx(1.0, abs=1e-9)
    assert m["baseline_mean_similarity"] < 1.0 and m["win_rate"] == 1.0  # every baseline page has a wrong detail
    ask_none = run_episodes(FrontendScriptedAgent(ByteTokenizer(), tasks, 0.0), tasks, sim, evaluator=evaluator,
                            max_turns=5, protocol=PROTOCOL)
    renders = shared_on_pool._rewarder.renders
    m0 = ENV.eval_metrics(tasks, ask_none)  # the baseline agent itself: every task a tie
    assert m0["win_rate"] == 0.5 and m0["mean_similarity"] == pytest.approx(m["baseline_mean_similarity"])
    assert shared_on_pool._rewarder.renders == renders  # its pages were scored already: cached, not rendered
    answers = [None, "no page here"] + [f"{ANSWER_MARK}\n{t.ground_truth}" for t in tasks[2:]]
    assert [s.reward for s in evaluator(tasks, answers)][:2] == [0.0, 0.0]
    assert set(DETAILS) >= set(spec_of(tasks[0]).hidden)
