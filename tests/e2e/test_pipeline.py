"""End-to-end tiny runs of `sweet-train`: every stage, single process and at TP=2 / PP=2 on gloo.

The first iteration's trajectories are imported from a reference-format JSONL file made by scripted
agents of varying diligence (so same-task pairs with different rewards exist even though the tiny
model barely trains here); everything else (SFT, weight sync, candidates, critic, DPO, eval) runs
for real, just briefly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.e2e

TINY = [
    "train.init_from=null", "model.num_layers=2", "model.hidden_size=64", "model.ffn_hidden_size=128", "model.seq_length=1024",
    "tokenizer.vocab_size=512", "tokenizer.number_pieces=false", "train.steps=2", "train.rows_per_step=4", "train.progress=false",
    "train.tensorboard=false", "task.num_train=24", "task.num_eval=4", "task.num_demos=16",
    "sweet.critic_steps=2", "sweet.actor_states=4", "sweet.num_candidates=4", "sweet.pairs_per_turn=2",
    "sweet.actor_steps=2", "sweet.credit_baseline=true", "rollout.max_tokens=24", "rollout.max_turns=4",
]


@pytest.fixture(scope="module")
def offline_episodes(tmp_path_factory) -> Path:
    """Scripted episodes in the reference layout: per task, agents asking about 0%..100% of details."""
    from sweet_megatron.config import TaskConfig
    from sweet_megatron.env.bytetok import ByteTokenizer
    from sweet_megatron.env.episode import run_episodes
    from sweet_megatron.env.synthetic.demos import ScriptedAgent
    from sweet_megatron.env.synthetic.family import ScriptPolicy
    from sweet_megatron.env.synthetic.protocol import PROTOCOL
    from sweet_megatron.env.synthetic.simulator import SyntheticSimulator
    from sweet_megatron.training.episodes import load_task_splits, save_episodes

    train, _ = load_task_splits(TaskConfig(num_train=24, num_eval=4))
    tasks = train[:6]
    episodes = []
    for ask in (0.0, 0.5, 1.0):
        agent = ScriptedAgent(ByteTokenizer(), ScriptPolicy(ask_prob=ask, seed=1), tasks)
        episodes += run_episodes(agent, tasks, SyntheticSimulator(), max_turns=4, protocol=PROTOCOL)
    path = tmp_path_factory.mktemp("offline") / "episodes.jsonl"
    save_episodes(path, episodes, {t.task_id: t for t in tasks})
    assert len({e.reward for e in episodes}) > 1
    return path


def _run(cmd: list[str], run_dir: Path, timeout: int = 900) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-6000:]
    return out.stdout


def _weights(ckpt_dir: Path) -> dict:
    """The tensors of a model checkpoint (a torch_dist directory), read without building a model."""
    from sweet_megatron.weights.hf_io import McoreCheckpointReader

    reader = McoreCheckpointReader(ckpt_dir)
    return reader.read({key: (key, None) for key in reader.shapes})


def _check_run(run_dir: Path, stdout: str) -> dict:
    results = json.loads((run_dir / "results.json").read_text())
    assert "success_before" in results and "success_after" in results
    assert 0.0 <= results["success_after"] <= 1.0
    assert "critic_turn_ranking_accuracy" in results and "critic_noref_turn_ranking_accuracy" in results
    # Both critics ranked the actor's own held-out candidates, sampled once for the two.
    credit = results["details"]["credit_0"]
    assert "policy_turn_ranking_accuracy" in credit["with_reference"]
    assert credit["with_reference"]["policy_pairs"] == credit["without_reference"]["policy_pairs"]
    log = (run_dir / "train.log").read_text()
    assert log.count("phase credit_policy_candidates: start") == 1, "candidates sampled once per iteration"
    assert log.count("the actor's own candidates: turn-ranking accuracy") == 2
    assert (run_dir / "results.md").exists() and (run_dir / "report.png").exists()
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    stages = {r["stage"] for r in records}
    assert {"sft", "critic", "critic_noref", "actor", "eval", "sync"} <= stages, stages
    # every trained stage logs a curve (each of its 2 steps here), not one point the report cannot draw
    for stage in ("sft", "critic", "actor"):
        assert [r["step"] for r in records if r["stage"] == stage and "loss" in r][:2] == [1, 2], stage
    assert "success before SWEET-RL" in stdout and "success after SWEET-RL" in stdout
    return results


def test_all_stages_single_process(tmp_path, offline_episodes):
    run_dir = tmp_path / "run"
    stdout = _run([sys.executable, "-m", "sweet_megatron.cli.train", "stage=all", f"run_dir={run_dir}",
                   f"sweet.offline_episodes={offline_episodes}", *TINY], run_dir)
    _check_run(run_dir, stdout)
    # a finished run resumes to "nothing left to do" and reports the same numbers
    again = _run([sys.executable, "-m", "sweet_megatron.cli.train", "stage=all", f"run_dir={run_dir}",
                  f"sweet.offline_episodes={offline_episodes}", *TINY], run_dir)
    assert "success after SWEET-RL" in again
    # the baselines, from the same warm start and episodes, with the default learning rates
    _run([sys.executable, "-m", "sweet_megatron.cli.train", "stage=baselines", f"run_dir={run_dir}",
          f"sweet.offline_episodes={offline_episodes}", *TINY], run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    assert 0.0 <= results["success_rft"] <= 1.0 and 0.0 <= results["success_mtdpo"] <= 1.0
    assert results["details"]["rft"]["episodes"] > 0 and results["details"]["mtdpo"]["pairs"] > 0


@pytest.mark.parametrize("layout", ["tp2", "pp2"])
def test_all_stages_two_ranks(tmp_path, offline_episodes, layout):
    run_dir = tmp_path / layout
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "sweet_megatron.cli.train", "stage=all", f"parallel={layout}", f"run_dir={run_dir}",
           f"sweet.offline_episodes={offline_episodes}", *TINY]
    _check_run(run_dir, _run(cmd, run_dir))


def test_pretrain_then_warm_start_from_the_base(tmp_path):
    """stage=pretrain writes a base model with its tokenizer; a later run starts from it
    (train.init_from) and uses the checkpoint's tokenizer; another architecture is refused."""
    base_run = tmp_path / "base"
    tiny = [a for a in TINY if not a.startswith("train.init_from")]
    stdout = _run([sys.executable, "-m", "sweet_megatron.cli.train", "stage=pretrain", f"run_dir={base_run}",
                   "pretrain.steps=4", "pretrain.eval_every=2", "pretrain.eval_documents=4",
                   "pretrain.num_documents=32", *tiny], base_run)
    base = base_run / "base_model"
    assert f"base model: {base}" in stdout
    meta = json.loads((base / "sweet_meta.json").read_text())
    assert meta["tokenizer"]["kind"] == "sentencepiece" and 0.0 <= meta["pretrain"]["code_accuracy"] <= 1.0
    evals = [json.loads(line) for line in (base_run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in evals if m["stage"] == "pretrain_eval"] == [2, 4]

    run_dir = tmp_path / "sft"
    _run([sys.executable, "-m", "sweet_megatron.cli.train", "stage=sft", f"run_dir={run_dir}", *tiny,
          f"train.init_from={base}"], run_dir)
    log = (run_dir / "train.log").read_text()
    assert f"initial weights: {base}" in log
    assert not (run_dir / "tokenizer.model").exists()  # the base's own tokenizer, none trained
    # A shared warm start (examples/compare_baselines.py --warm-start shared): another run starts
    # from this run's SFT model with 0 SFT steps, and its own warm start is that model, tensor for tensor.
    shared = tmp_path / "shared"
    _run([sys.executable, "-m", "sweet_megatron.cli.train", "stage=sft", f"run_dir={shared}", "seed=3", *tiny,
          f"train.init_from={run_dir / 'sft_model'}", "train.steps=0"], shared)
    assert f"initial weights: {run_dir / 'sft_model'}" in (shared / "train.log").read_text()
    theirs, ours = _weights(run_dir / "sft_model"), _weights(shared / "sft_model")
    assert sorted(theirs) == sorted(ours) and "embedding.word_embeddings.weight" in ours
    for key in theirs:
        assert torch.equal(theirs[key], ours[key]), key

    wrong = subprocess.run([sys.executable, "-m", "sweet_megatron.cli.train", "stage=sft", f"run_dir={tmp_path / 'w'}",
                            *tiny, "model.hidden_size=32", f"train.init_from={base}"],
                           capture_output=True, text=True, timeout=300)
    assert wrong.returncode == 2 and "train.init_from" in wrong.stderr and "hidden_size 64" in wrong.stderr


def test_bad_layout_and_mistyped_key_exit_nonzero(tmp_path):
    bad = subprocess.run([sys.executable, "-m", "sweet_megatron.cli.train", "parallel.tensor_parallel=3",
                          f"run_dir={tmp_path}"], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "tensor_parallel=3" in bad.stderr and "num_attention_heads" in bad.stderr
    typo = subprocess.run([sys.executable, "-m", "sweet_megatron.cli.train", "train.stepz=3",
                           f"run_dir={tmp_path}"], capture_output=True, text=True, timeout=300)
    assert typo.returncode != 0 and "train.stepz" in typo.stderr
    oracle = subprocess.run([sys.executable, "-m", "sweet_megatron.cli.train", "task=colbench_backend",
                             "sweet.actor_scorer=oracle", "stage=critic", f"run_dir={tmp_path}"],
                            capture_output=True, text=True, timeout=300)
    assert oracle.returncode == 2 and "sweet.actor_scorer=oracle needs synthetic training tasks" in oracle.stderr
