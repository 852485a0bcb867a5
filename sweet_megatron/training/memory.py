"""Memory plan: what each GPU holds in each phase of a run, and a refusal when it cannot fit.

A pure function of model x layout x rollout engine x world size (`plan_memory`), run by
`sweet-train` before anything is built and printed by `sweet-bench plan`. It follows what the
trainer keeps resident (training/trainer.py with issue 18's fixes):

- a trainable runner that is training: bf16 params (2 B/param), fp32 grad buffer (4 B/param,
  DDP grad_reduce_in_fp32), fp32 main params + Adam moments (12 B/param, divided by DP with the
  distributed optimizer);
- a trainable runner that is idle: params only (`ModelRunner.offload`: grad buffers released,
  optimizer state on the host);
- a frozen reference: params only;
- activations of one training step (see `activation_bytes`) and the log-prob head;
- the rollout engine: `gpu_memory_utilization` x GPU while awake (weights + KV cache + its own
  activations, vLLM's budget), a residue while asleep (`ENGINE_ASLEEP_BYTES`, not measured yet);
- a fixed runtime reserve (CUDA context, NCCL buffers, TE workspaces: `RUNTIME_BYTES`).

Phases (the peak of each stage): `build` (actor built, then the engine), `sft`, `rollout` (eval,
collect, actor candidates: the idle actor, critic and critic reference next to the awake engine),
`critic`, `actor` (the idle actor and critic, two references, the DPO actor training). Per-GPU
numbers are for the worst pipeline stage (its layers plus one vocabulary matrix shard; both
matrices without pipelining). Bytes are decimal (1 GB = 1e9 B); an "80 GB" H100 has 79.6 GiB.

Shape legend: s sequence length (model.seq_length), b micro batch, h hidden, f ffn, t TP, p PP.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sweet_megatron.model import ModelConfig
from sweet_megatron.parallel import LayoutError, ParallelConfig

GB = 1e9
RUNTIME_BYTES = 3 * GB
"""CUDA context, NCCL communicators and TE workspaces per GPU (assumption; calibrate on a GPU)."""
ENGINE_ASLEEP_BYTES = 2 * GB
"""What a level-2-asleep vLLM keeps (CUDA graphs, buffers; assumption; tests/gpu/acceptance.sh measures)."""
ENGINE_ACTIVATION_BYTES = 2 * GB
"""vLLM's own profiled activation peak inside its budget (assumption)."""
H100_BF16_FLOPS = 989e12
"""H100 SXM dense bf16 peak (NVIDIA datasheet)."""


class MemoryPlanError(LayoutError):
    """A layout that does not fit; the message names the keys to change (a config error: exit 2)."""


@dataclass
class Phase:
    """One phase's resident parts, in bytes per GPU."""

    name: str
    parts: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.parts.values())


@dataclass
class MemoryPlan:
    gpu_bytes: float
    world_size: int
    data_parallel: int
    params_per_gpu: int
    engine_tp: int
    engine_kv_tokens: int
    phases: list[Phase]
    host_bytes_per_gpu: float
    """Host memory each GPU's offloaded optimizer states take (fp32 main params + Adam moments)."""
    tokens_per_s_per_gpu: float
    model_flops_per_token: float
    problems: list[str]

    @property
    def fits(self) -> bool:
        return not self.problems

    def peak(self) -> Phase:
        return max(self.phases, key=lambda p: p.total)

    def format(self) -> str:
        lines = [f"memory plan: {self.world_size} GPUs of {self.gpu_bytes / GB:.1f} GB, data parallel "
                 f"{self.data_parallel}, {self.params_per_gpu / 1e9:.3f} B params per GPU (worst stage), "
                 f"engine TP {self.engine_tp} with room for {self.engine_kv_tokens} KV tokens"]
        for ph in self.phases:
            detail = ", ".join(f"{k} {v / GB:.1f}" for k, v in ph.parts.items() if v)
            mark = "" if ph.total <= self.gpu_bytes else "  <-- does not fit"
            lines.append(f"  {ph.name:<8} {ph.total / GB:6.1f} GB  ({detail}){mark}")
        lines.append(f"  host: {self.host_bytes_per_gpu / GB:.1f} GB per GPU of offloaded optimizer state")
        lines.append(f"  projected training throughput: {self.tokens_per_s_per_gpu:.0f} tokens/s/GPU "
                     f"({self.model_flops_per_token / 1e9:.1f} GFLOP per token)")
        lines += [f"  REFUSED: {p}" for p in self.problems]
        return "\n".join(lines)


