"""stage=pretrain: a base model for the synthetic family, from scratch (what a pretrained Llama is for
real tasks): language modelling of specifications with every detail stated and their code. Resumes
at the next step after a stop (state["pretrain_step"])."""

from __future__ import annotations

import logging

from sweet_megatron.parallel import is_rank0
from sweet_megatron.training import episodes as ep
from sweet_megatron.training.runner import sft_loss
from sweet_megatron.training.stages.context import StageContext

log = logging.getLogger("sweet_megatron")


def run(ctx: StageContext) -> None:
    if "pretrain" not in ctx.state["completed"]:
        with ctx.timer("stage_pretrain"):
            pretrain(ctx)


def pretrain(ctx: StageContext) -> dict:
    """A base model for the synthetic family, from scratch: language modelling of specifications
    with every detail stated and their code (no dialogue, no questions). Saved to
    `<run_dir>/base_model` for `train.init_from`; greedy code-writing accuracy on held-out
    specifications is logged as it trains."""
    pc = ctx.cfg.pretrain
    with ctx.timer("base_documents"):
        rows, _ = ctx.pack_rows([[s] for s in ep.base_corpus(ctx.env, ctx.tok, pc.num_documents, pc.seed)])
    held = ep.base_documents(ctx.env, pc.eval_documents, pc.seed, split="heldout")
    if is_rank0():
        log.info("pretrain: %d documents packed into %d rows, %d steps of %d rows", pc.num_documents, len(rows),
                 pc.steps, pc.rows_per_step)
    result: dict = {}

    def on_step(step: int) -> None:
        nonlocal result
        if (pc.eval_every and step % pc.eval_every == 0) or step == pc.steps:
            with ctx.timer("pretrain_eval", quiet=True):
                result = {"code_accuracy": _code_accuracy(ctx, held), "step": step}
            ctx.metrics.log("pretrain_eval", step, result)
            if is_rank0():
                log.info("pretrain step %d: greedy code accuracy %.3f on %d held-out specifications", step,
                         result["code_accuracy"], len(held))
        ctx.record_step("pretrain_step", step, pc.steps)

    ctx.train(ctx.actor, "pretrain", rows, sft_loss, pc.steps, [], start=ctx.state["pretrain_step"],
              on_step=on_step, rows_per_step=pc.rows_per_step)
    from sweet_megatron.checkpoint.model_io import checkpoint_meta, save_model_checkpoint

    out = ctx.run_dir / "base_model"
    if not out.exists():
        save_model_checkpoint(out, ctx.actor.chunks, checkpoint_meta(ctx.model_cfg, pretrain=result),
                              ctx.tok_source)
    if is_rank0():
        print(f"base model: {out}")
    ctx.done("pretrain", result)
    return result


def _code_accuracy(ctx: StageContext, docs: list) -> float:
    """Fraction of (task, text, code) documents whose greedy code from the text passes every test."""
    ctx.sync_engine()
    prompts = [ep.base_sequence(ctx.tok, text) for _, text, _ in docs]
    gens = ctx.engine.generate(prompts, ep.sampling(ctx.cfg.rollout, ctx.tok, greedy=True))
    codes = [ctx.tok.decode(g[0].token_ids) for g in gens]
    correct = ctx.env.base_corpus.is_correct
    return sum(correct(t, c) for (t, _, _), c in zip(docs, codes, strict=True)) / max(len(docs), 1)
