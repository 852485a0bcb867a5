"""stage=collect: an iteration's episodes, sampled from the current actor on training tasks (several
per task, so the critic gets same-task pairs) and saved to `<run_dir>/episodes_iter<it>.jsonl`; an
earlier collection (or the first iteration's sweet.offline_episodes) is read back instead."""

from __future__ import annotations

import logging
from pathlib import Path

from sweet_megatron.parallel import is_rank0
from sweet_megatron.training import episodes as ep
from sweet_megatron.training.stages.context import StageContext

log = logging.getLogger("sweet_megatron")


def run(ctx: StageContext, it: int) -> list:
    with ctx.timer("stage_collect"):
        return episodes(ctx, it)


def episodes(ctx: StageContext, it: int) -> list:
    """This iteration's episodes: imported offline data (loaded and scored once), an earlier
    collection, or a new one."""
    from sweet_megatron.builtin import resolve_builtin

    offline = ctx.cfg.sweet.offline_episodes
    if it in ctx.loaded_episodes:
        return ctx.loaded_episodes[it]
    path = resolve_builtin(offline) if offline and it == 0 else ctx.run_dir / f"episodes_iter{it}.jsonl"
    if path.exists():
        loaded, tasks = ep.load_episodes(path, max_turns=ctx.cfg.rollout.max_turns,
                                           protocol=ctx.env.protocol)
        ctx.tasks_by_id.update(tasks)
        if is_rank0():
            log.info("loaded %d episodes of %d tasks from %s (success %.3f)", len(loaded), len(tasks), path,
                     sum(e.success for e in loaded) / max(len(loaded), 1))
        ctx.loaded_episodes[it] = loaded
        return loaded
    if offline and it == 0:
        from sweet_megatron.config import ConfigError

        raise ConfigError(f"sweet.offline_episodes={offline}: no such file ({Path(offline).resolve()})")
    return collect(ctx, it)


def collect(ctx: StageContext, it: int) -> list:
    """Sampled episodes of the current actor on training tasks, several per task."""
    ctx.sync_engine()
    tasks = ep.sample_tasks(ctx.train_tasks, ctx.cfg.sweet.episodes_per_iter, ctx.cfg.sweet.rollouts_per_task,
                            seed=ctx.cfg.seed + it)
    with ctx.timer("collect_rollout"):
        episodes = ep.rollout(ctx.engine, ctx.tok, tasks, ctx.simulator, ctx.cfg.rollout, greedy=False,
                              seed=ctx.cfg.seed * 1000 + it, env=ctx.env)
    ep.save_episodes(ctx.run_dir / f"episodes_iter{it}.jsonl", episodes, ctx.tasks_by_id)
    result = ep.summarize(episodes)
    ctx.metrics.log("collect", it, result)
    return episodes
