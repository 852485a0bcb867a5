"""Llama-3.x models as megatron-core `GPTModel`s, built from a named size through `TransformerConfig`.

RMSNorm, SwiGLU, RoPE with Llama-3.1 frequency scaling, grouped-query attention, input and output
embeddings untied unless `tie_embeddings`, no biases. The layer spec is Transformer Engine's (with optional FP8) when TE is
usable on a GPU, megatron's local spec otherwise; which one is logged once. No device or parallel
special cases live here: megatron's layers shard themselves from `parallel_state`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from sweet_megatron.errors import check_choice
from sweet_megatron.parallel import ParallelConfig
from sweet_megatron.platform import Platform, has_transformer_engine

log = logging.getLogger(__name__)


@dataclass
class FP8Config:
    """FP8 training with Transformer Engine (ignored with the local spec)."""

    enabled: bool = False
    """Use FP8 GEMMs in the TE layers."""
    format: str = "hybrid"
    """'hybrid': E4M3 forward, E5M2 gradients; 'e4m3': E4M3 everywhere."""
    recipe: str = "delayed"
    """Scaling recipe (mxfp8 needs Blackwell)."""
    amax_history_len: int = 1024
    """Length of the amax history window (delayed scaling)."""
    amax_compute_algo: str = "max"
    """How the scale is derived from the amax history."""
    margin: int = 0
    """Scaling-factor margin, in powers of two."""

    def __post_init__(self) -> None:
        check_choice("model.fp8.format", self.format, ("hybrid", "e4m3"))
        check_choice("model.fp8.recipe", self.recipe, ("delayed", "tensorwise", "mxfp8", "blockwise"))
        check_choice("model.fp8.amax_compute_algo", self.amax_compute_algo, ("max", "most_recent"))


@dataclass
class ModelConfig:
    """Architecture of a Llama-3.x model. Named sizes live in SIZES and conf/model/*.yaml."""

    name: str = "tiny"
    """Size name, for logs and checkpoints."""
    num_layers: int = 4
    hidden_size: int = 128
    ffn_hidden_size: int = 384
    """SwiGLU inner size (per gate and per up projection)."""
    num_attention_heads: int = 4
    num_query_groups: int = 2
    """Key/value heads (grouped-query attention)."""
    vocab_size: int | None = None
    """True vocabulary size; None takes it from the tokenizer."""
    make_vocab_size_divisible_by: int = 8
    """The embedding is padded to a multiple of this times tensor_parallel (padded ids never occur)."""
    seq_length: int = 1024
    """Longest packed row the model sees."""
    rotary_base: int = 500_000
    rope_scaling: bool = True
    """Llama-3.1 frequency scaling (low 1, high 4, original context 8192)."""
    rope_scaling_factor: float = 8.0
    norm_epsilon: float = 1e-5
    init_method_std: float = 0.02
    tie_embeddings: bool = False
    """One matrix for the input embedding and the output layer (Llama 3.2 1B/3B do this; 3.1 8B/70B
    do not). On a toy copy task a small model trained from scratch learned to copy sooner with it;
    on the synthetic family the warm start was not better (docs/environments.md)."""
    transformer_impl: str = "auto"
    """'auto': Transformer Engine when usable on a GPU, else megatron's local spec."""
    fp8: FP8Config = field(default_factory=FP8Config)
    recompute: str = "none"
    """Activation recomputation: 'none', or 'full' (every layer keeps only its input and reruns its
    forward in the backward pass: megatron's recompute_granularity=full, method=uniform, 1 layer)."""

    def __post_init__(self) -> None:
        check_choice("model.transformer_impl", self.transformer_impl, ("auto", "local", "transformer_engine"))
        check_choice("model.recompute", self.recompute, ("none", "full"))
        if self.num_attention_heads % self.num_query_groups:
            raise ValueError(
                f"model.num_query_groups={self.num_query_groups} must divide num_attention_heads="
                f"{self.num_attention_heads}"
            )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"model.hidden_size={self.hidden_size} must be divisible by num_attention_heads="
                f"{self.num_attention_heads}"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def padded_vocab_size(self, tensor_parallel: int) -> int:
        if self.vocab_size is None:
            raise ValueError("model.vocab_size is unset: call with_vocab(tokenizer.vocab_size) first")
        multiple = self.make_vocab_size_divisible_by * tensor_parallel
        return int(math.ceil(self.vocab_size / multiple) * multiple)

    def with_vocab(self, vocab_size: int) -> ModelConfig:
        return replace(self, vocab_size=vocab_size)

    def num_parameters(self) -> int:
        """Parameter count with the unpadded vocabulary."""
        h, f, v = self.hidden_size, self.ffn_hidden_size, self.vocab_size or 0
        kv = self.num_query_groups * self.head_dim
        per_layer = h * (h + 2 * kv) + h * h + 3 * h * f + 2 * h
        return self.num_layers * per_layer + (1 if self.tie_embeddings else 2) * v * h + h


# Published dimensions: Llama-3.1 8B and 70B (config.json of the released checkpoints).
SIZES: dict[str, ModelConfig] = {
    "tiny": ModelConfig(),
    "llama3_8b": ModelConfig(
        name="llama3_8b", num_layers=32, hidden_size=4096, ffn_hidden_size=14336, num_attention_heads=32,
        num_query_groups=8, vocab_size=128256, make_vocab_size_divisible_by=128, seq_length=8192,
    ),
    "llama3_70b": ModelConfig(
        name="llama3_70b", num_layers=80, hidden_size=8192, ffn_hidden_size=28672, num_attention_heads=64,
        num_query_groups=8, vocab_size=128256, make_vocab_size_divisible_by=128, seq_length=8192,
    ),
}


def fp8_recipe_problem(recipe: str, capability: tuple[int, int]) -> str | None:
    """Why FP8 recipe `recipe` cannot run on a GPU of compute `capability` (None: it can).
    MXFP8 block scaling needs Blackwell (sm_100+); Transformer Engine's `MXFP8BlockScaling`
    (transformer_engine/common/recipe) is not supported on Hopper (issue 18 #13)."""
    if recipe == "mxfp8" and capability[0] < 10:
        return (f"model.fp8.recipe=mxfp8 needs a Blackwell GPU (compute capability 10.0+), this one is "
                f"{capability[0]}.{capability[1]}: use model.fp8.recipe=delayed or tensorwise")
    return None


def resolve_transformer_impl(cfg: ModelConfig) -> str:
    """'transformer_engine' or 'local', per cfg.transformer_impl and what is installed."""
    if cfg.transformer_impl == "auto":
        return "transformer_engine" if has_transformer_engine() else "local"
    if cfg.transformer_impl == "transformer_engine" and not has_transformer_engine():
        raise RuntimeError(
            "model.transformer_impl=transformer_engine but Transformer Engine is not usable here (it needs a "
            "CUDA GPU and `import transformer_engine.pytorch`; use NVIDIA's PyTorch container). "
            "Set model.transformer_impl=auto or local"
        )
    return cfg.transformer_impl


_logged_impl: set[str] = set()


def transformer_config(cfg: ModelConfig, parallel: ParallelConfig, platform: Platform):
    """The megatron-core TransformerConfig for this model, layout and platform."""
    from megatron.core.transformer import TransformerConfig

    impl = resolve_transformer_impl(cfg)
    fp8 = cfg.fp8.enabled and impl == "transformer_engine"
    if cfg.fp8.enabled and not fp8:
        log.warning("model.fp8.enabled ignored: FP8 needs the Transformer Engine layer spec")
    if fp8 and platform.is_cuda:
        problem = fp8_recipe_problem(cfg.fp8.recipe, torch.cuda.get_device_capability(platform.device))
        if problem:
            raise ValueError(problem)
    dtype = platform.params_dtype
    return TransformerConfig(
        num_layers=cfg.num_layers,
        hidden_size=cfg.hidden_size,
        ffn_hidden_size=cfg.ffn_hidden_size,
        num_attention_heads=cfg.num_attention_heads,
        num_query_groups=cfg.num_query_groups,
        kv_channels=cfg.head_dim,
        normalization="RMSNorm",
        layernorm_epsilon=cfg.norm_epsilon,
        gated_linear_unit=True,
        activation_func=F.silu,
        add_bias_linear=False,
        add_qkv_bias=False,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        init_method_std=cfg.init_method_std,
        bias_activation_fusion=False,
        masked_softmax_fusion=False,
        persist_layer_norm=False,
        apply_rope_fusion=False,
        gradient_accumulation_fusion=gradient_accumulation_fusion(impl, platform),
        tensor_model_parallel_size=parallel.tensor_parallel,
        pipeline_model_parallel_size=parallel.pipeline_parallel,
        virtual_pipeline_model_parallel_size=parallel.virtual_pipeline,
        context_parallel_size=parallel.context_parallel,
        sequence_parallel=parallel.sequence_parallel,
        params_dtype=dtype,
        bf16=dtype == torch.bfloat16,
        pipeline_dtype=dtype,
        # Full-size init on CPU then split: the same weights whatever the layout (cheap at CPU sizes).
        use_cpu_initialization=not platform.is_cuda,
        # Interleaved PP on 2 stages with batched p2p silently corrupts results on gloo (FINDINGS).
        batch_p2p_comm=platform.is_cuda and parallel.virtual_pipeline is None,
        variable_seq_lengths=False,
        fp8=cfg.fp8.format if fp8 else None,
        fp8_recipe=cfg.fp8.recipe,
        fp8_amax_history_len=cfg.fp8.amax_history_len,
        fp8_amax_compute_algo=cfg.fp8.amax_compute_algo,
        fp8_margin=cfg.fp8.margin,
        **_recompute_kwargs(cfg.recompute),
    )


def gradient_accumulation_fusion(impl: str, platform: Platform) -> bool:
    """Whether the weight-gradient GEMM accumulates straight into DDP's fp32 `main_grad` buffer
    (megatron's gradient_accumulation_fusion): on CUDA with the Transformer Engine spec (TE does it
    itself: fuse_wgrad_accumulation) or with the local spec when Apex's fused_weight_gradient_mlp_cuda
    extension is built (megatron tensor_parallel/layers.py refuses the flag without it). Off on
    CPU: there is no fused kernel, and gloo runs keep plain .grad accumulation."""
    if not platform.is_cuda:
        return False
    if impl == "transformer_engine":
        return True
    from megatron.core.tensor_parallel import layers

    return bool(getattr(layers, "_grad_accum_fusion_available", False))


def _recompute_kwargs(recompute: str) -> dict:
    """TransformerConfig fields for model.recompute (megatron transformer_config.py: recompute_granularity,
    recompute_method, recompute_num_layers)."""
    if recompute == "full":
        return dict(recompute_granularity="full", recompute_method="uniform", recompute_num_layers=1)
    return {}


def layer_spec(impl: str):
    """Megatron ModuleSpec for one Llama layer."""
    if impl == "transformer_engine":
        from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_with_transformer_engine_spec

        spec = get_gpt_layer_with_transformer_engine_spec()
    else:
        from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec

        # lazy: attention imports megatron-core (2.4 s), and config.py imports this module
        from sweet_megatron.attention import SDPACoreAttention

        spec = get_gpt_layer_local_spec(normalization="RMSNorm")
        spec.submodules.self_attention.submodules.core_attention = SDPACoreAttention
    if impl not in _logged_impl:
        _logged_impl.add(impl)
        log.info("layer spec: %s", "Transformer Engine" if impl == "transformer_engine"
                 else "megatron local, core attention through torch SDPA")
    return spec


def build_model(cfg: ModelConfig, parallel: ParallelConfig, platform: Platform) -> list[torch.nn.Module]:
    """This rank's model chunks (one per virtual pipeline stage; one without interleaving).

    parallel_state must be initialised (sweet_megatron.parallel.initialize).
    """
    from megatron.core import parallel_state
    from megatron.core.models.gpt import GPTModel

    tcfg = transformer_config(cfg, parallel, platform)
    impl = resolve_transformer_impl(cfg)
    spec = layer_spec(impl)
    vocab = cfg.padded_vocab_size(parallel.tensor_parallel)
    chunks = []
    vp_stages = [None] if parallel.virtual_pipeline is None else list(range(parallel.virtual_pipeline))
    for vp in vp_stages:
        ignore_virtual = vp is None
        model = GPTModel(
            config=tcfg,
            transformer_layer_spec=spec,
            vocab_size=vocab,
            max_sequence_length=cfg.seq_length,
            pre_process=parallel_state.is_pipeline_first_stage(ignore_virtual=ignore_virtual, vp_stage=vp),
            post_process=parallel_state.is_pipeline_last_stage(ignore_virtual=ignore_virtual, vp_stage=vp),
            parallel_output=True,
            share_embeddings_and_output_weights=cfg.tie_embeddings,
            position_embedding_type="rope",
            rotary_base=cfg.rotary_base,
            rope_scaling=cfg.rope_scaling,
            rope_scaling_factor=cfg.rope_scaling_factor,
            vp_stage=vp,
        )
        if impl == "local":  # rows laid out as trees (shared prefixes) need it
            from sweet_megatron.attention import use_positioned_rope  # lazy: megatron-core, as above

            use_positioned_rope(model)
        model.to(platform.device)
        chunks.append(model)
    return chunks
