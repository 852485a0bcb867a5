"""stage=actor: per-turn DPO of the actor on pairs of its own candidate actions (sampled from the
rollout engine at turn states of the iteration's episodes), ranked by the critic's per-turn advantage
(stages/critic.py `score_candidates`, i.e. `algorithms.turn_advantages`; or by the synthetic oracle
with sweet.actor_scorer=oracle) and paired top against bottom by `algorithms.turn_pairs`."""

from __future__ import annotations

import logging

from sweet_megatron.parallel import is_rank0
from sweet_megatron.training import episodes as ep
from sweet_megatron.training.losses import actor_dpo_loss_fn
from sweet_megatron.training.runner import ModelRunner
from sweet_megatron.training.stages.context import StageContext
from sweet_megatron.training.stages.critic import Critics, score_candidates

log = logging.getLogger("sweet_megatron")


def run(ctx: StageContext, episodes: list, critics: Critics | None, it: int) -> None:
    """The actor stage of iteration `it` (results `actor_<it>`)."""
    with ctx.timer("stage_actor"):
        ctx.state["results"][f"actor_{it}"] = (train_actor(ctx, episodes, *critics, it) if critics is not None
                                               else {"skipped": "no trajectory pairs"})


def train_actor(ctx: StageContext, episodes: list, critic: ModelRunner, critic_ref: ModelRunner, it: int) -> dict:
    """Per-turn DPO from critic-ranked candidates; reference = the actor before this stage. After a
    stop inside the DPO steps, the resumed run samples and scores the same candidates again (the
    same actor, critic and seeds) and goes on from the checkpoint's runner (resume key `actor_dpo_<it>`)."""
    sw = ctx.cfg.sweet
    states = ctx.fit_states("actor_states", ep.sample_states(episodes, ctx.tasks_by_id, sw.actor_states,
                                                             seed=ctx.cfg.seed + it))
    if not states:
        log.warning("actor: no turn state fits model.seq_length: actor unchanged this iteration")
        ctx.state["results"]["actor_pairs"] = 0
        return {"skipped": "no turn state fits model.seq_length"}
    ctx.sync_engine()
    with ctx.timer("actor_candidates"):
        candidates = ep.candidates(ctx.engine, ctx.tok, states, sw.num_candidates, ctx.cfg.rollout,
                                   seed=ctx.cfg.seed + 7 * it)
    with ctx.timer("actor_scoring"):
        scores = (ep.oracle_scores(ctx.env, states, candidates) if sw.actor_scorer == "oracle" else
                  score_candidates(ctx, critic, critic_ref, states, candidates, sw.critic_reference))
    distinct = len(ep.distinct_actions(candidates)[0]) / max(len(candidates), 1)
    if is_rank0():
        log.info("actor: %d states, %d candidates each, %.1f distinct on average", len(states),
                 sw.num_candidates, distinct)
    groups, flat, pair_texts = ep.turn_pair_groups(ctx.tok, states, candidates, scores, sw.pairs_per_turn,
                                                   seed=ctx.cfg.seed + it, min_margin=sw.min_pair_margin)
    fits = {id(g) for g in ctx.fit_groups("actor", groups)}
    pair_texts = [t for g, t in zip(groups, pair_texts, strict=True) if id(g) in fits]
    groups = [g for g in groups if id(g) in fits]
    ctx.state["results"]["actor_pairs"] = len(groups)
    if not groups:
        log.warning("actor: every candidate scored the same: no pairs, actor unchanged this iteration")
        return {"skipped": "no candidate pairs"}
    agreement = ep.pair_oracle_agreement(ctx.env, states, pair_texts) or {}
    if agreement:
        ctx.metrics.log("actor_pairs", it, agreement)
        if is_rank0():
            log.info("actor: %d pairs; the oracle agrees with %.2f of them, disagrees with %.2f, ties %.2f",
                     len(groups), agreement["pairs_oracle_agree"], agreement["pairs_oracle_disagree"],
                     agreement["pairs_oracle_tie"])
    actor_ref = ctx.build_runner("actor_ref", None, 1)
    ctx.copy_weights(ctx.actor, actor_ref)
    actor = ctx.build_runner("actor_dpo", sw.actor_optim, sw.actor_steps)
    ctx.copy_weights(ctx.actor, actor)
    with ctx.timer("actor_ref_logprobs"):
        rows, seqs = ctx.pack_rows(groups, ref=actor_ref, keys=[g for g, _, _ in pair_texts])
    last = ctx.train(actor, "actor", rows, actor_dpo_loss_fn(seqs, sw.dpo_beta, sw.nll_coef), sw.actor_steps,
                     ["accuracy", "reward_margin", "nll_loss"], rows_per_step=ctx.rows_per_step("actor", groups, rows),
                     resume_key=f"actor_dpo_{it}")
    actor.step += ctx.actor.step
    ctx.actor = actor
    return {"pairs": len(groups), "distinct_candidates": distinct, **agreement,
            **{f"final_{k}": v for k, v in last.items()}}
