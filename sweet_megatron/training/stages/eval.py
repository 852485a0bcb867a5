"""stage=eval: greedy episodes of the current actor on the held-out tasks (and the validation tasks
when task.val_size carved some): success rate and mean reward, and the environment's own metrics
(`Environment.eval_metrics`: the frontend's mean similarity and win rate against its baseline
agent). When the environment reports per-task rewards, every evaluation after the warm start's
also gets `win_rate_vs_warm_start`: the share of held-out tasks where the agent now scores higher
than the warm start did (ties half). Also the report at the end of a run."""

from __future__ import annotations

import logging
from dataclasses import asdict

from sweet_megatron.env.base import win_rate
from sweet_megatron.parallel import is_rank0
from sweet_megatron.training import episodes as ep
from sweet_megatron.training.stages.context import StageContext

log = logging.getLogger("sweet_megatron")


def before(ctx: StageContext) -> None:
    """The warm start's evaluation (`eval_before`), once per run."""
    if "eval_before" not in ctx.state["completed"]:
        with ctx.timer("stage_eval"):
            ctx.done("eval_before", evaluate(ctx, "before"))


def evaluate(ctx: StageContext, key: str) -> dict:
    """Greedy episodes on held-out tasks."""
    ctx.sync_engine()
    with ctx.timer("eval_rollout"):
        episodes = ep.rollout(ctx.engine, ctx.tok, ctx.eval_tasks, ctx.simulator, ctx.cfg.rollout,
                              greedy=True, seed=ctx.cfg.seed, env=ctx.env)
    result = ep.summarize(episodes) | ctx.env.eval_metrics(ctx.eval_tasks, episodes)
    before = ctx.state["results"].get("eval_before", {}).get("task_rewards")
    if before and "task_rewards" in result and key != "before":
        result["win_rate_vs_warm_start"] = win_rate_against(result["task_rewards"], before)
    if ctx.val_tasks:  # task.val_size tasks carved from task.train_file, next to the held-out set
        with ctx.timer("eval_rollout"):
            val = ep.summarize(ep.rollout(ctx.engine, ctx.tok, ctx.val_tasks, ctx.simulator, ctx.cfg.rollout,
                                          greedy=True, seed=ctx.cfg.seed, env=ctx.env))
        result |= {f"val_{k}": v for k, v in val.items()}
    ctx.metrics.log("eval", ctx.actor.step, {f"{key}/{k}": v for k, v in result.items()})
    if is_rank0():
        log.info("eval %s: success %.3f, mean reward %.3f over %d held-out tasks%s", key, result["success_rate"],
                 result["mean_reward"], len(episodes),
                 "".join(f", {k} {result[k]:.3f}" for k in ("baseline_mean_similarity", "win_rate",
                                                             "win_rate_vs_warm_start") if k in result))
    return result


def win_rate_against(rewards: dict, baseline: dict) -> float:
    """Share of the tasks of both (task id -> reward) where `rewards` beats `baseline`, ties half."""
    common = [t for t in rewards if t in baseline]
    if not common:
        return float("nan")
    return win_rate([rewards[t] for t in common], [baseline[t] for t in common])


def report(ctx: StageContext) -> None:
    """results.json, results.md and the plots (training/report.py), on rank 0."""
    if not is_rank0():
        return
    from sweet_megatron.training.report import write_report

    path = write_report(ctx.run_dir, ctx.state["results"], ctx.timer.summary(), asdict(ctx.cfg))
    print(f"report: {path}")
