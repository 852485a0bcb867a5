"""End-to-end tiny runs of `sweet-train task=frontend_synthetic`: every stage of stage=all (SFT on the
scripted demonstrations, collect with rendered rewards, the critic with the reference page, the
actor, eval with the held-out similarity and win rates) on a shrunken model and very small counts,
and the direction it must show: the SFT'd agent writes pages that score above an untrained agent's.
Skipped with the reason where pages cannot be rendered (Chromium, Playwright, the stylesheet)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.e2e.test_pipeline import _run

pytestmark = pytest.mark.e2e

SMALL = [
    "task=frontend_synthetic", "model.num_layers=2", "model.hidden_size=128", "model.ffn_hidden_size=384",
    "model.num_attention_heads=4", "model.num_query_groups=2", "tokenizer.vocab_size=512", "train.rows_per_step=4",
    "train.progress=false", "train.tensorboard=false", "task.num_train=24", "task.num_eval=4", "task.num_demos=48",
    "task.max_difficulty=2", "sweet.episodes_per_iter=8", "sweet.critic_steps=2", "sweet.credit_policy_states=2",
    "sweet.actor_states=4", "sweet.num_candidates=4", "sweet.pairs_per_turn=2", "sweet.actor_steps=2",
    "rollout.max_turns=4",
]


@pytest.fixture(scope="module", autouse=True)
def _rendering():
    from sweet_megatron.env.colbench_frontend.render import BrowserPool, RenderConfig, RenderUnavailable
    from sweet_megatron.env.colbench_frontend.tailwind import TailwindMissing

    try:
        BrowserPool(RenderConfig(num_browsers=1)).close()
    except (RenderUnavailable, TailwindMissing) as e:
        pytest.skip(f"rendering unavailable: {e}")


def test_frontend_synthetic_stage_all_beats_an_untrained_agent(tmp_path: Path):
    trained = tmp_path / "sft"
    out = _run([sys.executable, "-m", "sweet_megatron.cli.train", *SMALL, "stage=all", "train.steps=150",
                f"run_dir={trained}"], trained)
    assert "held-out similarity before SWEET-RL:" in out and "win rate vs baseline agent" in out
    results = json.loads((trained / "results.json").read_text())
    details = results["details"]
    for key in ("eval_before", "eval_0"):
        r = details[key]
        assert set(r["task_rewards"]) and 0.0 <= r["win_rate"] <= 1.0 and 0 < r["baseline_mean_similarity"] < 1
        assert r["mean_similarity"] == pytest.approx(r["mean_reward"])
    assert 0.0 <= details["eval_0"]["win_rate_vs_warm_start"] <= 1.0
    assert {"similarity_before", "similarity_after", "win_rate_before", "win_rate_after"} <= set(results)
    assert (trained / "episodes_iter0.jsonl").exists()
    assert "similarity_before" in (trained / "results.md").read_text()

    untrained = tmp_path / "untrained"
    _run([sys.executable, "-m", "sweet_megatron.cli.train", *SMALL, "stage=eval", "train.steps=0",
          f"run_dir={untrained}"], untrained)
    before = json.loads((untrained / "results.json").read_text())["details"]["eval_before"]
    # 150 steps of a shrunken model: measured 0.042 against 0.0 (the untrained agent writes no page)
    assert details["eval_before"]["mean_similarity"] > before["mean_similarity"] + 0.02, (
        details["eval_before"]["mean_similarity"], before["mean_similarity"])


@pytest.fixture(scope="module")
def real_offline_episodes(tmp_path_factory) -> Path:
    """One-turn episodes on 3 real records in the reference layout, rewards from rendered pages: the
    reference page itself, its first half, and no page (so same-task pairs with different rewards exist)."""
    from sweet_megatron.env.bytetok import ByteTokenizer
    from sweet_megatron.env.colbench_frontend.environment import PROTOCOL, FrontendEvaluator
    from sweet_megatron.env.colbench_frontend.records import load_frontend_tasks
    from sweet_megatron.env.colbench_frontend.render import BrowserPool, RenderConfig
    from sweet_megatron.env.colbench_frontend.simulator import FrontendRuleSimulator
    from sweet_megatron.env.episode import run_episodes
    from sweet_megatron.training.episodes import save_episodes

    tasks = load_frontend_tasks("builtin:colbench/frontend_test_0-49.jsonl", limit=3)

    class OneTurn:
        uses_tasks = True
        tokenizer = ByteTokenizer()

        def __init__(self, page):
            self.page = page

        def act(self, prompts, dialogues, tasks):
            return [([], [], f"I WANT TO ANSWER:\n{self.page(t)}") for t in tasks]

    episodes = []
    with BrowserPool(RenderConfig(num_browsers=2)) as pool:
        evaluator = FrontendEvaluator(pool=pool)
        for page in (lambda t: t.ground_truth, lambda t: t.ground_truth[: len(t.ground_truth) // 2], lambda t: ""):
            episodes += run_episodes(OneTurn(page), tasks, FrontendRuleSimulator(), evaluator=evaluator, max_turns=2,
                                     protocol=PROTOCOL)
    by_task = {}
    for e in episodes:
        by_task.setdefault(e.task_id, []).append(e.reward)
    assert all(r[0] > r[1] > r[2] == 0.0 for r in by_task.values()), by_task
    path = tmp_path_factory.mktemp("frontend_offline") / "episodes.jsonl"
    save_episodes(path, episodes, {t.task_id: t for t in tasks}, layout="reference")
    return path


def test_colbench_frontend_real_records_every_stage(tmp_path: Path, real_offline_episodes: Path):
    """task=colbench_frontend on real records: SFT on the offline file's successes, critic pairs with the
    reference page prepended (a real page needs long sequences: model.seq_length=4096), actor, eval."""
    run_dir = tmp_path / "real"
    _run([sys.executable, "-m", "sweet_megatron.cli.train", "task=colbench_frontend", "stage=all",
          f"run_dir={run_dir}", f"sweet.offline_episodes={real_offline_episodes}", "train.init_from=null",
          "model.num_layers=2", "model.hidden_size=64", "model.ffn_hidden_size=128", "model.num_attention_heads=4",
          "model.num_query_groups=2", "model.seq_length=4096", "tokenizer.vocab_size=1024",
          "tokenizer.number_pieces=false", "tokenizer.markup_pieces=true", "train.steps=2", "train.pack_length=4096",
          "train.progress=false", "train.tensorboard=false", "task.num_train=6", "task.num_eval=2",
          "sweet.critic_steps=2", "sweet.credit_check=false", "sweet.actor_states=2", "sweet.num_candidates=2",
          "sweet.pairs_per_turn=1", "sweet.actor_steps=2", "sweet.rows_per_step=2", "rollout.max_tokens=32",
          "rollout.max_turns=2"], run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["critic_pairs"] == 6  # best_vs_worse: per task the reference over its half and over no page
    assert results["details"]["dropped_long"]["critic"] == 0
    assert "actor_pairs" in results and {"similarity_before", "similarity_after"} <= set(results)
    stages = {json.loads(line)["stage"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()}
    assert {"sft", "critic", "actor", "eval"} <= stages, stages
