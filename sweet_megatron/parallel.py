"""Degrees of parallelism, their up-front validation, and process-group set-up.

One dataclass holds every degree; `validate` checks a layout against the world size and the model
before anything is built, with errors that say the fix; `initialize` creates the torch.distributed
group (NCCL or gloo, from the platform) and megatron's `parallel_state` groups in megatron's
default order (tp-cp-ep-dp-pp). Also the small helpers every part shares: `rank`, `world_size`,
`is_rank0`, `from_rank0` (an object broadcast from rank 0) and `free_port`.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from sweet_megatron.platform import Platform, setup_platform

if TYPE_CHECKING:
    from sweet_megatron.model import ModelConfig

log = logging.getLogger(__name__)


class LayoutError(ValueError):
    """A parallel layout that cannot work; the message says the fix."""


@dataclass
class ParallelConfig:
    """Degrees of parallelism. Data parallel size is derived: world / (tp * pp * cp)."""

    tensor_parallel: int = 1
    """Tensor (intra-layer) parallel degree; must divide attention heads and KV groups."""
    pipeline_parallel: int = 1
    """Pipeline stages; must divide the layer count (times virtual stages)."""
    virtual_pipeline: int | None = None
    """Interleaved (virtual) stages per pipeline rank; None disables interleaving."""
    context_parallel: int = 1
    """Context parallel degree (sequence split across ranks inside attention); TE spec only."""
    sequence_parallel: bool = False
    """Megatron sequence parallelism (needs TP > 1 and the Transformer Engine layer spec)."""
    use_distributed_optimizer: bool = True
    """Shard optimizer state over data-parallel ranks (ZeRO-1)."""
    micro_batch_size: int = 1
    """Packed rows per microbatch."""
    overlap_grad_reduce: bool | None = None
    """Overlap the data-parallel gradient reduction with the backward pass (megatron DDP's bucketed
    asynchronous reduce-scatter / all-reduce, launched as each bucket's gradients are ready). None:
    on with CUDA, off on CPU (gloo has nothing to overlap with); true or false forces it."""

    def __post_init__(self) -> None:
        for name in ("tensor_parallel", "pipeline_parallel", "context_parallel", "micro_batch_size"):
            if getattr(self, name) < 1:
                raise LayoutError(f"parallel.{name}={getattr(self, name)}: set it to 1 or more")
        if self.virtual_pipeline is not None and self.virtual_pipeline < 1:
            raise LayoutError("parallel.virtual_pipeline: set it to null (off) or an integer >= 2")
        if self.virtual_pipeline == 1:
            self.virtual_pipeline = None

    @property
    def model_parallel(self) -> int:
        return self.tensor_parallel * self.pipeline_parallel * self.context_parallel

    def data_parallel(self, world_size: int) -> int:
        return world_size // self.model_parallel

    def validate(self, world_size: int, model: ModelConfig, transformer_impl: str) -> None:
        """Raise LayoutError (naming the key and the fix) for a layout that cannot run.

        transformer_impl is 'local' or 'transformer_engine' (the resolved layer spec).
        """
        tp, pp, cp = self.tensor_parallel, self.pipeline_parallel, self.context_parallel
        if model.num_attention_heads % tp:
            raise LayoutError(
                f"parallel.tensor_parallel={tp} does not divide model.num_attention_heads="
                f"{model.num_attention_heads}: set tensor_parallel to a divisor of it"
            )
        if model.num_query_groups % tp:
            raise LayoutError(
                f"parallel.tensor_parallel={tp} does not divide model.num_query_groups="
                f"{model.num_query_groups} (KV heads): set tensor_parallel to a divisor of it"
            )
        if model.ffn_hidden_size % tp:
            raise LayoutError(
                f"parallel.tensor_parallel={tp} does not divide model.ffn_hidden_size={model.ffn_hidden_size}"
            )
        stages = pp * (self.virtual_pipeline or 1)
        if model.num_layers % stages:
            raise LayoutError(
                f"model.num_layers={model.num_layers} is not divisible by pipeline_parallel*"
                f"virtual_pipeline = {pp}*{self.virtual_pipeline or 1}: choose degrees whose product divides it"
            )
        if model.tie_embeddings and pp > 1:
            raise LayoutError(
                f"model.tie_embeddings=true with parallel.pipeline_parallel={pp}: the first and last stages "
                "would each hold a copy of the shared matrix, which the weight mapping does not handle yet; "
                "set model.tie_embeddings=false or pipeline_parallel=1"
            )
        if self.virtual_pipeline is not None and pp < 2:
            raise LayoutError("parallel.virtual_pipeline needs pipeline_parallel >= 2: set it to null")
        if self.sequence_parallel and tp < 2:
            raise LayoutError("parallel.sequence_parallel needs tensor_parallel >= 2: set it to false")
        if self.sequence_parallel and transformer_impl != "transformer_engine":
            raise LayoutError(
                "parallel.sequence_parallel=true needs the Transformer Engine layer spec; the local "
                "spec's RMSNorm rejects it (megatron-core asserts). On CPU (no Transformer Engine) set "
                "parallel.sequence_parallel=false"
            )
        if cp > 1 and transformer_impl != "transformer_engine":
            raise LayoutError(
                "parallel.context_parallel>1 needs Transformer Engine attention (megatron-core's local "
                "attention has no context parallelism): set it to 1 on CPU"
            )
        if cp > 1:
            # The losses are CP-aware (algorithms/), but the runner feeds every CP rank whole packed
            # rows: no per-rank THD partition (megatron's get_batch_on_this_cp_rank / TE's
            # thd_get_partitioned_indices) and no cu_seqlens_*_padded yet (issue 18 #14).
            raise LayoutError(
                f"parallel.context_parallel={cp}: rows are not yet split per context-parallel rank, so "
                "attention would be wrong; set it to 1 (use tensor/pipeline parallelism for long rows)"
            )
        if world_size % self.model_parallel:
            raise LayoutError(
                f"world size {world_size} is not divisible by tensor_parallel*pipeline_parallel*"
                f"context_parallel = {tp}*{pp}*{cp} = {self.model_parallel}: launch a multiple of "
                f"{self.model_parallel} processes or change the degrees"
            )


def initialize(cfg: ParallelConfig, seed: int = 0, timeout_minutes: int = 30) -> Platform:
    """Create torch.distributed and megatron parallel_state groups for `cfg`; seed the RNGs.

    Reads RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT from the environment (torchrun sets them);
    without them it runs as a single process. Idempotent for the same layout.
    """
    from megatron.core import parallel_state
    from megatron.core.tensor_parallel import model_parallel_cuda_manual_seed

    platform = setup_platform()
    if not dist.is_initialized():
        if "WORLD_SIZE" not in os.environ:  # a lone process: any free port (several runs may share a host)
            os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
            os.environ.setdefault("MASTER_PORT", str(free_port()))
        dist.init_process_group(
            backend=platform.backend,
            rank=int(os.environ.get("RANK", "0")),
            world_size=int(os.environ.get("WORLD_SIZE", "1")),
            timeout=timedelta(minutes=timeout_minutes),
        )
    if not parallel_state.model_parallel_is_initialized():
        parallel_state.initialize_model_parallel(
            tensor_model_parallel_size=cfg.tensor_parallel,
            pipeline_model_parallel_size=cfg.pipeline_parallel,
            virtual_pipeline_model_parallel_size=cfg.virtual_pipeline,
            context_parallel_size=cfg.context_parallel,
        )
    torch.manual_seed(seed)
    model_parallel_cuda_manual_seed(seed)
    return platform


def destroy() -> None:
    """Tear down megatron's groups and the default process group."""
    from megatron.core import parallel_state

    parallel_state.destroy_model_parallel()
    if dist.is_initialized():
        dist.destroy_process_group()


# ------------------------------------------------------------------------- rank helpers, ports
def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_rank0() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def from_rank0(obj: Any) -> Any:
    """obj as rank 0 has it, on every rank (collective when there are several ranks)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for MASTER_PORT of a one-host group)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
