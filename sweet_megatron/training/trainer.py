"""The SWEET-RL driver: every rank runs it (SPMD); megatron and the process groups handle the layout.

    trainer = SweetTrainer(cfg)      # builds everything, resumes if a checkpoint exists
    trainer.run()                    # the stages cfg.stage names (PLANS)
    trainer.close()

Each stage is a module of `training/stages/` over the shared `StageContext` (the actor, the rollout
engine, config, metrics, timer, checkpoints and the run's state); `PLANS` below is the whole run,
top to bottom, for each `stage=`. A stage already completed in the run directory (state["completed"])
is skipped, so a rerun resumes where the last one stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from sweet_megatron.config import STAGES, RunConfig
from sweet_megatron.training.stages import actor, baselines, collect, critic, pretrain, sft
from sweet_megatron.training.stages import eval as evaluation
from sweet_megatron.training.stages.context import StageContext


def iterations(ctx: StageContext, last: str) -> None:
    """SWEET-RL's rounds, collect -> critic -> actor -> eval, for every iteration not completed yet.
    last='collect' or 'critic' stops after that step of the first unfinished iteration."""
    for it in range(ctx.cfg.sweet.iterations):
        if f"actor_{it}" in ctx.state["completed"]:
            continue
        episodes = collect.run(ctx, it)
        if last == "collect":
            return
        critics = critic.run(ctx, episodes, it)
        if last == "critic":
            return
        actor.run(ctx, episodes, critics, it)
        del critics
        ctx.keep.clear()  # the critic is not needed past the actor stage
        with ctx.timer("stage_eval"):
            ctx.state["results"][f"eval_{it}"] = evaluation.evaluate(ctx, f"iter{it}")
        ctx.done(f"actor_{it}")


Step = Callable[[StageContext], None]

PLANS: dict[str, tuple[Step, ...]] = {
    "pretrain": (pretrain.run,),
    "sft": (sft.run,),
    "eval": (evaluation.before, evaluation.report),
    "collect": (partial(iterations, last="collect"),),
    "critic": (partial(iterations, last="critic"),),
    "actor": (partial(iterations, last="eval"),),
    "all": (sft.run, evaluation.before, partial(iterations, last="eval"), evaluation.report),
    "baselines": (sft.run, evaluation.before, baselines.run, evaluation.report),
}
"""What each `stage=` runs, in order."""
assert set(PLANS) == set(STAGES), "every stage= of config.STAGES has a plan"


class SweetTrainer:
    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.ctx = StageContext(cfg)

    def run(self) -> dict:
        for step in PLANS[self.cfg.stage]:
            step(self.ctx)
        return self.ctx.state["results"]

    def close(self) -> None:
        self.ctx.close()
