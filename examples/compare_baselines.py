"""SFT warm start vs rejection fine-tuning vs multi-turn DPO vs SWEET-RL, over several seeds.

    python examples/compare_baselines.py                       # 3 seeds, embedded default, CPU
    python examples/compare_baselines.py --warm-start per-seed # each seed also trains its own SFT
    python examples/compare_baselines.py --seeds 0 1 --out runs/cmp -- sweet.iterations=2

For each seed: `sweet-train stage=all` (SFT, collect, critic, actor, eval), then `stage=baselines`
in the same run directory, so RFT and multi-turn DPO start from the same SFT checkpoint and learn
from the same collected episodes as SWEET-RL's first iteration. Every seed is evaluated on the same
held-out tasks (task.eval_seed, --eval-seed), so the spread over seeds is the methods' and not the
benchmark's.

Where the seeds start (--warm-start):
  shared    one SFT warm start (seed --warm-start-seed) under <out>/warm_start, the initial model of
            every seed and method, as the paper starts every run from one instruct model; a seed sets
            the training tasks, the sampling of episodes and candidates and the data order of the
            critic and actor (seed, task.seed). The spread over seeds is then the methods' own.
  per-seed  each seed also trains its own SFT warm start (seed and task.seed set its demonstrations
            and their order too); the spread over seeds then includes the warm starts' spread.

Writes comparison.md, comparison.json and comparison.png under --out and prints the table. Extra
hydra overrides go after `--` and reach every sweet-train call (the shared warm start's too).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

METHODS = [("SFT warm start", "success_before"), ("Rejection fine-tuning", "success_rft"),
           ("Multi-turn DPO", "success_mtdpo"), ("SWEET-RL", "success_after")]


def _train_cmd(run_dir: Path, seed: int, eval_seed: int, overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "sweet_megatron.cli.train", f"run_dir={run_dir}", f"seed={seed}",
            f"task.seed={seed}", f"task.eval_seed={eval_seed}", "train.progress=false", *overrides]


def shared_warm_start(out: Path, seed: int, eval_seed: int, overrides: list[str]) -> Path:
    """The one SFT warm start every seed starts from (kept when it exists: the stage resumes)."""
    run_dir = out / "warm_start"
    start = time.time()
    subprocess.run([*_train_cmd(run_dir, seed, eval_seed, overrides), "stage=sft"], check=True)
    print(f"shared warm start (seed {seed}) took {time.time() - start:.0f}s", flush=True)
    return run_dir / "sft_model"


def run_seed(seed: int, out: Path, overrides: list[str], eval_seed: int, credit_states: int,
             credit_policy_states: int, warm_start: Path | None) -> dict:
    run_dir = out / f"seed{seed}"
    # From a shared warm start: SFT for 0 steps from it, so the run's sft_model is that warm start.
    start_from = [f"train.init_from={warm_start.resolve()}", "train.steps=0"] if warm_start else []
    base = [*_train_cmd(run_dir, seed, eval_seed, [*overrides, *start_from]), f"sweet.credit_states={credit_states}",
            f"sweet.credit_policy_states={credit_policy_states}", "sweet.credit_baseline=true"]
    for stage in ("all", "baselines"):
        start = time.time()
        subprocess.run([*base, f"stage={stage}"], check=True)
        print(f"seed {seed}: stage={stage} took {time.time() - start:.0f}s", flush=True)
    return json.loads((run_dir / "results.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("runs/compare"))
    parser.add_argument("--eval-seed", type=int, default=0, help="seed of the held-out tasks, the same for every seed")
    parser.add_argument("--credit-states", type=int, default=160,
                        help="held-out turn states of the critic credit check's fixed menu (the default run uses 48)")
    parser.add_argument("--credit-policy-states", type=int, default=128,
                        help="held-out states of the actor's own episodes whose sampled candidates the credit check "
                             "also ranks (the default run uses 48)")
    parser.add_argument("--warm-start", choices=("shared", "per-seed"), default="shared",
                        help="one SFT warm start for every seed, or one per seed (see above)")
    parser.add_argument("--warm-start-seed", type=int, default=0, help="seed of the shared warm start")
    parser.add_argument("overrides", nargs="*", help="hydra overrides passed to every sweet-train call")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    warm = (shared_warm_start(args.out, args.warm_start_seed, args.eval_seed, args.overrides)
            if args.warm_start == "shared" else None)
    results = {s: run_seed(s, args.out, args.overrides, args.eval_seed, args.credit_states,
                                 args.credit_policy_states, warm) for s in args.seeds}

    rows = []
    for name, key in METHODS:
        values = [results[s][key] for s in args.seeds if key in results[s]]
        mean = statistics.fmean(values) if values else float("nan")
        spread = (max(values) - min(values)) if values else float("nan")
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        rows.append({"method": name, "per_seed": values, "mean": mean, "std": std, "spread": spread})
    acc = {key: [results[s].get(key) for s in args.seeds]
           for key in ("critic_turn_ranking_accuracy", "critic_noref_turn_ranking_accuracy",
                       "critic_policy_turn_ranking_accuracy", "critic_noref_policy_turn_ranking_accuracy")}
    start = (f"one shared SFT warm start (seed {args.warm_start_seed}) for every seed" if warm is not None
             else "each seed from its own SFT warm start")
    lines = ["# Held-out success rate by method", "", f"Warm start: {start}.", "",
             "| method | " + " | ".join(f"seed {s}" for s in args.seeds) + " | mean | std | spread |",
             "|---|" + "---|" * (len(args.seeds) + 3)]
    for r in rows:
        lines.append(f"| {r['method']} | " + " | ".join(f"{v:.3f}" for v in r["per_seed"])
                     + f" | {r['mean']:.3f} | {r['std']:.3f} | {r['spread']:.3f} |")
    lines += ["", "| critic turn-ranking accuracy vs oracle (pairs) | " + " | ".join(f"seed {s}" for s in args.seeds)
              + " | mean |", "|---|" + "---|" * (len(args.seeds) + 1)]
    by_kind = {}
    kinds = (("turn_ranking", "all pairs"), ("questions", "questions only"),
             ("code_questions", "questions only the code decides"), ("answers", "answers only"),
             ("mixed", "a question against an answer"))
    for (pre, population), (kind, label) in itertools.product(
            (("", "menu"), ("policy_", "actor's own candidates")), kinds):
        for ref, who in (("with_reference", "with the reference"), ("without_reference", "without it")):
            values = [_credit(results[s], ref, f"{pre}{kind}_accuracy") for s in args.seeds]
            values = [None if v is None or math.isnan(v) else v for v in values]
            pairs = [_credit(results[s], ref, f"{pre}{'' if kind == 'turn_ranking' else kind + '_'}pairs")
                     for s in args.seeds]
            if all(v is None for v in values):
                continue
            by_kind[f"{ref}/{pre}{kind}"] = values
            known = [v for v in values if v is not None]
            mean = f"{statistics.fmean(known):.3f}" if known else "-"
            lines.append(f"| {population}: {label}, {who} | "
                         + " | ".join("-" if v is None else f"{v:.3f} ({n})" for v, n in zip(values, pairs))
                         + f" | {mean} |")
    sft, sweet = rows[0], rows[3]
    gain = sweet["mean"] - sft["mean"]
    per_seed = [b - a for a, b in zip(sft["per_seed"], sweet["per_seed"])]
    lines += ["", f"SWEET-RL - SFT = {gain:+.3f} (mean over seeds); largest spread over seeds among the two: "
              f"{max(sft['spread'], sweet['spread']):.3f}",
              "SWEET-RL - SFT per seed (same warm start, same held-out tasks): "
              + ", ".join(f"{g:+.3f}" for g in per_seed)
              + (f"; spread {max(per_seed) - min(per_seed):.3f}" if per_seed else "")]
    table = "\n".join(lines) + "\n"
    (args.out / "comparison.md").write_text(table)
    summary = {"warm_start": args.warm_start, "methods": rows, "critic_accuracy": acc, "critic_by_kind": by_kind}
    (args.out / "comparison.json").write_text(json.dumps(summary, indent=1))
    _plot(rows, args.out / "comparison.png")
    print(table)


def _credit(result: dict, ref: str, key: str) -> float | None:
    """One credit-check number of a run's last iteration (None when the run has none)."""
    details = result.get("details", {})
    its = sorted(int(k.split("_")[1]) for k in details if k.startswith("credit_") and k.split("_")[1].isdigit())
    credit = [details[f"credit_{i}"] for i in its]
    return credit[-1].get(ref, {}).get(key) if credit else None


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar([r["method"] for r in rows], [r["mean"] for r in rows], yerr=[r["std"] for r in rows], capsize=6)
    for i, r in enumerate(rows):
        ax.scatter([i] * len(r["per_seed"]), r["per_seed"], color="black", zorder=3, s=12)
    ax.set_ylabel("held-out success rate")
    ax.set_ylim(0, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