def layer_params(m: ModelConfig) -> int:
    """Parameters of one transformer layer (QKV, output projection, SwiGLU, two norms)."""
    h, f, kv = m.hidden_size, m.ffn_hidden_size, m.num_query_groups * m.head_dim
    return h * (h + 2 * kv) + h * h + 3 * h * f + 2 * h


def params_per_gpu(m: ModelConfig, par: ParallelConfig) -> int:
    """Parameters on the worst pipeline stage's GPU: its layers / TP plus one (PP>1) or both (PP=1,
    untied) vocabulary matrices / TP."""
    t, p = par.tensor_parallel, par.pipeline_parallel
    vocab = m.padded_vocab_size(t) * m.hidden_size // t
    matrices = 1 if (p > 1 or m.tie_embeddings) else 2
    return m.num_layers // p * layer_params(m) // t + matrices * vocab + m.hidden_size


def layer_activation_bytes(m: ModelConfig, par: ParallelConfig, micro_batch: int = 1) -> float:
    """Bytes one layer keeps for its backward, per microbatch, bf16, no dropout, flash attention
    (no s x s scores). Per token: norm inputs 2h+2h, QKV and fc1 inputs 2h+2h, q/k/v 2(h+2kv),
    attention output 2h, fc1 output 2*2f, fc2 input 2f = 12h + 4kv + 6f bytes. With sequence
    parallelism all of it is split over TP; without it the 8h of norm/linear inputs is replicated
    (Korthikanti et al. 2022, "Reducing Activation Recomputation", section 4, for the method)."""
    s, h, f = m.seq_length, m.hidden_size, m.ffn_hidden_size
    kv, t = m.num_query_groups * m.head_dim, par.tensor_parallel
    sharded = (12 * h + 4 * kv + 6 * f) / t if par.sequence_parallel else 8 * h + (4 * h + 4 * kv + 6 * f) / t
    return s * micro_batch * sharded


def activation_bytes(m: ModelConfig, par: ParallelConfig) -> float:
    """Activations of one step on the first pipeline stage (the worst): with 1F1B it holds PP
    microbatches of its L/PP layers, i.e. L layers' worth, times 1 + (p-1)/(p*v) when interleaved;
    without pipelining one microbatch at a time. Full recompute keeps only each layer's input
    (2 s b h, split over TP with SP) plus one layer's full activations while it is recomputed."""
    p, v = par.pipeline_parallel, par.virtual_pipeline or 1
    layers = m.num_layers  # PP stages x L/PP layers each (or all L, one microbatch at a time)
    factor = 1 + (p - 1) / (p * v) if p > 1 else 1.0
    b = par.micro_batch_size
    full = layer_activation_bytes(m, par, b)
    if m.recompute == "full":
        stored = 2 * m.seq_length * b * m.hidden_size / (par.tensor_parallel if par.sequence_parallel else 1)
        return layers * stored * factor + full
    return layers * full * factor


def logprob_head_bytes(m: ModelConfig, par: ParallelConfig, fused: bool) -> float:
    """The output head's working set on the last stage: the fused kernel's logit chunks, or full
    vocab-parallel logits (bf16 output, fp32 copy, masked copy, softmax temporaries: ~16 B each)."""
    s, t = m.seq_length * par.micro_batch_size, par.tensor_parallel
    vp = m.padded_vocab_size(t) // t
    if fused:  # logit chunks, plus the gathered [s, h] hidden states under sequence parallelism
        return 2 * min(s, 4096) * vp * 4 + (2 * s * m.hidden_size if par.sequence_parallel else 0)
    return s * vp * 16


def engine_weight_bytes(m: ModelConfig, engine_tp: int) -> float:
    return 2 * m.num_parameters() / engine_tp


