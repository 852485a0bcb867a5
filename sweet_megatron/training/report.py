"""The end-of-run report: results.json, results.md and plots in the run directory."""

from __future__ import annotations

import json
import math
from pathlib import Path

from sweet_megatron.training.metrics import latest_records, read_jsonl


def _success_curve(results: dict) -> list[tuple[str, float]]:
    curve = []
    if "eval_before" in results:
        curve.append(("sft", results["eval_before"]["success_rate"]))
    its = sorted(int(k.split("_")[1]) for k in results if k.startswith("eval_") and k.split("_")[1].isdigit())
    curve += [(f"iter {i}", results[f"eval_{i}"]["success_rate"]) for i in its]
    return curve


def _credit(results: dict) -> list[dict]:
    """The credit checks' results, by iteration (numerically: credit_10 after credit_9)."""
    its = sorted(int(k.split("_")[1]) for k in results if k.startswith("credit_") and k.split("_")[1].isdigit())
    return [results[f"credit_{i}"] for i in its]


def summary(results: dict) -> dict:
    """The headline numbers: success before/after on held-out tasks (and, where the environment
    reports them, mean similarity and win rates), critic ranking accuracy."""
    curve = _success_curve(results)
    out: dict = {}
    if curve:
        out["success_before"] = curve[0][1]
        out["success_after"] = curve[-1][1]
    its = sorted(int(k.split("_")[1]) for k in results if k.startswith("eval_") and k.split("_")[1].isdigit())
    last = results.get(f"eval_{its[-1]}") if its else None
    for label, key in (("similarity", "mean_similarity"), ("win_rate", "win_rate")):
        if key in results.get("eval_before", {}):
            out[f"{label}_before"] = results["eval_before"][key]
        if last is not None and key in last:
            out[f"{label}_after"] = last[key]
    if last is not None and "baseline_mean_similarity" in last:
        out["baseline_similarity"] = last["baseline_mean_similarity"]
    if last is not None and "win_rate_vs_warm_start" in last:
        out["win_rate_vs_warm_start_after"] = last["win_rate_vs_warm_start"]
    credit = _credit(results)
    if credit:
        for key, name in (("with_reference", "critic"), ("without_reference", "critic_noref")):
            if key in credit[-1]:
                out[f"{name}_turn_ranking_accuracy"] = credit[-1][key]["turn_ranking_accuracy"]
                if "policy_turn_ranking_accuracy" in credit[-1][key]:
                    out[f"{name}_policy_turn_ranking_accuracy"] = credit[-1][key]["policy_turn_ranking_accuracy"]
    for name in ("critic_pairs", "actor_pairs"):  # the last SWEET-RL iteration's pair counts
        if name in results:
            out[name] = results[name]
    for name in ("rft", "mtdpo"):
        if name in results and "success_rate" in results[name]:
            out[f"success_{name}"] = results[name]["success_rate"]
    return out


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def write_report(run_dir: Path, results: dict, timings: dict, config: dict) -> Path:
    """Write results.json, results.md and plots; returns the markdown path."""
    head = summary(results)
    (run_dir / "results.json").write_text(json.dumps({**head, "details": results, "timings": timings,
                                                      "config": config}, indent=1, default=str))
    lines = ["# SWEET-RL run report", "", "| quantity | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in head.items()]
    curve = _success_curve(results)
    if curve:
        lines += ["", "## Held-out success per iteration", "", "| after | success rate |", "|---|---|"]
        lines += [f"| {name} | {v:.3f} |" for name, v in curve]
    credit = _credit(results)
    if credit:
        lines += ["", "## Critic turn-ranking accuracy against the oracle (held-out turns, last iteration)", "",
                  "Fixed menu: every action an agent could take at the scripted agent's states."
                  + (" The actor's own: the distinct actions the actor samples at the states of its own held-out "
                     "episodes." if any("policy_pairs" in r for r in credit[-1].values()) else ""), "",
                  "| candidates | critic | all pairs | questions only | questions only the code decides | answers only "
                  "| a question against an answer |", "|---|---|---|---|---|---|---|"]
        for population, pre in (("fixed menu", ""), ("the actor's own", "policy_")):
            for name, key in (("with reference", "with_reference"), ("without reference", "without_reference")):
                r = credit[-1].get(key, {})
                if f"{pre}pairs" not in r:
                    continue
                cells = [f"{r[pre + acc]:.3f} ({r[pre + n]} pairs)" if pre + acc in r else "-"
                         for acc, n in (("turn_ranking_accuracy", "pairs"), ("questions_accuracy", "questions_pairs"),
                                        ("code_questions_accuracy", "code_questions_pairs"),
                                        ("answers_accuracy", "answers_pairs"), ("mixed_accuracy", "mixed_pairs"))]
                lines.append(f"| {population} | {name} | " + " | ".join(cells) + " |")
    lines += _phase_table(run_dir, timings)
    plots = _plots(run_dir, curve, head)
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    md = run_dir / "results.md"
    md.write_text("\n".join(lines) + "\n")
    return md


def _phase_table(run_dir: Path, timings: dict) -> list[str]:
    """Time per phase over the whole run: this attempt's (`timings`) and, from phases.jsonl, every
    earlier attempt's (a run killed and resumed, or an earlier command in the same run directory)."""
    current = {k.removeprefix("time/"): v for k, v in timings.items()}
    phases = read_jsonl(run_dir / "phases.jsonl")
    this = max((r["attempt"] for r in phases), default=1)
    earlier: dict[int, dict[str, float]] = {}
    for r in phases:
        if r["attempt"] < this:
            by_phase = earlier.setdefault(r["attempt"], {})
            by_phase[r["phase"]] = by_phase.get(r["phase"], 0.0) + r["seconds"]
    if not earlier:
        lines = ["", "## Time per phase (s)", "", "| phase | seconds |", "|---|---|"]
        return lines + [f"| {k} | {v:.1f} |" for k, v in sorted(current.items(), key=lambda kv: -kv[1])]
    attempts = sorted(earlier)
    names = set(current).union(*earlier.values())
    total = {n: current.get(n, 0.0) + sum(earlier[a].get(n, 0.0) for a in attempts) for n in names}
    lines = ["", "## Time per phase (s)", "",
             f"This run directory saw {this} attempts: attempt {this} made this report; "
             + ", ".join(f"attempt {a}" for a in attempts) + " ended before it (interrupted and resumed, or an "
             "earlier command), and their times are listed (marked *earlier*) and counted in the total.", "",
             "| phase | " + " | ".join(f"attempt {a} (earlier)" for a in attempts) + f" | attempt {this} | total |",
             "|---|" + "---|" * (len(attempts) + 2)]
    for n in sorted(names, key=lambda n: -total[n]):
        cells = [f"{earlier[a][n]:.1f}" if n in earlier[a] else "-" for a in attempts]
        cells += [f"{current[n]:.1f}" if n in current else "-", f"{total[n]:.1f}"]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return lines


def _plots(run_dir: Path, curve: list[tuple[str, float]], head: dict) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    out = []
    records = []
    metrics = run_dir / "metrics.jsonl"
    if metrics.exists():
        records = latest_records(read_jsonl(metrics))  # a resumed run's repeated steps: the later attempt's
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    if curve:
        axes[0].plot(range(len(curve)), [v for _, v in curve], marker="o")
        axes[0].set_xticks(range(len(curve)), [n for n, _ in curve])
        axes[0].set_ylim(0, 1)
    axes[0].set_title("held-out success rate")
    bars = {k: v for k, v in head.items() if "ranking_accuracy" in k and not math.isnan(v)}
    if bars:
        labels = [("without" if "noref" in k else "with") + " reference" + (", actor's own" if "policy" in k else ", menu")
                  for k in bars]
        axes[1].bar(labels, list(bars.values()), color=["tab:gray" if "noref" in k else "tab:blue" for k in bars])
        axes[1].tick_params(axis="x", labelrotation=20, labelsize=8)
        axes[1].axhline(0.5, color="gray", linestyle="--")
        axes[1].set_ylim(0, 1)
    axes[1].set_title("critic turn-ranking accuracy vs oracle")
    for stage in sorted({r["stage"] for r in records if "loss" in r}):
        pts = [(r["step"], r["loss"]) for r in records if r["stage"] == stage and "loss" in r]
        axes[2].plot([p[0] for p in pts], [p[1] for p in pts], label=stage)
    axes[2].set_title("training losses")
    axes[2].set_xlabel("step")
    if records:
        axes[2].legend()
    fig.tight_layout()
    path = run_dir / "report.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    out.append(path)
    return out
