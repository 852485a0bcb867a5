"""stage=critic: the asymmetric critic (the reference solution prepended), initialised from the actor
and trained with the Bradley-Terry loss on same-task trajectory pairs; then the credit check, its
turn ranking against the synthetic oracle on held-out turns (and, with sweet.credit_baseline, the
same for a critic without the reference). `score_actions` is the critic's per-turn advantage
(`sweet_megatron.algorithms.turn_advantages`), what the actor stage ranks candidates by."""

from __future__ import annotations

import logging

import torch

from sweet_megatron.algorithms import turn_advantages
from sweet_megatron.parallel import is_rank0
from sweet_megatron.training import episodes as ep
from sweet_megatron.training.losses import critic_loss_fn
from sweet_megatron.training.runner import ModelRunner
from sweet_megatron.training.stages.context import StageContext

log = logging.getLogger("sweet_megatron")

Critics = tuple[ModelRunner, ModelRunner]
"""A trained critic and its frozen reference (the actor it started from)."""


def run(ctx: StageContext, episodes: list, it: int) -> Critics | None:
    """The actor's critic of iteration `it` (None without trajectory pairs), credit-checked when
    sweet.credit_check (results `credit_<it>`), and with sweet.credit_baseline the critic without
    the reference, trained and checked the same way.

    Each critic resumes inside its training after a stop (resume keys `critic_<it>`,
    `critic_noref_<it>`); once trained and checked it is marked completed, and the actor's critic is
    kept in every checkpoint (`ctx.keep`) until the iteration ends, so a run stopped later in the
    iteration reads it back instead of training it again."""
    sw = ctx.cfg.sweet
    completed, results = ctx.state["completed"], ctx.state["results"]
    name = "critic" if sw.critic_reference else "critic_noref"
    with ctx.timer("stage_critic"):
        if f"critic_{it}" in completed:  # trained before a stop: its weights are in the checkpoint
            critics = _restore(ctx, name)
        else:
            critics = train_critic(ctx, episodes, with_reference=sw.critic_reference, resume_key=f"critic_{it}")
            if critics is None:
                return None
            if sw.credit_check:
                key = "with_reference" if sw.critic_reference else "without_reference"
                results[f"credit_{it}"] = {key: credit_check(ctx, *critics, sw.critic_reference, it)}
            completed.append(f"critic_{it}")
        ctx.keep[name] = critics[0]
        if sw.credit_check and sw.credit_baseline and f"critic_noref_{it}" not in completed:
            noref = train_critic(ctx, episodes, with_reference=False, resume_key=f"critic_noref_{it}")
            results[f"credit_{it}"]["without_reference"] = credit_check(ctx, *noref, False, it)
            completed.append(f"critic_noref_{it}")
            del noref
    return critics


def _restore(ctx: StageContext, name: str) -> Critics:
    """The trained critic `name` from the checkpoint (frozen: only its scores are needed now) and its
    reference, the actor it started from."""
    critic = ctx.build_runner(name, None, 1)
    ctx.restore({name: critic})
    critic_ref = ctx.build_runner(f"{name}_ref", None, 1)
    ctx.copy_weights(ctx.actor, critic_ref)
    if is_rank0():
        log.info("%s: trained before the stop, read back from %s", name, ctx.resume_from)
    return critic, critic_ref


def train_critic(ctx: StageContext, episodes: list, with_reference: bool = True,
                 resume_key: str | None = None) -> Critics | None:
    """Asymmetric critic initialised from the actor; BT loss on same-task trajectory pairs.

    None when no task has two episodes with different rewards (nothing to compare)."""
    sw = ctx.cfg.sweet
    name = "critic" if with_reference else "critic_noref"
    groups, sequences = ep.trajectory_pair_groups(ctx.tok, episodes, ctx.tasks_by_id, with_reference,
                                                  sw.critic_pairs, sw.critic_min_best_reward)
    groups = ctx.fit_groups(name, groups)
    if with_reference == sw.critic_reference:  # the actor's critic (not the credit check's baseline)
        ctx.state["results"]["critic_pairs"] = len(groups)
    if not groups:
        why = (f"no task has episodes with different rewards and a best reward >= sweet.critic_min_best_reward="
               f"{sw.critic_min_best_reward}")
        if sw.offline_episodes and not any(k.startswith("actor_") for k in ctx.state["completed"]):
            from sweet_megatron.config import ConfigError

            raise ConfigError(f"{name}: sweet.offline_episodes={sw.offline_episodes}: {why}, so no "
                              "trajectory pairs form. The file needs several rollouts of a task (matched by "
                              "task_id, else by content) with different rewards; or lower "
                              "sweet.critic_min_best_reward (null: no filter)")
        log.warning("%s: %s: no pairs, critic and actor skipped this iteration (collect more episodes, or "
                    "warm-start longer)", name, why)
        return None
    critic = ctx.build_runner(name, sw.critic_optim, sw.critic_steps)
    critic_ref = ctx.build_runner(f"{name}_ref", None, 1)
    ctx.copy_weights(ctx.actor, critic)
    ctx.copy_weights(ctx.actor, critic_ref)
    with ctx.timer(f"{name}_ref_logprobs"):
        rows, flat = ctx.pack_rows(groups, ref=critic_ref)
    last = ctx.train(critic, name, rows, critic_loss_fn(flat, sw.critic_beta, sw.critic_reduction),
                     sw.critic_steps, ["accuracy", "margin"], rows_per_step=ctx.rows_per_step(name, groups, rows),
                     resume_key=resume_key)
    if is_rank0():
        log.info("%s: %d pairs, final BT loss %.4f, pair accuracy %.3f", name, len(groups), last["loss"],
                 last["accuracy"])
    return critic, critic_ref