def engine_kv_bytes_per_token(m: ModelConfig, engine_tp: int) -> float:
    """K and V of every layer, bf16; KV heads split over the engine's TP (replicated past their number)."""
    heads = max(m.num_query_groups // engine_tp, 1)
    return 2 * m.num_layers * heads * m.head_dim * 2


def choose_engine_tp(m: ModelConfig, gpu_bytes: float, utilization: float, world_size: int,
                     gpus_per_node: int = 8) -> int:
    """The smallest engine TP (a power of two within a node, dividing the world and the heads) whose
    weights leave at least half of the engine's budget for activations and KV cache."""
    budget = utilization * gpu_bytes
    tp = 1
    while tp <= min(gpus_per_node, world_size):
        if world_size % tp == 0 and m.num_attention_heads % tp == 0:
            if engine_weight_bytes(m, tp) + ENGINE_ACTIVATION_BYTES <= budget / 2:
                return tp
        tp *= 2
    return tp // 2 if tp > 1 else 1


def plan_memory(m: ModelConfig, par: ParallelConfig, world_size: int, *, engine: str = "vllm", engine_tp: int = 0,
                gpu_memory_utilization: float = 0.5, gpu_bytes: float = 80 * GB, gpus_per_node: int = 8,
                fused_logprob: bool = True, mfu: float = 0.4, peak_flops: float = H100_BF16_FLOPS,
                min_kv_tokens: int | None = None, bucket_bytes: float = 1 * GB) -> MemoryPlan:
    """Per-GPU bytes of every phase, and the problems that make the layout refuse (none: it fits).

    engine_tp 0 sizes the vLLM TP to the model (`choose_engine_tp`); engine 'local' runs on the host.
    """
    if m.vocab_size is None:
        raise ValueError("plan_memory needs model.vocab_size")
    dp = par.data_parallel(world_size)
    n = params_per_gpu(m, par)
    opt_div = dp if par.use_distributed_optimizer else 1
    frozen = 2.0 * n
    training = {"params": 2.0 * n, "grads": 4.0 * n, "optimizer": 12.0 * n / opt_div}
    act = activation_bytes(m, par)
    head = logprob_head_bytes(m, par, fused_logprob)
    problems: list[str] = []

    use_vllm = engine == "vllm"
    etp = (engine_tp or choose_engine_tp(m, gpu_bytes, gpu_memory_utilization, world_size, gpus_per_node)
           if use_vllm else 1)
    awake = gpu_memory_utilization * gpu_bytes if use_vllm else 0.0
    asleep = ENGINE_ASLEEP_BYTES if use_vllm else 0.0
    kv_tokens = 0
    if use_vllm:
        room = awake - engine_weight_bytes(m, etp) - ENGINE_ACTIVATION_BYTES
        kv_tokens = max(int(room // engine_kv_bytes_per_token(m, etp)), 0)
        need = min_kv_tokens if min_kv_tokens is not None else m.seq_length
        if kv_tokens < need:
            problems.append(
                f"the vLLM engine's weights ({engine_weight_bytes(m, etp) / GB:.1f} GB per GPU at "
                f"rollout.vllm_tensor_parallel={etp}) leave KV cache for {kv_tokens} tokens in its "
                f"{awake / GB:.1f} GB (rollout.gpu_memory_utilization={gpu_memory_utilization}); it needs "
                f"{need} (one model.seq_length dialogue): raise rollout.vllm_tensor_parallel (or set it to 0 to "
                "size it to the model) or rollout.gpu_memory_utilization")

    runtime = {"runtime": RUNTIME_BYTES}
    # weights/resharding.py: one flat buffer of max(bucket, largest full HF tensor = the embedding)
    # plus one TP-gathered weight (the largest: fc1, [2f, h]), bf16
    sync = (max(bucket_bytes, 2 * m.vocab_size * m.hidden_size) + 2 * 2 * m.ffn_hidden_size * m.hidden_size
            if use_vllm else 0.0)
    phases = [
        Phase("build", {"actor (building: params, grads, main params)": 2.0 * n + 4.0 * n + 4.0 * n / opt_div,
                        **runtime}),
        Phase("build+engine", {"actor (idle)": frozen, "engine (awake)": awake, **runtime}),
        Phase("sft", {"actor (training)": sum(training.values()), "activations": act, "logprob head": head,
                      "engine (asleep)": asleep, **runtime}),
        Phase("rollout", {"actor (idle)": frozen, "critic (idle)": frozen, "critic_ref": frozen,
                          "engine (awake)": awake, "weight sync buffers": sync, **runtime}),
        Phase("critic", {"actor (idle)": frozen, "critic (training)": sum(training.values()), "critic_ref": frozen,
                         "activations": act, "logprob head": head, "engine (asleep)": asleep, **runtime}),
        Phase("actor", {"actor (idle)": frozen, "critic (idle)": frozen, "critic_ref": frozen, "actor_ref": frozen,
                        "actor_dpo (training)": sum(training.values()), "activations": act, "logprob head": head,
                        "engine (asleep)": asleep, **runtime}),
    ]
    for ph in phases:
        if ph.total > gpu_bytes:
            problems.append(_advice(ph, gpu_bytes, m, par, world_size, gpus_per_node))

    # Model FLOPs per trained token: 6N for the weights plus causal attention 6 L h s (forward 2,
    # backward 4, half the s x s products); full recompute reruns the forward (8N hardware FLOPs).
    model_flops = 6 * m.num_parameters() + 6 * m.num_layers * m.hidden_size * m.seq_length
    hw_flops = model_flops * (8 / 6 if m.recompute == "full" else 1.0)
    return MemoryPlan(gpu_bytes=gpu_bytes, world_size=world_size, data_parallel=dp, params_per_gpu=n,
                      engine_tp=etp, engine_kv_tokens=kv_tokens, phases=phases,
                      host_bytes_per_gpu=12.0 * n / opt_div, tokens_per_s_per_gpu=mfu * peak_flops / hw_flops,
                      model_flops_per_token=model_flops, problems=problems)


def _advice(ph: Phase, gpu_bytes: float, m: ModelConfig, par: ParallelConfig, world: int, per_node: int) -> str:
    over = (ph.total - gpu_bytes) / GB
    biggest = max(ph.parts, key=ph.parts.get)
    fixes = []
    if m.recompute != "full" and ph.parts.get("activations", 0) > 4 * GB:
        fixes.append("model.recompute=full")
    fixes.append("more GPUs (a larger data-parallel size divides the optimizer state)"
                 if par.use_distributed_optimizer else "parallel.use_distributed_optimizer=true")
    fixes.append("a larger parallel.pipeline_parallel or parallel.tensor_parallel")
    if "engine (awake)" in ph.parts:
        fixes.append("a smaller rollout.gpu_memory_utilization")
    nodes = -(-world // per_node)
    return (f"phase {ph.name} needs {ph.total / GB:.1f} GB per GPU, {over:.1f} GB more than the "
            f"{gpu_bytes / GB:.0f} GB a GPU has on {world} GPUs ({nodes} node(s)); the largest part is "
            f"{biggest} ({ph.parts[biggest] / GB:.1f} GB). Change: {'; '.join(fixes)}")


def plan_run(cfg, world_size: int, gpu_bytes: float = 80 * GB, **kwargs) -> MemoryPlan:
    """`plan_memory` for a RunConfig (its model, layout and rollout keys)."""
    m = cfg.model if cfg.model.vocab_size else cfg.model.with_vocab(128256)
    return plan_memory(m, cfg.parallel, world_size, engine=cfg.rollout.engine,
                       engine_tp=cfg.rollout.vllm_tensor_parallel,
                       gpu_memory_utilization=cfg.rollout.gpu_memory_utilization, gpu_bytes=gpu_bytes,
                       bucket_bytes=cfg.rollout.bucket_mb * 2**20, **kwargs)


def check_fits(plan: MemoryPlan) -> None:
    """Raise MemoryPlanError with every problem and the plan when the layout does not fit."""
    if not plan.fits:
        raise MemoryPlanError("the layout does not fit the GPU memory:\n" + plan.format())
