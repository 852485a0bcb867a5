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
    assert details["eval_before"]["mean_similarity"] > before["mean_similarity"] + 0.2, (
        details["eval_before"]["mean_similarity"], before["mean_similarity"])
