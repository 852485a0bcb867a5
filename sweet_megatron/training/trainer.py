"""The SWEET-RL driver: every rank runs it (SPMD); megatron and the process groups handle the layout.

    trainer = SweetTrainer(cfg)      # builds everything, resumes if a checkpoint exists
    trainer.run()                    # the stage(s) named by cfg.stage
    trainer.close()

Stages (each resumable, runnable alone or chained by stage=all):
  sft      warm start on noisy scripted demonstrations (token NLL on agent actions)
  collect  episodes with the current actor (sampling) on training tasks, evaluator rewards
  critic   asymmetric critic (reference solution prepended), Bradley-Terry on trajectory pairs
  actor    per-turn candidates from the engine, scored by the critic, DPO on top/bottom pairs
  eval     greedy episodes on held-out tasks: success rate and mean reward
  baselines  rejection fine-tuning and multi-turn (trajectory) DPO from the same warm start

Simplifications on purpose: rollouts are sharded over all ranks and gathered (every rank keeps a
full rollout engine; at scale only one rank per engine group would decode); the reference models
are separate frozen megatron models (no offloading).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.distributed as dist

from sweet_megatron import parallel
from sweet_megatron.config import OptimConfig, RunConfig
from sweet_megatron.data.packing import PackedRow, count_rows, group_length, merge_groups, pack_groups
from sweet_megatron.model import resolve_transformer_impl
from sweet_megatron.parallel import is_rank0
from sweet_megatron.rollout import build_engine
from sweet_megatron.training import episodes as ep
from sweet_megatron.training.losses import (
    actor_dpo_loss_fn,
    critic_loss_fn,
    segment_means,
    trajectory_dpo_loss_fn,
)
from sweet_megatron.training.metrics import MetricsLogger, PhaseTimer, Progress, setup_logging
from sweet_megatron.training.preemption import Preempted, StopRequest
from sweet_megatron.training.runner import ModelRunner, sft_loss

log = logging.getLogger("sweet_megatron")


ARCHITECTURE = ("num_layers", "hidden_size", "ffn_hidden_size", "num_attention_heads", "num_query_groups",
                "vocab_size", "tie_embeddings")


def _check_init_matches(path: Path, model_cfg, name: str) -> None:
    """A clear error, before any load, when the initial checkpoint holds another architecture."""
    from sweet_megatron.checkpoint.model_io import model_config_from_meta, read_meta
    from sweet_megatron.config import ConfigError

    saved = model_config_from_meta(read_meta(path))
    diff = [f"{k} {getattr(saved, k)} (config: {getattr(model_cfg, k)})" for k in ARCHITECTURE
            if getattr(saved, k) != getattr(model_cfg, k)]
    if diff:
        raise ConfigError(f"train.init_from={name} holds another model: {', '.join(diff)}. Use the matching "
                          "model= config, or train.init_from=null to train from scratch")


class SweetTrainer:
    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        # Layout first: a bad layout fails before any process group or model exists.
        impl = resolve_transformer_impl(cfg.model)
        cfg.parallel.validate(int(os.environ.get("WORLD_SIZE", "1")), cfg.model, impl)
        self.platform = parallel.initialize(cfg.parallel, seed=cfg.seed)
        self.run_dir = Path(cfg.run_dir).resolve()
        setup_logging(self.run_dir)
        self.timer = PhaseTimer()
        self.metrics = MetricsLogger(self.run_dir, cfg.train.tensorboard)
        self.timer.record = self.metrics.log_phase  # phases.jsonl: every attempt's times, for the report
        self.progress = Progress(cfg.train.progress)
        self.stop = StopRequest(self.platform.device)
        self.stop.install()
        if is_rank0():
            log.info("run directory: %s (world size %d, layout tp=%d pp=%d dp=%d, %s spec)", self.run_dir,
                     parallel.world_size(), cfg.parallel.tensor_parallel, cfg.parallel.pipeline_parallel,
                     cfg.parallel.data_parallel(parallel.world_size()), impl)

        # Tasks: training and held-out splits.
        with self.timer("tasks"):
            self.env = ep.environment(cfg.task)  # what depends on the kind of task (env/base.py)
            ep.require_training(self.env, cfg.stage)
            self.val_tasks: list = []
            self.train_tasks, self.eval_tasks = ep.load_task_splits(cfg.task, self.val_tasks)
            if not cfg.task.eval_file:
                self.val_tasks = []  # they are the held-out set itself
            self.tasks_by_id = {t.task_id: t for t in self.train_tasks + self.eval_tasks + self.val_tasks}
        if (cfg.stage in ("sft", "all", "baselines") and cfg.train.steps > 0 and cfg.task.num_demos == 0
                and not cfg.sweet.offline_episodes):
            from sweet_megatron.config import ConfigError

            raise ConfigError("sft: task.num_demos=0 and no sweet.offline_episodes, so the warm start has no data; "
                              "give sweet.offline_episodes (SFT on its successful episodes), task.num_demos > 0 "
                              "(scripted demonstrations, synthetic tasks) or train.steps=0 (no warm start)")
        if cfg.sweet.offline_episodes:
            from sweet_megatron.builtin import resolve_builtin
            from sweet_megatron.config import ConfigError

            if not resolve_builtin(cfg.sweet.offline_episodes).is_file():
                raise ConfigError(f"sweet.offline_episodes={cfg.sweet.offline_episodes}: no such file "
                                  f"({Path(cfg.sweet.offline_episodes).resolve()})")
        if cfg.sweet.actor_scorer == "oracle" and not ep.has_oracle(self.env, self.train_tasks, every=True):
            from sweet_megatron.config import ConfigError

            raise ConfigError("sweet.actor_scorer=oracle needs synthetic training tasks (the oracle values only "
                              "their actions); use task=synthetic or sweet.actor_scorer=critic")
        # Tokenizer: the configured files, the initial checkpoint's own, or a sentencepiece model
        # trained on generated text.
        from sweet_megatron.checkpoint.model_io import resolve_checkpoint

        init_from = resolve_checkpoint(cfg.train.init_from) if cfg.train.init_from and cfg.stage != "pretrain" else None
        tok_cfg = ep.tokenizer_config(cfg.tokenizer, init_from)
        with self.timer("tokenizer"):
            self.tok = ep.build_tokenizer(tok_cfg, self.run_dir, self.train_tasks, self.env)
        self.model_cfg = cfg.model if cfg.model.vocab_size else cfg.model.with_vocab(self.tok.vocab_size)
        if self.model_cfg.vocab_size < self.tok.vocab_size:
            raise ValueError(f"model.vocab_size={self.model_cfg.vocab_size} < tokenizer size {self.tok.vocab_size}")
        # The memory plan (training/memory.py) refuses a GPU layout that cannot fit, before any build,
        # and sizes the vLLM TP when rollout.vllm_tensor_parallel=0.
        from sweet_megatron.training import memory

        if self.platform.is_cuda:
            self.plan = memory.plan_memory(
                self.model_cfg, cfg.parallel, parallel.world_size(), engine=cfg.rollout.engine,
                engine_tp=cfg.rollout.vllm_tensor_parallel, gpu_memory_utilization=cfg.rollout.gpu_memory_utilization,
                gpu_bytes=torch.cuda.get_device_properties(self.platform.device).total_memory,
                bucket_bytes=cfg.rollout.bucket_mb << 20)
            if is_rank0():
                log.info("%s", self.plan.format())
            memory.check_fits(self.plan)
            if cfg.rollout.engine == "vllm" and cfg.rollout.vllm_tensor_parallel == 0:
                cfg.rollout = replace(cfg.rollout, vllm_tensor_parallel=self.plan.engine_tp)
        # The actor: trained by sft, then by the actor stage (stage=pretrain trains a base model instead).
        if cfg.stage == "pretrain":
            self.actor = self._runner("base", cfg.pretrain.optim, cfg.pretrain.steps)
        else:
            self.actor = self._runner("actor", cfg.train.optim, cfg.train.steps)
        if init_from is not None:
            _check_init_matches(init_from, self.model_cfg, cfg.train.init_from)
            self.actor.load_weights(init_from)  # also refreshes the optimizer's main params
            if is_rank0():
                log.info("initial weights: %s", init_from)
        # The rollout engine, fed from the actor's weights.
        from sweet_megatron.rollout.groups import engine_seed

        # one seed per engine group: the ranks of a vLLM TP group must sample alike
        group = max(cfg.rollout.vllm_tensor_parallel, 1) if cfg.rollout.engine == "vllm" else 1
        self.engine = build_engine(cfg.rollout, self.model_cfg,
                                      seed=engine_seed(cfg.seed, parallel.rank(), parallel.world_size(), group))
        self.simulator = ep.build_simulator(cfg.simulator, self.env)
        self.probe = ep.text_probe(self.tok, self.eval_tasks)
        # Checkpoints and the run's state (completed stages and their results).
        from sweet_megatron.checkpoint.dist_ckpt import CheckpointManager
        from sweet_megatron.checkpoint.model_io import TokenizerSource

        tok_files = ([self.run_dir / "tokenizer.model"] if tok_cfg.kind == "sentencepiece" and not tok_cfg.path
                     else [Path(tok_cfg.path)] if tok_cfg.kind == "sentencepiece"
                     else sorted(p for p in Path(tok_cfg.path).iterdir() if p.is_file()))
        self.tok_source = TokenizerSource(tok_cfg.kind, tok_files)
        self.ckpt = CheckpointManager(self.run_dir / "checkpoints", keep_last=cfg.train.keep_last,
                                      tokenizer=self.tok_source)
        self.state: dict = {"completed": [], "results": {}, "sft_step": 0, "pretrain_step": 0}
        latest = self.ckpt.latest() if cfg.resume else None
        if latest is not None:
            self.state = self.ckpt.load(latest, {"actor": self.actor})
            if is_rank0():
                log.info("resumed from %s (completed: %s)", latest, self.state["completed"])
        self.sft_model = self.run_dir / "sft_model"

    # ------------------------------------------------------------------------------------ plumbing
    def _release_engine(self) -> None:
        """The engine sleeps (frees its weights and KV cache; idempotent) before megatron allocates
        or trains, and unreachable runners are collected (DDP hooks form reference cycles), so
        their device memory is free for the next one. Issue 18 #7."""
        self.engine.sleep()
        import gc

        gc.collect()
        if self.platform.is_cuda:
            torch.cuda.empty_cache()

    def _runner(self, name: str, optim: OptimConfig | None, steps: int) -> ModelRunner:
        if hasattr(self, "engine"):
            self._release_engine()
        with self.timer(f"build_{name}"):
            runner = ModelRunner(self.model_cfg, self.cfg.parallel, self.platform, optim, total_steps=steps, name=name)
        runner.offload()  # idle until its first train_step (which reloads): issue 18 #8
        return runner

    def _copy(self, src: ModelRunner, dst: ModelRunner) -> None:
        """Same layout, so every rank copies its own shards."""
        with torch.no_grad():
            for s, d in zip(src.modules(), dst.modules(), strict=True):
                d.load_state_dict(s.state_dict(), strict=False)
        if dst.optimizer is not None:  # the optimizer's main (fp32) copies follow the new weights
            dst.optimizer.reload_model_params()

    def _sync_engine(self) -> None:
        """Stream the actor's weights into the rollout engine and check a probe batch."""
        from sweet_megatron.rollout.probe import check_weight_sync, megatron_score
        from sweet_megatron.weights.resharding import sync_weights

        with self.timer("weight_sync"):
            # update, then wake: after a level-2 sleep vLLM holds no weights to wake (SleepSequencer)
            sync_weights(self.engine, self.actor.modules(), self.model_cfg,
                         bucket_bytes=self.cfg.rollout.bucket_mb << 20)
            self.engine.wake()
            gap = check_weight_sync(
                self.engine, lambda p, c: megatron_score(self.actor.modules(), p, c, self.model_cfg),
                self.probe, threshold=self.cfg.rollout.max_probe_gap,
            )
            self.metrics.log("sync", self.actor.step, {"probe_logprob_gap": gap})

    def _save(self, runners: dict[str, ModelRunner]) -> None:
        with self.timer("checkpoint"):
            self.ckpt.save(f"step{self.actor.step:06d}-{len(self.state['completed'])}", runners, self.state)

    def _record_step(self, key: str, step: int, total: int) -> None:
        """A stage's progress, kept in the run's state for resume (`key`, e.g. 'sft_step'), with a
        checkpoint every train.save_every steps within the stage (its end saves through _done)."""
        self.state[key] = step
        every = self.cfg.train.save_every
        if every and step % every == 0 and step < total:
            self._save({"actor": self.actor})

    def _done(self, key: str, result: dict | None = None) -> None:
        self.state["completed"].append(key)
        if result is not None:
            self.state["results"][key] = result
        self._save({"actor": self.actor})
        if self.stop.agreed():
            raise Preempted(key, 0)

    @property
    def _share_prefix(self) -> bool:
        """Shared-prefix rows (data/packing.py) where the layer spec can take them."""
        return self.cfg.sweet.share_prefix and self.actor.shares_prefixes

    def _row_length(self, groups: list[list], share: bool | None = None) -> int:
        """train.pack_length, or longer (in steps of 128, up to model.seq_length) for a long group:
        short rows keep the block-diagonal attention cheap, long pairs still fit."""
        share = self._share_prefix if share is None else share
        longest = max((group_length(g, share) for g in groups), default=0)
        return min(self.model_cfg.seq_length, max(self.cfg.train.pack_length, -(-longest // 128) * 128))

    def _rows(self, groups: list[list], ref: ModelRunner | None = None,
              keys: list | None = None) -> tuple[list[PackedRow], list]:
        """Packed rows of `groups` (with the reference model's log-probs attached when `ref`).
        With shared prefixes, consecutive groups of equal `keys` (the same turn state) are merged
        into one group, as long as it fits the row length the groups get alone."""
        if ref is not None:
            self._release_engine()
        length = self._row_length(groups)
        if self._share_prefix and keys is not None:
            groups = merge_groups(groups, keys, length)
        rows, flat = pack_groups(groups, length, self.tok.pad_id, share_prefix=self._share_prefix)
        if ref is not None:
            for row, logp in zip(rows, ref.token_logprobs(rows), strict=True):
                row.ref_logp = logp
        return rows, flat

    def _fit_groups(self, name: str, groups: list[list]) -> list[list]:
        """The length rule: a packing group (a demonstration, a trajectory pair, a candidate pair)
        longer than model.seq_length is dropped whole, never truncated (a cut would remove the turn
        being trained or one side of a comparison); the count is logged and kept in the results
        (`dropped_long`) and metrics, and the run goes on. Turn states are filtered before sampling
        by `_fit_states`."""
        limit = self.model_cfg.seq_length
        kept = [g for g in groups if group_length(g, self._share_prefix) <= limit]
        dropped = len(groups) - len(kept)
        self.state["results"].setdefault("dropped_long", {})[name] = dropped
        if dropped:
            self.metrics.log(name, self.actor.step, {"dropped_long": dropped})
            if is_rank0():
                log.warning("%s: dropped %d of %d groups longer than model.seq_length=%d", name, dropped, len(groups),
                            limit)
        return kept

    def _fit_states(self, name: str, states: list) -> list:
        """Turn states whose prompt, in the critic's view (the longest: it adds the reference), plus
        rollout.max_tokens fits model.seq_length; the others are dropped and counted like groups."""
        limit = self.model_cfg.seq_length - self.cfg.rollout.max_tokens
        kept = [s for s in states if len(ep.candidate_sequence(self.tok, s, "", True).ids) <= limit]
        dropped = len(states) - len(kept)
        self.state["results"].setdefault("dropped_long", {})[name] = dropped
        if dropped:
            self.metrics.log(name, self.actor.step, {"dropped_long": dropped})
            if is_rank0():
                log.warning("%s: dropped %d of %d turn states whose prompt leaves under rollout.max_tokens=%d tokens "
                            "of model.seq_length=%d", name, dropped, len(states), self.cfg.rollout.max_tokens,
                            self.model_cfg.seq_length)
        return kept

    def _rows_per_step(self, name: str, groups: list[list], rows: list[PackedRow]) -> int:
        """sweet.rows_per_step counts rows of the flat layout: shared-prefix rows hold more pairs, so
        a step takes proportionally fewer of them and sees as many pairs (and epochs) as before."""
        per_step = self.cfg.sweet.rows_per_step
        if not self._share_prefix:
            return per_step
        flat_rows = count_rows(groups, self._row_length(groups, share=False))
        shared = max(1, round(per_step * len(rows) / max(flat_rows, 1)))
        if is_rank0():
            log.info("%s: %d groups in %d rows with shared prefixes (%d flat), %d rows a step", name, len(groups),
                     len(rows), flat_rows, shared)
        return shared

    def _train(self, runner: ModelRunner, stage: str, rows: list[PackedRow], loss_fn, steps: int, keys: list[str],
               start: int = 0, on_step=None, rows_per_step: int | None = None) -> dict[str, float]:
        """`steps` optimizer steps over shuffled rows, `rows_per_step` each (default
        sweet.rows_per_step, the pair stages' batch); returns the last metrics."""
        self._release_engine()
        task = self.progress.task(stage, steps - start)
        last: dict[str, float] = {}
        per_step = rows_per_step or self.cfg.sweet.rows_per_step
        # at least 10 points a stage: the short critic and actor stages draw a curve too
        log_every = max(1, min(self.cfg.train.log_every, steps // 10))
        for step in range(start, steps):
            batch = ep.step_rows(rows, step, per_step, seed=self.cfg.seed)
            with self.timer(f"{stage}_step", quiet=True):
                m = runner.train_step(batch, loss_fn, keys)
            count = max(m.pop("count"), 1.0)
            last = {"loss": m.pop("loss_sum") / count, **{k: m[k] / count for k in keys}, "grad_norm": m["grad_norm"],
                    "lr": m["lr"], "units": count}
            if (step + 1) % log_every == 0 or step + 1 == steps:
                self.metrics.log(stage, step + 1, last)
            self.progress.advance(task, f"loss {last['loss']:.4f}")
            if on_step is not None:
                on_step(step + 1)
            if self.stop.agreed():
                # A stage that records its step (`on_step`: sft, pretrain) resumes at the next one from
                # this checkpoint; the others restart from the checkpoint at their beginning.
                if on_step is not None:
                    self._save({"actor": self.actor})
                raise Preempted(stage, step + 1)
        runner.offload()  # done training for now: grads and optimizer state leave the device
        return last

    # ------------------------------------------------------------------------------------ stages
    def pretrain(self) -> dict:
        """A base model for the synthetic family, from scratch: language modelling of specifications
        with every detail stated and their code (no dialogue, no questions). Saved to
        `<run_dir>/base_model` for `train.init_from`; greedy code-writing accuracy on held-out
        specifications is logged as it trains."""
        pc = self.cfg.pretrain
        with self.timer("base_documents"):
            rows, _ = self._rows([[s] for s in ep.base_corpus(self.env, self.tok, pc.num_documents, pc.seed)])
        held = ep.base_documents(self.env, pc.eval_documents, pc.seed, split="heldout")
        if is_rank0():
            log.info("pretrain: %d documents packed into %d rows, %d steps of %d rows", pc.num_documents, len(rows),
                     pc.steps, pc.rows_per_step)
        result: dict = {}

        def on_step(step: int) -> None:
            nonlocal result
            if (pc.eval_every and step % pc.eval_every == 0) or step == pc.steps:
                with self.timer("pretrain_eval", quiet=True):
                    result = {"code_accuracy": self._code_accuracy(held), "step": step}
                self.metrics.log("pretrain_eval", step, result)
                if is_rank0():
                    log.info("pretrain step %d: greedy code accuracy %.3f on %d held-out specifications", step,
                             result["code_accuracy"], len(held))
            self._record_step("pretrain_step", step, pc.steps)

        self._train(self.actor, "pretrain", rows, sft_loss, pc.steps, [], start=self.state["pretrain_step"],
                    on_step=on_step, rows_per_step=pc.rows_per_step)
        from sweet_megatron.checkpoint.model_io import checkpoint_meta, save_model_checkpoint

        out = self.run_dir / "base_model"
        if not out.exists():
            save_model_checkpoint(out, self.actor.chunks, checkpoint_meta(self.model_cfg, pretrain=result),
                                  self.tok_source)
        if is_rank0():
            print(f"base model: {out}")
        self._done("pretrain", result)
        return result

    def _code_accuracy(self, docs: list) -> float:
        """Fraction of (task, text, code) documents whose greedy code from the text passes every test."""
        self._sync_engine()
        prompts = [ep.base_sequence(self.tok, text) for _, text, _ in docs]
        gens = self.engine.generate(prompts, ep.sampling(self.cfg.rollout, self.tok, greedy=True))
        codes = [self.tok.decode(g[0].token_ids) for g in gens]
        correct = self.env.base_corpus.is_correct
        return sum(correct(t, c) for (t, _, _), c in zip(docs, codes, strict=True)) / max(len(docs), 1)

    def _sft_demos(self) -> list:
        """The warm start's episodes: task.num_demos noisy scripted demonstrations, or, with
        task.num_demos=0, the successful episodes (reward 1) of sweet.offline_episodes (rejection
        sampling of the offline data). No data at all is a ConfigError naming the keys."""
        from sweet_megatron.config import ConfigError

        if self.cfg.task.num_demos > 0:
            return ep.scripted_demos(self.env, self.cfg.task, self.train_tasks, self.simulator, self.tok,
                                     self.cfg.rollout.max_turns)
        if not self.cfg.sweet.offline_episodes:
            raise ConfigError("sft: task.num_demos=0 and no sweet.offline_episodes, so the warm start has no data; "
                              "give sweet.offline_episodes (SFT on its successful episodes), task.num_demos > 0 "
                              "(scripted demonstrations, synthetic tasks) or train.steps=0 (no warm start)")
        good = [e for e in self._episodes(0) if e.success]
        if not good:
            raise ConfigError(f"sft: sweet.offline_episodes={self.cfg.sweet.offline_episodes} has no successful "
                              "episode (reward 1) to warm-start from; give a file with successes or train.steps=0 "
                              "(no warm start)")
        return good

    def sft(self) -> None:
        """Warm start: token NLL on agent actions of noisy scripted demonstrations, or of the offline
        file's successful episodes (`_sft_demos`); train.steps=0 keeps the initial weights."""
        with self.timer("demos"):
            demos = self._sft_demos() if self.cfg.train.steps > 0 else []
            groups = [[ep.sequence(self.tok, e.messages(), context_weight=self.cfg.train.context_loss_weight)]
                      for e in demos]
            groups = self._fit_groups("sft", groups)
            rows, _ = self._rows(groups) if groups else ([], [])
        if is_rank0():
            rate = sum(e.success for e in demos) / max(len(demos), 1)
            log.info("sft: %d demonstrations (success %.2f) packed into %d rows, %d steps", len(demos), rate,
                     len(rows), self.cfg.train.steps)
        if self.cfg.train.steps > 0 and not rows:
            from sweet_megatron.config import ConfigError

            raise ConfigError("sft: every demonstration was dropped as longer than model.seq_length; raise "
                              "model.seq_length or shorten the dialogues (rollout.max_turns, rollout.max_tokens)")

        self._train(self.actor, "sft", rows, sft_loss, self.cfg.train.steps, [], start=self.state["sft_step"],
                    on_step=lambda step: self._record_step("sft_step", step, self.cfg.train.steps),
                    rows_per_step=self.cfg.train.rows_per_step)
        # The warm start every method (SWEET-RL and the baselines) begins from, kept apart.
        from sweet_megatron.checkpoint.model_io import checkpoint_meta, save_model_checkpoint

        if not self.sft_model.exists():
            save_model_checkpoint(self.sft_model, self.actor.chunks, checkpoint_meta(self.model_cfg), self.tok_source)
        self._done("sft")

    def evaluate(self, key: str) -> dict:
        """Greedy episodes on held-out tasks."""
        self._sync_engine()
        with self.timer("eval_rollout"):
            episodes = ep.rollout(self.engine, self.tok, self.eval_tasks, self.simulator, self.cfg.rollout,
                                  greedy=True, seed=self.cfg.seed, env=self.env)
        result = ep.summarize(episodes)
        if self.val_tasks:  # task.val_size tasks carved from task.train_file, next to the held-out set
            with self.timer("eval_rollout"):
                val = ep.summarize(ep.rollout(self.engine, self.tok, self.val_tasks, self.simulator, self.cfg.rollout,
                                              greedy=True, seed=self.cfg.seed, env=self.env))
            result |= {f"val_{k}": v for k, v in val.items()}
        self.metrics.log("eval", self.actor.step, {f"{key}/{k}": v for k, v in result.items()})
        if is_rank0():
            log.info("eval %s: success %.3f, mean reward %.3f over %d held-out tasks", key, result["success_rate"],
                     result["mean_reward"], len(episodes))
        return result

    def collect(self, it: int) -> list:
        """Sampled episodes of the current actor on training tasks, several per task."""
        self._sync_engine()
        tasks = ep.sample_tasks(self.train_tasks, self.cfg.sweet.episodes_per_iter, self.cfg.sweet.rollouts_per_task,
                                seed=self.cfg.seed + it)
        with self.timer("collect_rollout"):
            episodes = ep.rollout(self.engine, self.tok, tasks, self.simulator, self.cfg.rollout, greedy=False,
                                  seed=self.cfg.seed * 1000 + it, env=self.env)
        ep.save_episodes(self.run_dir / f"episodes_iter{it}.jsonl", episodes, self.tasks_by_id)
        result = ep.summarize(episodes)
        self.metrics.log("collect", it, result)
        return episodes

    def train_critic(self, episodes: list, with_reference: bool = True) -> tuple[ModelRunner, ModelRunner] | None:
        """Asymmetric critic initialised from the actor; BT loss on same-task trajectory pairs.

        None when no task has two episodes with different rewards (nothing to compare)."""
        sw = self.cfg.sweet
        name = "critic" if with_reference else "critic_noref"
        groups, sequences = ep.trajectory_pair_groups(self.tok, episodes, self.tasks_by_id, with_reference,
                                                      sw.critic_pairs, sw.critic_min_best_reward)
        groups = self._fit_groups(name, groups)
        if with_reference == sw.critic_reference:  # the actor's critic (not the credit check's baseline)
            self.state["results"]["critic_pairs"] = len(groups)
        if not groups:
            why = (f"no task has episodes with different rewards and a best reward >= sweet.critic_min_best_reward="
                   f"{sw.critic_min_best_reward}")
            if self.cfg.sweet.offline_episodes and not any(k.startswith("actor_") for k in self.state["completed"]):
                from sweet_megatron.config import ConfigError

                raise ConfigError(f"{name}: sweet.offline_episodes={self.cfg.sweet.offline_episodes}: {why}, so no "
                                  "trajectory pairs form. The file needs several rollouts of a task (matched by "
                                  "task_id, else by content) with different rewards; or lower "
                                  "sweet.critic_min_best_reward (null: no filter)")
            log.warning("%s: %s: no pairs, critic and actor skipped this iteration (collect more episodes, or "
                        "warm-start longer)", name, why)
            return None
        critic = self._runner(name, replace(self.cfg.train.optim, lr=sw.critic_lr, min_lr=sw.critic_lr / 10),
                              sw.critic_steps)
        critic_ref = self._runner(f"{name}_ref", None, 1)
        self._copy(self.actor, critic)
        self._copy(self.actor, critic_ref)
        with self.timer(f"{name}_ref_logprobs"):
            rows, flat = self._rows(groups, ref=critic_ref)
        last = self._train(critic, name, rows, critic_loss_fn(flat, sw.critic_beta, sw.critic_reduction),
                           sw.critic_steps, ["accuracy", "margin"], rows_per_step=self._rows_per_step(name, groups, rows))
        if is_rank0():
            log.info("%s: %d pairs, final BT loss %.4f, pair accuracy %.3f", name, len(groups), last["loss"],
                     last["accuracy"])
        return critic, critic_ref

    def score_candidates(self, critic: ModelRunner, critic_ref: ModelRunner, states: list, candidates: list,
                         with_reference: bool = True) -> torch.Tensor:
        """Critic advantage [G, M] of M candidate actions for each of G turn states.

        Each distinct action of a state is scored once (`ep.distinct_actions`): repeated samples,
        frequent from a peaked policy, get exactly the same score and are never paired together."""
        distinct, slot_GM = ep.distinct_actions(candidates)
        return self.score_actions(critic, critic_ref, states, distinct, with_reference)[slot_GM]

    def score_actions(self, critic: ModelRunner, critic_ref: ModelRunner, states: list, actions: list[tuple[int, str]],
                      with_reference: bool = True) -> torch.Tensor:
        """Critic advantage [A] of each (state index, action text) in `actions`."""
        seqs = [[ep.candidate_sequence(self.tok, states[g], c, with_reference)] for g, c in actions]
        rows, flat = self._rows(seqs, keys=[g for g, _ in actions])  # a state's candidates share its prefix
        mean_c = segment_means(critic.token_logprobs(rows), rows)
        mean_r = segment_means(critic_ref.token_logprobs(rows), rows)
        return torch.tensor([self.cfg.sweet.critic_beta * (mean_c[(i, 0)] - mean_r[(i, 0)]) for i in range(len(flat))])

    def train_actor(self, episodes: list, critic: ModelRunner, critic_ref: ModelRunner, it: int) -> dict:
        """Per-turn DPO from critic-ranked candidates; reference = the actor before this stage."""
        sw = self.cfg.sweet
        states = self._fit_states("actor_states", ep.sample_states(episodes, self.tasks_by_id, sw.actor_states,
                                                                   seed=self.cfg.seed + it))
        if not states:
            log.warning("actor: no turn state fits model.seq_length: actor unchanged this iteration")
            self.state["results"]["actor_pairs"] = 0
            return {"skipped": "no turn state fits model.seq_length"}
        self._sync_engine()
        with self.timer("actor_candidates"):
            candidates = ep.candidates(self.engine, self.tok, states, sw.num_candidates, self.cfg.rollout,
                                       seed=self.cfg.seed + 7 * it)
        with self.timer("actor_scoring"):
            scores = (ep.oracle_scores(self.env, states, candidates) if sw.actor_scorer == "oracle" else
                      self.score_candidates(critic, critic_ref, states, candidates, sw.critic_reference))
        distinct = len(ep.distinct_actions(candidates)[0]) / max(len(candidates), 1)
        if is_rank0():
            log.info("actor: %d states, %d candidates each, %.1f distinct on average", len(states),
                     sw.num_candidates, distinct)
        groups, flat, pair_texts = ep.turn_pair_groups(self.tok, states, candidates, scores, sw.pairs_per_turn,
                                                       seed=self.cfg.seed + it, min_margin=sw.min_pair_margin)
        fits = {id(g) for g in self._fit_groups("actor", groups)}
        pair_texts = [t for g, t in zip(groups, pair_texts, strict=True) if id(g) in fits]
        groups = [g for g in groups if id(g) in fits]
        self.state["results"]["actor_pairs"] = len(groups)
        if not groups:
            log.warning("actor: every candidate scored the same: no pairs, actor unchanged this iteration")
            return {"skipped": "no candidate pairs"}
        agreement = ep.pair_oracle_agreement(self.env, states, pair_texts) or {}
        if agreement:
            self.metrics.log("actor_pairs", it, agreement)
            if is_rank0():
                log.info("actor: %d pairs; the oracle agrees with %.2f of them, disagrees with %.2f, ties %.2f",
                         len(groups), agreement["pairs_oracle_agree"], agreement["pairs_oracle_disagree"],
                         agreement["pairs_oracle_tie"])
        actor_ref = self._runner("actor_ref", None, 1)
        self._copy(self.actor, actor_ref)
        actor = self._runner("actor_dpo", replace(self.cfg.train.optim, lr=sw.actor_lr, min_lr=sw.actor_lr / 10),
                             sw.actor_steps)
        self._copy(self.actor, actor)
        with self.timer("actor_ref_logprobs"):
            rows, seqs = self._rows(groups, ref=actor_ref, keys=[g for g, _, _ in pair_texts])
        last = self._train(actor, "actor", rows, actor_dpo_loss_fn(seqs, sw.dpo_beta, sw.nll_coef), sw.actor_steps,
                           ["accuracy", "reward_margin", "nll_loss"], rows_per_step=self._rows_per_step("actor", groups, rows))
        actor.step += self.actor.step
        self.actor = actor
        return {"pairs": len(groups), "distinct_candidates": distinct, **agreement,
                **{f"final_{k}": v for k, v in last.items()}}

    def credit_check(self, critic: ModelRunner, critic_ref: ModelRunner, with_reference: bool, it: int) -> dict:
        """Pairwise turn-ranking accuracy of the critic against the oracle, on held-out tasks, over
        two populations of candidate actions: a fixed menu of every action an agent could take at the
        scripted agent's turn states (`ep.oracle_candidates`), and the actor's own sampled actions at
        the states of its own held-out episodes (`ep.policy_candidates`; keys prefixed `policy_`)."""
        sw = self.cfg.sweet
        if not ep.has_oracle(self.env, self.eval_tasks):
            if is_rank0():
                log.warning("credit check skipped: no held-out task is synthetic, so no oracle values its actions "
                            "(sweet.credit_check=false turns this off)")
            return {}
        states, candidates, oracle = ep.oracle_candidates(self.env, self.eval_tasks, self.simulator, self.tok,
                                                          self.cfg.rollout.max_turns, sw.credit_states)
        actions = [(g, c) for g, row in enumerate(candidates) for c in row]
        result = ep.credit_accuracy(self.env, self.score_actions(critic, critic_ref, states, actions, with_reference),
                                    states, actions, oracle)
        if sw.credit_policy_states:
            states, candidates, oracle = self._policy_credit_set(it)
            actions = [(g, c) for g, row in enumerate(candidates) for c in row]
            policy = ep.credit_accuracy(self.env, self.score_actions(critic, critic_ref, states, actions, with_reference),
                                        states, actions, oracle)
            result |= {f"policy_{k}": v for k, v in policy.items()}
        name = "critic" if with_reference else "critic_noref"
        self.metrics.log("credit", it, {f"{name}/{k}": v for k, v in result.items()})
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

    def _policy_credit_set(self, it: int) -> tuple[list, list, list]:
        """The actor's held-out states and candidates for the credit check, drawn once an iteration so
        that the critic with the reference and the one without it rank the same actions."""
        cache = getattr(self, "_policy_credit", None)
        if cache is None or cache[0] != it:
            self._sync_engine()
            with self.timer("credit_policy_candidates"):
                sw = self.cfg.sweet
                cache = (it, ep.policy_candidates(self.env, self.engine, self.tok, self.eval_tasks, self.simulator,
                                                  self.cfg.rollout, sw.credit_policy_states, sw.num_candidates,
                                                  seed=self.cfg.seed * 1000 + 500 + it))
            self._policy_credit = cache
        return cache[1]

    # ------------------------------------------------------------------------------------ baselines
    def rejection_finetune(self, episodes: list) -> dict:
        """RFT: SFT on the agent turns of successful episodes, from the current actor."""
        good = [e for e in episodes if e.success]
        if not good:
            return {"skipped": "no successful episodes"}
        groups = self._fit_groups("rft", [[ep.sequence(self.tok, e.messages())] for e in good])
        if not groups:
            return {"skipped": "every successful episode longer than model.seq_length"}
        rows, _ = self._rows(groups)
        lr = self.cfg.sweet.actor_lr * 3  # plain NLL on its own successes tolerates a larger step than DPO
        runner = self._runner("rft", replace(self.cfg.train.optim, lr=lr, min_lr=lr / 10), self.cfg.sweet.actor_steps)
        self._copy(self.actor, runner)
        self._train(runner, "rft", rows, sft_loss, self.cfg.sweet.actor_steps, [])
        self.actor = runner
        return {"episodes": len(good)}

    def trajectory_dpo(self, episodes: list) -> dict:
        """Multi-turn DPO baseline: trajectory-level pairs, no training-time information."""
        sw = self.cfg.sweet
        groups, _ = ep.trajectory_pair_groups(self.tok, episodes, self.tasks_by_id, with_reference=False,
                                              strategy=sw.critic_pairs, min_best_reward=sw.critic_min_best_reward)
        groups = self._fit_groups("mtdpo", groups)
        if not groups:
            return {"skipped": "no pairs"}
        ref = self._runner("mtdpo_ref", None, 1)
        self._copy(self.actor, ref)
        runner = self._runner("mtdpo", replace(self.cfg.train.optim, lr=sw.actor_lr, min_lr=sw.actor_lr / 10),
                              sw.actor_steps)
        self._copy(self.actor, runner)
        rows, seqs = self._rows(groups, ref=ref)
        self._train(runner, "mtdpo", rows, trajectory_dpo_loss_fn(seqs, sw.dpo_beta, sw.nll_coef), sw.actor_steps,
                    ["accuracy", "reward_margin", "nll_loss"], rows_per_step=self._rows_per_step("mtdpo", groups, rows))
        self.actor = runner
        return {"pairs": len(groups)}

    # ------------------------------------------------------------------------------------ the run
    def run(self) -> dict:
        stage = self.cfg.stage
        results = self.state["results"]
        if stage == "pretrain":
            if "pretrain" not in self.state["completed"]:
                with self.timer("stage_pretrain"):
                    self.pretrain()
            return results
        if stage in ("sft", "all", "baselines") and "sft" not in self.state["completed"]:
            with self.timer("stage_sft"):
                self.sft()
        if stage in ("eval", "all", "baselines") and "eval_before" not in self.state["completed"]:
            with self.timer("stage_eval"):
                self._done("eval_before", self.evaluate("before"))
        if stage in ("collect", "critic", "actor", "all"):
            for it in range(self.cfg.sweet.iterations):
                if f"actor_{it}" in self.state["completed"]:
                    continue
                with self.timer("stage_collect"):
                    episodes = self._episodes(it)
                if stage == "collect":
                    break
                with self.timer("stage_critic"):
                    critics = self.train_critic(episodes, with_reference=self.cfg.sweet.critic_reference)
                    if critics is not None and self.cfg.sweet.credit_check:
                        ref = self.cfg.sweet.critic_reference
                        results[f"credit_{it}"] = {("with_reference" if ref else "without_reference"):
                                                   self.credit_check(*critics, ref, it)}
                        if self.cfg.sweet.credit_baseline:
                            noref = self.train_critic(episodes, with_reference=False)
                            results[f"credit_{it}"]["without_reference"] = self.credit_check(*noref, False, it)
                            del noref
                if stage == "critic":
                    break
                with self.timer("stage_actor"):
                    results[f"actor_{it}"] = (self.train_actor(episodes, *critics, it) if critics is not None
                                              else {"skipped": "no trajectory pairs"})
                del critics
                with self.timer("stage_eval"):
                    results[f"eval_{it}"] = self.evaluate(f"iter{it}")
                self._done(f"actor_{it}")
        if stage == "baselines":
            results.update(self.baselines())
        if stage in ("all", "eval", "baselines"):
            self._write_report()
        return results

    def _episodes(self, it: int) -> list:
        """This iteration's episodes: imported offline data (loaded and scored once), an earlier
        collection, or a new one."""
        from sweet_megatron.builtin import resolve_builtin

        offline = self.cfg.sweet.offline_episodes
        cache = getattr(self, "_loaded_episodes", {})
        if it in cache:
            return cache[it]
        path = resolve_builtin(offline) if offline and it == 0 else self.run_dir / f"episodes_iter{it}.jsonl"
        if path.exists():
            episodes, tasks = ep.load_episodes(path, max_turns=self.cfg.rollout.max_turns,
                                               protocol=self.env.protocol)
            self.tasks_by_id.update(tasks)
            if is_rank0():
                log.info("loaded %d episodes of %d tasks from %s (success %.3f)", len(episodes), len(tasks), path,
                         sum(e.success for e in episodes) / max(len(episodes), 1))
            self._loaded_episodes = {**cache, it: episodes}
            return episodes
        if offline and it == 0:
            from sweet_megatron.config import ConfigError

            raise ConfigError(f"sweet.offline_episodes={offline}: no such file ({Path(offline).resolve()})")
        return self.collect(it)

    def baselines(self) -> dict:
        """RFT and multi-turn DPO, each from the SFT warm start, on the first collected episodes
        (the same data SWEET-RL's first iteration used when stage=all ran in this run directory)."""
        out = {}
        for name, fn in (("rft", self.rejection_finetune), ("mtdpo", self.trajectory_dpo)):
            if name in self.state["completed"]:
                out[name] = self.state["results"][name]
                continue
            self.actor.load_weights(self.sft_model)
            episodes = self._episodes(0)
            with self.timer(f"stage_{name}"):
                info = fn(episodes)
                out[name] = {**info, **self.evaluate(name)}
            self._done(name, out[name])
        return out

    def _write_report(self) -> None:
        if not is_rank0():
            return
        from sweet_megatron.training.report import write_report

        path = write_report(self.run_dir, self.state["results"], self.timer.summary(), asdict(self.cfg))
        print(f"report: {path}")

    def close(self) -> None:
        self.progress.close()
        self.metrics.close()
        if is_rank0():
            (self.run_dir / "timings.json").write_text(json.dumps(self.timer.summary(), indent=1))
        if dist.is_initialized():
            dist.barrier()
        parallel.destroy()

