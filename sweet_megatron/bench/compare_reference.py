"""`sweet-bench train --compare reference`: the same model trained on the same dialogues two ways.

- **ours**: the trainer's own step: the critic stage's trajectory pairs packed into rows
  (`train.pack_length`, longer for a long group), each pair's common prefix (system prompt,
  reference solution, task) laid out once (shared prefixes on the local spec), one
  `ModelRunner.train_step` per optimizer step, which lays the step's rows out again into unpadded
  microbatches of up to `model.seq_length` tokens and attends each dialogue, prefix and branch by
  itself (`attention.DocumentPieces`), per-token log-probs from hidden states in vocabulary chunks
  (the fused path).
- **reference**: the reference implementation's way (its DeepSpeed trainer): one unpadded sequence
  per micro-batch, plain causal attention (no mask tensor, as its Hugging Face model runs SDPA),
  the full `[S, V]` logits, `log_softmax` over the vocabulary, then a gather of the labels'
  log-probs; gradients accumulated over the micro-batches of the step, then one optimizer step.

The two ways take turns step by step (ours, then the reference, for every step), so on cores shared
with other work both see the same load; each step is timed alone.

Both train a fresh copy of the shipped base model (same initial weights, optimizer and learning rate) with
the same loss, a token NLL on the agents' actions over the same sequences, split into the same
optimizer steps; only the layout and the log-prob computation differ. Tokens/s counts each
sequence's tokens once (what a flat layout would process), so the prefix that shared rows hold
once is counted as often as it occurs; both rates use the same count. The dialogues are the embedded
default's demonstrations (scripted episodes on the synthetic family, rendered with the shipped base
model's tokenizer), paired as the critic pairs them.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch

from sweet_megatron.checkpoint.model_io import (
    load_model_checkpoint,
    model_config_from_meta,
    read_meta,
    resolve_checkpoint,
)
from sweet_megatron.config import OptimConfig, load_config
from sweet_megatron.data.packing import group_length, pack_groups
from sweet_megatron.parallel import destroy, initialize, world_size
from sweet_megatron.training import episodes as ep


def reference_logprob_nll(logits_SV: torch.Tensor, labels_S: torch.Tensor, mask_S: torch.Tensor) -> torch.Tensor:
    """The reference way: -sum over masked positions of log_softmax(logits)[label].

    logits_SV [S, V] (any float dtype), labels_S [S] int64, mask_S [S] float -> scalar float32.
    """
    logp_SV = torch.log_softmax(logits_SV.float(), dim=-1)
    logp_S = logp_SV.gather(-1, labels_S.unsqueeze(-1)).squeeze(-1)
    return -(logp_S * mask_S).sum()


def reference_step(runner, rows: list) -> float:
    """One optimizer step of `runner` over one-sequence rows, one per micro-batch, full logits.

    Every row holds exactly one sequence and no padding. Returns the mean NLL per action token.
    """
    (model,) = runner.chunks
    model.train()
    model.zero_grad_buffer()
    runner.optimizer.zero_grad()
    device = runner.platform.device
    total = sum(float((r.loss_mask > 0).sum()) for r in rows)
    loss_sum = 0.0
    for row in rows:
        tokens = row.tokens.to(device)[None]
        # one sequence, no padding: plain causal attention (attention_mask None), as the reference's
        # Hugging Face model runs it (SDPA with is_causal), not a dense mask
        logits_1SV = model(tokens, row.position_ids.to(device)[None], None)
        nll = reference_logprob_nll(logits_1SV[0], row.labels.to(device), row.loss_mask.to(device))
        (nll / total).backward()
        loss_sum += float(nll)
    model.finish_grad_sync()
    ok, _, _ = runner.optimizer.step()
    if not ok:
        raise FloatingPointError("reference step skipped (non-finite gradients)")
    runner.scheduler.step(increment=1)
    return loss_sum / max(total, 1.0)


def demo_pair_groups(num_pairs: int):
    """(config, tokenizer, base checkpoint, model config, pair groups) of the embedded default: the critic's view of pairs of
    scripted demonstrations of one task (chosen = higher reward), `num_pairs` of them."""
    cfg = load_config([])
    base = resolve_checkpoint(cfg.train.init_from)
    env = ep.environment(cfg.task)
    train_tasks, _ = ep.load_task_splits(cfg.task)
    tok = ep.build_tokenizer(ep.tokenizer_config(cfg.tokenizer, base), Path("."), train_tasks, env)
    demos = ep.scripted_demos(env, cfg.task, train_tasks, ep.build_simulator(cfg.simulator, env), tok,
                              cfg.rollout.max_turns)
    groups, _ = ep.trajectory_pair_groups(tok, demos, {t.task_id: t for t in train_tasks}, with_reference=True)
    if len(groups) < num_pairs:
        raise SystemExit(f"sweet-bench train --compare reference: only {len(groups)} pairs in the demos")
    return cfg, tok, base, model_config_from_meta(read_meta(base)), groups[:num_pairs]


def run(pairs: int, steps: int, warmup: int, json_path: Path | None) -> int:
    """Both ways over the same `pairs` critic pairs split into `warmup + steps` optimizer steps."""
    # lazy: the runner imports megatron-core (~5 s); --help and bad arguments stay fast
    from sweet_megatron.training.runner import ModelRunner, sft_loss

    cfg, tok, base, model_cfg, groups = demo_pair_groups(pairs)
    platform = initialize(cfg.parallel, seed=0)
    if world_size() != 1:
        raise SystemExit("sweet-bench train --compare reference runs on one process (the reference way has no layout)")
    n_steps = warmup + steps
    per_step = -(-len(groups) // n_steps)
    chunks = [groups[i : i + per_step] for i in range(0, len(groups), per_step)]
    seq_len = min(model_cfg.seq_length, max(cfg.train.pack_length,
                                            -(-max(group_length(g, True) for g in groups) // 128) * 128))
    ours_rows = [pack_groups(c, seq_len, tok.pad_id, share_prefix=True)[0] for c in chunks]
    ref_rows = [[pack_groups([[s]], len(s.ids), tok.pad_id)[0][0] for g in c for s in g] for c in chunks]
    tokens = [sum(len(s.ids) for g in c for s in g) for c in chunks]

    optim = OptimConfig(lr=1e-4, min_lr=1e-5, warmup_steps=0)
    runners = {}
    for way in ("ours", "reference"):
        runner = ModelRunner(model_cfg, cfg.parallel, platform, optim, total_steps=n_steps, name=way)
        load_model_checkpoint(base, runner.chunks)  # both start from the shipped base model
        runner.optimizer.reload_model_params()
        runners[way] = runner
    # the two ways take turns, step by step: on shared cores both see the same load
    times: dict[str, list[tuple[float, int]]] = {"ours": [], "reference": []}
    losses: dict[str, list[float]] = {"ours": [], "reference": []}
    for k in range(n_steps):
        for way, runner in runners.items():
            t0 = time.perf_counter()
            if way == "ours":
                m = runner.train_step(ours_rows[k], sft_loss, [])
                losses[way].append(m["loss_sum"] / max(m["count"], 1.0))
            else:
                losses[way].append(reference_step(runner, ref_rows[k]))
            if k >= warmup:
                times[way].append((time.perf_counter() - t0, tokens[k]))
    results = {}
    for way in runners:
        rate = sum(n for _, n in times[way]) / sum(t for t, _ in times[way])
        results[way] = {"tokens_per_s": round(rate, 1),
                        "step_s_median": round(statistics.median(t for t, _ in times[way]), 4),
                        "rows_per_step": len(ours_rows[0]) if way == "ours" else len(ref_rows[0]),
                        "first_step_loss": round(losses[way][0], 5)}
    # ours: the step's rows laid out again into unpadded microbatches (ModelRunner._microbatches)
    mbs = runners["ours"]._microbatches(ours_rows[0])
    results["ours"]["microbatches_per_step"] = len(mbs)
    results["ours"]["positions_per_step"] = sum(int(mb["tokens"].numel()) for mb in mbs)
    results["reference"]["positions_per_step"] = sum(len(r.tokens) for r in ref_rows[0])
    del runners
    out = {
        "model": f"{model_cfg.name}: {model_cfg.num_layers} layers, hidden {model_cfg.hidden_size}, "
                 f"{model_cfg.num_parameters() / 1e6:.1f}M parameters, vocab {model_cfg.vocab_size}",
        "dialogues": f"{len(groups)} critic pairs of the embedded default's demonstrations "
                     f"({sum(len(g) for g in groups)} sequences, {sum(tokens)} tokens), {n_steps} steps "
                     f"({warmup} warm-up, not timed)",
        "device": str(platform.device), "threads": torch.get_num_threads(),
        "ours": results["ours"], "reference": results["reference"],
        "speedup": round(results["ours"]["tokens_per_s"] / results["reference"]["tokens_per_s"], 3),
    }
    print(json.dumps(out, indent=1))
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(out, indent=1) + "\n")
    destroy()
    return 0
