"""A megatron model with its optimizer and schedule: the unit the stages train or query.

`ModelRunner` owns one model (actor, critic or a frozen reference): its megatron chunks wrapped in
megatron DDP, `get_megatron_optimizer`, `OptimizerParamScheduler`, and two calls:

- `train_step(rows, loss_fn)`: one optimizer step over packed rows (split over data-parallel ranks,
  one microbatch per `micro_batch_size` rows) through `get_forward_backward_func()`;
- `token_logprobs(rows)`: forward only; log p(label | prefix) for every position of every row
  (0 on a row's padding tail when rows are laid out again), returned on every rank.

A loss function is `loss_fn(mb, token_logp_BS) -> (loss_sum, count, metrics)`: `loss_sum` is a
scalar summed over the microbatch's units (tokens, pairs), `count` the number of units, `metrics`
a dict of scalar tensors to be summed over microbatches and ranks. Megatron's per-token-loss mode
divides gradients by the global count, so DP=N equals one rank over the same global batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

import torch
import torch.distributed as dist
from sweet_kernels import fused_linear_logprob
from sweet_kernels.megatron_seam import gpt_hidden_states

from sweet_megatron.attention import DocumentPieces, rope_positions
from sweet_megatron.checkpoint.model_io import load_model_checkpoint
from sweet_megatron.config import OptimConfig
from sweet_megatron.data.packing import (
    PackedRow,
    attention_pieces,
    block_causal_mask,
    collate,
    concat_rows,
    cu_seqlens,
    first_fit_decreasing,
)
from sweet_megatron.model import ModelConfig, build_model, resolve_transformer_impl
from sweet_megatron.parallel import ParallelConfig
from sweet_megatron.platform import Platform

log = logging.getLogger(__name__)

LossFn = Callable[[dict, torch.Tensor], tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]]


def _empty_like(row: PackedRow) -> PackedRow:
    """A row that contributes nothing (all padding, no loss), to even out DP shards."""
    S = row.tokens.shape[0]
    zeros = torch.zeros(S, dtype=torch.long)
    return PackedRow(
        tokens=torch.full_like(row.tokens, int(row.tokens[-1])), labels=zeros, loss_mask=torch.zeros(S),
        position_ids=torch.arange(S), doc_ids=zeros, segment_ids=torch.full((S,), -1, dtype=torch.long),
        segments=[], sequence_index=[], ref_logp=None if row.ref_logp is None else torch.zeros(S), length=0,
    )


class ModelRunner:
    """One megatron model (chunks + DDP + optimizer + LR schedule), trainable or frozen."""

    def __init__(
        self,
        model_cfg: ModelConfig,
        parallel: ParallelConfig,
        platform: Platform,
        optim: OptimConfig | None,
        total_steps: int = 1,
        name: str = "model",
        fused_logprob: bool = True,
    ):
        from megatron.core import parallel_state
        from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
        from megatron.core.distributed.finalize_model_grads import finalize_model_grads
        from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
        from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

        self.name = name
        # With sequence parallelism the fused path gathers the hidden states itself (megatron_seam).
        self.fused_logprob = fused_logprob
        self.model_cfg = model_cfg
        self.parallel = parallel
        self.platform = platform
        self.trainable = optim is not None
        self.impl = resolve_transformer_impl(model_cfg)
        chunks = build_model(model_cfg, parallel, platform)
        for c in chunks:
            c.config.calculate_per_token_loss = True
        self.tcfg = chunks[0].config
        if self.trainable:
            overlap = platform.is_cuda if parallel.overlap_grad_reduce is None else parallel.overlap_grad_reduce
            # overlap_param_gather stays off: the weight sync into the rollout engine reads the
            # parameters right after optimizer.step(), and with it megatron defers the distributed
            # optimizer's all-gather of updated parameters to the next forward's pre-hook
            # (distributed_data_parallel.py `_make_forward_pre_hook`), so the engine would get stale
            # shards.
            ddp_cfg = DistributedDataParallelConfig(
                grad_reduce_in_fp32=True, use_distributed_optimizer=parallel.use_distributed_optimizer,
                overlap_grad_reduce=overlap,
            )
            self.chunks = [
                DistributedDataParallel(config=self.tcfg, ddp_config=ddp_cfg, module=c) for c in chunks
            ]
            self.optimizer = get_megatron_optimizer(
                OptimizerConfig(
                    optimizer=optim.optimizer, lr=optim.lr, min_lr=optim.min_lr, weight_decay=optim.weight_decay,
                    adam_beta1=optim.adam_beta1, adam_beta2=optim.adam_beta2, adam_eps=optim.adam_eps,
                    clip_grad=optim.clip_grad, bf16=platform.params_dtype == torch.bfloat16,
                    params_dtype=platform.params_dtype,
                    use_distributed_optimizer=parallel.use_distributed_optimizer,
                ),
                self.chunks,
            )
            warmup = min(optim.warmup_steps, max(total_steps - 1, 0))
            self.scheduler = OptimizerParamScheduler(
                # warmup starts at lr/warmup, not 0: a first step at lr 0 would be wasted
                self.optimizer, init_lr=optim.lr / max(warmup, 1), max_lr=optim.lr, min_lr=optim.min_lr,
                lr_warmup_steps=warmup, lr_decay_steps=max(total_steps, 1), lr_decay_style=optim.decay_style,
                start_wd=optim.weight_decay, end_wd=optim.weight_decay, wd_incr_steps=max(total_steps, 1),
                wd_incr_style="constant",
            )
            self.tcfg.finalize_model_grads_func = finalize_model_grads
            self.tcfg.grad_scale_func = self.optimizer.scale_loss
            no_sync = [c.no_sync for c in self.chunks]
            self.tcfg.no_sync_func = no_sync[0] if len(no_sync) == 1 else no_sync
            if overlap:  # the schedule starts each chunk's bucket reduction as its last backward ends
                sync = [c.start_grad_sync for c in self.chunks]
                self.tcfg.grad_sync_func = sync[0] if len(sync) == 1 else sync
        else:
            self.chunks = chunks
            for c in self.chunks:
                c.requires_grad_(False)
            self.optimizer = None
            self.scheduler = None
        self.step = 0
        self.offloaded = False
        self.dp_group = parallel_state.get_data_parallel_group()
        self.dp_rank = parallel_state.get_data_parallel_rank()
        self.dp_size = parallel_state.get_data_parallel_world_size()
        self.pp_group = parallel_state.get_pipeline_model_parallel_group()
        self.pp_size = parallel_state.get_pipeline_model_parallel_world_size()
        self.is_last_stage = parallel_state.is_pipeline_last_stage()
        self.pp_last_rank = parallel_state.get_pipeline_model_parallel_last_rank()

    # ----------------------------------------------------------------------------------- helpers
    @property
    def _padded_vocab(self) -> bool:
        return self.model_cfg.padded_vocab_size(self.parallel.tensor_parallel) != self.model_cfg.vocab_size

    def _padding_mask(self, logits: torch.Tensor) -> torch.Tensor:
        """[V_local] True on this TP rank's padded vocabulary columns."""
        from megatron.core import parallel_state

        width = logits.shape[-1]
        first = parallel_state.get_tensor_model_parallel_rank() * width
        return torch.arange(first, first + width, device=logits.device) >= self.model_cfg.vocab_size

    def modules(self) -> list[torch.nn.Module]:
        """The bare GPTModel chunks (inside DDP when trainable)."""
        return [c.module if hasattr(c, "module") else c for c in self.chunks]

    @property
    def shares_prefixes(self) -> bool:
        """Whether rows may hold shared-prefix trees (data/packing.py): a dense mask and explicit
        RoPE positions, i.e. the local layer spec without context parallelism."""
        return self.impl == "local" and self.parallel.context_parallel == 1

    @property
    def attends_pieces(self) -> bool:
        """Whether packed rows are attended piece by piece (attention.DocumentPieces: each sequence,
        shared prefix and branch costs what its own tokens need, not row_length^2): the local layer
        spec without context parallelism. Tokens are then rotated by their own position ids."""
        return self.impl == "local" and self.parallel.context_parallel == 1

    @property
    def merges_rows(self) -> bool:
        """Whether a step's rows are laid out again into fewer, unpadded microbatches (`_microbatches`):
        with piece attention and no pipeline (the stages of a pipeline need one microbatch shape)."""
        return self.attends_pieces and self.pp_size == 1

    def _attention_inputs(self, mb: dict) -> tuple[torch.Tensor | None, object | None]:
        if "branch_ids" in mb and not self.shares_prefixes:
            raise ValueError(f"{self.name}: rows with shared prefixes need the local layer spec without context "
                             "parallelism (pack with share_prefix=False here)")
        if self.attends_pieces:
            S = mb["tokens"].shape[1]
            return None, DocumentPieces(pieces=[attention_pieces(r.doc_ids, r.branch_ids) for r in mb["rows"]],
                                        max_seqlen_q=S, max_seqlen_kv=S)
        if self.impl == "transformer_engine":
            from megatron.core.packed_seq_params import PackedSeqParams

            if mb["doc_ids"].shape[0] != 1:
                raise ValueError("packed sequences on the Transformer Engine spec need parallel.micro_batch_size=1")
            cu = cu_seqlens(mb["doc_ids"][0]).to(self.platform.device)
            max_len = int((cu[1:] - cu[:-1]).max())
            return None, PackedSeqParams(
                qkv_format="thd", cu_seqlens_q=cu, cu_seqlens_kv=cu, max_seqlen_q=max_len, max_seqlen_kv=max_len
            )
        return block_causal_mask(mb["doc_ids"], mb.get("branch_ids")), None

    def _microbatches(self, rows: list[PackedRow]) -> list[dict]:
        """This rank's microbatches; mb["parts"] lists (index in `rows`, offset, length) per row it holds.

        With `merges_rows`, the rows' sequences (each row's positions before its tail padding, so
        every packing group stays whole) are packed first-fit-decreasing into microbatches of one row
        of at most micro_batch_size * model.seq_length tokens (the most a microbatch held before),
        padded only to a multiple of 16: no position is spent on a row's padding tail, and fewer,
        longer microbatches amortize the per-layer overheads. Every sequence keeps its tokens,
        positions and attention pieces, so log-probs and gradients are those of the rows as given
        (up to float summation order)."""
        mbs = self.parallel.micro_batch_size
        if self.merges_rows:
            cap = max(mbs * self.model_cfg.seq_length, max(r.used for r in rows))
            bins = [sorted(b) for b in first_fit_decreasing([r.used for r in rows], cap)]
            # the padding token is any id: padding is attended by nothing and labelled nothing
            groups = [[concat_rows([rows[i] for i in b], int(rows[b[0]].tokens[-1]))] for b in bins]
            parts = []
            for b in bins:
                offsets = [0]
                for i in b:
                    offsets.append(offsets[-1] + rows[i].used)
                parts.append([(i, off, rows[i].used) for i, off in zip(b, offsets, strict=False)])
        else:
            groups = [rows[i : i + mbs] for i in range(0, len(rows), mbs)]
            parts = [[(i + j, 0, r.tokens.shape[0]) for j, r in enumerate(g)] for i, g in zip(
                range(0, len(rows), mbs), groups, strict=True)]
        out = []
        for group, part in zip(groups, parts, strict=True):
            mb = {k: v.to(self.platform.device) for k, v in collate(group).items()}
            mb["rows"] = group
            mb["parts"] = part
            out.append(mb)
        return out

    def _shard(self, rows: list[PackedRow]) -> tuple[list[PackedRow], int]:
        """This DP rank's rows (round robin), padded with empty rows so all ranks run equally."""
        per_rank = -(-len(rows) // self.dp_size)
        # Whole microbatches; interleaved pipelines also want a multiple of the stage count.
        unit = self.parallel.micro_batch_size * (self.pp_size if len(self.chunks) > 1 else 1)
        per_rank = -(-per_rank // unit) * unit
        mine = rows[self.dp_rank :: self.dp_size]
        return mine + [_empty_like(rows[0])] * (per_rank - len(mine)), len(mine)

    def _run(self, mbs: list[dict], loss_fn: LossFn, forward_only: bool) -> list[dict]:
        from megatron.core import parallel_state, tensor_parallel
        from megatron.core.pipeline_parallel import get_forward_backward_func

        def forward_step(data_iterator, model):
            mb = next(data_iterator)
            attention_mask, packed = self._attention_inputs(mb)
            # RoPE by each token's position id (the schedule runs the forward inside this call): tree rows
            # need it; with pieces every sequence is then rotated exactly as it would be alone
            explicit = "branch_ids" in mb or isinstance(packed, DocumentPieces)
            with rope_positions(model, mb["position_ids"] if explicit else None):
                return _forward(mb, model, attention_mask, packed)

        def _forward(mb, model, attention_mask, packed):
            core = model.module if hasattr(model, "module") else model
            if self.fused_logprob and core.post_process:
                # The hot path: hidden states -> per-token log-probs in token chunks, vocab-parallel,
                # never materialising [B, S, V] logits (sweet_kernels, Triton on GPU).
                hidden_TH, weight_VH = gpt_hidden_states(
                    model, mb["tokens"], mb["position_ids"], attention_mask, packed_seq_params=packed
                )
                logp_T = fused_linear_logprob(
                    hidden_TH, weight_VH, mb["labels"].reshape(-1), vocab_size=self.model_cfg.vocab_size,
                    tp_group=parallel_state.get_tensor_model_parallel_group(),
                )
                ce_BS = -logp_T.view(mb["labels"].shape)
            elif self._padded_vocab:
                # Padded embedding rows (ids >= true vocab) never occur: mask them out of the softmax
                # so trainer log-probs equal the rollout engines' (which have the true vocab only).
                logits = model(mb["tokens"], mb["position_ids"], attention_mask, packed_seq_params=packed)
                if core.post_process:
                    logits = logits.masked_fill(self._padding_mask(logits), float("-inf"))
                    ce_BS = tensor_parallel.vocab_parallel_cross_entropy(logits.float(), mb["labels"])
                else:  # an earlier pipeline stage: hidden states flow on
                    ce_BS = logits
            else:
                ce_BS = model(
                    mb["tokens"], mb["position_ids"], attention_mask, labels=mb["labels"], packed_seq_params=packed
                )
            return ce_BS, partial(_apply_loss, loss_fn, mb)

        # Interleaved schedules pull microbatches for each chunk from that chunk's own iterator.
        iters = iter(mbs) if len(self.chunks) == 1 else [iter(mbs) for _ in self.chunks]
        return get_forward_backward_func()(
            forward_step_func=forward_step,
            data_iterator=iters,
            model=self.chunks if len(self.chunks) > 1 else self.chunks[0],
            num_microbatches=len(mbs),
            seq_length=mbs[0]["tokens"].shape[1],  # rows may be shorter than model.seq_length
            micro_batch_size=self.parallel.micro_batch_size,
            forward_only=forward_only,
        )

    def _reduce_metrics(self, outputs: list[dict], num_keys: list[str]) -> dict[str, float]:
        """Sum metric dicts over microbatches and DP ranks; deliver them to every rank.

        The vector lives on the platform's collective device: an NCCL-only group has no CPU
        backend, so a CPU tensor here raises on GPU at DP>1 or PP>1 (issue 18 #1)."""
        vec = torch.zeros(len(num_keys), dtype=torch.float64, device=self.platform.collective_device)
        if self.is_last_stage:
            for out in outputs:
                for i, k in enumerate(num_keys):
                    if k in out:
                        vec[i] += float(out[k])
            if self.dp_size > 1:
                dist.all_reduce(vec, group=self.dp_group)
        if self.pp_size > 1:
            dist.broadcast(vec, src=self.pp_last_rank, group=self.pp_group)
        return dict(zip(num_keys, vec.tolist(), strict=True))

    def offload(self) -> None:
        """An idle trainable runner frees its device memory except the parameters (forward still
        works): megatron's own RL seams, `DistributedDataParallel.offload_grad_buffers` (the fp32
        grad buffers' storage is released; they are zeroed before every step anyway) and
        `MegatronOptimizer.offload_to_cpu` (main params and Adam moments to host; only bf16 runs:
        with fp32 params the optimizer's params are the model's own). `train_step` reloads.
        Idempotent; a no-op for frozen runners. Issue 18 #8."""
        if not self.trainable or self.offloaded:
            return
        for c in self.chunks:
            c.offload_grad_buffers(synchronize=self.platform.is_cuda, empty_cache=False)
        if self.platform.params_dtype != torch.float32:
            self.optimizer.offload_to_cpu()
        if self.platform.is_cuda:
            torch.cuda.empty_cache()
        self.offloaded = True

    def onload(self) -> None:
        """Undo `offload` (grad buffers reallocated and zeroed, optimizer state back on the device)."""
        if not self.offloaded:
            return
        for c in self.chunks:
            c.restore_grad_buffers(synchronize=self.platform.is_cuda)
        if self.platform.params_dtype != torch.float32:
            self.optimizer.restore_from_cpu()
        self.offloaded = False

    def load_weights(self, ckpt_dir) -> dict:
        """Load a model checkpoint (any layout) into this runner's chunks; returns its meta. Collective.

        A trainable runner's optimizer then re-reads its main params from the loaded weights: with
        bf16 params megatron's DistributedOptimizer holds fp32 main params cloned at construction
        (optimizer/distrib_optimizer.py `_build_model_and_main_param_groups`: `shard_model_param
        .clone().float()`), and the first step would write that random init back into the model
        unless `reload_model_params()` runs (optimizer/optimizer.py `MegatronOptimizer
        .reload_model_params`; issue 18 #4). On fp32 params the main params are views, which is why
        CPU runs never showed it."""
        meta = load_model_checkpoint(ckpt_dir, self.chunks)
        if self.optimizer is not None:
            self.optimizer.reload_model_params()
        return meta

    # ----------------------------------------------------------------------------------- the calls
    def train_step(self, rows: list[PackedRow], loss_fn: LossFn, metric_keys: list[str]) -> dict[str, float]:
        """One optimizer step over `rows` (the global batch). Returns summed metrics plus grad_norm, lr."""
        if not self.trainable:
            raise RuntimeError(f"{self.name} is frozen (built without an optimizer)")
        self.onload()
        for c in self.chunks:
            c.train()
            c.zero_grad_buffer()
        self.optimizer.zero_grad()
        mine, _ = self._shard(rows)
        outputs = self._run(self._microbatches(mine), loss_fn, forward_only=False)
        ok, grad_norm, _ = self.optimizer.step()
        if not ok:
            raise FloatingPointError(f"{self.name}: optimizer step skipped (non-finite gradients)")
        self.scheduler.step(increment=1)
        self.step += 1
        metrics = self._reduce_metrics(outputs, ["loss_sum", "count", *metric_keys])
        metrics["grad_norm"] = float(grad_norm) if grad_norm is not None else float("nan")
        metrics["lr"] = self.optimizer.param_groups[0]["lr"]
        return metrics

    @torch.no_grad()
    def token_logprobs(self, rows: list[PackedRow]) -> list[torch.Tensor]:
        """log p(labels[t] | tokens[:t+1]) for every position of every row ([S] float32 each), on every rank;
        0 on a row's padding tail (from `row.used` on) where the runner lays rows out again (`merges_rows`)."""
        for c in self.chunks:
            c.eval()
        mine, n_real = self._shard(rows)
        mbs = self._microbatches(mine)
        outputs = self._run(mbs, _logp_loss, forward_only=True)
        local = []
        if self.is_last_stage:
            # each row's log-probs back from the microbatch row holding it (0 on its padding tail)
            local = [torch.zeros(r.tokens.shape[0]) for r in mine]
            for out, mb in zip(outputs, mbs, strict=True):
                logp_BS = out["logp"].float().cpu()
                for b, (i, off, n) in enumerate(mb["parts"]):
                    local[i][:n] = logp_BS[0 if self.merges_rows else b, off : off + n]
            local = local[:n_real]
        if self.pp_size > 1:
            holder = [local]
            dist.broadcast_object_list(holder, src=self.pp_last_rank, group=self.pp_group)
            local = holder[0]
        if self.dp_size > 1:
            gathered: list[list[torch.Tensor]] = [None] * self.dp_size  # type: ignore[list-item]
            dist.all_gather_object(gathered, local, group=self.dp_group)
        else:
            gathered = [local]
        out: list[torch.Tensor] = [None] * len(rows)  # type: ignore[list-item]
        for r, part in enumerate(gathered):
            for j, t in enumerate(part):
                out[r + j * self.dp_size] = t
        return out


def _apply_loss(loss_fn: LossFn, mb: dict, ce_BS: torch.Tensor):
    """Megatron's loss hook: per-token CE (= -log p) in, (loss_sum, count, metrics) out."""
    loss_sum, count, metrics = loss_fn(mb, -ce_BS.float())
    report = {"loss_sum": loss_sum.detach().clone(), "count": count.detach().clone()}
    report.update({k: v.detach().clone() for k, v in metrics.items()})
    return loss_sum, count.to(torch.int), report


def _logp_loss(mb: dict, logp_BS: torch.Tensor):
    zero = logp_BS.sum() * 0
    return zero, torch.tensor(1), {"logp": logp_BS.detach()}


def sft_loss(mb: dict, logp_BS: torch.Tensor):
    """Token-level NLL on agent-action tokens (loss_mask), summed; count = number of such tokens."""
    mask = mb["loss_mask"]
    nll = -(logp_BS * mask).sum()
    count = (mask > 0).sum()
    return nll, count, {}
