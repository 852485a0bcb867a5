"""The golden loss curve of a short run of the embedded default, and the check against it.

    python tests/golden/compare.py                   # run the config below in a temporary directory, compare
    python tests/golden/compare.py --run-dir DIR     # compare an existing run directory (both commands ran there)
    python tests/golden/compare.py --write           # run and overwrite tiny_default_losses.jsonl

The config is the embedded default (model=small from builtin:base-small, synthetic tasks, rule-based
simulator, local engine) with every count cut down: stage=all with two iterations (the first imports
scripted episodes in the reference layout, so trajectory pairs with different rewards exist; the
second collects with the actor), then stage=baselines in the same directory (rft and mtdpo). It
trains sft, critic, critic_noref, actor, rft and mtdpo and runs collect and eval.

Every (stage, step, loss) record of metrics.jsonl is compared with the golden file; a loss differing
by more than TOLERANCE (absolute, on losses of order 0.1 to 10) is a failure, and the first divergence
is printed. On one machine a behaviour-preserving change gives exactly equal losses; the tolerance
only leaves room for another CPU's float rounding.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

GOLDEN = Path(__file__).with_name("tiny_default_losses.jsonl")
TOLERANCE = 1e-5

OVERRIDES = [
    "train.steps=4", "train.rows_per_step=2", "train.log_every=1", "train.progress=false", "train.tensorboard=false",
    "task.num_train=24", "task.num_eval=4", "task.num_demos=8",
    "sweet.iterations=2", "sweet.episodes_per_iter=8", "sweet.rollouts_per_task=4", "sweet.critic_min_best_reward=null",
    "sweet.critic_steps=3", "sweet.actor_states=4", "sweet.num_candidates=4", "sweet.pairs_per_turn=2",
    "sweet.actor_steps=3", "sweet.rows_per_step=2", "sweet.credit_baseline=true", "sweet.credit_states=4",
    "sweet.credit_policy_states=2", "rollout.max_tokens=24", "rollout.max_turns=3",
]


def offline_episodes(path: Path) -> Path:
    """Scripted episodes in the reference layout: per task, agents asking about 0%, 50%, 100% of the details."""
    from sweet_megatron.config import TaskConfig
    from sweet_megatron.env.bytetok import ByteTokenizer
    from sweet_megatron.env.episode import run_episodes
    from sweet_megatron.env.synthetic.demos import ScriptedAgent
    from sweet_megatron.env.synthetic.family import ScriptPolicy
    from sweet_megatron.env.synthetic.protocol import PROTOCOL
    from sweet_megatron.env.synthetic.simulator import SyntheticSimulator
    from sweet_megatron.training.episodes import load_task_splits, save_episodes

    train, _ = load_task_splits(TaskConfig(num_train=24, num_eval=4))
    tasks = train[:4]
    episodes = []
    for ask in (0.0, 0.5, 1.0):
        agent = ScriptedAgent(ByteTokenizer(), ScriptPolicy(ask_prob=ask, seed=1), tasks)
        episodes += run_episodes(agent, tasks, SyntheticSimulator(), max_turns=3, protocol=PROTOCOL)
    save_episodes(path, episodes, {t.task_id: t for t in tasks})
    return path


def run(run_dir: Path, timeout: float = 1200) -> None:
    """The two commands of the golden config into `run_dir`."""
    run_dir.mkdir(parents=True, exist_ok=True)
    episodes = offline_episodes(run_dir / "offline_episodes.jsonl")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    for stage in ("all", "baselines"):
        cmd = [sys.executable, "-m", "sweet_megatron.cli.train", f"stage={stage}", f"run_dir={run_dir}",
               f"sweet.offline_episodes={episodes}", *OVERRIDES]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"stage={stage} failed (rc {proc.returncode}):\n{proc.stderr[-6000:]}")


def losses(run_dir: Path) -> list[dict]:
    """(stage, step, loss) of every logged training step, in the order logged."""
    out = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "loss" in rec:
            out.append({"stage": rec["stage"], "step": rec["step"], "loss": rec["loss"]})
    return out


def losses_from(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def compare(got: list[dict], want: list[dict], tolerance: float = TOLERANCE) -> str | None:
    """None when the curves match; else a line naming the first divergence."""
    for i, (g, w) in enumerate(zip(got, want)):
        if (g["stage"], g["step"]) != (w["stage"], w["step"]):
            return f"record {i}: got {g['stage']} step {g['step']}, golden has {w['stage']} step {w['step']}"
        if abs(g["loss"] - w["loss"]) > tolerance:
            return (f"record {i}: {g['stage']} step {g['step']}: loss {g['loss']!r} vs golden {w['loss']!r} "
                    f"(|diff| {abs(g['loss'] - w['loss']):.3g} > {tolerance})")
    if len(got) != len(want):
        return f"{len(got)} loss records, golden has {len(want)}"
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run-dir", type=Path, help="compare this run directory instead of running the config")
    ap.add_argument("--write", action="store_true", help="run the config and write the golden file")
    ap.add_argument("--tolerance", type=float, default=TOLERANCE)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run_dir
        if run_dir is None:
            run_dir = Path(tmp) / "run"
            run(run_dir)
        got = losses(run_dir)
        if args.write:
            GOLDEN.write_text("".join(json.dumps(r) + "\n" for r in got))
            print(f"wrote {len(got)} loss records to {GOLDEN}")
            return 0
    want = losses_from(GOLDEN)
    diff = compare(got, want, args.tolerance)
    if diff:
        print(f"golden losses differ: {diff}")
        return 1
    worst = max(abs(g["loss"] - w["loss"]) for g, w in zip(got, want))
    print(f"golden losses match: {len(got)} records within {args.tolerance}, largest |diff| {worst:.3g} "
          f"(stages {', '.join(dict.fromkeys(r['stage'] for r in got))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