def score_candidates(ctx: StageContext, critic: ModelRunner, critic_ref: ModelRunner, states: list,
                     candidates: list, with_reference: bool = True) -> torch.Tensor:
    """Critic advantage [G, M] of M candidate actions for each of G turn states.

    Each distinct action of a state is scored once (`ep.distinct_actions`): repeated samples,
    frequent from a peaked policy, get exactly the same score and are never paired together."""
    distinct, slot_GM = ep.distinct_actions(candidates)
    return score_actions(ctx, critic, critic_ref, states, distinct, with_reference)[slot_GM]


def score_actions(ctx: StageContext, critic: ModelRunner, critic_ref: ModelRunner, states: list,
                  actions: list[tuple[int, str]], with_reference: bool = True) -> torch.Tensor:
    """Critic advantage [A] of each (state index, action text) in `actions`: the algorithm's
    `turn_advantages` (beta times the mean over the action's tokens of critic minus reference
    log-prob) of the action's one turn, from the two models' log-probs of the packed rows."""
    seqs = [[ep.candidate_sequence(ctx.tok, states[g], c, with_reference)] for g, c in actions]
    rows, flat = ctx.pack_rows(seqs, keys=[g for g, _ in actions])  # a state's candidates share its prefix
    adv: dict[tuple[int, int], float] = {}
    for row, logp_c, logp_r in zip(rows, critic.token_logprobs(rows), critic_ref.token_logprobs(rows), strict=True):
        adv_S = turn_advantages(logp_c, logp_r, row.segment_ids, row.num_segments, beta=ctx.cfg.sweet.critic_beta)
        adv.update(zip(row.segments, adv_S.tolist(), strict=True))
    return torch.tensor([adv[(i, 0)] for i in range(len(flat))])


def credit_check(ctx: StageContext, critic: ModelRunner, critic_ref: ModelRunner, with_reference: bool,
                 it: int) -> dict:
    """Pairwise turn-ranking accuracy of the critic against the oracle, on held-out tasks, over
    two populations of candidate actions: a fixed menu of every action an agent could take at the
    scripted agent's turn states (`ep.oracle_candidates`), and the actor's own sampled actions at
    the states of its own held-out episodes (`ep.policy_candidates`; keys prefixed `policy_`)."""
    sw = ctx.cfg.sweet
    if not ep.has_oracle(ctx.env, ctx.eval_tasks):
        if is_rank0():
            log.warning("credit check skipped: no held-out task is synthetic, so no oracle values its actions "
                        "(sweet.credit_check=false turns this off)")
        return {}
    states, candidates, oracle = ep.oracle_candidates(ctx.env, ctx.eval_tasks, ctx.simulator, ctx.tok,
                                                      ctx.cfg.rollout.max_turns, sw.credit_states)
    actions = [(g, c) for g, row in enumerate(candidates) for c in row]
    result = ep.credit_accuracy(ctx.env, score_actions(ctx, critic, critic_ref, states, actions, with_reference),
                                states, actions, oracle)
    if sw.credit_policy_states:
        states, candidates, oracle = _policy_credit_set(ctx, it)
        actions = [(g, c) for g, row in enumerate(candidates) for c in row]
        policy = ep.credit_accuracy(ctx.env, score_actions(ctx, critic, critic_ref, states, actions, with_reference),
                                    states, actions, oracle)
        result |= {f"policy_{k}": v for k, v in policy.items()}
    name = "critic" if with_reference else "critic_noref"
    ctx.metrics.log("credit", it, {f"{name}/{k}": v for k, v in result.items()})
    if is_rank0():
        for label, pre in (("fixed menu", ""), ("the actor's own candidates", "policy_")):
            if f"{pre}turn_ranking_accuracy" in result:
                r = {k[len(pre):]: v for k, v in result.items() if k.startswith(pre)}
                log.info("%s, %s: turn-ranking accuracy vs the oracle %.3f over %d held-out candidate pairs "
                         "(questions only %.3f over %d, of them those only the code decides %.3f over %d; "
                         "answers only %.3f over %d; a question against an answer %.3f over %d)", name, label,
                         r["turn_ranking_accuracy"], r["pairs"], r["questions_accuracy"], r["questions_pairs"],
                         r["code_questions_accuracy"], r["code_questions_pairs"], r["answers_accuracy"],
                         r["answers_pairs"], r["mixed_accuracy"], r["mixed_pairs"])
    return result


def _policy_credit_set(ctx: StageContext, it: int) -> tuple[list, list, list]:
    """The actor's held-out states and candidates for the credit check, drawn once an iteration so
    that the critic with the reference and the one without it rank the same actions."""
    if ctx.policy_credit is None or ctx.policy_credit[0] != it:
        ctx.sync_engine()
        with ctx.timer("credit_policy_candidates"):
            sw = ctx.cfg.sweet
            ctx.policy_credit = (it, ep.policy_candidates(ctx.env, ctx.engine, ctx.tok, ctx.eval_tasks, ctx.simulator,
                                                          ctx.cfg.rollout, sw.credit_policy_states,
                                                          sw.num_candidates, seed=ctx.cfg.seed * 1000 + 500 + it))
    return ctx.policy_credit[1]
