"""stage=baselines: rejection fine-tuning (SFT on the successful episodes) and multi-turn DPO
(trajectory-level pairs, no training-time information), each from the SFT warm start, on the first
iteration's episodes, each evaluated like the actor (results `rft`, `mtdpo`). Each resumes inside
its training after a stop (resume keys `rft`, `mtdpo`)."""

from __future__ import annotations

import logging

from sweet_megatron.training import episodes as ep
from sweet_megatron.training.losses import trajectory_dpo_loss_fn
from sweet_megatron.training.runner import sft_loss
from sweet_megatron.training.stages.collect import episodes as iteration_episodes
from sweet_megatron.training.stages.context import StageContext
from sweet_megatron.training.stages.eval import evaluate

log = logging.getLogger("sweet_megatron")


def run(ctx: StageContext) -> None:
    """RFT and multi-turn DPO, each from the SFT warm start, on the first collected episodes
    (the same data SWEET-RL's first iteration used when stage=all ran in this run directory)."""
    results = ctx.state["results"]
    for name, fn in (("rft", rejection_finetune), ("mtdpo", trajectory_dpo)):
        if name in ctx.state["completed"]:
            continue
        ctx.actor.load_weights(ctx.sft_model)
        episodes = iteration_episodes(ctx, 0)
        with ctx.timer(f"stage_{name}"):
            info = fn(ctx, episodes)
            results[name] = {**info, **evaluate(ctx, name)}
        ctx.done(name, results[name])


def rejection_finetune(ctx: StageContext, episodes: list) -> dict:
    """RFT: SFT on the agent turns of successful episodes, from the current actor."""
    good = [e for e in episodes if e.success]
    if not good:
        return {"skipped": "no successful episodes"}
    groups = ctx.fit_groups("rft", [[ep.sequence(ctx.tok, e.messages())] for e in good])
    if not groups:
        return {"skipped": "every successful episode longer than model.seq_length"}
    rows, _ = ctx.pack_rows(groups)
    runner = ctx.build_runner("rft", ctx.cfg.sweet.rft_optim, ctx.cfg.sweet.actor_steps)
    ctx.copy_weights(ctx.actor, runner)
    ctx.train(runner, "rft", rows, sft_loss, ctx.cfg.sweet.actor_steps, [], resume_key="rft")
    ctx.actor = runner
    return {"episodes": len(good)}


def trajectory_dpo(ctx: StageContext, episodes: list) -> dict:
    """Multi-turn DPO baseline: trajectory-level pairs, no training-time information."""
    sw = ctx.cfg.sweet
    groups, _ = ep.trajectory_pair_groups(ctx.tok, episodes, ctx.tasks_by_id, with_reference=False,
                                          strategy=sw.critic_pairs, min_best_reward=sw.critic_min_best_reward)
    groups = ctx.fit_groups("mtdpo", groups)
    if not groups:
        return {"skipped": "no pairs"}
    ref = ctx.build_runner("mtdpo_ref", None, 1)
    ctx.copy_weights(ctx.actor, ref)
    runner = ctx.build_runner("mtdpo", sw.mtdpo_optim, sw.actor_steps)
    ctx.copy_weights(ctx.actor, runner)
    rows, seqs = ctx.pack_rows(groups, ref=ref)
    ctx.train(runner, "mtdpo", rows, trajectory_dpo_loss_fn(seqs, sw.dpo_beta, sw.nll_coef), sw.actor_steps,
              ["accuracy", "reward_margin", "nll_loss"], rows_per_step=ctx.rows_per_step("mtdpo", groups, rows),
              resume_key="mtdpo")
    ctx.actor = runner
    return {"pairs": len(groups)}
