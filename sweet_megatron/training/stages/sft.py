"""stage=sft: the warm start, token NLL on agent actions of noisy scripted demonstrations (or of the
offline file's successful episodes). Resumes at the next step after a stop (state["sft_step"]); its
result, `<run_dir>/sft_model`, is what SWEET-RL and the baselines start from."""

from __future__ import annotations

import logging

from sweet_megatron.parallel import is_rank0
from sweet_megatron.training import episodes as ep
from sweet_megatron.training.runner import sft_loss
from sweet_megatron.training.stages.collect import episodes as iteration_episodes
from sweet_megatron.training.stages.context import StageContext

log = logging.getLogger("sweet_megatron")


def run(ctx: StageContext) -> None:
    if "sft" not in ctx.state["completed"]:
        with ctx.timer("stage_sft"):
            sft(ctx)


def _sft_demos(ctx: StageContext) -> list:
    """The warm start's episodes: task.num_demos noisy scripted demonstrations, or, with
    task.num_demos=0, the successful episodes (reward 1) of sweet.offline_episodes (rejection
    sampling of the offline data). No data at all is a ConfigError naming the keys."""
    from sweet_megatron.config import ConfigError

    if ctx.cfg.task.num_demos > 0:
        return ep.scripted_demos(ctx.env, ctx.cfg.task, ctx.train_tasks, ctx.simulator, ctx.tok,
                                 ctx.cfg.rollout.max_turns)
    if not ctx.cfg.sweet.offline_episodes:
        raise ConfigError("sft: task.num_demos=0 and no sweet.offline_episodes, so the warm start has no data; "
                          "give sweet.offline_episodes (SFT on its successful episodes), task.num_demos > 0 "
                          "(scripted demonstrations, synthetic tasks) or train.steps=0 (no warm start)")
    good = [e for e in iteration_episodes(ctx, 0) if e.success]
    if not good:
        raise ConfigError(f"sft: sweet.offline_episodes={ctx.cfg.sweet.offline_episodes} has no successful "
                          "episode (reward 1) to warm-start from; give a file with successes or train.steps=0 "
                          "(no warm start)")
    return good


def sft(ctx: StageContext) -> None:
    """Warm start: token NLL on agent actions of noisy scripted demonstrations, or of the offline
    file's successful episodes (`_sft_demos`); train.steps=0 keeps the initial weights."""
    with ctx.timer("demos"):
        demos = _sft_demos(ctx) if ctx.cfg.train.steps > 0 else []
        groups = [[ep.sequence(ctx.tok, e.messages(), context_weight=ctx.cfg.train.context_loss_weight)]
                  for e in demos]
        groups = ctx.fit_groups("sft", groups)
        rows, _ = ctx.pack_rows(groups) if groups else ([], [])
    if is_rank0():
        rate = sum(e.success for e in demos) / max(len(demos), 1)
        log.info("sft: %d demonstrations (success %.2f) packed into %d rows, %d steps", len(demos), rate,
                 len(rows), ctx.cfg.train.steps)
    if ctx.cfg.train.steps > 0 and not rows:
        from sweet_megatron.config import ConfigError

        raise ConfigError("sft: every demonstration was dropped as longer than model.seq_length; raise "
                          "model.seq_length or shorten the dialogues (rollout.max_turns, rollout.max_tokens)")

    ctx.train(ctx.actor, "sft", rows, sft_loss, ctx.cfg.train.steps, [], start=ctx.state["sft_step"],
              on_step=lambda step: ctx.record_step("sft_step", step, ctx.cfg.train.steps),
              rows_per_step=ctx.cfg.train.rows_per_step)
    # The warm start every method (SWEET-RL and the baselines) begins from, kept apart.
    from sweet_megatron.checkpoint.model_io import checkpoint_meta, save_model_checkpoint

    if not ctx.sft_model.exists():
        save_model_checkpoint(ctx.sft_model, ctx.actor.chunks, checkpoint_meta(ctx.model_cfg), ctx.tok_source)
    ctx.done("sft")
