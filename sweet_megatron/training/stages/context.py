"""The context every stage runs in (`StageContext`): what the trainer builds once (config, tokenizer,
tasks, the actor and its rollout engine, simulator, checkpoints, metrics, timer, stop request, the
run's `state`) and the plumbing the stages share: building and copying runners, syncing the engine,
packing rows under the length rule, the training loop with its stop check, and saving.

Simplifications on purpose: rollouts are sharded over all ranks and gathered (every rank keeps a
full rollout engine; at scale only one rank per engine group would decode); the reference models
are separate frozen megatron models (no offloading).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
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
from sweet_megatron.training.metrics import MetricsLogger, PhaseTimer, Progress, setup_logging
from sweet_megatron.training.preemption import Preempted, StopRequest
from sweet_megatron.training.runner import ModelRunner

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


class StageContext:
    """What the stages share: the config, the tokenizer and tasks, the actor and the rollout engine,
    metrics, timer, stop request, checkpoints and the run's `state`; and the plumbing every stage
    uses (building runners, packing rows, the training loop, saving). Built once per run, on every rank."""

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        # Layout first: a bad layout fails before any process group or model exists.
        impl = resolve_transformer_impl(cfg.model)
        cfg.parallel.validate(int(os.environ.get("WORLD_SIZE", "1")), cfg.model, impl)
        self.platform = parallel.initialize(cfg.parallel, seed=cfg.seed)
        self.run_dir = Path(cfg.run_dir).resolve()
        setup_logging(self.run_dir)
        self.timer = PhaseTimer(heartbeat_s=15.0 if cfg.train.progress else 0.0)  # never quiet for 15 s
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
            self.val_tasks: list = []
            self.env = ep.environment(cfg.task)  # what depends on the kind of task (env/base.py)
            ep.require_training(self.env, cfg.stage)
            ep.check_ready(self.env, cfg.stage)  # e.g. Chromium for rendered rewards, before any training
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
            self.actor = self.build_runner("base", cfg.pretrain.optim, cfg.pretrain.steps)
        else:
            self.actor = self.build_runner("actor", cfg.train.optim, cfg.train.steps)
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
        self.resume_from = latest
        """The checkpoint this run resumed from: a stage stopped inside reads its runners back from it."""
        if latest is not None:
            self.state = self.ckpt.load(latest, {"actor": self.actor})
            if is_rank0():
                log.info("resumed from %s (completed: %s)", latest, self.state["completed"])
        self.sft_model = self.run_dir / "sft_model"

        self.loaded_episodes: dict[int, list] = {}  # iteration -> episodes read from a file (stages/collect.py)
        self.policy_credit: tuple | None = None  # (iteration, held-out states and candidates) (stages/critic.py)
        self.keep: dict[str, ModelRunner] = {}
        """Runners a later stage of the iteration needs (the trained critic, for the actor stage): every
        checkpoint holds them, so a run stopped after they were trained resumes without retraining them."""

    # ------------------------------------------------------------------------------------ plumbing
    def release_engine(self) -> None:
        """The engine sleeps (frees its weights and KV cache; idempotent) before megatron allocates
        or trains, and unreachable runners are collected (DDP hooks form reference cycles), so
        their device memory is free for the next one. Issue 18 #7."""
        self.engine.sleep()
        import gc

        gc.collect()
        if self.platform.is_cuda:
            torch.cuda.empty_cache()

    def build_runner(self, name: str, optim: OptimConfig | None, steps: int) -> ModelRunner:
        if hasattr(self, "engine"):
            self.release_engine()
        with self.timer(f"build_{name}"):
            runner = ModelRunner(self.model_cfg, self.cfg.parallel, self.platform, optim, total_steps=steps, name=name)
        runner.offload()  # idle until its first train_step (which reloads): issue 18 #8
        return runner

    def copy_weights(self, src: ModelRunner, dst: ModelRunner) -> None:
        """Same layout, so every rank copies its own shards."""
        with torch.no_grad():
            for s, d in zip(src.modules(), dst.modules(), strict=True):
                d.load_state_dict(s.state_dict(), strict=False)
        if dst.optimizer is not None:  # the optimizer's main (fp32) copies follow the new weights
            dst.optimizer.reload_model_params()

    def sync_engine(self) -> None:
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

    def save(self, runners: dict[str, ModelRunner] | None = None) -> None:
        """A checkpoint of the actor, the kept runners (`keep`) and `runners`, with the run's state."""
        tag = f"step{self.actor.step:06d}-{len(self.state['completed'])}"
        if "in_stage" in self.state:  # inside a stage: its key and step
            tag += f"-{self.state['in_stage']['key']}.{self.state['in_stage']['step']}"
        with self.timer("checkpoint"):
            self.ckpt.save(tag, {"actor": self.actor, **self.keep, **(runners or {})}, self.state)

    def restore(self, runners: dict[str, ModelRunner]) -> None:
        """Load `runners` (by checkpoint name) from the checkpoint this run resumed from."""
        if self.resume_from is None:
            raise RuntimeError(f"no checkpoint to restore {sorted(runners)} from (the run did not resume)")
        self.ckpt.load(self.resume_from, runners)

    def record_step(self, key: str, step: int, total: int) -> None:
        """A stage's progress, kept in the run's state for resume (`key`, e.g. 'sft_step'), with a
        checkpoint every train.save_every steps within the stage (its end saves through _done)."""
        self.state[key] = step
        every = self.cfg.train.save_every
        if every and step % every == 0 and step < total:
            self.save()

    def done(self, key: str, result: dict | None = None) -> None:
        self.state["completed"].append(key)
        if result is not None:
            self.state["results"][key] = result
        self.save()
        if self.stop.agreed():
            raise Preempted(key, 0)

    @property
    def share_prefix(self) -> bool:
        """Shared-prefix rows (data/packing.py) where the layer spec can take them."""
        return self.cfg.sweet.share_prefix and self.actor.shares_prefixes

    def row_length(self, groups: list[list], share: bool | None = None) -> int:
        """train.pack_length, or longer (in steps of 128, up to model.seq_length) for a long group.
        Rows are what a step samples (sweet.rows_per_step); the runner lays each step's rows out again
        into unpadded microbatches (ModelRunner._microbatches), so their padding tails cost nothing there."""
        share = self.share_prefix if share is None else share
        longest = max((group_length(g, share) for g in groups), default=0)
        return min(self.model_cfg.seq_length, max(self.cfg.train.pack_length, -(-longest // 128) * 128))

    def pack_rows(self, groups: list[list], ref: ModelRunner | None = None,
              keys: list | None = None) -> tuple[list[PackedRow], list]:
        """Packed rows of `groups` (with the reference model's log-probs attached when `ref`).
        With shared prefixes, consecutive groups of equal `keys` (the same turn state) are merged
        into one group, as long as it fits the row length the groups get alone."""
        if ref is not None:
            self.release_engine()
        length = self.row_length(groups)
        if self.share_prefix and keys is not None:
            groups = merge_groups(groups, keys, length)
        rows, flat = pack_groups(groups, length, self.tok.pad_id, share_prefix=self.share_prefix)
        if ref is not None:
            for row, logp in zip(rows, ref.token_logprobs(rows), strict=True):
                row.ref_logp = logp
        return rows, flat

    def fit_groups(self, name: str, groups: list[list]) -> list[list]:
        """The length rule: a packing group (a demonstration, a trajectory pair, a candidate pair)
        longer than model.seq_length is dropped whole, never truncated (a cut would remove the turn
        being trained or one side of a comparison); the count is logged and kept in the results
        (`dropped_long`) and metrics, and the run goes on. Turn states are filtered before sampling
        by `_fit_states`."""
        limit = self.model_cfg.seq_length
        kept = [g for g in groups if group_length(g, self.share_prefix) <= limit]
        dropped = len(groups) - len(kept)
        self.state["results"].setdefault("dropped_long", {})[name] = dropped
        if dropped:
            self.metrics.log(name, self.actor.step, {"dropped_long": dropped})
            if is_rank0():
                log.warning("%s: dropped %d of %d groups longer than model.seq_length=%d", name, dropped, len(groups),
                            limit)
        return kept

    def fit_states(self, name: str, states: list) -> list:
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

    def rows_per_step(self, name: str, groups: list[list], rows: list[PackedRow]) -> int:
        """sweet.rows_per_step counts rows of the flat layout: shared-prefix rows hold more pairs, so
        a step takes proportionally fewer of them and sees as many pairs (and epochs) as before."""
        per_step = self.cfg.sweet.rows_per_step
        if not self.share_prefix:
            return per_step
        flat_rows = count_rows(groups, self.row_length(groups, share=False))
        shared = max(1, round(per_step * len(rows) / max(flat_rows, 1)))
        if is_rank0():
            log.info("%s: %d groups in %d rows with shared prefixes (%d flat), %d rows a step", name, len(groups),
                     len(rows), flat_rows, shared)
        return shared

    def train(self, runner: ModelRunner, stage: str, rows: list[PackedRow], loss_fn, steps: int, keys: list[str],
              start: int = 0, on_step=None, rows_per_step: int | None = None,
              resume_key: str | None = None) -> dict[str, float]:
        """`steps` optimizer steps over shuffled rows, `rows_per_step` each (default
        sweet.rows_per_step, the pair stages' batch); returns the last metrics.

        Resuming inside the stage, two ways. The warm start and pretraining train the actor itself and
        record their step through `on_step` (state["sft_step"], ["pretrain_step"]). The other stages
        train a runner of their own and pass `resume_key` (unique in the run, e.g. 'critic_0'): on a
        stop request, and every train.save_every steps, the checkpoint holds that runner (as
        'in_stage': weights, optimizer, LR schedule, step) and state["in_stage"] = {key, step, last
        metrics}; a run resumed from it rebuilds the stage's inputs as before (they are determined by
        the checkpoint's actor, the run directory and the seeds), loads the runner and goes on at the
        next step. The batches are a function of the step (`ep.step_rows`), so no step is lost or
        repeated."""
        self.release_engine()
        last: dict[str, float] = {}
        if resume_key is not None:
            start, last = self._resume_in_stage(resume_key, runner)
        task = self.progress.task(stage, steps - start)
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
            every = self.cfg.train.save_every
            if on_step is not None:
                on_step(step + 1)
            elif resume_key is not None and every and (step + 1) % every == 0 and step + 1 < steps:
                self._save_in_stage(resume_key, step + 1, runner, last)
            if self.stop.agreed():
                # the next run resumes at the next step from this checkpoint (a stage with neither
                # on_step nor resume_key restarts from the checkpoint at its beginning)
                if on_step is not None:
                    self.save()
                elif resume_key is not None:
                    self._save_in_stage(resume_key, step + 1, runner, last)
                raise Preempted(stage, step + 1)
        if resume_key is not None:
            self.state.pop("in_stage", None)
        runner.offload()  # done training for now: grads and optimizer state leave the device
        return last

    def _save_in_stage(self, key: str, step: int, runner: ModelRunner, last: dict[str, float]) -> None:
        self.state["in_stage"] = {"key": key, "step": step, "last": last}
        self.save({"in_stage": runner})

    def _resume_in_stage(self, key: str, runner: ModelRunner) -> tuple[int, dict[str, float]]:
        """(first step, last metrics) of stage `key`: (0, {}), or where a stopped run left it."""
        record = self.state.get("in_stage")
        if record is None or record["key"] != key:
            return 0, {}
        self.restore({"in_stage": runner})
        if runner.step != record["step"]:
            raise RuntimeError(f"{self.resume_from}: {key} was saved at step {record['step']}, its runner at "
                               f"step {runner.step}")
        if is_rank0():
            log.info("%s: resumed inside the stage at step %d", key, record["step"] + 1)
        return record["step"], record["last"]

    def close(self) -> None:
        self.progress.close()
        self.metrics.close()
        if is_rank0():
            (self.run_dir / "timings.json").write_text(json.dumps(self.timer.summary(), indent=1))
        if dist.is_initialized():
            dist.barrier()
        parallel.destroy()
